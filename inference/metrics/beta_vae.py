"""β-VAE disentanglement score (Higgins et al. 2017, §3), with disentanglement_lib's protocol.

Each training point is the mean over ``L`` pairs of |z1 − z2|, where both observations of a pair
share the value of one factor ``k``; a linear classifier predicts ``k``. The score is its held-out
accuracy. Which factor each point fixes (``balanced=``):
* ``False`` (default) — ``k`` drawn uniformly per point: Higgins et al.'s "y ∼ Unif[1…K]" [1, §3],
  as disentanglement_lib does. The counts per factor are then multinomial.
* ``True`` — the DIP-VAE paper's reading [2, §3]: "n such minibatches … for the factor y. This
  process is repeated for all generative factors": every factor fixed by exactly n / K points, in a
  seeded random order. ``num_train`` and ``num_eval`` must then be multiples of K.
The classifier (``classifier=``; the result names it under ``"classifier"``, and reports must carry
it: the two give different scores on the same features):
* ``"logistic"`` (default) — scikit-learn ``LogisticRegression`` (disentanglement_lib's choice).
* ``"svm"`` — one-vs-rest linear SVM, scikit-learn ``LinearSVC(C=0.01, loss="hinge")``: weight
  0.01 on the hinge loss and ½‖w‖² as regulariser, the DIP-VAE paper's classifier [2, §3]. The
  small C makes it much weaker than the logistic regression on codes of small magnitude.

The result records the classifier's training accuracy beside the held-out one, and whether its
solver converged: a fit that warns ``ConvergenceWarning`` is refitted with ten times the iterations,
up to ``max_iter_limit``; ``converged`` is False (and ``max_iter`` the last budget) when even that
warned. No warning is silenced without being recorded.

References
[1] Higgins et al. β-VAE: Learning Basic Visual Concepts with a Constrained Variational Framework.
    ICLR 2017, §3 "Assessing disentanglement quantitatively" and Fig. 5.
[2] Kumar, Sattigeri & Balakrishnan. Variational Inference of Disentangled Latent Concepts from
    Unlabeled Observations. ICLR 2018, §3 "Disentanglement metric score".
"""

from __future__ import annotations

import numpy as np
import torch

from .convergence import MAX_ITER, MAX_ITER_LIMIT, fit_until_converged
from .information import as_array
from .sampling import check_ground_truth, represent_factors


def beta_vae_features(codes1, codes2) -> np.ndarray:
    """``(V, D)`` features: mean over the ``L`` pairs of |z1 − z2|, from codes ``(V, L, D)``."""
    return np.abs(as_array(codes1, np.float64) - as_array(codes2, np.float64)).mean(axis=1)


CLASSIFIERS = ("logistic", "svm")


def check_classifier(classifier: str) -> str:
    if classifier not in CLASSIFIERS:
        raise ValueError(f"unknown β-VAE metric classifier {classifier!r}; expected one of {CLASSIFIERS}")
    return classifier


def _classifier(classifier: str, seed: int, max_iter: int):
    if check_classifier(classifier) == "svm":  # DIP-VAE §3: one-vs-rest linear SVM, C = 0.01
        from sklearn.svm import LinearSVC
        return LinearSVC(C=0.01, loss="hinge", random_state=seed, max_iter=max_iter)
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression(max_iter=max_iter, random_state=seed)


def beta_vae_score(train_features, train_labels, eval_features, eval_labels, seed: int = 0,
                   classifier: str = "logistic", max_iter: int = MAX_ITER,
                   max_iter_limit: int = MAX_ITER_LIMIT) -> dict:
    """Train/eval accuracy of a linear classifier (``"logistic"`` or ``"svm"``) predicting the fixed
    factor from the features, the classifier's name, and its convergence (``converged``, the
    iteration budget it ended with ``max_iter``, the solver's ``n_iter``)."""
    check_classifier(classifier)
    clf, converged, used = fit_until_converged(lambda m: _classifier(classifier, seed, m),
                                               train_features, train_labels, max_iter, max_iter_limit)
    return {"train_accuracy": float(clf.score(train_features, train_labels)),
            "eval_accuracy": float(clf.score(eval_features, eval_labels)),
            "classifier": classifier, "converged": converged, "max_iter": used,
            "n_iter": int(np.max(clf.n_iter_))}


def fixed_factor_labels(n: int, num_factors: int, generator: torch.Generator,
                        balanced: bool = False) -> torch.Tensor:
    """``(n,)`` the factor each point fixes: uniform draws (Higgins et al. §3, disentanglement_lib) or,
    ``balanced``, each factor exactly ``n / num_factors`` times in a seeded random order (DIP §3)."""
    if not balanced:
        return torch.randint(num_factors, (n,), generator=generator)
    if n % num_factors:
        raise ValueError(f"a balanced β-VAE metric needs a number of points that is a multiple of the "
                         f"{num_factors} factors, got {n}")
    labels = torch.arange(num_factors).repeat_interleave(n // num_factors)
    return labels[torch.randperm(n, generator=generator)]


def _pair_groups(data, n, batch_size, generator, balanced=False):
    """Pairs ``(f1, f2)`` of ``(V, L, K)`` factor rows; within pair (v, l) factor ``k_v`` agrees."""
    shape = (n, batch_size, len(data.factor_sizes))
    f1 = data.sample_factors(n * batch_size, generator=generator).view(shape)
    f2 = data.sample_factors(n * batch_size, generator=generator).view(shape)
    k = fixed_factor_labels(n, shape[2], generator, balanced)
    rows = torch.arange(n)
    f2[rows, :, k] = f1[rows, :, k]
    return f1, f2, k


def beta_vae_points(data, represent, generator: torch.Generator, n: int, batch_size: int = 64,
                    balanced: bool = False, device=None, progress: str | None = None):
    """``(features (n, D), labels (n,))``: the metric's points (Higgins et al. §3), each the mean
    |z1 − z2| over ``batch_size`` pairs sharing the value of its label's factor."""
    f1, f2, k = _pair_groups(data, n, batch_size, generator, balanced)
    both = torch.cat([f1, f2]).view(2 * n * batch_size, -1)
    codes = represent_factors(data, represent, both, device=device, progress=progress)
    c1, c2 = codes.reshape(2, n, batch_size, -1)
    return beta_vae_features(c1, c2), k.numpy()


def compute_beta_vae(data, represent, generator: torch.Generator, num_train: int = 10_000,
                     num_eval: int = 5_000, batch_size: int = 64, device=None,
                     progress: bool = False, classifier: str = "logistic", balanced: bool = False,
                     max_iter: int = MAX_ITER, max_iter_limit: int = MAX_ITER_LIMIT) -> dict:
    """β-VAE score of ``represent`` on ``data``; defaults are disentanglement_lib's sizes, classifier
    and uniform choice of the fixed factor (``classifier="svm", balanced=True``: the DIP-VAE paper's).

    Returns :func:`beta_vae_score`'s record with ``balanced`` and the points per factor
    (``train_counts``, ``eval_counts``).
    """
    check_ground_truth(data)
    check_classifier(classifier)
    parts, counts = [], {}
    for name, n in (("train", num_train), ("eval", num_eval)):
        features, labels = beta_vae_points(data, represent, generator, n, batch_size, balanced, device,
                                           f"beta-VAE {name}" if progress else None)
        parts += [features, labels]
        counts[f"{name}_counts"] = np.bincount(labels, minlength=len(data.factor_sizes)).tolist()
    return {**beta_vae_score(*parts, classifier=classifier, max_iter=max_iter, max_iter_limit=max_iter_limit),
            "balanced": balanced, **counts}
