"""The statistics every verdict of a reproduction goes through: stated tests, with interval, p and power.

Four kinds of claim, each decided by a one-sided t-test at α = 0.05 and shown with the 90% confidence
interval of its estimate (a one-sided test at α rejects exactly when the two-sided 1 − 2α interval
lies wholly on the claimed side, so the verdict and the interval never disagree):

- :func:`two_arm` — "A is better than B" (higher or lower): Welch's t-test (unequal variances, the
  Welch–Satterthwaite degrees of freedom; Welch 1947). **holds**: the test rejects in the claimed
  direction (the interval lies above 0 on the claimed side); **does not hold**: the whole interval lies
  at or beyond 0 on the other side; **inconclusive** otherwise.
- :func:`non_inferior` — "B keeps A's level within a margin m": the same Welch interval of
  (new − old) against −m. **holds**: its lower bound > −m; **does not hold**: its upper bound < −m.
- :func:`threshold` — "the mean is ≤ (or ≥) a threshold": a one-sample one-sided t-test against it.
- :func:`order` — "M2 > M1 > M3 > M4": a paired t-test over seeds for each adjacent pair.

A claim that is the conjunction of k tests (:func:`order`'s pairs, :func:`all_of`'s parts) is decided
by :func:`conjunction`, whose two directions need different levels:

- **holds** only if every part holds at α. That is an intersection–union test (Berger 1982): the claim
  is the conjunction, so each part tested at α keeps the whole claim's false-"holds" rate ≤ α, and no
  multiplicity correction is needed (a Bonferroni split would only cost power).
- **does not hold** only if some part's opposite-direction p is ≤ α/k (Bonferroni). "Some part fails"
  is a union: with every part true at its boundary, k parts each read at α would call the claim false
  up to 1 − (1 − α)^k of the time (23% at k = 5), so the split is what keeps a true claim's
  false-"does not hold" rate ≤ α.

Every :class:`Verdict` carries n per arm, the estimate, its 90% interval, the one-sided p and
``decide``: what it would take to decide the claim — the smallest effect this n detects with 80%
power at the observed spread (the noncentral t, :data:`scipy.stats.nct`), and, for an inconclusive
one, the n per arm that would detect the observed effect with 80% power. NaN values are left out
(and counted in ``note``); fewer than two values in an arm, or no spread at all, give "inconclusive"
with the reason, never a division by zero.

The vectorised cores (:func:`welch`, :func:`one_sample`, :func:`rule`) take arrays whose last axis is
the seeds, so a test can simulate thousands of experiments at once through the same code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy import stats as st

ALPHA = 0.05  # one-sided level of every test; the interval shown is the two-sided 1 − 2α = 90% one
POWER = 0.80  # the power the "decide" sentence is computed at
MAX_N = 10_000  # the largest n per arm the "decide" sentence searches
HOLDS, DOES_NOT_HOLD, INCONCLUSIVE = "holds", "does not hold", "inconclusive"


@dataclass
class Verdict:
    """A decided claim. ``estimate``: mean(A) − mean(B) (two-arm, non-inferiority, paired) or
    mean − threshold; ``ci``: its 90% interval; ``p``: the one-sided p-value of the claimed direction
    (against −margin for non-inferiority); ``n``: values per arm after NaNs were left out."""

    verdict: str
    n: tuple
    estimate: float
    ci: tuple
    p: float
    decide: str
    note: str = ""
    parts: list = field(default_factory=list)  # an order claim's pairwise verdicts
    labels: tuple = ()  # an order claim's pair names, one per part
    #: the one-sided p of the opposite direction (the claim's negation); NaN where no test was made.
    #: :func:`conjunction` reads it at α/k.
    p_against: float = math.nan
    #: level -> the n per arm at which the opposite direction's test detects the observed difference with
    #: 80% power at that level (None: not in that direction, or beyond MAX_N); :func:`family_note` asks it
    #: at α/k for a part that fails at α only
    need_against: Callable[[float], int | None] | None = field(default=None, repr=False, compare=False)

    def summary(self, digits: int = 3) -> str:
        """``n = 5 vs 5, Δ +0.012 (90% CI −0.003 to +0.027), p = 0.08``; the order claim's per pair. A
        part that does not hold adds its opposite direction's p (``p against``)."""
        if self.parts:
            return "; ".join(f"{label}: {part.summary(digits)}" for label, part in zip(self.labels, self.parts))
        ns = " vs ".join(map(str, self.n))
        if not all(math.isfinite(x) for x in (self.estimate, *self.ci)):
            core = f"n = {ns}" + (f", Δ {self.estimate:+.{digits}f}" if math.isfinite(self.estimate) else "")
        else:
            core = (f"n = {ns}, Δ {self.estimate:+.{digits}f} (90% CI {self.ci[0]:+.{digits}f} to "
                    f"{self.ci[1]:+.{digits}f}), p {_p(self.p)}")
            if self.verdict == DOES_NOT_HOLD and math.isfinite(self.p_against):
                core += f", p against {_p(self.p_against)}"  # what a conjunction reads at α/k
        return core + (f" ({self.note})" if self.note else "")


def _p(p: float) -> str:
    return "= –" if not math.isfinite(p) else f"= {p:.2g}" if p >= 0.001 else "< 0.001"


# -- the vectorised cores ------------------------------------------------------------------------------
def welch(a, b):
    """(mean(a) − mean(b), its standard error, Welch–Satterthwaite df) along the last axis.

    se² = s_a²/n_a + s_b²/n_b; df = se⁴ / ((s_a²/n_a)²/(n_a − 1) + (s_b²/n_b)²/(n_b − 1)) (Welch 1947).
    df is NaN where both variances are 0."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    na, nb = a.shape[-1], b.shape[-1]
    va, vb = a.var(axis=-1, ddof=1) / na, b.var(axis=-1, ddof=1) / nb
    se2 = va + vb
    with np.errstate(invalid="ignore", divide="ignore"):
        df = se2 ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))
    return a.mean(axis=-1) - b.mean(axis=-1), np.sqrt(se2), df


def one_sample(x, mu=0.0):
    """(mean(x) − mu, its standard error s/√n, df = n − 1) along the last axis."""
    x = np.asarray(x, dtype=float)
    n = x.shape[-1]
    return x.mean(axis=-1) - mu, x.std(axis=-1, ddof=1) / math.sqrt(n), np.full(x.shape[:-1], n - 1.0)


def rule(estimate, se, df, null=0.0, sign: int = 1, alpha: float = ALPHA):
    """(verdict codes, one-sided p, interval low, interval high) of the claim ``sign·(estimate − null) > 0``.

    Codes: 1 holds (the one-sided t-test rejects: the 1 − 2α interval lies wholly on the claimed side
    of ``null``), −1 does not hold (the whole interval lies at or beyond ``null`` on the other side),
    0 inconclusive (also wherever se is 0 or df undefined)."""
    estimate, se, df = (np.asarray(v, dtype=float) for v in (estimate, se, df))
    ok = (se > 0) & np.isfinite(df) & (df > 0)
    safe_se, safe_df = np.where(ok, se, 1.0), np.where(ok, df, 1.0)
    t = sign * (estimate - null) / safe_se
    p = np.where(ok, st.t.sf(t, safe_df), np.nan)
    half = st.t.ppf(1 - alpha, safe_df) * safe_se
    lo, hi = np.where(ok, estimate - half, np.nan), np.where(ok, estimate + half, np.nan)
    near, far = (lo, hi) if sign > 0 else (hi, lo)  # the interval's end nearer the null, and the other
    holds = ok & (sign * (near - null) > 0)
    fails = ok & (sign * (far - null) <= 0)
    return np.where(holds, 1, np.where(fails, -1, 0)), p, lo, hi


def power(effect, se, df, alpha: float = ALPHA):
    """Power of the one-sided t-test at ``alpha`` against a true effect (in the claimed direction):
    P(T > t_{1−α, df}) with T noncentral t of noncentrality effect/se."""
    return st.nct.sf(st.t.ppf(1 - alpha, df), df, np.asarray(effect, dtype=float) / se)


def detectable(se: float, df: float, alpha: float = ALPHA, target: float = POWER) -> float:
    """The smallest effect the one-sided t-test (standard error ``se``, ``df``) detects with power ``target``."""
    from scipy.optimize import brentq

    crit = st.t.ppf(1 - alpha, df)
    nc = brentq(lambda d: st.nct.sf(crit, df, d) - target, 0.0, crit + 50.0)
    return float(nc * se)


def n_needed(effect: float, var_a: float, var_b: float | None = None, alpha: float = ALPHA,
             target: float = POWER) -> int | None:
    """The smallest n per arm (equal arms; a one-sample test when ``var_b`` is None) at which the test
    detects ``effect`` with power ``target`` at the given variances; None beyond :data:`MAX_N`."""
    if not effect > 0:
        return None
    n = np.arange(2, MAX_N + 1, dtype=float)
    if var_b is None:
        se, df = np.sqrt(var_a / n), n - 1
    else:
        se = np.sqrt((var_a + var_b) / n)
        with np.errstate(invalid="ignore", divide="ignore"):
            df = (n - 1) * (var_a + var_b) ** 2 / (var_a ** 2 + var_b ** 2)
    ok = np.nonzero(power(effect, se, df, alpha) >= target)[0]
    return int(n[ok[0]]) if ok.size else None


# -- the claims ----------------------------------------------------------------------------------------
def _clean(values, name: str):
    """(finite values as an array, a note on the NaNs left out, or '')."""
    v = np.asarray([np.nan if x is None else x for x in values], dtype=float)
    dropped = int(np.isnan(v).sum())
    return v[~np.isnan(v)], (f"{dropped} NaN left out of {name}" if dropped else "")


def _notes(*notes) -> str:
    return "; ".join(n for n in notes if n)


def _too_few(n: tuple, estimate: float, note: str) -> Verdict:
    return Verdict(INCONCLUSIVE, n, estimate, (math.nan, math.nan), math.nan,
                   f"needs at least 2 values per arm to test (has {' vs '.join(map(str, n))})", note)


def _no_spread(n: tuple, estimate: float, note: str) -> Verdict:
    return Verdict(INCONCLUSIVE, n, estimate, (math.nan, math.nan), math.nan,
                   "every seed gives the same value, so a t-test has no spread to judge by: "
                   "the seeds do not vary the outcome (check that they reach the run)",
                   _notes(note, "all seeds equal"))


def _flat(se: float, *arrays) -> bool:
    """No spread: the standard error is 0 up to the rounding of the values (0.4 three times has a
    float variance of ~1e-33, which a t-test would read as infinite evidence)."""
    scale = max((float(np.abs(x).max()) for x in arrays if np.size(x)), default=0.0)
    return not se > 1e-10 * scale


def _decide(code: int, effect: float, se: float, df: float, n: tuple, need: int | None, what: str,
            digits: int) -> str:
    """The "what it would take" sentence; numbers to 2 significant digits (``digits`` is the summary's)."""
    smallest = detectable(se, df)
    text = (f"at n = {' vs '.join(map(str, n))} and the observed spread this test detects {what} of "
            f"{smallest:.2g} with 80% power")
    if code != 0:
        return text
    if not effect > 0:
        return text + "; the observed difference points the other way (towards 'does not hold')"
    return text + (f"; the observed {effect:.2g} would need about {need} seeds per arm" if need
                   else f"; the observed {effect:.2g} would need more than {MAX_N} seeds per arm")


def _welch_arms(a, b, names):
    """The two arms cleaned, with Welch's (difference, standard error, df); or the inconclusive
    Verdict when an arm has fewer than two values or neither has any spread."""
    a, na_note = _clean(a, names[0])
    b, nb_note = _clean(b, names[1])
    n, note = (a.size, b.size), _notes(na_note, nb_note)
    if min(n) < 2:
        return _too_few(n, float(a.mean() - b.mean()) if a.size and b.size else math.nan, note)
    diff, se, df = (float(x) for x in welch(a, b))
    if _flat(se, a, b):
        return _no_spread(n, diff, note)
    return a, b, n, note, diff, se, df


def two_arm(a, b, higher: bool = True, digits: int = 2) -> Verdict:
    """"A is better than B": higher (``higher=True``) or lower values are better. One-sided Welch
    t-test at α = 0.05; the estimate is mean(A) − mean(B) with its 90% Welch interval."""
    arms = _welch_arms(a, b, ("A", "B"))
    if isinstance(arms, Verdict):
        return arms
    a, b, n, note, diff, se, df = arms
    sign = 1 if higher else -1
    code, p, lo, hi = (x.item() for x in rule(diff, se, df, sign=sign))
    need = n_needed(sign * diff, a.var(ddof=1), b.var(ddof=1)) if code == 0 else None
    return Verdict(VERDICT_OF[code], n, diff, (lo, hi), p,
                   _decide(code, sign * diff, se, df, n, need, "a difference", digits), note, p_against=1.0 - p,
                   need_against=lambda level: n_needed(-sign * diff, a.var(ddof=1), b.var(ddof=1), alpha=level))


def non_inferior(new, old, margin: float, digits: int = 2) -> Verdict:
    """"New keeps old's level within ``margin``" (higher is better): the 90% Welch interval of
    (new − old) against −margin. holds: its lower bound > −margin; does not hold: its upper bound < −margin."""
    arms = _welch_arms(new, old, ("new", "old"))
    if isinstance(arms, Verdict):
        return arms
    a, b, n, note, diff, se, df = arms
    code, p, lo, hi = (x.item() for x in rule(diff, se, df, null=-margin, sign=1))
    if code == -1 and hi >= -margin:  # the interval touches −margin: not wholly beyond it
        code = 0
    need = n_needed(diff + margin, a.var(ddof=1), b.var(ddof=1)) if code == 0 else None
    return Verdict(VERDICT_OF[code], n, diff, (lo, hi), p,
                   _decide(code, diff + margin, se, df, n, need, f"a change above −{margin:g} by a distance",
                           digits), note, p_against=1.0 - p,
                   need_against=lambda level: n_needed(-(diff + margin), a.var(ddof=1), b.var(ddof=1), alpha=level))


def threshold(x, bound: float, below: bool = True, digits: int = 2) -> Verdict:
    """"The mean is ≤ ``bound``" (``below=True``) or "≥ ``bound``": a one-sample one-sided t-test;
    the estimate is mean − bound with its 90% interval."""
    x, note = _clean(x, "the values")
    n = (x.size,)
    estimate = float(x.mean() - bound) if x.size else math.nan
    if x.size < 2:
        return _too_few(n, estimate, note)
    diff, se, df = (float(v) for v in one_sample(x, bound))
    if _flat(se, x):
        return _no_spread(n, diff, note)
    sign = -1 if below else 1
    code, p, lo, hi = (v.item() for v in rule(diff, se, df, sign=sign))
    need = n_needed(sign * diff, x.var(ddof=1)) if code == 0 else None
    return Verdict(VERDICT_OF[code], n, diff, (lo, hi), p,
                   _decide(code, sign * diff, se, df, n, need, "a distance from the threshold", digits), note, p_against=1.0 - p,
                   need_against=lambda level: n_needed(-sign * diff, x.var(ddof=1), alpha=level))


def paired(a, b, higher: bool = True, digits: int = 2) -> Verdict:
    """"A > B" seed by seed (``a[i]`` and ``b[i]`` from the same seed): a one-sample one-sided t-test
    of the differences; a pair with a NaN on either side is left out."""
    a, b = (np.asarray([np.nan if v is None else v for v in x], dtype=float) for x in (a, b))
    if a.shape != b.shape:
        raise ValueError(f"paired values need one per seed on both sides, got {a.size} and {b.size}")
    d, note = _clean(a - b, "the pairs")
    n = (d.size,)
    if d.size < 2:
        return _too_few(n, float(d.mean()) if d.size else math.nan, note)
    diff, se, df = (float(v) for v in one_sample(d))
    if _flat(se, a[~np.isnan(a)], b[~np.isnan(b)]):
        return _no_spread(n, diff, note)
    sign = 1 if higher else -1
    code, p, lo, hi = (v.item() for v in rule(diff, se, df, sign=sign))
    need = n_needed(sign * diff, d.var(ddof=1)) if code == 0 else None
    return Verdict(VERDICT_OF[code], n, diff, (lo, hi), p,
                   _decide(code, sign * diff, se, df, n, need, "a paired difference", digits), note, p_against=1.0 - p,
                   need_against=lambda level: n_needed(-sign * diff, d.var(ddof=1), alpha=level))


def sign_test(a, b, higher: bool = True, digits: int = 2) -> Verdict:
    """"A > B" seed by seed for an outcome on a coarse grid (e.g. the largest learning rate of a
    4-point grid that trained), where every seed may move by the same step and a t-test has no spread
    to judge: the exact one-sided sign test (Dixon & Mood 1946). Ties are left out; with m untied
    pairs of which k favour A, p = P(Binomial(m, 1/2) ≥ k). holds: p ≤ α; does not hold: the
    opposite direction's p ≤ α. The estimate is the median paired difference and the interval
    [min, max] of the differences (a distribution-free interval for the median whose coverage,
    1 − 2·2^-m, is at least 90% from m = 5 on). It can hold only from m = 5 untied pairs (2^-5 = 0.031)."""
    a, b = (np.asarray([np.nan if v is None else v for v in x], dtype=float) for x in (a, b))
    if a.shape != b.shape:
        raise ValueError(f"paired values need one per seed on both sides, got {a.size} and {b.size}")
    d, note = _clean(a - b, "the pairs")
    d = d if higher else -d
    untied = d[d != 0]
    m, k = int(untied.size), int((untied > 0).sum())
    ties = d.size - m
    note = _notes(note, f"{ties} tied pair{'s' * (ties != 1)} left out" if ties else "")
    estimate = float(np.median(d)) * (1 if higher else -1) if d.size else math.nan
    if m == 0:
        return Verdict(INCONCLUSIVE, (d.size,), estimate, (math.nan, math.nan), math.nan,
                       "every pair is tied: the seeds show no difference either way", note)
    p = float(st.binom.sf(k - 1, m, 0.5))  # P(X ≥ k)
    p_other = float(st.binom.sf(m - k - 1, m, 0.5))  # P(X ≥ m − k): the opposite direction
    code = 1 if p <= ALPHA else -1 if p_other <= ALPHA else 0
    ci = tuple(float(x) * (1 if higher else -1) for x in ((d.min(), d.max()) if higher else (d.max(), d.min())))
    smallest = next((j for j in range(1, MAX_N + 1) if 0.5 ** j <= ALPHA), None)
    decide = (f"with {m} untied seed{'s' * (m != 1)}, {k} favour the claim (exact sign test); the test can "
              f"hold only from {smallest} untied seeds, all favouring it")
    if code == 0 and m >= smallest:
        js = np.arange(m, MAX_N + 1)
        hits = np.nonzero(st.binom.sf(np.round(js * k / m) - 1, js, 0.5) <= ALPHA)[0] if 2 * k > m else []
        need = int(js[hits[0]]) if len(hits) else None
        decide += (f"; at the observed share {k}/{m} about {need} untied seeds would decide it" if need
                   else f"; the observed share {k}/{m} would need more than {MAX_N} seeds")
    return Verdict(VERDICT_OF[code], (d.size,), estimate, ci, p, decide, note, p_against=p_other)


def conjunction(codes, p_against, alpha: float = ALPHA):
    """The verdict codes of claims that are each the conjunction of k parts (the last axis): 1 holds
    when every part's code is 1 (each at α: intersection–union, Berger 1982); −1 does not hold when some
    part's opposite-direction p is ≤ α/k (Bonferroni over the k ways the claim can fail); else 0. A NaN
    p (a part that could not be tested) never decides "does not hold". Vectorised, so a test simulates
    many claims at once through this very rule."""
    codes, p_against = np.asarray(codes), np.asarray(p_against, dtype=float)
    k = codes.shape[-1]
    with np.errstate(invalid="ignore"):
        fails = (p_against <= alpha / k).any(axis=-1)
    return np.where((codes == 1).all(axis=-1), 1, np.where(fails, -1, 0))


def family_rule(k: int, alpha: float = ALPHA) -> str:
    """The sentence a page prints under a claim of ``k`` parts: how :func:`conjunction` decided it."""
    return (f"the claim is the conjunction of {k} tests: it holds only if each holds at α = {alpha:g}, and "
            f"does not hold only if one fails at α/{k} = {alpha / k:.2g} (Bonferroni)")


def family_note(parts: list, labels) -> str:
    """What a page prints after a conjunction's per-part sentences: which parts fail at α but not at
    α/k (too weak alone to decide the claim), then :func:`family_rule`."""
    k = len(parts)
    mild = [lab for lab, p in zip(labels, parts) if p.verdict == DOES_NOT_HOLD and not p.p_against <= ALPHA / k]
    decided = int(conjunction([CODE_OF[p.verdict] for p in parts], [p.p_against for p in parts]))
    note = ""
    if mild and decided == 0:
        needs = [(lab, p.need_against(ALPHA / k) if p.need_against else None)
                 for lab, p in zip(labels, parts) if lab in mild]
        known = [f"{lab} about {n}" for lab, n in needs if n]
        note = (f"; {', '.join(mild)} fail{'s' * (len(mild) == 1)} at α but not at α/{k}, too weak alone to "
                f"decide the claim" + (f" (at the observed difference{'s' * (len(known) > 1)}, "
                                       f"{', '.join(known)} seeds per arm would decide it at α/{k})" if known else ""))
    return note + "; " + family_rule(k) if k > 1 else note


def order(columns: dict, digits: int = 2) -> Verdict:
    """"first > second > third …" over seeds: ``columns`` {name: per-seed values, seeds aligned}, in the
    claimed order (highest first). A paired one-sided t-test for each adjacent pair, decided together by
    :func:`conjunction`: holds only if every pair holds at α = 0.05 (no correction needed: its false-
    "holds" rate is at most α), does not hold only if a pair fails at α/(pairs) (Bonferroni)."""
    names = list(columns)
    parts = [paired(columns[x], columns[y], digits=digits) for x, y in zip(names, names[1:])]
    labels = tuple(f"{x} > {y}" for x, y in zip(names, names[1:]))
    code = int(conjunction([CODE_OF[p.verdict] for p in parts], [p.p_against for p in parts]))
    decide = ("every adjacent pair holds" if code == 1 else
              "pairs not shown: " + ", ".join(lab for lab, p in zip(labels, parts) if p.verdict != HOLDS)
              + " (each pair's sentence: "
              + "; ".join(f"{lab}: {p.decide}" for lab, p in zip(labels, parts) if p.verdict != HOLDS) + ")")
    decide += family_note(parts, labels)
    worst = max(parts, key=lambda p: p.p if math.isfinite(p.p) else math.inf)
    return Verdict(VERDICT_OF[code], worst.n, worst.estimate, worst.ci, worst.p, decide,
                   parts=parts, labels=labels, p_against=worst.p_against)


def all_of(verdicts: list[Verdict]) -> str:
    """The verdict of a claim that is the conjunction of parts (e.g. "better metric *and* lower error";
    "every regularised baseline above the VAE"), by :func:`conjunction`: holds if every part holds at α,
    does not hold if a part fails at α/k, inconclusive otherwise. :class:`..driver.Claim` prints
    :func:`family_rule` beside it."""
    return VERDICT_OF[int(conjunction([CODE_OF[v.verdict] for v in verdicts], [v.p_against for v in verdicts]))]


VERDICT_OF = {1: HOLDS, -1: DOES_NOT_HOLD, 0: INCONCLUSIVE}
CODE_OF = {v: k for k, v in VERDICT_OF.items()}

__all__ = ["Verdict", "two_arm", "non_inferior", "threshold", "paired", "sign_test", "order", "all_of", "conjunction",
           "family_rule", "family_note", "welch", "one_sample",
           "rule", "power", "detectable", "n_needed", "ALPHA", "POWER"]
