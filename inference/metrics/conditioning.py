"""MS-VAE's conditioning measures M1–M4 and downstream classification with an MLP.

Nazari et al. (``papers/msvae-multi-stage-modelling.txt``) §4, "Measuring the Conditioning on C":
with E the mean of the stage-one encoder, G the stage-two decoder and ε, ε′ ~ N(0, I),

    C_R = E(x),  C_Y = E(y),  C_X = E(G(y, z)),  C_Z = E(G(y, ε)),  C_Y′ = E(G(ε′, z)),
    M1 = MI[C_R; C_Y],  M2 = MI[C_R; C_X],  M3 = MI[C_R; C_Z],  M4 = MI[C_R; C_Y′],

where ε replaces z and ε′ replaces y: ε′ is noise drawn in y's space (G's first input), not a decoded
prior code.

Before issue 14, "M4" was MI[C_R; E(G(y(c′), z))] with c′ ~ N(0, I) a first-stage code decoded by
stage one; that measure is kept, under the name ``M_decoded_prior`` (:data:`EXTRA_MEASURES`), so that
old numbers are not read as the paper's M4.

M2 > M1 says Z improves the reconstruction; M1 > M3 ≫ M4 says G keeps conditioning on Y (if G used
only Z, M3 would be near 0 and M4 high). MI of two code vectors is Appendix G eq. 6, the normalised
MI averaged over dimensions: MI[C_R, C] = 1/n Σ_i I(c_i; c^R_i) / H(c^R_i), each dimension
discretised into equal-width bins as for MIG. The codes themselves are computed by
:func:`inference.papers.msvae.conditioning_codes`.

Downstream classification (§4): an MLP predicts each ground-truth factor from C, from Z and from
C and Z concatenated.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from .convergence import fit_recording
from .information import as_2d, discrete_entropy, discrete_mutual_info, discretize

MEASURES = {"M1": "c_y", "M2": "c_x", "M3": "c_z", "M4": "c_y_prime"}
# Not one of §4's measures: MI[C_R; E(G(y(c′), z))], c′ ~ N(0, I) decoded by stage one (the pre-issue-14 "M4").
EXTRA_MEASURES = {"M_decoded_prior": "c_decoded_prior"}


def normalised_code_mi(c_ref, c_other, num_bins: int = 20) -> float:
    """1/n Σ_i I(c_i; c^R_i) / H(c^R_i) for codes (N, n) (Appendix G eq. 6); in [0, 1].

    Dimensions whose reference is constant in the sample (zero entropy) are left out.
    """
    a, b = as_2d(c_ref, "c_ref", np.float64), as_2d(c_other, "c_other", np.float64)
    if a.shape != b.shape:
        raise ValueError(f"codes must have the same shape, got {a.shape} and {b.shape}")
    da, db = discretize(a, num_bins), discretize(b, num_bins)
    mi = np.diag(discrete_mutual_info(da, db))  # I(a_i; b_i), dimension against itself
    h = discrete_entropy(da)
    keep = h > 0
    if not keep.any():
        raise ValueError("every reference dimension is constant; the normalised MI is undefined")
    return float((mi[keep] / h[keep]).mean())


def conditioning_measures(codes: dict, num_bins: int = 20) -> dict[str, float]:
    """M1–M4 from ``codes`` = {"c_r", "c_y", "c_x", "c_z", "c_y_prime"}: arrays (N, n).

    Also ``M_decoded_prior`` (:data:`EXTRA_MEASURES`) when ``codes`` hold ``"c_decoded_prior"``.
    """
    missing = {"c_r", *MEASURES.values()} - set(codes)
    if missing:
        raise ValueError(f"codes lack {sorted(missing)}")
    wanted = {**MEASURES, **{m: k for m, k in EXTRA_MEASURES.items() if k in codes}}
    return {m: normalised_code_mi(codes["c_r"], codes[k], num_bins) for m, k in wanted.items()}


def mlp_fit(train_codes, train_labels, test_codes, test_labels, hidden=(256, 256),
            max_iter: int = 200, seed: int = 0) -> tuple[float, bool]:
    """``(accuracy, converged)``: held-out accuracy of a scikit-learn MLP (standardised inputs)
    predicting integer labels, trained for at most ``max_iter`` epochs, and whether it converged
    within them (scikit-learn's ConvergenceWarning, caught and returned, not silenced)."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xtr, xte = as_2d(train_codes, "train_codes"), as_2d(test_codes, "test_codes")
    ytr, yte = np.asarray(train_labels).reshape(-1), np.asarray(test_labels).reshape(-1)
    clf = make_pipeline(StandardScaler(), MLPClassifier(hidden, max_iter=max_iter, random_state=seed))
    clf, converged = fit_recording(clf, xtr, ytr)
    return float(clf.score(xte, yte)), converged


def mlp_accuracy(train_codes, train_labels, test_codes, test_labels, hidden=(256, 256),
                 max_iter: int = 200, seed: int = 0) -> float:
    """Held-out accuracy of :func:`mlp_fit`; one ConvergenceWarning if the MLP did not converge."""
    acc, converged = mlp_fit(train_codes, train_labels, test_codes, test_labels, hidden, max_iter, seed)
    if not converged:
        warnings.warn(_unconverged(1, 1, max_iter), ConvergenceWarning, stacklevel=2)
    return acc


def _unconverged(n: int, of: int, max_iter: int) -> str:
    return (f"{n} of {of} MLP read-out(s) stopped at max_iter={max_iter} epochs without converging; their "
            f"accuracies are those of a fixed budget of epochs (the record keeps the count)")


class DownstreamTable(dict):
    """``{input: (K,) accuracies}``, with ``fits`` (MLPs trained) and ``unconverged`` (those that hit
    their ``max_iter`` before converging)."""

    fits: int = 0
    unconverged: int = 0


def downstream_table(train: dict, test: dict, train_factors, test_factors, **mlp_kw) -> DownstreamTable:
    """``{input: (K,) accuracies}`` for inputs "C", "Z", "C+Z" (codes in ``train``/``test`` under "c", "z");
    codes without "z" (a one-stage model) give the "C" input only. ``mlp_kw`` go to :func:`mlp_fit`.
    MLPs that stop at their epoch budget unconverged are counted (``unconverged``) and named in one
    ConvergenceWarning."""
    ftr, fte = as_2d(train_factors, "train_factors"), as_2d(test_factors, "test_factors")
    inputs = {"C": ("c",), "Z": ("z",), "C+Z": ("c", "z")}
    out = DownstreamTable()
    for name, keys in inputs.items():
        if any(k not in train or k not in test for k in keys):
            continue
        xtr = np.concatenate([as_2d(train[k], k) for k in keys], 1)
        xte = np.concatenate([as_2d(test[k], k) for k in keys], 1)
        fits = [mlp_fit(xtr, ftr[:, k], xte, fte[:, k], **mlp_kw) for k in range(ftr.shape[1])]
        out[name] = np.array([acc for acc, _ in fits])
        out.fits += len(fits)
        out.unconverged += sum(not ok for _, ok in fits)
    if out.unconverged:
        warnings.warn(_unconverged(out.unconverged, out.fits, mlp_kw.get("max_iter", 200)), ConvergenceWarning,
                      stacklevel=2)
    return out