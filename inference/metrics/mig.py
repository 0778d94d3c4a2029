"""Mutual Information Gap (Chen et al. 2018, eq. 7), as disentanglement_lib computes it.

MIG = 1/K Σ_k [I(v_k; z_j(k)) − max_{j ≠ j(k)} I(v_k; z_j)] / H(v_k), with j(k) = argmax_j I(v_k; z_j),
codes discretised into ``num_bins`` equal-width bins per dimension and H(v_k) the entropy of the
factor's empirical distribution in the sample.

References
[1] Chen, Li, Grosse, Duvenaud. Isolating Sources of Disentanglement in VAEs. NeurIPS 2018.
    arXiv:1802.04942
[2] Locatello et al. Challenging Common Assumptions... ICML 2019 (disentanglement_lib, mig.py).
"""

from __future__ import annotations

import numpy as np

from .information import as_2d, discrete_entropy, mutual_info_matrix


def mig(codes, factors, num_bins: int = 20) -> float:
    """MIG of ``codes`` (N, D) float against ``factors`` (N, K) int; a float in [0, 1].

    Factors that are constant in the sample (zero entropy) carry no information and are left
    out of the mean; with a single code dimension the gap is the top MI itself.
    """
    m, h = mig_terms(codes, factors, num_bins)
    keep = h > 0
    if not keep.any():
        raise ValueError("every factor is constant in the sample; MIG is undefined")
    return float(m[keep].mean())


def mig_terms(codes, factors, num_bins: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Per-factor normalised gaps ``(K,)`` and factor entropies ``(K,)``."""
    factors = as_2d(factors, "factors")
    mi = mutual_info_matrix(codes, factors, num_bins)  # (D, K)
    top = np.sort(mi, axis=0)[::-1]
    second = top[1] if len(top) > 1 else np.zeros(top.shape[1])
    h = discrete_entropy(factors)
    with np.errstate(divide="ignore", invalid="ignore"):
        gaps = np.where(h > 0, (top[0] - second) / h, 0.0)
    return gaps, h
