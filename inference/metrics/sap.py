"""Separated Attribute Predictability (Kumar, Sattigeri, Balakrishnan, ICLR 2018, §4; the
DIP-VAE paper's conference version — not in our arXiv copy), as disentanglement_lib computes it.

A score matrix S (D, K) says how well code dimension d alone predicts factor k; SAP is the mean
over factors of the gap between the two largest entries of column k.
* continuous: S_dk = R² of a linear regression of v_k on z_d = Cov(z_d, v_k)² / (Var z_d Var v_k).
* discrete: S_dk = held-out accuracy of a linear SVM (``LinearSVC(C=0.01, class_weight="balanced")``)
  predicting v_k from z_d alone.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from .convergence import fit_recording
from .information import as_2d


def top_two_gap(scores: np.ndarray) -> float:
    """Mean over columns of (largest − second largest) entry."""
    s = np.sort(np.asarray(scores, np.float64), axis=0)[::-1]
    second = s[1] if len(s) > 1 else np.zeros(s.shape[1])
    return float((s[0] - second).mean())


def continuous_sap_matrix(codes, factors) -> np.ndarray:
    """``(D, K)`` R² of each per-dimension linear regression; 0 for a constant dimension."""
    z = as_2d(codes, "codes", np.float64)
    v = as_2d(factors, "factors", np.float64)
    zc, vc = z - z.mean(0), v - v.mean(0)
    cov = zc.T @ vc / (len(z) - 1)
    var_z, var_v = zc.var(0, ddof=1), vc.var(0, ddof=1)
    denom = var_z[:, None] * var_v[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((var_z[:, None] > 1e-12) & (var_v[None, :] > 0), cov ** 2 / denom, 0.0)


def discrete_sap_matrix(train_codes, train_factors, test_codes, test_factors) -> np.ndarray:
    """``(D, K)`` held-out accuracy of a linear SVM on one code dimension."""
    from sklearn.svm import LinearSVC

    ztr, zte = as_2d(train_codes, "train_codes"), as_2d(test_codes, "test_codes")
    vtr, vte = as_2d(train_factors, "train_factors"), as_2d(test_factors, "test_factors")
    out = np.zeros((ztr.shape[1], vtr.shape[1]))
    unconverged = []
    for d in range(ztr.shape[1]):  # D·K one-feature fits, as disentanglement_lib
        for k in range(vtr.shape[1]):
            if len(np.unique(vtr[:, k])) < 2:
                out[d, k] = 1.0
                continue
            # disentanglement_lib's LinearSVC defaults (1,000 iterations), kept so the score is the
            # reference's; a fit that stops unconverged is counted and named below, not silenced
            clf, converged = fit_recording(LinearSVC(C=0.01, class_weight="balanced"), ztr[:, d:d + 1], vtr[:, k])
            unconverged += [] if converged else [(d, k)]
            out[d, k] = clf.score(zte[:, d:d + 1], vte[:, k])
    if unconverged:
        warnings.warn(
            f"SAP: {len(unconverged)} of {out.size} one-code linear SVMs did not converge in their "
            f"{LinearSVC().max_iter:,} iterations (disentanglement_lib's setting, kept so the score is the "
            f"reference's; first (code, factor): {unconverged[0]}); their accuracies are those of the "
            "unconverged fits", ConvergenceWarning, stacklevel=2)
    return out


def sap(codes, factors, test_codes=None, test_factors=None, continuous: bool = True) -> float:
    """SAP score; the discrete variant needs a held-out set (``test_codes``, ``test_factors``)."""
    if continuous:
        return top_two_gap(continuous_sap_matrix(codes, factors))
    if test_codes is None or test_factors is None:
        raise ValueError("discrete SAP needs test_codes and test_factors")
    return top_two_gap(discrete_sap_matrix(codes, factors, test_codes, test_factors))
