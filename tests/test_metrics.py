"""Disentanglement metrics against values they must take and against brute-force computations.

A tiny simulator whose "images" are the factor values themselves lets every metric run through its
sampling protocol with a representation we control: a disentangled one (each code dimension is one
factor, columns shuffled, tiny noise) and an entangled one (a random rotation of the factors).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import mutual_info_score

from inference import metrics as M
from ppl_data import DataError, GroundTruthData


class FactorVectors(GroundTruthData):
    """Observations are the factors, scaled to [0, 1]; at most 20 values per factor."""

    factor_names = ("a", "b", "c", "d")
    factor_sizes = (3, 6, 10, 20)
    data_shape = (4,)

    def images(self, factors, dtype=torch.float32):
        sizes = torch.tensor(self.factor_sizes, device=factors.device)
        return (self.check_factors(factors).to(dtype) / (sizes - 1)).to(dtype)


def representation(kind: str, seed: int = 0, noise: float = 1e-3):
    gen = torch.Generator().manual_seed(seed)
    k = len(FactorVectors.factor_sizes)
    if kind == "disentangled":
        mix = torch.eye(k)[torch.randperm(k, generator=gen)] * (1 + torch.rand(k, generator=gen))
    elif kind == "rotated":  # a random rotation: every code dimension mixes every factor
        mix, _ = torch.linalg.qr(torch.randn(k, k, generator=gen))
    else:  # "mixed": the rotation H/2 (H a 4x4 Hadamard matrix) weighs every factor equally
        h = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
        mix = torch.kron(h, h) / 2
    mix = torch.cat([mix, torch.zeros(k, 2)], 1)  # two extra dims that stay (nearly) constant

    def represent(x):
        return x @ mix + noise * torch.randn(x.shape[0], mix.shape[1], generator=gen)
    return represent


def codes_and_factors(kind: str, n: int = 5000, seed: int = 1):
    data = FactorVectors()
    return M.sample_codes(data, representation(kind), n, torch.Generator().manual_seed(seed))


# -- information -------------------------------------------------------------------------------

def test_discretize_matches_numpy_digitize():
    x = np.random.default_rng(0).normal(size=(500, 3))
    ref = np.stack([np.digitize(c, np.histogram(c, 20)[1][:-1]) - 1 for c in x.T], 1)
    np.testing.assert_array_equal(M.discretize(x, 20), ref)


def test_mutual_info_matches_sklearn_and_is_symmetric():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, size=(400, 3))
    b = np.stack([a[:, 0], (a[:, 1] + rng.integers(0, 2, 400)) % 5, rng.integers(0, 7, 400)], 1)
    mi = M.discrete_mutual_info(a, b)
    ref = np.array([[mutual_info_score(a[:, i], b[:, j]) for j in range(3)] for i in range(3)])
    np.testing.assert_allclose(mi, ref, atol=1e-12)
    np.testing.assert_allclose(M.discrete_mutual_info(b, a), mi.T, atol=1e-12)
    np.testing.assert_allclose(M.discrete_entropy(a), np.diag(M.discrete_mutual_info(a, a)))


def test_mutual_info_of_independent_arrays_is_near_zero():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 10, (100_000, 2)), rng.integers(0, 10, (100_000, 3))
    mi = M.discrete_mutual_info(a, b)
    # plug-in bias ≈ (|A|-1)(|B|-1) / (2N) = 4e-4 nats; log 10 = 2.3 nats would be full dependence
    assert mi.max() < 2e-3


def test_mig_matches_brute_force_histograms():
    rng = np.random.default_rng(2)
    factors = rng.integers(0, 4, size=(300, 3))
    codes = np.concatenate([factors + rng.normal(0, 0.7, factors.shape),
                            rng.normal(size=(300, 2))], 1)
    bins = np.stack([np.digitize(c, np.histogram(c, 20)[1][:-1]) for c in codes.T], 1)
    gaps = []
    for k in range(3):
        mi = sorted((mutual_info_score(bins[:, d], factors[:, k]) for d in range(5)), reverse=True)
        gaps.append((mi[0] - mi[1]) / mutual_info_score(factors[:, k], factors[:, k]))
    assert M.mig(codes, factors) == pytest.approx(np.mean(gaps), abs=1e-12)


# -- disentangled ≈ 1, entangled clearly lower ----------------------------------------------------

def test_mig_and_sap_separate_disentangled_from_rotated():
    codes, factors = codes_and_factors("disentangled")
    rot, rot_factors = codes_and_factors("rotated")
    assert M.mig(codes, factors) > 0.95
    assert M.mig(rot, rot_factors) < 0.5
    assert M.sap(codes, factors) > 0.95
    assert M.sap(rot, rot_factors) < 0.5


def test_dci_separates_disentangled_from_rotated():
    # sizes kept small: the default GBT fits 19 trees per stage on the factors of sizes 3, 6, 10
    codes, factors = codes_and_factors("disentangled", n=400)
    test_codes, test_factors = codes_and_factors("disentangled", n=200, seed=2)
    good = M.dci(codes, factors[:, :3], test_codes, test_factors[:, :3])
    rot, rot_factors = codes_and_factors("rotated", n=400)
    rot_codes, rot_test_factors = codes_and_factors("rotated", n=200, seed=2)
    bad = M.dci(rot, rot_factors[:, :3], rot_codes, rot_test_factors[:, :3])
    assert good["disentanglement"] > 0.95 and good["completeness"] > 0.95
    assert good["informativeness_test"] > 0.99
    assert bad["disentanglement"] < good["disentanglement"] - 0.3


def test_dci_from_importance_closed_forms():
    eye = np.eye(4)
    assert M.disentanglement_from_importance(eye) == pytest.approx(1.0, abs=1e-6)
    assert M.completeness_from_importance(eye) == pytest.approx(1.0, abs=1e-6)
    uniform = np.ones((4, 4))
    assert M.disentanglement_from_importance(uniform) == pytest.approx(0.0, abs=1e-6)
    # one code dim explains two factors equally: its row entropy is log_K 2 = 1/2 for K = 4
    r = np.array([[1.0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0], [0, 0, 0, 0]])
    assert M.disentanglement_from_importance(r) == pytest.approx(0.5 * 0.5 + 0.5 * 1.0, abs=1e-6)


@pytest.fixture(scope="module")
def rotated_three_factors():
    """Rotated codes (6 dims, 2 near-constant) of the factors of sizes 3, 6, 10: small enough for
    GBT (19 trees per stage) to fit in a second or two."""
    codes, factors = codes_and_factors("rotated", n=400)
    test_codes, test_factors = codes_and_factors("rotated", n=200, seed=2)
    return codes, factors[:, :3], test_codes, test_factors[:, :3]


def _entropy_base(p, base):
    """Entropy of each row of the probability matrix ``p`` in log base ``base`` (0 log 0 = 0)."""
    logs = np.log(np.where(p > 0, p, 1.0)) / np.log(base)
    return -(p * logs).sum(1)


def test_dci_gbt_matches_eastwood_williams_by_hand(rotated_three_factors):
    # E&W eqs 1-3: D = Σ_d ρ_d (1 − H_K(P_d·)), C = Σ_k ρ_k (1 − H_D(P̃_·k)), R from per-factor GBTs.
    from sklearn.ensemble import GradientBoostingClassifier
    codes, factors, test_codes, test_factors = rotated_three_factors
    fits = [GradientBoostingClassifier(random_state=0).fit(codes, factors[:, k]) for k in range(3)]
    r = np.stack([f.feature_importances_ for f in fits], 1)  # (D, K)
    used = r.sum(1) > 0
    p = r[used] / r[used].sum(1, keepdims=True)  # P_dk, eq. 1
    rho = r[used].sum(1) / r.sum()  # ρ_d, eq. 2
    d_ref = float((rho * (1 - _entropy_base(p, 3))).sum())
    pt = (r / r.sum(0)).T  # P̃_dk per factor, eq. 3
    c_ref = float((r.sum(0) / r.sum() * (1 - _entropy_base(pt, r.shape[0]))).sum())
    i_ref = np.mean([f.score(test_codes, test_factors[:, k]) for k, f in enumerate(fits)])
    got = M.dci(codes, factors, test_codes, test_factors)  # the default importance model
    assert got["importance_model"] == "gbt"
    assert got["disentanglement"] == pytest.approx(d_ref, abs=1e-6)
    assert got["completeness"] == pytest.approx(c_ref, abs=1e-6)
    assert got["informativeness_test"] == pytest.approx(i_ref, abs=1e-12)
    assert 0.05 < d_ref < 0.95  # a rotation: neither trivially disentangled nor uniform


def test_dci_default_is_gbt_and_parallel_equals_serial(rotated_three_factors):
    # E&W eq. 1: R's columns are fitted independently per factor, so the worker count cannot matter.
    import inspect
    assert inspect.signature(M.dci).parameters["model"].default == "gbt"
    assert inspect.signature(M.importance_matrix).parameters["model"].default == "gbt"
    serial = M.importance_matrix(*rotated_three_factors, n_jobs=1)
    parallel = M.importance_matrix(*rotated_three_factors, n_jobs=2)
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)
    forest = M.dci(*rotated_three_factors, model="forest", n_jobs=2)
    assert forest["importance_model"] == "forest"
    with pytest.raises(ValueError, match="'boosted'"):
        M.dci(*rotated_three_factors, model="boosted")


def _beta_vae_features_by_hand(represent, n, pairs, seed):
    """Higgins et al. §3: per point pick factor k, draw ``pairs`` pairs sharing v_k, average |z1 − z2|."""
    data, gen = FactorVectors(), torch.Generator().manual_seed(seed)
    f1 = data.sample_factors(n * pairs, generator=gen).view(n, pairs, -1)
    f2 = data.sample_factors(n * pairs, generator=gen).view(n, pairs, -1)
    k = torch.randint(4, (n,), generator=gen)
    f2[torch.arange(n), :, k] = f1[torch.arange(n), :, k]
    z1, z2 = (represent(data.images(f.reshape(n * pairs, -1))).reshape(n, pairs, -1).numpy()
              for f in (f1, f2))
    return np.abs(z1 - z2).mean(1), k.numpy()


def test_beta_vae_svm_is_the_dip_papers_linear_svm():
    # DIP-VAE §3: one-vs-rest linear SVM, C = 0.01 on the hinge loss, on Higgins et al.'s §3 features.
    from sklearn.svm import LinearSVC
    train = _beta_vae_features_by_hand(representation("rotated"), 300, 16, 0)
    test = _beta_vae_features_by_hand(representation("rotated", seed=1), 200, 16, 1)
    svm = M.beta_vae_score(*train, *test, classifier="svm")
    ref = LinearSVC(C=0.01, loss="hinge", random_state=0).fit(*train)
    assert ref.multi_class == "ovr" and ref.coef_.shape == (4, 6)  # one hyperplane per factor
    assert svm["classifier"] == "svm"
    assert svm["eval_accuracy"] == ref.score(*test)
    assert svm["train_accuracy"] == ref.score(*train)
    assert 0.3 < svm["eval_accuracy"] < 1  # neither chance (1/4) nor trivially separable
    with pytest.raises(ValueError, match="'svc'"):
        M.beta_vae_score(*train, *test, classifier="svc")


def test_beta_vae_svm_scores_entangled_codes_lower_than_logistic():
    # DIP-VAE §3's low-capacity classifier (C = 0.01) vs disentanglement_lib's logistic regression,
    # through Higgins et al. §3's protocol: both ≈ 1 on disentangled codes, the SVM lower on rotated.
    kw = dict(num_train=300, num_eval=200, batch_size=16)
    scores = {}
    for clf in ("logistic", "svm"):
        for kind in ("disentangled", "rotated"):
            gen = torch.Generator().manual_seed(0)
            out = M.compute_beta_vae(FactorVectors(), representation(kind), gen, classifier=clf, **kw)
            assert out["classifier"] == clf
            scores[clf, kind] = out["eval_accuracy"]
    assert scores["logistic", "disentangled"] > 0.98 and scores["svm", "disentangled"] > 0.98
    assert scores["svm", "rotated"] < scores["logistic", "rotated"] - 0.1


class EveryPairDiffers(GroundTruthData):
    """Three binary factors; ``sample_factors`` returns all zeros, then all ones, alternately, so in
    the β-VAE metric's pairs every factor differs except the fixed one: features known by hand."""

    factor_names = ("a", "b", "c")
    factor_sizes = (2, 2, 2)
    data_shape = (3,)

    def __init__(self):
        self.calls = 0

    def sample_factors(self, n, generator=None, device=None):
        self.calls += 1
        return torch.full((n, 3), (self.calls - 1) % 2, dtype=torch.long)

    def images(self, factors, dtype=torch.float32):
        return self.check_factors(factors).to(dtype)


def a_and_b_plus_c(x):
    """z = 10·(a, b + c): b and c share one code dimension, so fixing either looks the same."""
    return 10 * torch.stack([x[:, 0], x[:, 1] + x[:, 2]], 1)


def test_balanced_fixed_factor_counts_are_exactly_equal_and_seeded():
    gen = torch.Generator().manual_seed(0)
    labels = M.fixed_factor_labels(600, 5, gen, balanced=True)
    assert torch.bincount(labels).tolist() == [120] * 5
    assert not torch.equal(labels, labels.sort().values)  # shuffled, not in blocks
    assert torch.equal(labels, M.fixed_factor_labels(600, 5, torch.Generator().manual_seed(0), balanced=True))
    uniform = M.fixed_factor_labels(600, 5, torch.Generator().manual_seed(0))
    assert torch.bincount(uniform, minlength=5).tolist() != [120] * 5  # multinomial counts
    with pytest.raises(ValueError, match="multiple of the 5 factors, got 601"):
        M.fixed_factor_labels(601, 5, gen, balanced=True)


@pytest.mark.parametrize("classifier", ["logistic", "svm"])
def test_balanced_beta_vae_metric_by_hand(classifier):
    # Higgins et al. §3 / DIP §3. Every pair differs in every factor but the fixed one (0 -> 1), and
    # z = 10·(a, b + c): fixing a gives the point (0, 20), fixing b or c gives (10, 10) alike. A
    # classifier can tell a from {b, c} but not b from c, so it is right on all a-points and on one
    # of b, c: with n/3 points per factor (balanced, DIP §3) the accuracy is exactly 2/3.
    features, labels = M.beta_vae_points(EveryPairDiffers(), a_and_b_plus_c, torch.Generator().manual_seed(0),
                                         n=30, batch_size=4, balanced=True)
    by_hand = np.where(labels[:, None] == 0, [0.0, 20.0], [10.0, 10.0])
    np.testing.assert_array_equal(features, by_hand)
    out = M.compute_beta_vae(EveryPairDiffers(), a_and_b_plus_c, torch.Generator().manual_seed(0),
                             num_train=60, num_eval=30, batch_size=4, classifier=classifier, balanced=True)
    assert out["train_counts"] == [20, 20, 20] and out["eval_counts"] == [10, 10, 10]
    assert out["balanced"] and out["converged"]
    assert out["train_accuracy"] == pytest.approx(2 / 3) and out["eval_accuracy"] == pytest.approx(2 / 3)
    # The uniform draw (Higgins et al.'s y ~ Unif[1..K], disentanglement_lib) scores the a-points and
    # whichever of b, c the classifier names: its accuracy moves with the multinomial counts.
    uni = M.compute_beta_vae(EveryPairDiffers(), a_and_b_plus_c, torch.Generator().manual_seed(0),
                             num_train=60, num_eval=30, batch_size=4, classifier=classifier)
    n0, n1, n2 = uni["eval_counts"]
    assert not uni["balanced"] and uni["eval_accuracy"] * 30 in (pytest.approx(n0 + n1), pytest.approx(n0 + n2))


def test_beta_vae_records_training_accuracy_and_convergence():
    # max_iter too small for the solver: no ConvergenceWarning escapes, the record says so instead
    train = _beta_vae_features_by_hand(representation("rotated"), 300, 16, 0)
    test = _beta_vae_features_by_hand(representation("rotated", seed=1), 200, 16, 1)
    import warnings
    for classifier in ("logistic", "svm"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # any warning left unrecorded fails the test
            cut = M.beta_vae_score(*train, *test, classifier=classifier, max_iter=1, max_iter_limit=1)
            full = M.beta_vae_score(*train, *test, classifier=classifier)
        assert cut["converged"] is False and cut["max_iter"] == 1
        assert full["converged"] is True and full["n_iter"] <= full["max_iter"]
        assert 0 <= full["train_accuracy"] <= 1 and "eval_accuracy" in full
    # a budget that is too small at first is raised tenfold until the solver converges
    raised = M.beta_vae_score(*train, *test, classifier="svm", max_iter=2, max_iter_limit=100_000)
    assert raised["converged"] and raised["max_iter"] in (20, 200, 2000, 20_000, 100_000)


def test_factor_vae_score_separates_disentangled_from_rotated():
    data, gen = FactorVectors(), torch.Generator().manual_seed(0)
    kw = dict(num_train=300, num_eval=200, batch_size=32, num_variance_estimate=2000)
    good = M.compute_factor_vae(data, representation("disentangled"), gen, **kw)
    rotated = M.compute_factor_vae(data, representation("rotated"), gen, **kw)
    mixed = M.compute_factor_vae(data, representation("mixed"), gen, **kw)
    assert good["eval_accuracy"] > 0.98
    assert good["num_active_dims"] == 4  # the two constant dims are pruned (std < 0.05)
    # The argmin vote survives a rotation that leaves each factor nearest a distinct axis (a
    # known blind spot of the score), so a random rotation only scores somewhat lower; the equal
    # mixing rotation leaves the vote to chance.
    assert rotated["eval_accuracy"] < good["eval_accuracy"]
    assert mixed["eval_accuracy"] < 0.6


def test_factor_vae_majority_vote_by_hand():
    train = np.array([[5, 0, 1], [1, 7, 6]])  # dims 0 -> factor 0, dims 1, 2 -> factor 1
    evals = np.array([[2, 1, 0], [0, 3, 4]])
    assert M.majority_vote_accuracy(train, evals) == pytest.approx((18 / 20, 9 / 10))


def test_beta_vae_score_separates_disentangled_from_rotated():
    data, gen = FactorVectors(), torch.Generator().manual_seed(0)
    kw = dict(num_train=300, num_eval=200, batch_size=16)
    good = M.compute_beta_vae(data, representation("disentangled"), gen, **kw)
    bad = M.compute_beta_vae(data, representation("rotated"), gen, **kw)
    assert good["eval_accuracy"] > 0.98
    assert bad["eval_accuracy"] < 0.85


def test_discrete_sap_and_downstream_accuracy():
    codes, factors = codes_and_factors("disentangled", n=2000)
    test = codes_and_factors("disentangled", n=1000, seed=3)
    # one-feature linear SVMs cannot separate 20 classes, but the owning dim is still the best one
    assert M.sap(codes, factors, *test, continuous=False) > 0.2
    acc = M.factor_accuracies(codes, factors, *test, classifier="forest")
    assert acc.min() > 0.99
    rng = np.random.default_rng(0)
    chance = M.downstream_accuracy(rng.normal(size=(2000, 3)), factors[:, 3],
                                   rng.normal(size=(1000, 3)), test[1][:, 3])
    assert chance < 0.1  # 20 classes, chance 0.05


def test_metrics_need_ground_truth_factors():
    from ppl_data import digits
    with pytest.raises(DataError, match="ground-truth factors"):
        M.compute_factor_vae(digits(), lambda x: x.flatten(1), torch.Generator(), num_train=2)


# -- FID / KID / feature net ---------------------------------------------------------------------

def test_frechet_distance_closed_form_and_scipy():
    from scipy.linalg import sqrtm

    from inference.fid import frechet_distance
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 2.0, 0.5]), np.array([2.0, 1.0, 0.5])
    # diagonal covariances: ‖Δμ‖² + Σ (σ1 − σ2)²
    assert frechet_distance(mu1, np.diag(s1 ** 2), mu2, np.diag(s2 ** 2)) == pytest.approx(5 + 2)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    c1, c2 = a @ a.T, b @ b.T
    ref = np.trace(c1 + c2 - 2 * np.real(sqrtm(c1 @ c2)))
    assert frechet_distance(np.zeros(6), c1, np.zeros(6), c2) == pytest.approx(ref, rel=1e-8)


def test_kid_matches_brute_force_unbiased_mmd():
    from inference.fid import kid_from_features
    rng = np.random.default_rng(0)
    fa, fb = rng.normal(size=(12, 3)), rng.normal(0.5, 1, size=(12, 3))
    k = lambda x, y: (x @ y / 3 + 1) ** 3  # noqa: E731
    m = 12
    xx = sum(k(fa[i], fa[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(fb[i], fb[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(fa[i], fb[j]) for i in range(m) for j in range(m)) / m ** 2
    mean, _ = kid_from_features(fa, fb, num_subsets=1, subset_size=m)
    assert mean == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


def test_feature_net_is_cached_and_separates_datasets(tmp_path, monkeypatch):
    from inference import fid
    from ppl_data import DSprites, digits
    monkeypatch.setenv(fid.CACHE_ENV, str(tmp_path))
    torch.manual_seed(0)
    net = fid.feature_net(steps=5)
    cached = list(tmp_path.glob("feature_net-v*-5.pt"))
    assert len(cached) == 1
    again = fid.feature_net(steps=5)  # loaded, not retrained
    assert net.steps == again.steps == 5 and fid.feature_net_name(again) == f"v{fid.FEATURE_NET_VERSION}-5"
    for p, q in zip(net.parameters(), again.parameters()):
        torch.testing.assert_close(p, q)
    shapes, gen = DSprites(), torch.Generator().manual_seed(0)
    a = shapes.images(shapes.sample_factors(128, generator=gen))
    b = shapes.images(shapes.sample_factors(128, generator=gen))
    d = digits().all()[0][:128]
    assert fid.fid_kid(a, a, net)["fid"] == pytest.approx(0.0, abs=1e-6)
    same, other = fid.fid_kid(a, b, net), fid.fid_kid(a, d, net)
    assert other["fid"] > 5 * same["fid"] and other["kid"] > 5 * abs(same["kid"])


def test_sap_counts_and_names_unconverged_svms_without_changing_the_score(monkeypatch):
    """Discrete SAP keeps disentanglement_lib's LinearSVC budget (its score is the reference's); a fit
    that stops unconverged is counted in one ConvergenceWarning, never silenced, and other warnings
    pass through. The score is the one the plain fits give (computed here without the wrapper)."""
    import warnings

    import sklearn.svm
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    rng = np.random.default_rng(0)
    z, v = rng.normal(size=(400, 3)), rng.integers(0, 3, size=(400, 2))
    zt, vt = rng.normal(size=(200, 3)), rng.integers(0, 3, size=(200, 2))
    z[:, 0] += v[:, 0]
    zt[:, 0] += vt[:, 0]
    expected = np.array([[LinearSVC(C=0.01, class_weight="balanced").fit(z[:, [d]], v[:, k]).score(zt[:, [d]], vt[:, k])
                          for k in range(2)] for d in range(3)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a run whose fits converge warns nothing
        np.testing.assert_array_equal(M.discrete_sap_matrix(z, v, zt, vt), expected)

    class Warns(LinearSVC):  # the same fit, reporting non-convergence on code 1 (and one other warning)
        def fit(self, x, y):
            out = super().fit(x, y)
            if np.array_equal(x[:, 0], z[:, 1]):
                warnings.warn("Liblinear failed to converge", ConvergenceWarning)
                warnings.warn("unrelated", UserWarning)
            return out

    monkeypatch.setattr(sklearn.svm, "LinearSVC", Warns)
    with pytest.warns(ConvergenceWarning, match=r"SAP: 2 of 6 one-code linear SVMs did not converge.*\(1, 0\)"), \
            pytest.warns(UserWarning, match="unrelated"):
        got = M.discrete_sap_matrix(z, v, zt, vt)
    np.testing.assert_array_equal(got, expected)


def test_downstream_logistic_iterates_to_convergence_and_names_a_fit_that_never_does():
    """The downstream read-out is the converged logistic regression (its accuracy equals a fit given
    ample iterations), not whatever a short budget stopped at; a fit that cannot converge within the
    limit warns, naming the budget, instead of being silenced."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(1)
    z = rng.normal(size=(300, 3))
    y = (z[:, 0] > 0).astype(int) + (z[:, 1] > 0)
    zt = rng.normal(size=(300, 3))
    yt = (zt[:, 0] > 0).astype(int) + (zt[:, 1] > 0)
    ample = make_pipeline(StandardScaler(), LogisticRegression(max_iter=100_000)).fit(z, y).score(zt, yt)
    # the same solver path as an ample budget: lbfgs stops at its own tolerance, not at the budget
    assert M.downstream_accuracy(z, y, zt, yt, max_iter=1) == ample  # 1 → 10 → 100 iterations
    with pytest.warns(ConvergenceWarning, match="did not converge in 1 iterations"):
        M.downstream_accuracy(z, y, zt, yt, max_iter=1, max_iter_limit=1)


def test_active_units_are_the_latents_whose_posterior_mean_varies_by_more_than_a_hundredth():
    """Burda et al. 2016, §5.2: A_u = Cov_x(E_q[u]) > 10⁻². A column taking ±a equally often has
    population variance exactly a² (powers of two: exact in any summation order): a = 1/4 → 1/16
    (active), a = 1/16 → 1/256 (not), a constant → 0; at a threshold of exactly 1/256, a variance of
    1/256 is not *above* it."""
    signs = np.tile([-1.0, 1.0], 500)
    codes = np.stack([0.25 * signs, 0.0625 * signs, np.full(1000, 3.0), 0.0625 * signs + 7.0], axis=1)
    out = M.active_units(codes)
    assert out["variance"] == [1 / 16, 1 / 256, 0.0, 1 / 256]
    assert out["active"] == [True, False, False, False] and out["count"] == 1 and out["threshold"] == M.ACTIVE_AT == 1e-2
    assert M.active_units(codes, threshold=1e-3)["active"] == [True, True, False, True]
    assert M.active_units(codes, threshold=1 / 256)["active"] == [True, False, False, False]
    with pytest.raises(ValueError, match="N ≥ 2"):
        M.active_units(codes[:1])
