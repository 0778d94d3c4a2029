"""β-VAE disentanglement score (Higgins et al. 2017, §3), with disentanglement_lib's protocol.

Each training point is the mean over ``L`` pairs of |z1 − z2|, where both observations of a pair
share the value of one factor ``k`` (chosen uniformly per point); a linear classifier predicts
``k``. The score is its held-out accuracy. The classifier (``classifier=``; the result names it
under ``"classifier"``, and reports must carry it: the two give different scores on the same
features):
* ``"logistic"`` (default) — scikit-learn ``LogisticRegression`` (disentanglement_lib's choice).
* ``"svm"`` — one-vs-rest linear SVM, scikit-learn ``LinearSVC(C=0.01, loss="hinge")``: weight
  0.01 on the hinge loss and ½‖w‖² as regulariser, the DIP-VAE paper's classifier [2, §3]. The
  small C makes it much weaker than the logistic regression on codes of small magnitude.

References
[1] Higgins et al. β-VAE: Learning Basic Visual Concepts with a Constrained Variational Framework.
    ICLR 2017, §3 "Assessing disentanglement quantitatively" and Fig. 5.
[2] Kumar, Sattigeri & Balakrishnan. Variational Inference of Disentangled Latent Concepts from
    Unlabeled Observations. ICLR 2018, §3 "Disentanglement metric score".
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
import torch

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


def _classifier(classifier: str, seed: int):
    if check_classifier(classifier) == "svm":  # DIP-VAE §3: one-vs-rest linear SVM, C = 0.01
        from sklearn.svm import LinearSVC
        return LinearSVC(C=0.01, loss="hinge", random_state=seed)
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression(max_iter=1000, random_state=seed)


def beta_vae_score(train_features, train_labels, eval_features, eval_labels, seed: int = 0,
                   classifier: str = "logistic") -> dict:
    """Train/eval accuracy of a linear classifier (``"logistic"`` or ``"svm"``) predicting the fixed
    factor from the features, and the classifier's name."""
    clf = _classifier(classifier, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # chatter on separable or tiny data
        clf.fit(train_features, train_labels)
    return {"train_accuracy": float(clf.score(train_features, train_labels)),
            "eval_accuracy": float(clf.score(eval_features, eval_labels)),
            "classifier": classifier}


def _pair_groups(data, n, batch_size, generator):
    """Pairs ``(f1, f2)`` of ``(V, L, K)`` factor rows; within pair (v, l) factor ``k_v`` agrees."""
    shape = (n, batch_size, len(data.factor_sizes))
    f1 = data.sample_factors(n * batch_size, generator=generator).view(shape)
    f2 = data.sample_factors(n * batch_size, generator=generator).view(shape)
    k = torch.randint(shape[2], (n,), generator=generator)
    rows = torch.arange(n)
    f2[rows, :, k] = f1[rows, :, k]
    return f1, f2, k


def compute_beta_vae(data, represent, generator: torch.Generator, num_train: int = 10_000,
                     num_eval: int = 5_000, batch_size: int = 64, device=None,
                     progress: bool = False, classifier: str = "logistic") -> dict:
    """β-VAE score of ``represent`` on ``data``; defaults are disentanglement_lib's sizes and
    classifier (``classifier="svm"``: the DIP-VAE paper's)."""
    check_ground_truth(data)
    check_classifier(classifier)
    parts = []
    for name, n in (("train", num_train), ("eval", num_eval)):
        f1, f2, k = _pair_groups(data, n, batch_size, generator)
        both = torch.cat([f1, f2]).view(2 * n * batch_size, -1)
        codes = represent_factors(data, represent, both, device=device,
                                  progress=f"beta-VAE {name}" if progress else None)
        c1, c2 = codes.reshape(2, n, batch_size, -1)
        parts += [beta_vae_features(c1, c2), k.numpy()]
    return beta_vae_score(*parts, classifier=classifier)
