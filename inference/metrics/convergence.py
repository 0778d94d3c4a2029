"""Fitting scikit-learn estimators without silencing their ``ConvergenceWarning``.

A metric that trains a classifier either iterates until the solver converges
(:func:`fit_until_converged`: ten times the iterations per try, up to a limit) or, where the
reference fixes the iteration budget (SAP's one-code SVMs, disentanglement_lib's
``LinearSVC`` defaults), keeps the budget and records which fits did not converge
(:func:`fit_recording`). Every warning other than ``ConvergenceWarning`` is re-issued as it came.
"""

from __future__ import annotations

import warnings

from sklearn.exceptions import ConvergenceWarning

MAX_ITER = 1000  # the first iteration budget (scikit-learn's LinearSVC default); raised 10× while not converged
MAX_ITER_LIMIT = 100_000  # the last budget tried before a fit is recorded as not converged


def fit_recording(estimator, features, labels):
    """``(estimator, converged)``: ``estimator.fit(features, labels)`` with its convergence warnings
    caught and recorded; any other warning is re-issued."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        estimator.fit(features, labels)
    converged = True
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            converged = False
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return estimator, converged


def fit_until_converged(make, features, labels, max_iter: int = MAX_ITER,
                        max_iter_limit: int = MAX_ITER_LIMIT):
    """``(estimator, converged, max_iter)``: ``make(max_iter)`` fitted, refitted with 10× the
    iterations while scikit-learn warns ``ConvergenceWarning``, up to ``max_iter_limit``."""
    if max_iter < 1 or max_iter_limit < max_iter:
        raise ValueError(f"need 1 <= max_iter <= max_iter_limit, got {max_iter}, {max_iter_limit}")
    while True:
        estimator, converged = fit_recording(make(max_iter), features, labels)
        if converged or max_iter >= max_iter_limit:
            return estimator, converged, max_iter
        max_iter = min(10 * max_iter, max_iter_limit)


__all__ = ["MAX_ITER", "MAX_ITER_LIMIT", "fit_recording", "fit_until_converged"]
