"""Discrete mutual information and entropy, vectorised over every pair of columns.

All quantities are in nats, computed from empirical (plug-in) frequencies, as
``sklearn.metrics.mutual_info_score`` does; disentanglement_lib's MIG uses exactly this estimator
on codes discretised into equal-width bins (``utils.make_discretizer``, ``discrete_mutual_info``).
"""

from __future__ import annotations

import numpy as np


def as_array(x, dtype=None) -> np.ndarray:
    """A NumPy copy of a tensor or array (evaluation code only, never inside a training step)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def as_2d(x, name: str, dtype=None) -> np.ndarray:
    """``x`` as an ``(N, P)`` array; a vector is one column. Names ``x`` in the error."""
    a = as_array(x, dtype)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be shaped (N, P), got {a.shape}")
    return a


def discretize(codes, num_bins: int = 20) -> np.ndarray:
    """Equal-width histogram bins per column, ``(N, D)`` ints in ``[0, num_bins)``.

    Matches ``np.digitize(c, np.histogram(c, num_bins)[1][:-1]) - 1`` (disentanglement_lib's
    ``_histogram_discretize``): bins span [min, max] of each column, the maximum falls in the last
    bin, and a constant column goes entirely into bin 0.
    """
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    c = as_2d(codes, "codes", np.float64)
    lo, hi = c.min(0), c.max(0)
    width = np.where(hi > lo, hi - lo, 1.0)
    bins = np.floor((c - lo) / width * num_bins).astype(np.int64)
    return np.clip(bins, 0, num_bins - 1)


def _compact_labels(a: np.ndarray) -> tuple[np.ndarray, int]:
    """Each column relabelled to 0..(distinct values - 1); returns labels and the largest count."""
    out = np.empty(a.shape, dtype=np.int64)
    size = 1
    for j in range(a.shape[1]):  # a loop over columns (a handful), never over items
        values, out[:, j] = np.unique(a[:, j], return_inverse=True)
        size = max(size, len(values))
    return out, size


def joint_counts(a, b) -> np.ndarray:
    """Contingency tables of every column pair: ``(P, Q, Sa, Sb)`` counts of (a[:, p], b[:, q])."""
    a, sa = _compact_labels(as_2d(a, "a"))
    b, sb = _compact_labels(as_2d(b, "b"))
    if len(a) != len(b):
        raise ValueError(f"a and b must have the same number of rows, got {len(a)} and {len(b)}")
    n, p = a.shape
    q = b.shape[1]
    pair = np.arange(p * q).reshape(p, q)
    flat = ((pair[None] * sa + a[:, :, None]) * sb + b[:, None, :])  # (N, P, Q)
    counts = np.bincount(flat.ravel(), minlength=p * q * sa * sb)
    return counts.reshape(p, q, sa, sb).astype(np.float64)


def discrete_mutual_info(a, b) -> np.ndarray:
    """``(P, Q)`` matrix of I(a[:, p]; b[:, q]) in nats for integer (or any discrete) columns.

    I(A; B) = Σ_ab p(a, b) log[p(a, b) / (p(a) p(b))] with plug-in frequencies (Cover & Thomas
    eq. 2.28).
    """
    joint = joint_counts(a, b)
    n = joint.sum(axis=(2, 3), keepdims=True)
    pab = joint / n
    pa = pab.sum(3, keepdims=True)
    pb = pab.sum(2, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(pab > 0, pab * np.log(pab / (pa * pb)), 0.0)
    return np.maximum(terms.sum(axis=(2, 3)), 0.0)


def discrete_entropy(a) -> np.ndarray:
    """``(P,)`` plug-in entropies H(a[:, p]) in nats."""
    a, s = _compact_labels(as_2d(a, "a"))
    n, p = a.shape
    counts = np.bincount((np.arange(p) * s + a).ravel(), minlength=p * s).reshape(p, s)
    prob = counts / n
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(prob > 0, prob * np.log(prob), 0.0).sum(1)


def mutual_info_matrix(codes, factors, num_bins: int = 20) -> np.ndarray:
    """``(D, K)`` mutual information between each discretised code dimension and each factor."""
    return discrete_mutual_info(discretize(codes, num_bins), as_2d(factors, "factors"))
