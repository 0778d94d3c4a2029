"""Downstream accuracy: how well a factor can be read off the codes by a simple classifier."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from .convergence import MAX_ITER, MAX_ITER_LIMIT, fit_until_converged
from .information import as_2d

CLASSIFIERS = ("logistic", "forest")


def downstream_accuracy(train_codes, train_labels, test_codes, test_labels,
                        classifier: str = "logistic", seed: int = 0, max_iter: int = MAX_ITER,
                        max_iter_limit: int = MAX_ITER_LIMIT) -> float:
    """Held-out accuracy of a scikit-learn classifier predicting integer ``labels`` from codes.

    ``"logistic"``: standardised codes, multinomial ``LogisticRegression``; ``"forest"``:
    ``RandomForestClassifier`` (100 trees).
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xtr, xte = as_2d(train_codes, "train_codes"), as_2d(test_codes, "test_codes")
    ytr = np.asarray(train_labels).reshape(-1)
    yte = np.asarray(test_labels).reshape(-1)
    if classifier == "logistic":
        # iterated until the solver converges (10× the iterations per try); one that never does is named
        make = lambda m: make_pipeline(StandardScaler(), LogisticRegression(max_iter=m, random_state=seed))  # noqa: E731
        clf, converged, used = fit_until_converged(make, xtr, ytr, max_iter, max_iter_limit)
        if not converged:
            warnings.warn(f"downstream logistic regression did not converge in {used:,} iterations; its "
                          "accuracy is that of the unconverged fit", ConvergenceWarning, stacklevel=2)
    elif classifier == "forest":
        clf = RandomForestClassifier(n_estimators=100, n_jobs=-1, random_state=seed).fit(xtr, ytr)
    else:
        raise ValueError(f"unknown classifier {classifier!r}; expected one of {CLASSIFIERS}")
    return float(clf.score(xte, yte))


def factor_accuracies(train_codes, train_factors, test_codes, test_factors,
                      classifier: str = "logistic", seed: int = 0) -> np.ndarray:
    """``(K,)`` downstream accuracy of every factor column."""
    ytr, yte = as_2d(train_factors, "train_factors"), as_2d(test_factors, "test_factors")
    return np.array([downstream_accuracy(train_codes, ytr[:, k], test_codes, yte[:, k],
                                         classifier, seed) for k in range(ytr.shape[1])])
