"""The verdict rules of inference.reproduce.stats: simulated error rates, and each test against scipy."""

import math

import numpy as np
import pytest
from scipy import stats as st

from inference.reproduce import stats

SIMS = 20_000
NULL_SIMS = 100_000  # the rules' false-"holds" rates: exact-level tests sit at 5% in expectation, so the
# bound allows 3 simulation standard errors above it (3·√(0.05·0.95/100,000) = 0.002)
AT_MOST_5_PERCENT = 0.05 + 3 * math.sqrt(0.05 * 0.95 / NULL_SIMS)


def _verdicts_two_arm(a, b, higher=True):
    """The two-arm rule over many simulated experiments at once (the same core :func:`stats.two_arm` uses)."""
    diff, se, df = stats.welch(a, b)
    return stats.rule(diff, se, df, sign=1 if higher else -1)[0]


@pytest.mark.parametrize("n", [3, 5])
def test_two_arm_rule_says_holds_at_most_5_percent_of_the_time_with_no_true_difference(n):
    rng = np.random.default_rng(n)
    a, b = rng.normal(0, 1, (NULL_SIMS, n)), rng.normal(0, 1, (NULL_SIMS, n))
    codes = _verdicts_two_arm(a, b)  # equal spreads: Welch is conservative here (≈ 4.0% at n = 3, 4.7% at 5)
    assert (codes == 1).mean() <= 0.05
    assert (codes == -1).mean() <= 0.05  # and as rarely "does not hold"
    # Spreads 3× apart: Welch's approximate df lets its level creep just over α at tiny n (≈ 5.1–5.2%
    # measured at 400,000 simulations); bounded here, not hidden.
    codes = _verdicts_two_arm(a, 3 * b)
    assert (codes == 1).mean() <= 0.055


def test_two_arm_rule_says_holds_at_least_70_percent_of_the_time_at_a_true_difference_of_2_sd():
    rng = np.random.default_rng(1)
    a, b = rng.normal(2, 1, (SIMS, 5)), rng.normal(0, 1, (SIMS, 5))
    assert (_verdicts_two_arm(a, b) == 1).mean() >= 0.70
    assert (_verdicts_two_arm(a, b) == -1).mean() == 0.0 or (_verdicts_two_arm(a, b) == -1).mean() < 1e-3
    # "lower is better": the same data read the other way never holds
    assert (_verdicts_two_arm(a, b, higher=False) == 1).mean() < 1e-3


def test_non_inferiority_and_threshold_rules_hold_at_most_5_percent_at_the_boundary():
    rng = np.random.default_rng(2)
    margin = 0.06
    new, old = rng.normal(0.5 - margin, 0.05, (NULL_SIMS, 5)), rng.normal(0.5, 0.05, (NULL_SIMS, 5))
    diff, se, df = stats.welch(new, old)
    assert (stats.rule(diff, se, df, null=-margin, sign=1)[0] == 1).mean() <= AT_MOST_5_PERCENT
    x = rng.normal(0.125, 0.03, (NULL_SIMS, 5))  # a mean exactly at ε: "≤ ε" must rarely be claimed
    est, se, df = stats.one_sample(x, 0.125)
    assert (stats.rule(est, se, df, sign=-1)[0] == 1).mean() <= AT_MOST_5_PERCENT


def test_paired_rule_at_the_boundary_and_against_scipy_ttest_rel():
    rng = np.random.default_rng(3)
    shared = rng.normal(0, 1, (NULL_SIMS, 5))  # a seed effect common to both: pairing removes it
    a, b = shared + rng.normal(0, 0.1, (NULL_SIMS, 5)), shared + rng.normal(0, 0.1, (NULL_SIMS, 5))
    est, se, df = stats.one_sample(a - b)
    assert (stats.rule(est, se, df, sign=1)[0] == 1).mean() <= AT_MOST_5_PERCENT
    x, y = [0.73, 0.72, 0.74, 0.71, 0.735], [0.69, 0.70, 0.68, 0.70, 0.695]
    v = stats.paired(x, y)
    ref = st.ttest_rel(x, y, alternative="greater")  # scipy's independent paired t-test
    assert v.p == pytest.approx(ref.pvalue, rel=1e-9)
    lo, hi = st.ttest_rel(x, y).confidence_interval(0.90)
    assert v.ci == pytest.approx((lo, hi), rel=1e-9)
    assert v.verdict == "holds"


def test_welch_statistic_p_and_interval_against_scipy_and_a_hand_computed_case():
    a, b = [0.60, 0.48, 0.55, 0.71, 0.52], [0.41, 0.45, 0.38, 0.44]
    v = stats.two_arm(a, b)
    ref = st.ttest_ind(a, b, equal_var=False, alternative="greater")  # Welch 1947, as scipy computes it
    assert v.p == pytest.approx(ref.pvalue, rel=1e-9)
    lo, hi = st.ttest_ind(a, b, equal_var=False).confidence_interval(0.90)
    assert v.ci == pytest.approx((lo, hi), rel=1e-9)
    assert v.estimate == pytest.approx(np.mean(a) - np.mean(b))
    # By hand: a = [1, 2, 3] (var 1), b = [2, 4, 6, 8] (var 20/3): se² = 1/3 + 5/3 = 2,
    # df = 4 / ((1/3)²/2 + (5/3)²/3) = 4 / (1/18 + 25/27) = 216/53.
    diff, se, df = stats.welch([1.0, 2.0, 3.0], [2.0, 4.0, 6.0, 8.0])
    assert (diff, se**2, df) == pytest.approx((-3.0, 2.0, 216 / 53))
    lower = stats.two_arm([1.0, 2.0, 3.0], [2.0, 4.0, 6.0, 8.0], higher=False)
    assert lower.p == pytest.approx(st.t.sf(3 / math.sqrt(2), 216 / 53))


def test_verdicts_follow_the_interval():
    assert stats.two_arm([1.0, 1.1, 0.9, 1.05, 0.95], [0.0, 0.1, -0.1, 0.05, -0.05]).verdict == "holds"
    assert stats.two_arm([0.0, 0.1, -0.1, 0.05, -0.05], [1.0, 1.1, 0.9, 1.05, 0.95]).verdict == "does not hold"
    v = stats.two_arm([0.1, 0.3, 0.2], [0.15, 0.25, 0.1])
    assert v.verdict == "inconclusive" and "seeds per arm" in v.decide
    assert "n = 3 vs 3" in v.summary() and "90% CI" in v.summary()
    # non-inferiority: a tiny change with a tight interval holds; a large drop does not
    assert stats.non_inferior([0.50, 0.51, 0.49, 0.50], [0.50, 0.52, 0.48, 0.51], 0.06).verdict == "holds"
    assert stats.non_inferior([0.30, 0.31, 0.29, 0.30], [0.50, 0.52, 0.48, 0.51], 0.06).verdict == "does not hold"
    assert stats.threshold([0.07, 0.08, 0.06, 0.09, 0.05], 0.125, below=True).verdict == "holds"
    assert stats.threshold([0.20, 0.25, 0.22], 0.1, below=False).verdict == "holds"


def test_order_holds_only_if_every_adjacent_pair_holds():
    cols = {"M2": [0.76, 0.752, 0.771, 0.758, 0.757], "M1": [0.73, 0.72, 0.74, 0.73, 0.725],
            "M3": [0.69, 0.70, 0.68, 0.70, 0.695], "M4": [0.06, 0.05, 0.06, 0.055, 0.058]}
    v = stats.order(cols)
    assert v.verdict == "holds" and len(v.parts) == 3 and v.labels[0] == "M2 > M1"
    swapped = dict(cols, M1=[0.77, 0.76, 0.78, 0.77, 0.765])  # M1 now above M2 in every seed
    assert stats.order(swapped).verdict == "does not hold"
    noisy = dict(cols, M1=[0.70, 0.78, 0.72, 0.77, 0.69])
    assert stats.order(noisy).verdict == "inconclusive"


def _family(parts_a, parts_b):
    """Claims of k parts "A_j > B_j" (axis 1 the parts) decided by stats.conjunction, the rule all_of uses."""
    diff, se, df = stats.welch(parts_a, parts_b)
    codes, p = stats.rule(diff, se, df)[:2]
    return stats.conjunction(np.moveaxis(codes, 1, -1), np.moveaxis(1.0 - p, 1, -1)), codes


def test_a_conjunction_is_false_at_most_5_percent_when_every_part_is_at_its_boundary():
    # "every regularised baseline above the VAE" with five baselines exactly at the VAE's level: the claim
    # is not shown false by the data, so "does not hold" must stay ≤ α; reading each part at α calls it
    # false 1 − 0.95^5 ≈ 23% of the time (stats module docstring), and Bonferroni's α/k keeps it at ≤ α
    rng = np.random.default_rng(11)
    a, b = rng.normal(0, 1, (NULL_SIMS // 10, 5, 5)), rng.normal(0, 1, (NULL_SIMS // 10, 5, 5))
    family, codes = _family(a, b)
    assert (family == -1).mean() <= 0.05
    assert 0.15 < (codes == -1).any(axis=1).mean()  # the uncorrected reading this replaces
    # intersection-union: four parts far true and one at its boundary, "holds" stays ≤ α with no correction
    a[:, :4] += 10.0
    family, _ = _family(a, b)
    assert (family == 1).mean() <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / (NULL_SIMS // 10))
    # and a part that truly fails by 3 sd at n = 5 is still found most of the time through α/5
    a[:, 4] -= 3.0
    family, _ = _family(a, b)
    assert (family == -1).mean() >= 0.70


def test_all_of_reads_a_failing_part_at_alpha_over_k_and_says_so():
    good = stats.two_arm([0.30, 0.32, 0.31, 0.33, 0.29], [0.10, 0.12, 0.11, 0.09, 0.10])
    # p against = 0.040 (checked below against scipy.stats.ttest_ind, alternative="less"): fails at α, not at α/2
    weak = stats.two_arm([0.10, 0.12, 0.08, 0.11, 0.09], [0.12, 0.13, 0.11, 0.14, 0.10])
    assert weak.verdict == "does not hold" and 0.025 < weak.p_against <= 0.05
    assert math.isclose(weak.p_against, st.ttest_ind([0.10, 0.12, 0.08, 0.11, 0.09], [0.12, 0.13, 0.11, 0.14, 0.10],
                                                     equal_var=False, alternative="less").pvalue, rel_tol=1e-9)
    assert stats.all_of([weak]) == "does not hold"  # alone (k = 1) it decides at α
    assert weak.summary().endswith(f"p = {weak.p:.2g}, p against = 0.04") and "against" not in good.summary()
    assert stats.all_of([good, weak]) == "inconclusive"
    note = stats.family_note([good, weak], ["β-VAE", "DIP-VAE-I"])
    assert "DIP-VAE-I fails at α but not at α/2" in note and "α/2 = 0.025 (Bonferroni)" in note
    # the n that decides it: the first n per arm at which the opposite test has 80% power at α/2
    a, b = np.array([0.10, 0.12, 0.08, 0.11, 0.09]), np.array([0.12, 0.13, 0.11, 0.14, 0.10])
    need = stats.n_needed(0.02, a.var(ddof=1), b.var(ddof=1), alpha=0.025)
    assert need > 5 and f"DIP-VAE-I about {need} seeds per arm would decide it at α/2" in note
    strong = stats.two_arm([0.05, 0.06, 0.04, 0.05, 0.06], [0.12, 0.13, 0.11, 0.14, 0.10])
    assert strong.p_against <= 0.025 and stats.all_of([good, strong]) == "does not hold"
    assert stats.all_of([good, good]) == "holds"
    assert stats.all_of([good, stats.two_arm([0.5], [0.4, 0.3])]) == "inconclusive"  # NaN p never decides


def test_nan_too_few_and_no_spread_are_said_not_divided_by():
    v = stats.two_arm([0.5, float("nan"), 0.6, 0.55], [0.4, 0.45, None, 0.42])
    assert v.n == (3, 3) and "1 NaN left out of A" in v.note and "1 NaN left out of B" in v.note
    assert stats.two_arm([0.5], [0.4, 0.3]).verdict == "inconclusive"
    assert "at least 2" in stats.two_arm([0.5], [0.4, 0.3]).decide
    same = stats.two_arm([0.5, 0.5, 0.5], [0.4, 0.4, 0.4])
    assert same.verdict == "inconclusive" and "all seeds equal" in same.note and math.isnan(same.p)
    assert stats.threshold([0.2, 0.2], 0.1, below=False).note.endswith("all seeds equal")
    # one arm without spread is fine: Welch's df is then the other arm's n − 1
    assert stats.welch([1.0, 1.0, 1.0], [0.0, 1.0, 2.0])[2] == pytest.approx(2.0)


def test_detectable_effect_has_80_percent_power_by_simulation_and_n_needed_is_the_first_n_that_does():
    n, sd = 5, 1.0
    se, df = sd / math.sqrt(n), n - 1
    delta = stats.detectable(se, df)
    # An independent check of the noncentral-t power: simulate the one-sample test at that effect.
    rng = np.random.default_rng(4)
    x = rng.normal(delta, sd, (SIMS, n))
    t = x.mean(axis=1) / (x.std(axis=1, ddof=1) / math.sqrt(n))
    assert (t > st.t.ppf(0.95, df)).mean() == pytest.approx(0.80, abs=0.015)
    need = stats.n_needed(0.5, 1.0, 1.0)
    power = lambda m: stats.power(0.5, math.sqrt(2 / m), 2 * (m - 1))  # noqa: E731
    assert power(need) >= 0.8 > power(need - 1)
    assert stats.n_needed(-0.1, 1.0, 1.0) is None


# -- the exact sign test (a paired outcome on a coarse grid) -------------------------------------------
def test_sign_test_p_is_the_binomial_tail():
    # Dixon & Mood 1946: k of m untied pairs favour A; p = P(Binomial(m, 1/2) ≥ k)
    from scipy.stats import binomtest
    a = [1, 2, 3, 2, 1, 0, 5]
    b = [0, 1, 3, 1, 0, 1, 4]   # differences 1, 1, 0 (tie), 1, 1, -1, 1: 5 of 6 untied favour A
    v = stats.sign_test(a, b, higher=True)
    assert v.p == pytest.approx(binomtest(5, 6, 0.5, alternative="greater").pvalue, rel=1e-12)
    assert v.n == (7,) and "1 tied pair left out" in v.note
    assert v.verdict == "inconclusive"  # 7/64 > 0.05


def test_sign_test_decides_when_every_seed_moves_by_the_same_step():
    # every seed one grid step higher: a t-test sees no spread; the sign test gives 2^-5 = 0.031
    v = stats.sign_test([-1.0] * 5, [-2.0] * 5, higher=True)
    assert v.verdict == "holds" and v.p == pytest.approx(2 ** -5) and v.estimate == 1.0
    assert stats.sign_test([-2.0] * 5, [-1.0] * 5, higher=True).verdict == "does not hold"
    assert stats.sign_test([-1.0] * 4, [-2.0] * 4, higher=True).verdict == "inconclusive"  # 2^-4 > 0.05
    low = stats.sign_test([1.0] * 5, [2.0] * 5, higher=False)  # "A lower than B"
    assert low.verdict == "holds" and low.estimate == -1.0


def test_sign_test_false_holds_rate_under_the_null():
    # exact, not simulated: with m untied pairs and no true difference each favours A with
    # probability 1/2; the rule's "holds" rate is the Binomial(m, 1/2) mass of the k it accepts
    for m in range(1, 21):
        rate = sum(st.binom.pmf(k, m, 0.5) for k in range(m + 1)
                   if stats.sign_test([1.0] * k + [0.0] * (m - k), [0.0] * k + [1.0] * (m - k)).verdict == "holds")
        assert rate <= 0.05, m
