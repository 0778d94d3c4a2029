"""Robust pose/appearance disentangling (Esser et al. 2019): eqs. (10)-(12), (18), (22)-(24), §3.5."""

import json
import math
import runpy
from pathlib import Path

import pyro
import pytest
import torch

from guides.nets import Conv32Encoder
from inference.errors import ConfigError
from inference.papers import robust as R
from inference.papers.robust import (RobustELBO, appearance_usage, classifier_loss, fitted_mi, gamma_update,
                                     gamma_update_variational, lambda_update, mi_constraint_loss, mi_estimate,
                                     MIClassifier, product_of_marginals, robust_pair, transfer_errors)
from inference.svi import fit
from ppl_data import SpritePairs, Sprites
from ppl_models.nets import Conv32Decoder

EPS, MU = 0.125, 0.1


def l_mi_direct(i_t, lam, mu, eps):
    """Eq. (22) written out branch by branch in plain Python."""
    c = i_t - eps
    if c >= -lam / mu:
        return lam * c + mu / 2 * c ** 2
    return -lam ** 2 / (2 * mu)


@pytest.mark.parametrize("lam", [0.0, 0.3, 2.0])
def test_eq22_matches_piecewise_definition(lam):
    boundary = EPS - lam / MU  # the I_T where I_T − ε = −λ/μ
    values = [boundary - 5, boundary - 1e-3, boundary, boundary + 1e-3, EPS, 0.9, 7.0]
    got = mi_constraint_loss(torch.tensor(values, dtype=torch.float64),
                             torch.tensor(lam, dtype=torch.float64), MU, EPS)
    want = torch.tensor([l_mi_direct(v, lam, MU, EPS) for v in values], dtype=torch.float64)
    assert torch.allclose(got, want, atol=1e-12)


@pytest.mark.parametrize("lam", [0.0, 0.3, 2.0])
def test_eq22_is_continuous_with_continuous_slope_at_the_boundary(lam):
    lam_t = torch.tensor(lam, dtype=torch.float64)
    boundary = EPS - lam / MU
    h = 1e-7
    below = mi_constraint_loss(torch.tensor(boundary - h, dtype=torch.float64), lam_t, MU, EPS)
    above = mi_constraint_loss(torch.tensor(boundary + h, dtype=torch.float64), lam_t, MU, EPS)
    at = mi_constraint_loss(torch.tensor(boundary, dtype=torch.float64), lam_t, MU, EPS)
    assert abs(float(below - at)) < 1e-9 and abs(float(above - at)) < 1e-9
    assert abs(float(at) + lam ** 2 / (2 * MU)) < 1e-12  # both branches equal −λ²/2μ there
    x = torch.tensor([boundary - 1e-4, boundary + 1e-4], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(mi_constraint_loss(x, lam_t, MU, EPS).sum(), x)
    assert grad[0] == 0.0 and abs(float(grad[1])) < 2e-5  # slope λ + μ(I_T − ε) → 0 at the boundary


def test_lambda_update_eq23_hand_sequence():
    lam = torch.tensor(0.0)
    seq = []
    for i_t in (0.5, 0.2, -1.0, 0.0, 1.125):
        lam = lambda_update(lam, torch.tensor(i_t), MU, EPS)
        seq.append(float(lam))
    # by hand: 0 + .1(.375); + .1(.075); max(0, .045 − .1125); max(0, −.0125); 0 + .1(1.0)
    assert seq == pytest.approx([0.0375, 0.045, 0.0, 0.0, 0.1], abs=1e-7)


def test_gamma_update_eq18_hand_sequence():
    gamma = torch.tensor(1.0)
    seq = []
    for i_tp, i_t in ((0.9, 0.1), (0.1, 0.6), (0.0, 200.0), (0.5, 0.0)):
        gamma = gamma_update(gamma, torch.tensor(i_tp), torch.tensor(i_t), 0.01, 0.01)
        seq.append(float(gamma))
    # by hand: 1 + .01(.79); 1.0079 + .01(−.51); max(0, 1.0028 − 2.0001); 0 + .01(.49)
    assert seq == pytest.approx([1.0079, 1.0028, 0.0, 0.0049], abs=1e-6)


def test_gamma_update_eq24_hand_sequence():
    gamma = torch.tensor(0.5)
    seq = []
    for i_tp in (0.625, 0.125, -100.0):
        gamma = gamma_update_variational(gamma, torch.tensor(i_tp), 0.01, EPS)
        seq.append(float(gamma))
    assert seq == pytest.approx([0.505, 0.505, 0.0], abs=1e-6)


def test_elbo_multiplier_updates_wait_for_warmup_then_follow_the_equations():
    loss = RobustELBO(2, 2, variant="full", warmup_steps=2, gamma_init=1.0, lambda_init=0.0)
    seen = []
    for i_t, i_tp in ((0.5, 1.0), (0.5, 1.0), (0.5, 1.0), (0.025, 0.0)):
        loss.update_multipliers(torch.tensor(i_t), torch.tensor(i_tp))
        seen += [float(loss.gamma), float(loss.lam)]
    # steps 0, 1 are warm-up; step 2: γ = 1 + .01(1 − .5 − .01) = 1.0049, λ = .1(.375) = .0375;
    # step 3: γ = 1.0049 + .01(0 − .025 − .01) = 1.00455, λ = .0375 + .1(−.1) = 0.0275
    assert seen == pytest.approx([1.0, 0.0, 1.0, 0.0, 1.0049, 0.0375, 1.00455, 0.0275], abs=1e-6)
    fixed = RobustELBO(2, 2, variant="fixed_gamma", warmup_steps=0)
    fixed.update_multipliers(torch.tensor(0.0), torch.tensor(5.0))
    assert float(fixed.gamma) == 1.0 and float(fixed.lam) == 0.0  # λ: max(0, .1(0 − .125)) = 0
    variational = RobustELBO(2, 2, variant="variational", warmup_steps=0, gamma_init=1.0)
    variational.update_multipliers(torch.tensor(9.0), torch.tensor(0.625))
    assert float(variational.gamma) == pytest.approx(1.005) and float(variational.lam) == 0.0


def _fit_classifier(rho, d=2, steps=300, seed=0):
    """Train T by eq. (10) on (π, α) with corr(π_i, α_i) = ρ; return I_T on fresh samples."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    T = MIClassifier(d, d, hidden=(32, 32))
    opt = torch.optim.Adam(T.parameters(), lr=1e-2)

    def draw(n):
        pi = torch.randn(n, d, generator=gen)
        alpha = rho * pi + math.sqrt(1 - rho ** 2) * torch.randn(n, d, generator=gen)
        return pi, alpha
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only add contention
    try:
        for _ in range(steps):
            pi, alpha = draw(256)
            opt.zero_grad()
            classifier_loss(T, pi, alpha).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        return float(mi_estimate(T, *draw(10_000)))


def test_mi_estimate_near_zero_for_independent_gaussians():
    assert abs(_fit_classifier(0.0)) < 0.05


def test_mi_estimate_matches_closed_form_for_correlated_gaussians():
    rho, d = 0.8, 2
    true_mi = -d / 2 * math.log(1 - rho ** 2)  # = 1.0217 nats: −½ log(1 − ρ²) per coordinate pair
    est = _fit_classifier(rho, d)
    assert est == pytest.approx(true_mi, rel=0.15)


@pytest.fixture(scope="module")
def tiny():
    data = SpritePairs(Sprites(16))
    x, _ = data.batch(torch.arange(0, 8 * 9001, 9001))
    return data, x


def _grads(elbo, model, guide, x, seed=0):
    torch.manual_seed(seed)
    for p in list(model.parameters()) + list(guide.parameters()):
        p.grad = None
    elbo.differentiable_loss(model, guide, x).backward()
    return {name: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
            for name, p in [*(("model." + n, p) for n, p in model.named_parameters()),
                            *(("guide." + n, p) for n, p in guide.named_parameters())]}


def test_decoder_and_appearance_encoder_see_only_l_rec_pose_encoder_sees_full_loss(tiny):
    """§3.5: D and E_α are trained on L_rec, E_π on L = L_rec + L_VB + L_MI."""
    _, x = tiny
    torch.manual_seed(0)
    model, guide = robust_pair((2, 3, 16, 16), pose_dim=3, appearance_dim=3, net="mlp")
    full = RobustELBO(3, 3, variant="full", warmup_steps=0, gamma_init=2.0, lambda_init=1.0)
    rec_only = RobustELBO(3, 3, variant="variational", warmup_steps=0, gamma_init=1e-12)
    rec_only.T.load_state_dict(full.T.state_dict())
    g_full = _grads(full, model, guide, x)
    assert float(full.terms["L_MI"]) != 0.0 and float(full.terms["kl"]) > 0
    g_rec = _grads(rec_only, model, guide, x)
    for name in g_full:
        if name.startswith(("model.decoder", "guide.appearance_encoder")):
            assert torch.allclose(g_full[name], g_rec[name], atol=1e-6, rtol=1e-5), name
    diff = sum(float((g_full[n] - g_rec[n]).abs().sum()) for n in g_full if n.startswith("guide.pose_encoder"))
    assert diff > 1e-3


def test_encoder_gets_no_gradient_from_t_prime(tiny):
    _, x = tiny
    torch.manual_seed(1)
    model, guide = robust_pair((2, 3, 16, 16), pose_dim=3, appearance_dim=3, net="mlp")
    elbo = RobustELBO(3, 3, variant="full", warmup_steps=0, lambda_init=1.0)
    torch.manual_seed(0)
    surrogate = elbo.differentiable_loss(model, guide, x)
    assert not elbo.terms["I_T_prime"].requires_grad
    assert all(g is None for g in torch.autograd.grad(surrogate, list(elbo.T_prime.parameters()),
                                                      allow_unused=True, retain_graph=True))
    assert any(g is not None for g in torch.autograd.grad(surrogate, list(elbo.T.parameters()),
                                                          allow_unused=True))
    before = _grads(elbo, model, guide, x)
    with torch.no_grad():  # a different T′ changes nothing the encoder sees
        for p in elbo.T_prime.parameters():
            p.add_(torch.randn_like(p))
    after = _grads(elbo, model, guide, x)
    assert all(torch.equal(before[n], after[n]) for n in before)


def test_gamma_scales_the_pose_kl_in_model_and_guide(tiny):
    _, x = tiny
    torch.manual_seed(2)
    model, guide = robust_pair((2, 3, 16, 16), pose_dim=3, appearance_dim=3, net="mlp")
    out = {}
    for g in (1.0, 3.0):
        elbo = RobustELBO(3, 3, variant="fixed_gamma", warmup_steps=10)
        elbo.gamma = torch.tensor(g)
        torch.manual_seed(0)
        out[g] = (float(elbo.differentiable_loss(model, guide, x).detach()), float(elbo.terms["kl"]))
    assert out[1.0][1] == pytest.approx(out[3.0][1])
    # the surrogate is summed over the batch of 8: γ KL adds (3 − 1)·8·KL
    assert out[3.0][0] - out[1.0][0] == pytest.approx(2 * 8 * out[1.0][1], rel=1e-4)


def test_training_step_has_no_host_sync(tiny, monkeypatch):
    _, x = tiny
    model, guide = robust_pair((2, 3, 16, 16), pose_dim=3, appearance_dim=3, net="mlp")
    elbo = RobustELBO(3, 3, variant="full", warmup_steps=0)

    def refuse(*a, **k):
        raise AssertionError("host synchronisation in the training step")
    # torch's Adam step reads its own CPU step counter with .item(): not a device sync, left out
    monkeypatch.setattr(elbo.optimizer, "step", lambda: None)
    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    with pyro.validation_enabled(False):  # as in every step of inference.fit but the first
        elbo.loss_and_grads(model, guide, x)  # the loss, its gradients, T and T′, γ and λ
    monkeypatch.undo()
    assert float(elbo.step) == 1


def test_fit_resumes_exactly_with_classifiers_and_multipliers(tiny, tmp_path):
    data, _ = tiny

    def run(steps, out, resume=False):
        torch.manual_seed(0)
        model, guide = robust_pair(data.data_shape, pose_dim=3, appearance_dim=3, net="mlp")
        elbo = RobustELBO(3, 3, variant="full", warmup_steps=1, lambda_init=0.5)
        fit(model, guide, elbo, data, steps=steps, out_dir=out, batch_size=8, lr=1e-3,
            checkpoint_every=2, log_every=1, device="cpu", resume=resume)
        return model, guide, elbo
    m1, g1, e1 = run(4, tmp_path / "a")
    run(2, tmp_path / "b")
    m2, g2, e2 = run(4, tmp_path / "b", resume=True)
    assert torch.equal(e1.gamma, e2.gamma) and torch.equal(e1.lam, e2.lam) and int(e2.step) == 4
    assert float(e1.gamma) != 1.0  # γ moved
    for a, b in zip(list(g1.parameters()) + list(e1.T_prime.parameters()),
                    list(g2.parameters()) + list(e2.T_prime.parameters())):
        assert torch.equal(a, b)


def test_transfer_error_is_zero_for_a_perfect_decoder_and_counts_pixels():
    class Oracle:
        """Guide/model pair that encodes the images themselves: transfer returns x2 exactly."""
        def encode(self, x_pose, x_app):
            return x_pose, x_app

        def decode(self, pose, app):
            return pose
    x1, x2 = torch.rand(3, 3, 4, 4), torch.rand(3, 3, 4, 4)
    assert torch.equal(transfer_errors(Oracle(), Oracle(), x1, x2, x2), torch.zeros(3))
    err = transfer_errors(Oracle(), Oracle(), x1, x2, x2 + 0.5)
    assert torch.allclose(err, torch.full((3,), 0.25))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="variant"):
        RobustELBO(2, 2, variant="ours")
    with pytest.raises(ValueError, match="mu"):
        RobustELBO(2, 2, mu=0.0)


def test_fitted_mi_matches_closed_form_on_held_out_gaussians():
    """A fresh classifier on fixed codes: I ≈ −d/2 log(1 − ρ²) for correlated, ≈ 0 for independent."""
    gen = torch.Generator().manual_seed(3)

    def draw(n, rho, d=2):
        pi = torch.randn(n, d, generator=gen)
        return pi, rho * pi + math.sqrt(1 - rho ** 2) * torch.randn(n, d, generator=gen)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        est = fitted_mi(*draw(4000, 0.8), *draw(10_000, 0.8), steps=400, hidden=(32, 32), lr=1e-2,
                        generator=gen)
        zero = fitted_mi(*draw(4000, 0.0), *draw(10_000, 0.0), steps=400, hidden=(32, 32), lr=1e-2,
                         generator=gen)
    finally:
        torch.set_num_threads(threads)
    assert float(est) == pytest.approx(-math.log(1 - 0.8 ** 2), rel=0.15)
    assert abs(float(zero)) < 0.05


def test_product_of_marginals_rows_are_batch_rolls_without_fixed_points():
    a = torch.arange(5.0)[:, None] * torch.ones(5, 2)
    neg = product_of_marginals(a, negatives=4)
    for k in range(1, 5):
        assert torch.equal(neg[k - 1], a.roll(k, dims=0))  # item i paired with item i − k
    assert not (neg == a[None]).all(-1).any()
    with pytest.raises(ValueError, match="negatives"):
        product_of_marginals(a, negatives=5)


def test_classifier_loss_with_negatives_is_the_mean_over_rolled_batches():
    """Eqs. (10)-(11) with the marginal expectation over K shuffles, against a loop over the shifts."""
    torch.manual_seed(0)
    T = MIClassifier(3, 2, hidden=(8,))
    pi, alpha = torch.randn(7, 3), torch.randn(7, 2)
    joint = -torch.nn.functional.logsigmoid(T(pi, alpha)).mean()
    marg = torch.stack([-torch.log1p(-torch.sigmoid(T(pi, alpha.roll(k, 0)))).mean()
                        for k in (1, 2, 3)]).mean()
    assert classifier_loss(T, pi, alpha, negatives=3).item() == pytest.approx((joint + marg).item(), rel=1e-5)


def test_appearance_usage_is_equal_when_the_decoder_ignores_alpha_and_counts_the_swap_otherwise():
    class Guide:
        def encode(self, x_pose, x_app):
            return x_pose, x_app

    class IgnoresAlpha:
        def decode(self, pose, app):
            return pose

    class OnlyAlpha:
        def decode(self, pose, app):
            return app
    x2 = torch.rand(4, 1, 2, 2)
    x1 = torch.arange(4.0).reshape(4, 1, 1, 1).expand(4, 1, 2, 2)
    recon, swapped = appearance_usage(IgnoresAlpha(), Guide(), x1, x2)
    assert recon == 0 and swapped == 0
    recon, swapped = appearance_usage(OnlyAlpha(), Guide(), x1, x1)
    # swapped α is x1 of item i − 1: constant images differing by 1 (3 items) or 3 (item 0 gets item 3)
    assert recon == 0 and swapped.item() == pytest.approx((3 * 1 + 9) / 4)


def test_conv32_nets_pool_appearance_and_reconstruct_a_batch():
    torch.manual_seed(0)
    enc = Conv32Encoder(3, 4, pool=True)
    x = torch.rand(2, 3, 32, 32)
    loc, _ = enc(x)
    h = enc.conv(x).mean((-2, -1))  # pooled features computed by hand
    assert torch.allclose(loc, enc.head(enc.dense(h))[0], atol=1e-6)
    # the pair trains: a few Adam steps on one batch lower the reconstruction error
    model, guide = robust_pair((2, 3, 32, 32), net="auto", pose_dim=2, appearance_dim=2)
    assert isinstance(model.decoder, Conv32Decoder) and guide.appearance_encoder.encoder.pool
    pairs = torch.rand(4, 2, 3, 32, 32)
    opt = torch.optim.Adam(list(model.parameters()) + list(guide.parameters()), lr=2e-3)
    errs = []
    for _ in range(30):
        pose, app = guide.encode(pairs[:, 1], pairs[:, 0])
        err = (model.decode_mean(pose, app) - pairs[:, 1]).square().mean()
        opt.zero_grad()
        err.backward()
        opt.step()
        errs.append(err.item())
    assert errs[-1] < 0.5 * errs[0]
    with pytest.raises(ConfigError, match="conv32"):
        robust_pair((2, 3, 16, 16), net="conv32")


def test_classifier_loss_is_the_shared_density_ratio_loss():
    # T, T′ train on inference.penalties.density_ratio_loss: joint draws are p, rolled batches q.
    from inference.penalties import density_ratio_loss

    torch.manual_seed(1)
    T = MIClassifier(2, 3, hidden=(8,))
    pi, alpha = torch.randn(6, 2), torch.randn(6, 3)
    marginal = T(pi.expand(2, 6, 2), product_of_marginals(alpha, 2))
    assert torch.equal(classifier_loss(T, pi, alpha, 2), density_ratio_loss(T(pi, alpha), marginal))


def test_draw_codes_in_chunks_is_one_draw_per_chunk():
    """π ~ q(π | x2) (seeded draws, chunk by chunk), α = E_α(x1): what mi_estimates and the fresh T see."""
    torch.manual_seed(0)
    model, guide = robust_pair((2, 1, 8, 8), pose_dim=2, appearance_dim=3, net="mlp")
    x1, x2 = torch.rand(5, 1, 8, 8), torch.rand(5, 1, 8, 8)
    torch.manual_seed(4)
    pose, app = R.draw_codes(guide, x1, x2, chunk=3)
    torch.manual_seed(4)
    with torch.no_grad():
        draws = [loc + scale * torch.randn_like(loc) for loc, scale in map(guide.pose_encoder, (x2[:3], x2[3:]))]
        assert torch.allclose(pose, torch.cat(draws), atol=1e-6)
        assert torch.allclose(app, guide.appearance_encoder(x1), atol=1e-6)


def test_ablation_settings_refuse_unknown_keys_and_mismatched_nets():
    assert R.ablation_settings(True, steps=3, lr=None)["steps"] == 3
    assert R.ablation_settings(True)["lr"] == R.QUICK["lr"]
    with pytest.raises(TypeError, match="stepz"):
        R.ablation_settings(True, stepz=3)
    with pytest.raises(ConfigError, match="conv64 needs --resolution 64"):
        R.ablation_settings(True, net="conv64")


ROOT = Path(__file__).resolve().parents[1]


def test_robust_sprites_script_runs_two_variants_and_writes_its_table(tmp_path):
    out = tmp_path / "robust"
    main = runpy.run_path(str(ROOT / "scripts" / "robust_sprites.py"))["main"]
    main(["--quick", "--steps", "2", "--batch-size", "8", "--warmup-steps", "1", "--variants", "full,beta_vae",
          "--triplets", "12", "--eval-pairs", "16", "--fresh-pairs", "32", "--fresh-steps", "2", "--log-every", "1",
          "--device", "cpu", "--out", str(out)])
    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["full", "beta_vae"]
    for v, r in results.items():
        assert all(math.isfinite(r[k]) for k in ("transfer_median", "recon_mse", "recon_mse_alpha_swapped", "I_T",
                                                 "I_T_prime", "I_fresh", "gamma", "lambda"))
        assert (out / f"transfer_{v}.png").is_file() and (out / v / "checkpoint.pt").is_file()
    assert results["beta_vae"]["gamma"] == R.BETA  # the β-VAE variant: γ fixed at β
    md = (out / "results.md").read_text()
    assert "| variant | transfer MSE median [q1, q3] |" in md and "| e) full |" in md and "copy the pose image" in md
    for png in ("transfer_box.png", "trajectories.png", "transfer_truth.png"):
        assert (out / png).is_file()
