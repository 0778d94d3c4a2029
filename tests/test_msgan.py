"""MS-GAN (MS-VAE appendix E): the discriminator's optimum is the log density ratio of eq. (3), the
generator loss is eq. (4), and a GAN step updates G and D with separate optimisers."""

import json
import math
import runpy
from pathlib import Path

import pytest
import torch
from pyro import poutine

from guides.nets import MLPEncoder
from guides.vae import VAEGuide
from inference.errors import ConfigError
from guides.msgan import MSGANPosterior
from inference.papers.msgan import TABLE_COLUMNS, MSGANTrainer, generator_loss, latent_nll, train
from inference.papers.msvae import conditioning_codes, freeze
from inference.penalties import density_ratio_loss as discriminator_loss
from ppl_data import TensorData
from ppl_models.msgan import MSGANModel, PairDiscriminator
from ppl_models.msvae import ConditionalDecoder
from ppl_models.nets import MLPDecoder
from ppl_models.vae import VAEModel

SHAPE = (1, 8, 8)


def test_discriminator_optimum_is_the_log_density_ratio():
    # §E.2: the logistic discriminator's logit → log p_real(x) / p_fake(x); two Gaussians, exact quadratic D
    g = torch.Generator().manual_seed(0)
    real = 0.5 + 1.0 * torch.randn(200_000, generator=g)
    fake = -0.5 + 1.5 * torch.randn(200_000, generator=g)
    w = torch.zeros(3, requires_grad=True)
    feats = lambda x: torch.stack([x * x, x, torch.ones_like(x)], -1)  # noqa: E731
    opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = discriminator_loss(feats(real) @ w, feats(fake) @ w)
        loss.backward()
        return loss

    opt.step(closure)
    xs = torch.linspace(-1.5, 1.5, 7)
    log_n = lambda x, m, s: -0.5 * ((x - m) / s) ** 2 - math.log(s * math.sqrt(2 * math.pi))  # noqa: E731
    want = log_n(xs, 0.5, 1.0) - log_n(xs, -0.5, 1.5)
    assert torch.allclose(feats(xs) @ w.detach(), want, atol=0.05)


def test_loss_values():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 3.0])
    sig = torch.sigmoid
    want = -(sig(real).log().mean() + (1 - sig(fake)).log().mean())
    assert torch.allclose(discriminator_loss(real, fake), want)
    assert torch.allclose(generator_loss(fake), torch.tensor(-1.75))  # E[−D], eq. 4
    loc, scale, z = torch.zeros(2, 1), torch.full((2, 1), 2.0), torch.tensor([[1.0], [-3.0]])
    want = -(-0.5 * (z / 2) ** 2 - math.log(2 * math.sqrt(2 * math.pi))).mean()
    assert torch.allclose(latent_nll(loc, scale, z), want)


def make(seed=0):
    torch.manual_seed(seed)
    c_dim, z_dim = 2, 2
    stage_one = VAEModel(MLPDecoder(c_dim, SHAPE, (16,)), c_dim)
    stage_one_guide = VAEGuide(MLPEncoder(SHAPE, c_dim, (16,)))
    freeze(stage_one, stage_one_guide)
    model = MSGANModel(stage_one, ConditionalDecoder(SHAPE, z_dim, hidden=4, blocks=1), z_dim)
    disc = PairDiscriminator(SHAPE, hidden=4)
    post = MSGANPosterior(stage_one_guide, MLPEncoder(SHAPE, z_dim, (16,)), model)
    return model, disc, post, MSGANTrainer(model, disc, post, lr=1e-2)


def snapshot(*modules):
    return [{k: v.clone() for k, v in m.state_dict().items()} for m in modules]


def changed(before, *modules):
    return [any(not torch.equal(v, b[k]) for k, v in m.state_dict().items()) for b, m in zip(before, modules)]


def test_each_optimiser_holds_only_its_own_parameters():
    model, disc, post, tr = make()
    ids = lambda opt: {id(p) for group in opt.param_groups for p in group["params"]}  # noqa: E731
    assert ids(tr.d_opt) == {id(p) for p in disc.parameters()}
    assert ids(tr.g_opt) == {id(p) for p in [*model.generator.parameters(), *post.encoder.parameters()]}
    assert not ids(tr.d_opt) & ids(tr.g_opt)
    assert not ids(tr.g_opt) & {id(p) for p in [*model.stage_one.parameters(), *post.stage_one.parameters()]}


def test_gan_step_updates_generator_and_discriminator_separately():
    model, disc, post, tr = make()
    x = torch.rand(8, *SHAPE)
    y, z = tr.conditioning(x), torch.randn(8, 2)
    mods = (disc, model.generator, post.encoder, model.stage_one, post.stage_one)
    before = snapshot(*mods)
    tr.discriminator_step(x, y, z)
    assert changed(before, *mods) == [True, False, False, False, False]
    before = snapshot(*mods)
    out = tr.generator_step(y, z)
    assert changed(before, *mods) == [False, True, True, False, False]
    assert all(p.grad is None for p in disc.parameters())  # G's backward left no gradient on D
    assert set(out) == {"g_adv", "z_nll"}


def test_generator_step_lowers_its_own_loss_against_a_fixed_discriminator():
    model, disc, post, tr = make(1)
    x = torch.rand(16, *SHAPE)
    y, z = tr.conditioning(x), torch.randn(16, 2)
    first = float(generator_loss(disc(model.image(y, z), y)).detach())
    for _ in range(5):
        tr.generator_step(y, z)
    assert float(generator_loss(disc(model.image(y, z), y)).detach()) < first


def test_model_trace_and_conditioning_codes():
    model, disc, post, tr = make()
    t = poutine.trace(model).get_trace(4)
    c, y, z, x = (t.nodes[k]["value"] for k in ("c", "y", "z", "x"))
    assert torch.allclose(y, model.first_stage_mean(c))
    assert torch.allclose(x, torch.sigmoid(model.generator(y, z)))
    xb = torch.rand(6, *SHAPE)
    codes = conditioning_codes(model, post, xb, torch.Generator().manual_seed(0))
    loc = post.first_posterior(xb)[0]
    want_cy = post.first_posterior(model.first_stage_mean(loc))[0]  # C_Y = E(y), §4
    assert torch.allclose(torch.as_tensor(codes["c_y"]).float(), want_cy, atol=1e-6)
    zq = post.posterior(xb)["z"][0]
    want_cx = post.first_posterior(model.image(model.first_stage_mean(loc), zq))[0]  # C_X = E(G(y, z))
    assert torch.allclose(torch.as_tensor(codes["c_x"]).float(), want_cx, atol=1e-6)


def test_train_logs_window_means_and_rejects_bad_settings():
    model, disc, post, tr = make()
    data = TensorData(torch.rand(20, *SHAPE))
    log = train(tr, data, steps=3, batch_size=4, log_every=2)
    assert [r["step"] for r in log] == [2, 3] and set(log[0]) == {"step", "d_loss", "g_adv", "z_nll"}
    with pytest.raises(ConfigError, match="steps"):
        train(tr, data, steps=0)
    with pytest.raises(ValueError, match="AdaIN"):
        MSGANModel(model.stage_one, ConditionalDecoder(SHAPE, 2, inject="concat", hidden=4, blocks=1), 2)


# -- the experiment (scripts/msgan.py -> inference.papers.msgan.run_experiment) ----------------------
ROOT = Path(__file__).resolve().parents[1]


def test_experiment_script_tabulates_msgan_against_msvae_at_a_tiny_budget(tmp_path):
    from inference import fid

    path = fid.cache_dir() / f"feature_net-v{fid.FEATURE_NET_VERSION}-{fid.FEATURE_STEPS}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(fid.FeatureNet().state_dict(), path)  # FID computed with an untrained net, no training
    out = tmp_path / "msgan"
    main = runpy.run_path(str(ROOT / "scripts" / "msgan.py"))["main"]
    main(["--quick", "--steps1", "2", "--steps2", "2", "--gan-steps", "3", "--n-eval", "40", "--out", str(out)])
    for name in ("results.json", "table.md", "samples.png"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    assert list(rows) == ["betatc", "msvae", "msgan"]
    for name, row in rows.items():
        assert {"fid_recon", "fid_sample", "l1", "l2"} <= set(row)
        assert ({"M1", "M2", "M3", "M4"} <= set(row)) == (name != "betatc")
        assert all(math.isfinite(v) for v in row.values())
    assert [r["step"] for r in results["gan_log"]] == [1, 2, 3]
    assert all(math.isfinite(v) for r in results["gan_log"] for v in r.values())
    lines = (out / "table.md").read_text().splitlines()
    assert lines[2] == "| model | " + " | ".join(TABLE_COLUMNS) + " |"
    assert [line.split(" | ")[0] for line in lines[4:]] == ["| betatc", "| msvae", "| msgan"]
