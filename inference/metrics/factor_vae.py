"""FactorVAE disentanglement score (Kim & Mnih 2018, §4), with disentanglement_lib's protocol.

Codes are divided by their standard deviation over a large sample (dimensions whose std is below
0.05 are pruned as collapsed to the prior); for each group of ``L`` points sharing one fixed factor
``k``, the normalised per-dimension variance is computed and the argmin dimension votes for ``k``.
A majority-vote classifier maps each dimension to the factor it voted for most; the score is its
accuracy on fresh votes.

References
[1] Kim & Mnih. Disentangling by Factorising. ICML 2018. arXiv:1802.05983, §4 and Fig. 2.
"""

from __future__ import annotations

import numpy as np
import torch

from .information import as_array
from .sampling import check_ground_truth, fixed_factor_groups, represent_factors, sample_codes

PRUNE_STD = 0.05  # disentanglement_lib's gin setting prune_dims.threshold = 0.05


def factor_vae_votes(group_codes, fixed_factor, scale, num_factors: int) -> np.ndarray:
    """Vote matrix ``(K, D)``: how often dimension d had the least normalised variance when factor k
    was fixed. ``group_codes`` (V, L, D) of the active dims, ``fixed_factor`` (V,), ``scale`` (D,)."""
    g = as_array(group_codes, np.float64)
    var = g.var(axis=1, ddof=1) / np.square(as_array(scale, np.float64))
    argmin = var.argmin(axis=1)
    votes = np.zeros((num_factors, g.shape[2]))
    np.add.at(votes, (as_array(fixed_factor, np.int64), argmin), 1.0)
    return votes


def majority_vote_accuracy(train_votes: np.ndarray, eval_votes: np.ndarray) -> tuple[float, float]:
    """Train and eval accuracy of the classifier dimension -> its most-voted factor."""
    classifier = train_votes.argmax(axis=0)
    dims = np.arange(train_votes.shape[1])
    train = train_votes[classifier, dims].sum() / train_votes.sum()
    evals = eval_votes[classifier, dims].sum() / eval_votes.sum()
    return float(train), float(evals)


def factor_vae_score(train_codes, train_fixed, eval_codes, eval_fixed, global_codes,
                     num_factors: int, prune_std: float = PRUNE_STD) -> dict:
    """Score from grouped codes ``(V, L, D)`` with their fixed factors ``(V,)`` and a global sample
    ``(M, D)`` for the normalisation. Returns train/eval accuracy and the number of active dims."""
    std = as_array(global_codes, np.float64).std(axis=0, ddof=1)
    active = std >= prune_std
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    tv = factor_vae_votes(as_array(train_codes)[..., active], train_fixed, std[active], num_factors)
    ev = factor_vae_votes(as_array(eval_codes)[..., active], eval_fixed, std[active], num_factors)
    train, evals = majority_vote_accuracy(tv, ev)
    return {"train_accuracy": train, "eval_accuracy": evals, "num_active_dims": int(active.sum())}


def compute_factor_vae(data, represent, generator: torch.Generator, num_train: int = 10_000,
                       num_eval: int = 5_000, batch_size: int = 64, num_variance_estimate: int = 10_000,
                       device=None, progress: bool = False) -> dict:
    """FactorVAE score of ``represent`` on ``data``; defaults are disentanglement_lib's sizes."""
    check_ground_truth(data)
    global_codes, _ = sample_codes(data, represent, num_variance_estimate, generator, device=device,
                                   progress="FactorVAE variances" if progress else None)
    out = []
    for name, n in (("train", num_train), ("eval", num_eval)):
        f, k = fixed_factor_groups(data, n, batch_size, generator)
        codes = represent_factors(data, represent, f.view(n * batch_size, -1), device=device,
                                  progress=f"FactorVAE {name}" if progress else None)
        out += [codes.reshape(n, batch_size, -1), k.numpy()]
    return factor_vae_score(*out, global_codes, len(data.factor_sizes))
