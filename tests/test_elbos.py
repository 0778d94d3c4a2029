"""The regularised ELBOs: each objective's value against its terms recomputed independently."""

import json
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

import ppl_data
from inference import build, fit, resolve_config
from inference.elbo import TermsELBO, plate_info
from inference.elbos import (BetaELBO, BetaTCELBO, CapacityELBO, DIPELBO, FactorELBO, InfoELBO,
                             permute_dims)
from ppl_models.nets import mlp
from inference.penalties import (capacity_schedule, covariance, dip_covariance_penalty, mmd,
                                 total_correlation)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets (tests/conftest.py)


class OwnPair(nn.Module):
    """A researcher's pair written without any of our code: latent site "h" in a plate "items"."""

    def __init__(self, x_dim=4, h_dim=3, n=200):
        super().__init__()
        self.n, self.h_dim = n, h_dim
        self.dec = nn.Linear(h_dim, x_dim)
        self.enc = nn.Linear(x_dim, 2 * h_dim)

    def model(self, x, idx):
        pyro.module("dec", self.dec)
        with pyro.plate("items", self.n, subsample=idx):
            h = pyro.sample("h", dist.Normal(torch.zeros(len(x), self.h_dim), 1.0).to_event(1))
            pyro.sample("obs", dist.Normal(self.dec(h), 0.5).to_event(1), obs=x)

    def guide(self, x, idx):
        pyro.module("enc", self.enc)
        loc, raw = self.enc(x).chunk(2, -1)
        with pyro.plate("items", self.n, subsample=idx):
            pyro.sample("h", dist.Normal(loc, nn.functional.softplus(raw) + 1e-3).to_event(1))


def _traces(elbo, pair, x, idx):
    model_trace, guide_trace = elbo._get_trace(pair.model, pair.guide, (x, idx), {})
    return model_trace, guide_trace


def _data(n=200, x_dim=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, x_dim, generator=g)
    x[:, 1] += 2 * x[:, 0]
    return x


def _terms(elbo, pair, x, idx, seed=0):
    pyro.set_rng_seed(seed)
    elbo.loss(pair.model, pair.guide, x, idx)
    return {k: v.item() for k, v in elbo.terms.items()}


def test_beta_scales_latent_site_in_model_and_guide():
    pair, x = OwnPair(), _data()
    idx = torch.arange(32)
    elbo = BetaELBO(4.0)
    model_trace, guide_trace = _traces(elbo, pair, x[idx], idx)
    for trace in (model_trace, guide_trace):
        assert trace.nodes["h"]["scale"] == pytest.approx(4.0 * 200 / 32)   # β · N/B
    assert model_trace.nodes["obs"]["scale"] == pytest.approx(200 / 32)       # likelihood untouched
    t = _terms(elbo, pair, x[idx], idx)
    assert t["loss"] == pytest.approx(t["recon"] + 4.0 * t["kl"], rel=1e-5)


def test_capacity_objective_and_schedule():
    pair, x = OwnPair(), _data()
    idx = torch.arange(32)
    elbo = CapacityELBO(gamma=15.0, c_max=25.0, c_stop=4)
    t0 = _terms(elbo, pair, x[idx], idx)
    assert t0["capacity"] == 0.0
    assert t0["loss"] == pytest.approx(t0["recon"] + 15.0 * abs(t0["kl"] - 0.0), rel=1e-5)
    for _ in range(6):  # the schedule advances once per training step (loss_and_grads) ...
        elbo.loss_and_grads(pair.model, pair.guide, x[idx], idx)
    assert elbo.step == 6
    _terms(elbo, pair, x[idx], idx)  # ... and never in an evaluation
    assert elbo.step == 6
    t = _terms(elbo, pair, x[idx], idx)
    assert t["capacity"] == 25.0 == capacity_schedule(6, 25.0, 4)
    assert t["loss"] == pytest.approx(t["recon"] + 15.0 * abs(t["kl"] - 25.0), rel=1e-5)
    resumed = CapacityELBO(c_stop=4)
    resumed.load_state_dict(elbo.state_dict())
    assert resumed.capacity() == 25.0


@pytest.mark.parametrize("estimator", ["mss", "mws"])
def test_betatc_penalty_is_weighted_decomposition(estimator):
    pair, x = OwnPair(), _data()
    idx = torch.arange(40)
    plain = _terms(TermsELBO(), pair, x[idx], idx)
    same = _terms(BetaTCELBO(1.0, 1.0, 1.0, estimator), pair, x[idx], idx)
    assert same["loss"] == pytest.approx(plain["loss"], rel=1e-6)     # α = β = γ = 1 is the ELBO
    elbo = BetaTCELBO(alpha=1.0, beta=6.0, gamma=1.0, estimator=estimator)
    pyro.set_rng_seed(0)
    model_trace, guide_trace = _traces(elbo, pair, x[idx], idx)
    site = guide_trace.nodes["h"]
    z, normal = site["value"], site["fn"].base_dist
    tc = total_correlation(z, normal.loc, normal.scale, 200, estimator)
    extra, logged = elbo.penalty(model_trace, guide_trace, plate_info(site))
    assert extra.item() == pytest.approx(5.0 * tc.item(), rel=1e-5)
    shift = 2 * math.log(200) if estimator == "mws" else 0.0      # logged MWS TC: offset removed
    assert logged["tc"].item() == pytest.approx(tc.item() - shift, rel=1e-5, abs=1e-5)


def test_permute_dims_keeps_marginals_and_breaks_dependence():
    torch.manual_seed(0)
    a = torch.randn(4000)
    z = torch.stack([a, a + 0.1 * torch.randn(4000)], 1)
    p = permute_dims(z)
    assert torch.equal(p.sort(0).values, z.sort(0).values)
    assert torch.corrcoef(z.T)[0, 1] > 0.99 and abs(torch.corrcoef(p.T)[0, 1]) < 0.05


def test_factor_discriminator_architecture_tc_and_own_update():
    elbo = FactorELBO(gamma=1000.0, latent_dim=3)
    linear = [m for m in elbo.discriminator if isinstance(m, nn.Linear)]
    acts = [m for m in elbo.discriminator if isinstance(m, nn.LeakyReLU)]
    assert [m.out_features for m in linear] == [1000] * 5 + [2]          # dpVAE supplement §3
    assert len(acts) == 5 and all(a.negative_slope == 0.2 for a in acts)
    assert elbo.optimizer.defaults["betas"] == (0.5, 0.9) and elbo.optimizer.defaults["lr"] == 1e-4
    pair, x = OwnPair(), _data()
    idx = torch.arange(64)
    pyro.set_rng_seed(1)
    model_trace, guide_trace = _traces(elbo, pair, x[idx], idx)
    z = guide_trace.nodes["h"]["value"]
    extra, logged = elbo.penalty(model_trace, guide_trace, plate_info(guide_trace.nodes["h"]))
    logits = elbo.discriminator(z)
    assert logged["tc"].item() == pytest.approx((logits[:, 0] - logits[:, 1]).mean().item(), rel=1e-5)
    assert extra.item() == pytest.approx(1000.0 * logged["tc"].item(), rel=1e-5)
    vae_before = [p.detach().clone() for p in pair.parameters()]
    d_before = [p.detach().clone() for p in elbo.discriminator.parameters()]
    elbo.step_update(model_trace, guide_trace, plate_info(guide_trace.nodes["h"]))
    assert all(torch.equal(a, b) for a, b in zip(vae_before, pair.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d_before, elbo.discriminator.parameters()))
    assert elbo.terms["discriminator"].item() == pytest.approx(math.log(2), abs=0.05)  # near chance


def test_factor_discriminator_learns_to_spot_dependence():
    torch.manual_seed(0)
    elbo = FactorELBO(discriminator=mlp([2, 64, 64, 2]), lr=3e-3, site="z")
    losses = []
    for _ in range(150):
        a = torch.randn(128)
        z = torch.stack([a, a + 0.1 * torch.randn(128)], 1)
        guide_trace = pyro.poutine.trace(
            lambda: pyro.sample("z", dist.Normal(z, 1e-3).to_event(1))).get_trace()
        elbo.step_update(guide_trace, guide_trace, None)
        losses.append(elbo.terms["discriminator"].item())
    assert sum(losses[-10:]) / 10 < 0.5 * math.log(2)


@pytest.mark.parametrize("kind", ["i", "ii"])
def test_dip_penalty_and_running_covariance(kind):
    pair, x = OwnPair(), _data()
    batches = [torch.arange(32), torch.arange(32, 64)]
    elbo = DIPELBO(kind, lambda_od=2.0, momentum=0.9)
    covs = []
    for idx in batches:
        pyro.set_rng_seed(0)
        model_trace, guide_trace = _traces(elbo, pair, x[idx], idx)
        normal = guide_trace.nodes["h"]["fn"].base_dist
        extra, logged = elbo.penalty(model_trace, guide_trace, plate_info(guide_trace.nodes["h"]))
        cov = covariance(normal.loc)
        if kind == "ii":
            cov = cov + torch.diag(normal.scale.square().mean(0))
        covs.append(cov.detach())
        elbo.step_update(model_trace, guide_trace, plate_info(guide_trace.nodes["h"]))
    lambda_d = 20.0 if kind == "i" else 2.0
    first_alone = DIPELBO(kind, lambda_od=2.0)
    assert first_alone.lambda_d == lambda_d
    running = 0.9 * covs[0] + 0.1 * covs[1]
    assert torch.allclose(elbo.running, running, atol=1e-6)
    off = running - torch.diag(torch.diagonal(running))
    want = 2.0 * off.square().sum() + lambda_d * (torch.diagonal(running) - 1).square().sum()
    assert logged["dip"].item() == pytest.approx(want.item(), rel=1e-5)
    restored = DIPELBO(kind, momentum=0.9)
    restored.load_state_dict(elbo.state_dict())
    assert torch.equal(restored.running, elbo.running)
    # without momentum: the batch penalty of inference.penalties
    plain = DIPELBO(kind, lambda_od=2.0)
    model_trace, guide_trace = _traces(plain, pair, x[batches[0]], batches[0])
    normal = guide_trace.nodes["h"]["fn"].base_dist
    extra, _ = plain.penalty(model_trace, guide_trace, plate_info(guide_trace.nodes["h"]))
    assert extra.item() == pytest.approx(
        dip_covariance_penalty(normal.loc, normal.scale, kind, 2.0).item(), rel=1e-6)


def test_info_objective():
    pair, x = OwnPair(), _data()
    idx = torch.arange(48)
    elbo = InfoELBO(alpha=0.5, lambda_=10.0)
    model_trace, guide_trace = _traces(elbo, pair, x[idx], idx)
    assert guide_trace.nodes["h"]["scale"] == pytest.approx(0.5 * 200 / 48)  # (1 − α) on the KL
    t = _terms(elbo, pair, x[idx], idx)
    assert t["loss"] == pytest.approx(t["recon"] + 0.5 * t["kl"] + 9.5 * t["mmd"], rel=1e-5)
    pyro.set_rng_seed(3)
    model_trace, guide_trace = _traces(elbo, pair, x[idx], idx)
    z = guide_trace.nodes["h"]["value"]
    torch.manual_seed(7)
    _, logged = elbo.penalty(model_trace, guide_trace, plate_info(guide_trace.nodes["h"]))
    torch.manual_seed(7)
    prior_z = torch.randn(48, 3)
    assert logged["mmd"].item() == pytest.approx(mmd(z, prior_z).item(), rel=1e-5)
    with pytest.raises(ValueError, match="alpha must be < 1"):
        InfoELBO(alpha=1.0)


ELBOS = [BetaELBO, CapacityELBO, BetaTCELBO, FactorELBO, DIPELBO, InfoELBO]


@pytest.mark.parametrize("cls", ELBOS, ids=lambda c: c.__name__)
def test_every_elbo_constructs_bare_and_trains_a_foreign_pair(cls):
    torch.manual_seed(0)
    pair, x = OwnPair(), _data()
    elbo = cls()  # paper defaults
    if cls is FactorELBO:  # same objective, a small discriminator to keep the test fast
        assert elbo.discriminator is None and elbo.gamma == 1000.0
        elbo = FactorELBO(discriminator=mlp([3, 64, 64, 2]))
    opt = torch.optim.Adam(pair.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for step in range(30):
        idx = torch.randint(200, (32,), generator=g)
        opt.zero_grad()
        elbo.loss_and_grads(pair.model, pair.guide, x[idx], idx)
        opt.step()
        if step == 0:
            first = elbo.terms["recon"].item()
    assert {"loss", "recon", "kl"} <= set(elbo.terms)
    assert math.isfinite(elbo.terms["loss"].item()) and elbo.terms["recon"].item() < first


def test_factor_exact_resume_through_fit(tmp_path):
    data = ppl_data.digits()

    def run(out, steps, resume=False):
        config = resolve_config("factor", {"latent_dim": 3, "net": "mlp"})
        pyro.set_rng_seed(0)
        model, guide, loss = build(config, data.data_shape, len(data))
        fit(model, guide, loss, data, steps=steps, out_dir=out, batch_size=16, seed=0,
            resume=resume, log_every=1, checkpoint_every=2, device="cpu", config=config)
        return model, guide, loss

    a = run(tmp_path / "a", 4)
    run(tmp_path / "b", 2)
    b = run(tmp_path / "b", 4, resume=True)
    for part_a, part_b in zip(a[:2], b[:2]):
        for (name, pa), pb in zip(part_a.state_dict().items(), part_b.state_dict().values()):
            assert torch.equal(pa, pb), name
    for (name, pa), pb in zip(a[2].discriminator.state_dict().items(),
                              b[2].discriminator.state_dict().values()):
        assert torch.equal(pa, pb), name
    rows = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert {"tc", "discriminator", "recon", "kl"} <= set(rows[-1])


def _aggregate_tc(guide, x):
    """MSS estimate of TC(q(z)) on a large batch, the batch being the whole data set (N = M)."""
    with torch.no_grad():
        loc, scale = guide.encoder(x)
        z = loc + scale * torch.randn_like(loc)
        return total_correlation(z, loc, scale, len(x), "mss").item()


def test_betatc_lowers_aggregate_tc_on_correlated_data():
    # Correlated 2-D Gaussian data, fitted closely (obs_scale 0.05) so the KL's weak pull towards
    # aligned axes leaves the plain VAE's codes correlated after a short run; β-TCVAE (β = 10 on
    # the MSS estimate) removes the dependence directly. Same init, data, batches and budget.
    g = torch.Generator().manual_seed(0)
    chol = torch.linalg.cholesky(torch.tensor([[1.0, 0.9], [0.9, 1.0]]))
    x = torch.randn(1000, 2, generator=g) @ chol.T
    data = ppl_data.TensorData(x)
    tcs = {}
    for name, overrides in (("vae", {}), ("betatc", {"beta": 10.0, "gamma": 1.0})):
        config = resolve_config(name, {"latent_dim": 2, "net": "mlp", "likelihood": "gaussian",
                                       "obs_scale": 0.05, **overrides})
        pyro.set_rng_seed(0)
        model, guide, loss = build(config, data.data_shape, len(data))
        fit(model, guide, loss, data, steps=300, batch_size=256, lr=3e-3, seed=0, device="cpu")
        torch.manual_seed(1)
        tcs[name] = _aggregate_tc(guide, x)
    assert tcs["betatc"] < 0.6 * tcs["vae"], tcs


def test_disentanglement_libs_factor_discriminator_and_its_whole_batch_step():
    """kind="dl": disentanglement_lib's fc_discriminator ([4] Appendix A: six layers of 1000, LeakyReLU
    0.2, 2 logits; TF's init: zero biases) trained on the whole batch's codes against the same codes,
    each dimension permuted across the batch (methods/unsupervised/vae.py). The loss is recomputed by
    hand with the same permutation."""
    from inference.elbos import permute_dims
    from inference.penalties import density_ratio_loss

    elbo = FactorELBO(gamma=40.0, latent_dim=3, kind="dl")
    linear = [m for m in elbo.discriminator if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linear] == [1000] * 6 + [2]
    assert all(torch.count_nonzero(m.bias) == 0 for m in linear)
    with pytest.raises(ValueError, match="one of dpvae, dl, got 'tf'"):
        FactorELBO(latent_dim=3, kind="tf")
    pair, x = OwnPair(), _data()
    idx = torch.arange(64)
    pyro.set_rng_seed(1)
    model_trace, guide_trace = _traces(elbo, pair, x[idx], idx)
    z = guide_trace.nodes["h"]["value"].detach()
    reference = FactorELBO(gamma=40.0, latent_dim=3, kind="dl")
    reference.discriminator.load_state_dict(elbo.discriminator.state_dict())
    torch.manual_seed(7)
    elbo.step_update(model_trace, guide_trace, plate_info(guide_trace.nodes["h"]))
    torch.manual_seed(7)
    fake = permute_dims(z)
    assert sorted(fake[:, 0].tolist()) == sorted(z[:, 0].tolist()) and not torch.equal(fake, z)
    logits = reference.discriminator(torch.cat([z, fake]))  # all 64 against all 64
    expected = 0.5 * density_ratio_loss(logits[:64], logits[64:])
    assert elbo.terms["discriminator"].item() == pytest.approx(expected.item(), rel=1e-6)
