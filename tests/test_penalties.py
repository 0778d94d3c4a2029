"""Each penalty of inference.penalties against an independent computation."""

import math

import numpy as np
import pytest
import torch

from inference.penalties import (capacity_penalty, capacity_schedule, density_ratio_loss,
                                 dip_covariance_penalty, mmd,
                                 mss_log_weights, mws_offsets, tc_decomposition, total_correlation)


def _normal_logpdf(x, mu, sigma):
    return -0.5 * ((x - mu) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)


def _brute_tc(z, loc, scale, n_data, estimator):
    """Chen et al. 2018 Appendix C, written out element by element with Python floats."""
    m, d = len(z), len(z[0])
    total = 0.0
    for i in range(m):
        weights = []
        for j in range(m):
            if estimator == "mws":
                weights.append(1.0 / (n_data * m))        # eq. C.1: 1/(N·M)
            elif j == i:
                weights.append(1.0 / n_data)              # the point itself: exact, 1/N
            elif j == (i + 1) % m:
                weights.append((n_data - (m - 1)) / (n_data * (m - 1)))  # stratum outside the batch
            else:
                weights.append(1.0 / (m - 1))
        q_joint = sum(w * math.exp(sum(_normal_logpdf(z[i][k], loc[j][k], scale[j][k]) for k in range(d)))
                      for j, w in enumerate(weights))
        log_marg = 0.0
        for k in range(d):
            log_marg += math.log(sum(w * math.exp(_normal_logpdf(z[i][k], loc[j][k], scale[j][k]))
                                     for j, w in enumerate(weights)))
        total += math.log(q_joint) - log_marg
    return total / m


@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_tc_matches_brute_force_double_loop(estimator):
    g = torch.Generator().manual_seed(0)
    loc = torch.randn(6, 3, generator=g, dtype=torch.float64)
    scale = 0.5 + torch.rand(6, 3, generator=g, dtype=torch.float64)
    z = loc + scale * torch.randn(6, 3, generator=g, dtype=torch.float64)
    got = total_correlation(z, loc, scale, dataset_size=100, estimator=estimator)
    want = _brute_tc(z.tolist(), loc.tolist(), scale.tolist(), 100, estimator)
    assert got.item() == pytest.approx(want, rel=1e-10, abs=1e-12)


def test_mss_weights_rows_sum_to_one_and_diagonal_is_one_over_n():
    w = mss_log_weights(7, 50, dtype=torch.float64).exp()
    assert torch.allclose(w.sum(1), torch.ones(7, dtype=torch.float64))
    assert torch.allclose(torch.diagonal(w), torch.full((7,), 1 / 50, dtype=torch.float64))


def test_tc_separated_points_is_d_minus_one_log_n():
    # Every posterior far from every other: q(z_i) ≈ q(z_i | n_i)/N in the joint and in each
    # marginal, so TC_MSS = (D − 1)·log N exactly (the DESIGN.md trap for a mis-strided weight matrix).
    m, d, n = 8, 4, 1000
    loc = torch.arange(m, dtype=torch.float64)[:, None].expand(m, d) * 100.0
    scale = torch.full((m, d), 0.1, dtype=torch.float64)
    z = loc + 0.05
    tc = total_correlation(z, loc, scale, n, "mss")
    assert tc.item() == pytest.approx((d - 1) * math.log(n), rel=1e-9)


def _correlated_posteriors(m, g, rho=0.8, s=0.6):
    """Means ~ N(0, Σ0) (correlated), scale s: the aggregate posterior is N(0, Σ0 + s² I)."""
    sigma0 = torch.tensor([[1.0, rho, 0.0], [rho, 1.0, rho / 2], [0.0, rho / 2, 1.0]], dtype=torch.float64)
    chol = torch.linalg.cholesky(sigma0)
    loc = torch.randn(m, 3, generator=g, dtype=torch.float64) @ chol.T
    scale = torch.full((m, 3), s, dtype=torch.float64)
    z = loc + scale * torch.randn(m, 3, generator=g, dtype=torch.float64)
    cov = sigma0 + s ** 2 * torch.eye(3, dtype=torch.float64)
    analytic = 0.5 * (torch.log(torch.diagonal(cov)).sum() - torch.logdet(cov))  # Gaussian TC
    return z, loc, scale, analytic.item()


def test_tc_estimators_converge_to_analytic_gaussian_tc():
    n_data = 10 ** 7  # the batch is a small sample of a (practically) infinite dataset
    errors = {"mss": [], "mws": []}
    for m in (32, 2048):
        g = torch.Generator().manual_seed(m)
        est = {"mss": [], "mws": []}
        for _ in range(8 if m < 100 else 2):
            z, loc, scale, analytic = _correlated_posteriors(m, g)
            for name in est:
                est[name].append(total_correlation(z, loc, scale, n_data, name).item())
        offset = mws_offsets(3, n_data).tc
        errors["mss"].append(abs(np.mean(est["mss"]) - analytic))
        errors["mws"].append(abs(np.mean(est["mws"]) - offset - analytic))
    for name, (small, large) in errors.items():
        assert large < 0.03, (name, errors)
        assert large < small, (name, errors)


def test_decomposition_sums_to_monte_carlo_kl():
    g = torch.Generator().manual_seed(3)
    loc = torch.randn(16, 4, generator=g, dtype=torch.float64)
    scale = 0.3 + torch.rand(16, 4, generator=g, dtype=torch.float64)
    z = loc + scale * torch.randn(16, 4, generator=g, dtype=torch.float64)
    prior = torch.distributions.Normal(0.0, 1.0)
    log_pz = prior.log_prob(z).sum(-1)
    log_qzx = torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
    for estimator in ("mss", "mws"):
        parts = tc_decomposition(z, loc, scale, log_pz, 500, estimator)
        assert (parts.mi + parts.tc + parts.dim_kl).item() == pytest.approx((log_qzx - log_pz).mean().item())
        assert parts.tc.item() == pytest.approx(total_correlation(z, loc, scale, 500, estimator).item())


def test_tc_rejects_bad_estimator_and_shapes():
    z = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="'mws' or 'mss'"):
        total_correlation(z, z, z + 1, 10, "bogus")
    with pytest.raises(ValueError, match="shaped"):
        total_correlation(z, z[:, :1], z + 1, 10)


@pytest.mark.parametrize("kind", ["i", "ii"])
def test_dip_penalty_matches_numpy_covariance(kind):
    rng = np.random.default_rng(1)
    loc = rng.normal(size=(50, 4)) @ rng.normal(size=(4, 4))
    scale = rng.uniform(0.2, 1.5, size=(50, 4))
    cov = np.cov(loc, rowvar=False, bias=True)
    if kind == "ii":
        cov = cov + np.diag((scale ** 2).mean(0))   # law of total covariance, DIP eq. 5
    lambda_od = 10.0
    lambda_d = 100.0 if kind == "i" else 10.0      # paper defaults: 10·λ_od for I, λ_od for II
    off = cov - np.diag(np.diag(cov))
    want = lambda_od * (off ** 2).sum() + lambda_d * ((np.diag(cov) - 1) ** 2).sum()
    got = dip_covariance_penalty(torch.tensor(loc), torch.tensor(scale), kind, lambda_od)
    assert got.item() == pytest.approx(want, rel=1e-10)


def _brute_mmd(a, b, kernel, scale):
    d = len(a[0])
    c = 2 * d * scale ** 2

    def k(x, y):
        sq = sum((xi - yi) ** 2 for xi, yi in zip(x, y))
        return c / (c + sq) if kernel == "imq" else math.exp(-sq / c)

    n, m = len(a), len(b)
    aa = sum(k(a[i], a[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    bb = sum(k(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    ab = sum(k(a[i], b[j]) for i in range(n) for j in range(m)) / (n * m)
    return aa + bb - 2 * ab


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_mmd_matches_brute_force_pairwise_loop(kernel):
    g = torch.Generator().manual_seed(2)
    a = torch.randn(7, 3, generator=g, dtype=torch.float64)
    b = torch.randn(5, 3, generator=g, dtype=torch.float64) + 0.5
    got = mmd(a, b, kernel, scale=0.7).item()
    assert got == pytest.approx(_brute_mmd(a.tolist(), b.tolist(), kernel, 0.7), rel=1e-10)


def test_mmd_near_zero_for_equal_distributions_and_positive_otherwise():
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(2, 1500, 4, generator=g, dtype=torch.float64)
    same = mmd(a, b).item()
    shifted = mmd(a, b + 0.5).item()
    assert abs(same) < 2e-3
    assert shifted > 20 * max(abs(same), 1e-4)


def test_capacity_schedule_end_points():
    # Burgess et al. 2018 §5 with the dpVAE supplement Table 1 values C_max = 25, C_stop = 100000.
    assert capacity_schedule(0, 25.0, 100_000) == 0.0
    assert capacity_schedule(50_000, 25.0, 100_000) == pytest.approx(12.5)
    assert capacity_schedule(100_000, 25.0, 100_000) == 25.0
    assert capacity_schedule(300_000, 25.0, 100_000) == 25.0
    kl = torch.tensor(30.0)
    assert capacity_penalty(kl, 100_000, 15.0, 25.0, 100_000).item() == pytest.approx(15.0 * 5.0)
    assert capacity_penalty(kl, 0, 15.0, 25.0, 100_000).item() == pytest.approx(15.0 * 30.0)


def test_density_ratio_loss_by_hand_and_as_two_class_cross_entropy():
    lp, lq = [0.3, -1.2, 2.0], [-0.5, 1.5]
    by_hand = (sum(math.log(1 + math.exp(-v)) for v in lp) / 3
               + sum(math.log(1 + math.exp(v)) for v in lq) / 2)
    got = density_ratio_loss(torch.tensor(lp, dtype=torch.float64), torch.tensor(lq, dtype=torch.float64))
    assert got.item() == pytest.approx(by_hand, rel=1e-12)
    # FactorVAE's 2-logit head: ½ of the loss of l₀ − l₁ is the cross-entropy with labels 0 (p), 1 (q).
    logits = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0] * 4 + [1] * 4)
    ratio = logits[:, 0] - logits[:, 1]
    torch.testing.assert_close(0.5 * density_ratio_loss(ratio[:4], ratio[4:]),
                               torch.nn.functional.cross_entropy(logits, labels))
    torch.testing.assert_close(density_ratio_loss(logits[:4], logits[4:]),  # the two-class head itself
                               density_ratio_loss(ratio[:4], ratio[4:]))


def test_density_ratio_loss_minimiser_is_the_log_ratio():
    # p = N(1, 1), q = N(0, 1): log p/q = x − 1/2. Fit l(x) = a·x + b by the loss on many draws.
    gen = torch.Generator().manual_seed(0)
    xp, xq = torch.randn(20000, generator=gen) + 1, torch.randn(20000, generator=gen)
    ab = torch.zeros(2, requires_grad=True)
    opt = torch.optim.LBFGS([ab], max_iter=200)

    def closure():
        opt.zero_grad()
        loss = density_ratio_loss(ab[0] * xp + ab[1], ab[0] * xq + ab[1])
        loss.backward()
        return loss

    opt.step(closure)
    assert ab[0].item() == pytest.approx(1.0, abs=0.05)
    assert ab[1].item() == pytest.approx(-0.5, abs=0.05)
