"""DCI: disentanglement, completeness, informativeness (Eastwood & Williams 2018, §2).

For each factor k a classifier predicts v_k from the codes; its feature importances form column k
of the importance matrix R (D, K). With P_dk = R_dk / Σ_k R_dk:
disentanglement D = Σ_d ρ_d (1 − H_K(P_d·)), ρ_d = Σ_k R_dk / Σ R (eq. 1–2);
completeness C = Σ_k ρ_k (1 − H_D(P̃_·k)), P̃_dk = R_dk / Σ_d R_dk (eq. 3);
informativeness = held-out prediction accuracy, averaged over factors (disentanglement_lib).

Importance models (``model=``; the result names the one used under ``"importance_model"``, and
every report must carry it: the two give different D and C on the same codes):
* ``"gbt"`` (default) — scikit-learn ``GradientBoostingClassifier`` with its default settings,
  importances = ``feature_importances_``: disentanglement_lib's choice, so the numbers compare with
  the literature's. One tree per class per stage, so a 40-valued factor costs 4,000 trees.
* ``"forest"`` — ``RandomForestClassifier`` with every feature considered at each split
  (``max_features=None``), 50 trees. Faster, but it overfits the training codes and its impurity
  importances spread over more dims, so D and C come out lower than GBT's on the same codes
  (benchmarks/dci_speed.py prints both). Not comparable with published DCI values.

The K per-factor classifiers are independent, so they are fitted in parallel (``n_jobs`` joblib
workers, default all cores; each classifier single-threaded). Each is seeded with ``seed``, so the
result does not depend on ``n_jobs``.

References
[1] Eastwood & Williams. A Framework for the Quantitative Evaluation of Disentangled
    Representations. ICLR 2018.
[2] Locatello et al. Challenging Common Assumptions in the Unsupervised Learning of Disentangled
    Representations. ICML 2019 (disentanglement_lib: ``dci.py``, GBT importances).
"""

from __future__ import annotations

import numpy as np

from .information import as_2d

IMPORTANCE_MODELS = ("gbt", "forest")


def _entropy_rows(p: np.ndarray, base: int) -> np.ndarray:
    """Entropy (base ``base``) of each row of non-negative weights (normalised here)."""
    p = p + 1e-11  # disentanglement_lib's guard against all-zero rows
    p = p / p.sum(axis=1, keepdims=True)
    return -(p * np.log(p)).sum(axis=1) / np.log(base)


def disentanglement_from_importance(r: np.ndarray) -> float:
    """D of an importance matrix ``(D, K)``; 0 for a single factor (nothing to disentangle)."""
    r = np.abs(np.asarray(r, np.float64))
    if r.shape[1] < 2 or r.sum() == 0:
        return 0.0
    per_code = 1.0 - _entropy_rows(r, r.shape[1])
    return float((per_code * r.sum(1) / r.sum()).sum())


def completeness_from_importance(r: np.ndarray) -> float:
    """C of an importance matrix ``(D, K)``; 1 when the code has a single dimension."""
    r = np.abs(np.asarray(r, np.float64))
    if r.shape[0] < 2:
        return 1.0
    if r.sum() == 0:
        return 0.0
    per_factor = 1.0 - _entropy_rows(r.T, r.shape[0])
    return float((per_factor * r.sum(0) / r.sum()).sum())


def check_model(model: str) -> str:
    if model not in IMPORTANCE_MODELS:
        raise ValueError(f"unknown DCI importance model {model!r}; expected one of {IMPORTANCE_MODELS}")
    return model


def _classifier(model: str, seed: int):
    if check_model(model) == "forest":
        from sklearn.ensemble import RandomForestClassifier
        return RandomForestClassifier(n_estimators=50, max_features=None, min_samples_leaf=2,
                                      n_jobs=1, random_state=seed)
    from sklearn.ensemble import GradientBoostingClassifier
    return GradientBoostingClassifier(random_state=seed)  # disentanglement_lib: all defaults


def _fit_factor(model: str, seed: int, xtr, ytr, xte, yte):
    """``(importances (D,), train accuracy, test accuracy)`` of one factor's classifier."""
    if len(np.unique(ytr)) < 2:  # a constant factor is predicted trivially and explains nothing
        return np.zeros(xtr.shape[1]), 1.0, 1.0
    clf = _classifier(model, seed).fit(xtr, ytr)
    return np.abs(clf.feature_importances_), clf.score(xtr, ytr), clf.score(xte, yte)


def importance_matrix(train_codes, train_factors, test_codes, test_factors,
                      model: str = "gbt", seed: int = 0, n_jobs: int | None = -1):
    """``(R (D, K), train accuracy (K,), test accuracy (K,))``; one classifier per factor, fitted
    on ``n_jobs`` joblib workers (−1: all cores; 1: serial, no workers)."""
    from joblib import Parallel, delayed

    check_model(model)
    xtr, xte = as_2d(train_codes, "train_codes"), as_2d(test_codes, "test_codes")
    ytr, yte = as_2d(train_factors, "train_factors"), as_2d(test_factors, "test_factors")
    k_all = ytr.shape[1]
    # Most classes first: a 40-valued factor is the longest job, so start it before the small ones.
    order = sorted(range(k_all), key=lambda k: -len(np.unique(ytr[:, k])))
    # Threads: the tree builders release the GIL, and threads share the codes without copies.
    fits = Parallel(n_jobs=n_jobs, prefer="threads")(
        delayed(_fit_factor)(model, seed, xtr, ytr[:, k], xte, yte[:, k]) for k in order)
    r = np.zeros((xtr.shape[1], k_all))
    acc_tr, acc_te = np.zeros(k_all), np.zeros(k_all)
    for k, (imp, a_tr, a_te) in zip(order, fits):
        r[:, k], acc_tr[k], acc_te[k] = imp, a_tr, a_te
    return r, acc_tr, acc_te


def dci(train_codes, train_factors, test_codes, test_factors, model: str = "gbt",
        seed: int = 0, n_jobs: int | None = -1) -> dict:
    """Disentanglement, completeness and informativeness (train and test accuracy), and the
    importance model that produced them (``"importance_model"``)."""
    r, acc_tr, acc_te = importance_matrix(train_codes, train_factors, test_codes, test_factors,
                                          model, seed, n_jobs)
    return {"disentanglement": disentanglement_from_importance(r),
            "completeness": completeness_from_importance(r),
            "informativeness_train": float(acc_tr.mean()),
            "informativeness_test": float(acc_te.mean()),
            "importance_model": model}
