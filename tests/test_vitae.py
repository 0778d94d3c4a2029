"""VITAE model/guides (supplement §1 ELBO), C-VITAE's inverse-warped encoder, the catalog's specs,
the evaluation protocol (inference.papers.vitae) and both experiment scripts at a tiny budget."""

import json
import math
import runpy
from pathlib import Path

import numpy as np

import pyro
import pyro.poutine as poutine
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from guides.vitae import CVITAEGuide, UVITAEGuide
from inference import ConfigError, TermsELBO, build, resolve_config
from inference import metrics as M
from inference.papers import vitae as V
from ppl_models.nets import MLPDecoder
from ppl_models.spatial import AffineTransformer, base_points
from ppl_models.vitae import VITAEModel

SHAPE = (1, 16, 16)


class LinearEncoder(nn.Module):
    """A fixed random linear map x -> (loc, scale): sensitive to every pixel."""

    def __init__(self, d):
        super().__init__()
        self.w = nn.Parameter(torch.randn(math.prod(SHAPE), 2 * d, generator=torch.Generator().manual_seed(3)))

    def forward(self, x):
        loc, raw = (x.flatten(1) @ self.w).chunk(2, -1)
        return loc, F.softplus(raw) + 1e-3


class ThetaIsZ(nn.Module):
    """A perspective decoder that returns z_persp itself as θ (so the true perspective is known)."""

    def forward(self, z):
        return z


def pair(conditional):
    torch.manual_seed(0)
    t = AffineTransformer()
    persp_dec = ThetaIsZ()
    model = VITAEModel(MLPDecoder(2, SHAPE, (8,)), persp_dec, t, persp_dim=6, app_dim=2)
    if conditional:
        guide = CVITAEGuide(LinearEncoder(6), LinearEncoder(2), persp_dec, t)
    else:
        guide = UVITAEGuide(LinearEncoder(6), LinearEncoder(2))
    return model, guide


def smooth_images(n=3, size=48):
    p = base_points((size, size))[0]
    centres = torch.tensor([[0.1, -0.05], [-0.1, 0.08], [0.0, 0.1]])[:n]
    d2 = ((p[None] - centres[:, None]) ** 2).sum(-1)
    return torch.exp(-d2 / (2 * 0.15 ** 2)).reshape(n, 1, size, size)


def test_cvitae_appearance_encoder_is_invariant_to_a_known_warp():
    # C-VITAE (paper Fig. 3): q(z_A | x, z_P) reads T_θ⁻¹[x]; if x = T_θ[x0] and z_P gives θ, it reads x0.
    t = AffineTransformer()
    enc = LinearEncoder(2)
    enc.w = nn.Parameter(torch.randn(48 * 48, 4, generator=torch.Generator().manual_seed(3)))
    guide = CVITAEGuide(LinearEncoder(6), enc, ThetaIsZ(), t)
    x0 = smooth_images()
    theta = torch.tensor([[0.10, -0.15, 0.12, 0.05, -0.10, -0.08]]).expand(3, -1)
    x = t.warp(x0, theta)
    loc_aligned, _ = guide.app_params(x, theta)
    loc_canonical, _ = guide.app_params(x0, t.identity(3))
    loc_plain, _ = enc(x)  # U-VITAE's encoder would read the warped image as it is
    err = (loc_aligned - loc_canonical).abs().max()
    assert err < 0.05 * loc_canonical.abs().max()
    assert (loc_plain - loc_canonical).abs().max() > 10 * err


def test_likelihood_is_bernoulli_of_the_warped_canonical_image():
    # p(x | z_A, z_P) = Bernoulli(T_θ[sigmoid(g_A(z_A))]), computed here with affine_grid directly.
    model, _ = pair(conditional=False)
    z_persp = 0.2 * torch.randn(4, 6)
    z_app = torch.randn(4, 2)
    x = torch.rand(4, *SHAPE).round()
    tr = poutine.trace(poutine.condition(model, {"z_persp": z_persp, "z_app": z_app})).get_trace(x)
    canonical = torch.sigmoid(model.app_decoder(z_app))
    matrix = torch.eye(2, 3) + z_persp.reshape(4, 2, 3)
    grid = F.affine_grid(matrix, (4, 1, 16, 16), align_corners=False)
    mean = F.grid_sample(canonical, grid, align_corners=False).clamp(1e-5, 1 - 1e-5)
    expected = (x * mean.log() + (1 - x) * (1 - mean).log()).flatten(1).sum(1)
    assert torch.allclose(tr.nodes["x"]["fn"].log_prob(x), expected, rtol=1e-4)
    assert torch.allclose(model.decode(torch.cat([z_persp, z_app], -1)), model.decode_parts(z_persp, z_app))


def normal_kl(loc, scale):
    """KL(N(loc, scale²) ‖ N(0, 1)) summed over the last axis."""
    return (0.5 * (scale ** 2 + loc ** 2 - 1) - scale.log()).sum(-1)


@pytest.mark.parametrize("conditional", [False, True])
def test_elbo_terms_match_supplement_eq(conditional):
    # Supplement §1: −ELBO = −log p(x | z_P, z_A) + KL(q_A(· | z_P, x) ‖ p) + KL(q_P ‖ p), one sample.
    model, guide = pair(conditional)
    x = torch.rand(5, *SHAPE).round()
    elbo = TermsELBO()
    pyro.set_rng_seed(1)
    loss = elbo.differentiable_loss(model, guide, x)
    pyro.set_rng_seed(1)
    g = poutine.trace(guide).get_trace(x)
    z_persp, z_app = g.nodes["z_persp"]["value"], g.nodes["z_app"]["value"]
    loc_p, scale_p = guide.persp_encoder(x)
    src = guide.aligned(x, z_persp) if conditional else x  # term 2 at the sampled z_P
    loc_a, scale_a = guide.app_encoder(src)
    m = poutine.trace(poutine.replay(model, trace=g)).get_trace(x)
    log_lik = m.nodes["x"]["fn"].log_prob(x)
    kl_p, kl_a = normal_kl(loc_p, scale_p), normal_kl(loc_a, scale_a)
    assert torch.allclose(elbo.terms["kl_z_app"], kl_a.mean(), rtol=1e-4)
    assert torch.allclose(elbo.terms["kl_z_persp"], kl_p.mean(), rtol=1e-4)
    assert torch.allclose(loss, (-log_lik + kl_p + kl_a).sum(), rtol=1e-4)


def test_cvitae_posterior_conditions_app_on_the_persp_mean():
    _, guide = pair(conditional=True)
    x = torch.rand(3, *SHAPE)
    post = guide.posterior(x)
    loc_p, _ = guide.persp_encoder(x)
    expected = guide.app_encoder(guide.transformer.warp(x, loc_p, inverse=True))
    assert torch.allclose(post["z_app"][0], expected[0]) and torch.allclose(post["z_persp"][0], loc_p)


def test_registered_models_build_and_reject_bad_config():
    cfg = resolve_config("vitae_c", {"transformer": "affine"})
    assert (cfg["persp_dim"], cfg["app_dim"]) == (2, 2)  # supplement Table 1: d = 2 per group
    model, guide, _ = build(cfg, (1, 16, 16), 100)
    assert isinstance(guide, CVITAEGuide) and guide.persp_decoder is model.persp_decoder
    z = model.sample_prior(3)
    assert torch.allclose(model.decode(z), model.decode_parts(z[:, :2], z[:, 2:]))
    # The perspective decoder starts at θ = 0: the identity transform, whatever z_persp is.
    assert torch.allclose(model.decode(z), model.canonical(z[:, 2:]), atol=1e-6)
    with pytest.raises(ConfigError, match="unknown transformer 'rigid'"):
        build(resolve_config("vitae_u", {"transformer": "rigid"}), (1, 16, 16), 100)
    with pytest.raises(ConfigError, match=r"\(C, H, W\)"):
        build(resolve_config("vitae_u"), (2,), 100)
    with pytest.raises(ConfigError, match="cpab_tessellation"):
        build(resolve_config("vitae_u", {"transformer": "cpab", "cpab_tessellation": "2"}), (1, 8, 8), 10)


def test_vitae_encoder_head_is_a_variance_and_gaussian_decoder_variance_is_0_1():
    # Supplement Table 1: σ²_encoder = softplus(.), so scale = √softplus; §2: σ²_decoder = 0.1.
    cfg = resolve_config("vitae_c", {"transformer": "affine", "likelihood": "gaussian"})
    model, guide, _ = build(cfg, SHAPE, 100)
    x = torch.rand(3, *SHAPE, generator=torch.Generator().manual_seed(2))
    for enc in (guide.persp_encoder, guide.app_encoder):
        lin = enc.head.linear
        out = enc.body(x.flatten(1)) @ lin.weight.T + lin.bias
        raw_loc, raw = out[:, : lin.out_features // 2], out[:, lin.out_features // 2:]
        variance = torch.log1p(torch.exp(raw))  # softplus by hand
        loc, scale = enc(x)
        assert torch.allclose(loc, raw_loc, atol=1e-6)
        assert torch.allclose(scale, variance.sqrt(), rtol=1e-5)
    z_persp, z_app = torch.randn(3, 2), torch.randn(3, 2)
    tr = poutine.trace(poutine.condition(model, {"z_persp": z_persp, "z_app": z_app})).get_trace(x)
    mean = model.decode_parts(z_persp, z_app)
    expected = (-0.5 * (x - mean) ** 2 / 0.1 - 0.5 * math.log(2 * math.pi * 0.1)).flatten(1).sum(1)
    assert torch.allclose(tr.nodes["x"]["fn"].log_prob(x), expected, rtol=1e-5)
    # The other models keep their own heads and scale: softplus is a standard deviation there.
    vae_cfg = resolve_config("vae", {"net": "mlp", "likelihood": "gaussian"})
    vae_model, vae_guide, _ = build(vae_cfg, SHAPE, 100)
    loc, scale = vae_guide.encoder(x)
    lin = vae_guide.encoder.head.linear
    raw = (vae_guide.encoder.body(x.flatten(1)) @ lin.weight.T + lin.bias)[:, lin.out_features // 2:]
    assert torch.allclose(scale, torch.log1p(torch.exp(raw)) + 1e-4, rtol=1e-5)
    assert vae_model.likelihood.scale == 0.1


def test_specs_are_listed_not_registered():
    # The paper module lists its objectives; the catalog collects them (no import-time registration).
    from inference.catalog import MODELS

    assert [spec.name for spec in V.SPECS] == ["vitae_u", "vitae_c"]
    assert all(MODELS[spec.name] is spec for spec in V.SPECS)


class FactorGuide(nn.Module):
    """posterior(x) = hand-made codes of the stored images: z_persp = (pos_x + noise, noise), z_app = shape."""

    def __init__(self, images, codes):
        super().__init__()
        self.images, self.codes = images.flatten(1), codes

    def posterior(self, x):
        c = self.codes[torch.cdist(x.flatten(1), self.images).argmin(1)]
        return {"z_persp": (c[:, :2], torch.ones_like(c[:, :2])), "z_app": (c[:, 2:], torch.ones_like(c[:, 2:]))}


def test_disentanglement_uses_inference_metrics_and_splits_the_groups():
    # Codes with known structure: the best z_persp dimension is pos_x, z_app is shape. The numbers are
    # inference.metrics' (disentanglement_lib's estimator), so mig_mean is what evaluate.py reports.
    import ppl_data

    sim, f = _sprites(300, seed=1)
    f[:, 3] = torch.randint(0, 32, (300,), generator=torch.Generator().manual_seed(2))
    x = sim.images(f)
    data = ppl_data.TensorData((x * 255).to(torch.uint8), f, sim.factor_names, sim.factor_sizes)
    gen = torch.Generator().manual_seed(3)
    codes = torch.stack([f[:, 3] + 0.1 * torch.randn(300, generator=gen), torch.randn(300, generator=gen),
                         f[:, 0].float()], 1)
    res = V.disentanglement(FactorGuide(x, codes), data, 300, "cpu")
    used_codes, used_factors = V.codes_and_factors(FactorGuide(x, codes), data, 300, "cpu")
    assert set(used_codes) == {"z_persp", "z_app"} and used_factors.shape == (300, 5)
    names = list(sim.factor_names)
    mi = M.mutual_info_matrix(torch.cat([used_codes["z_persp"], used_codes["z_app"]], 1), used_factors)
    h = M.discrete_entropy(used_factors)
    assert res["nmi"]["z_app"]["shape"] == pytest.approx(1.0)  # z_app is the shape itself
    assert res["nmi"]["z_persp"]["pos_x"] == pytest.approx(mi[:2, 3].max() / h[3]) and res["nmi"]["z_persp"]["pos_x"] > 0.5
    assert res["nmi_matrix"]["z_persp"][1][3] == pytest.approx(mi[1, 3] / h[3], abs=1e-4)
    gaps, _ = M.mig_terms(torch.cat([used_codes["z_persp"], used_codes["z_app"]], 1), used_factors)
    assert [res["mig"][n] for n in names] == pytest.approx(list(gaps))
    assert res["mig_mean"] == pytest.approx(M.mig(torch.cat(list(used_codes.values()), 1), used_factors))
    assert res["mig_appearance"] == pytest.approx(res["mig"]["shape"])
    persp = [res["mig"][n] for n in V.PERSPECTIVE_FACTORS]
    assert res["mig_perspective"] == pytest.approx(float(np.mean(persp)))


# -- the swap measurement on hand-made answers ---------------------------------------------------
def _sprites(n=40, seed=0):
    """DSprites at 32 px, large sprites (scale index 5) so that shapes are legible; all 3 shapes."""
    import ppl_data

    sim = ppl_data.DSprites(resolution=32)
    gen = torch.Generator().manual_seed(seed)
    f = sim.sample_factors(n, gen)
    f[:, 0] = torch.arange(n) % 3
    f[:, 1] = 5
    f[:, 2] = torch.randint(0, 10, (n,), generator=gen)  # orientations up to 90°
    return sim, f


def test_centroids_and_shape_reader_against_direct_computation():
    sim, f = _sprites()
    x = sim.images(f)
    # Centroid: the mean (col, row) of the lit pixels of a binary image, by a plain loop.
    for i in range(0, len(x), 7):
        rows, cols = torch.nonzero(x[i, 0], as_tuple=True)
        assert torch.allclose(V.centroids(x[i:i + 1])[0], torch.stack([cols, rows]).double().mean(1).float(),
                              atol=1e-4)
    # Centring moves each centroid to the middle pixel (15.5, 15.5) of a 32 px image.
    assert torch.allclose(V.centroids(V.centred(x)), torch.full((len(x), 2), 15.5), atol=0.3)
    read = V.ShapeReader(sim, "cpu")
    assert (read(x) == f[:, 0]).all()  # legible sprites: the reader is exact


class OracleGuide(nn.Module):
    """Knows the factors of every stored image: z_persp = pose factors, z_app = shape (or swapped roles)."""

    def __init__(self, images, factors, roles_swapped=False):
        super().__init__()
        self.images, self.factors, self.roles_swapped = images.flatten(1), factors.float(), roles_swapped

    def posterior(self, x):
        f = self.factors[torch.cdist(x.flatten(1), self.images).argmin(1)]
        pose, shape = f[:, 1:], f[:, :1]
        if self.roles_swapped:  # a failed split: the appearance code carries the pose and vice versa
            pose, shape = shape, pose
        return {"z_persp": (pose, torch.ones_like(pose)), "z_app": (shape, torch.ones_like(shape))}


class OracleModel(nn.Module):
    """decode_parts renders the sprite whose pose / shape the codes name."""

    def __init__(self, sim, roles_swapped=False):
        super().__init__()
        self.sim, self.roles_swapped = sim, roles_swapped

    def decode_parts(self, z_persp, z_app):
        if self.roles_swapped:
            z_persp, z_app = z_app, z_persp
        return self.sim.images(torch.cat([z_app, z_persp], 1).round().long())


@pytest.mark.parametrize("roles_swapped", [False, True])
def test_swap_test_on_an_oracle_split(roles_swapped):
    # Perfect split: the output is x1's shape in x2's pose -> at x2 and x1's shape for every pair.
    # A model that puts pose in z_app and shape in z_persp gives x1's pose with x2's shape instead.
    import ppl_data

    sim, f = _sprites(200)
    x = sim.images(f)
    data = ppl_data.TensorData((x * 255).to(torch.uint8), f, sim.factor_names, sim.factor_sizes)
    guide, model = OracleGuide(x, f, roles_swapped), OracleModel(sim, roles_swapped)
    res = V.swap_test(model, guide, data, 100, "cpu", sim=sim)
    xs, fs = next(V.eval_batches(data, 200, 200, "cpu"))
    c1, c2 = V.centroids(xs[:100]), V.centroids(xs[100:])
    moved = (c1 - c2).norm(dim=1) > 0.5  # pairs whose donors sit at different places
    differ = fs[:100, 0] != fs[100:, 0]
    assert res["shape_pairs"] == int(differ.sum()) > 50
    # The reader errs on a sprite now and then (a rotated square read as a heart): ≤ 3 % here.
    assert res["data_shape_read"] >= 0.97 and res["recon_shape_kept"] >= 0.97
    kept, leaked = (res["shape_kept"], res["shape_from_pose_donor"])[::-1 if roles_swapped else 1]
    assert kept >= 0.97 and leaked <= 0.03
    if not roles_swapped:
        assert res["closer_to_pose_donor"] == pytest.approx(float(moved.float().mean()), abs=0.03)
        assert res["centroid_px_to_pose_donor"] < 1.0 < res["centroid_px_to_app_donor"]
    else:
        assert res["closer_to_pose_donor"] == 0.0
        assert res["centroid_px_to_app_donor"] < 1.0 < res["centroid_px_to_pose_donor"]


@pytest.mark.parametrize("key", ["vitae_u", "vitae_c"])
def test_posterior_order_is_the_decode_concatenation(key):
    # Generic pictures/evaluation decode torch.cat of the posterior locs in guide.posterior order.
    model, guide, _ = build(resolve_config(key, {"persp_dim": 3, "app_dim": 3}), (1, 16, 16), 100)
    with torch.no_grad():  # move θ off the identity so that the two parts cannot be confused
        model.persp_decoder.net[-1].weight.normal_(0, 0.3)
    post = guide.posterior(torch.rand(5, 1, 16, 16))
    assert list(post) == ["z_persp", "z_app"]
    z = torch.cat([loc for loc, _ in post.values()], -1)
    assert z.shape == (5, 6)
    assert torch.allclose(model.decode(z), model.decode_parts(post["z_persp"][0], post["z_app"][0]))
    assert not torch.allclose(model.decode(z), model.decode(z.roll(3, dims=1)), atol=1e-3)  # order matters


def test_canonical_window_is_zero_padded_at_the_centre():
    # canonical_fraction f: the appearance is drawn on the central round(f·side) pixels (same parity).
    from ppl_models.vitae import canonical_shape

    assert canonical_shape((1, 32, 32), 0.4) == (1, 12, 12)  # pad round(9.6) = 10 on each side
    assert canonical_shape((3, 28, 20), 1.0) == (3, 28, 20)
    with pytest.raises(ConfigError, match="canonical_fraction"):
        build(resolve_config("vitae_u", {"canonical_fraction": 1.5}), (1, 16, 16), 10)
    model, _, _ = build(resolve_config("vitae_c", {"canonical_fraction": 0.4, "app_dim": 2}), (1, 32, 32), 10)
    z_app = torch.randn(3, 2)
    with torch.no_grad():
        canon = model.canonical(z_app)
        inner = torch.sigmoid(model.app_decoder(z_app))  # (3, 1, 12, 12)
    assert canon.shape == (3, 1, 32, 32)
    assert torch.allclose(canon[..., 10:22, 10:22], inner)
    assert canon.sum() == pytest.approx(inner.sum().item(), rel=1e-5)  # zeros everywhere else


# -- the experiment scripts at a tiny budget ----------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]


def script_main(name):
    """``main`` of ``scripts/<name>.py``: the entry point itself (its logic is inference.papers.vitae)."""
    return runpy.run_path(str(ROOT / "scripts" / f"{name}.py"))["main"]


def test_vitae_mnist_script_trains_three_models_and_writes_its_table(tmp_path):
    out = tmp_path / "vitae"
    script_main("vitae_mnist")(["--quick", "--steps", "2", "--batch-size", "16", "--n-train", "64", "--n-eval", "40",
                                "--transformer", "affine", "--device", "cpu", "--out", str(out)])
    results = json.loads((out / "results.json").read_text())
    assert list(results["models"]) == ["vae", "u_vitae", "c_vitae"]
    for name, r in results["models"].items():
        assert all(math.isfinite(r[k]) for k in ("elbo", "recon", "kl", "mig_mean", "mig_perspective"))
        assert (out / f"recon_{name}.png").is_file() and (out / name / "checkpoint.pt").is_file()
    for name in ("u_vitae", "c_vitae"):
        swap = results["models"][name]["swap"]
        assert swap["pairs"] == 20 and 0 <= swap["closer_to_pose_donor"] <= 1 and 0 <= swap["data_shape_read"] <= 1
        assert (out / f"swap_{name}.png").is_file()
    assert results["settings"]["vitae"]["persp_dim"] == V.SHAPES_VITAE["persp_dim"]
    table = (out / "table.md").read_text()
    assert "| model | test ELBO | recon | KL | train s |" in table and "| c_vitae | MIG |" in table
    assert "Swap test (20 pairs)" in table


def test_vitae_stability_script_tabulates_each_transformer_and_learning_rate(tmp_path):
    out = tmp_path / "stability"
    script_main("vitae_stability")(["--quick", "--steps", "2", "--n-train", "64", "--n-eval", "32",
                                    "--transformers", "affine_diffeo", "--lrs", "1e-3,0.01",
                                    "--device", "cpu", "--out", str(out)])
    results = json.loads((out / "results.json").read_text())["results"]
    assert list(results) == ["affine_diffeo"]
    for rows in results.values():
        assert [r["lr"] for r in rows] == [1e-3, 0.01] and all(math.isfinite(r["elbo"]) for r in rows)
    table = (out / "table.md").read_text().splitlines()
    assert table[0] == "| transformer | λ=0.001 | λ=0.01 |" and table[2].startswith("| affine_diffeo | -")
    assert (out / "stability.png").is_file() and (out / "affine_diffeo_default_lr0.01" / "checkpoint.pt").is_file()
    # the default arm is the literal one: the supplement's equations, the θ head default-initialised
    settings = json.loads((out / "results.json").read_text())["settings"]
    assert settings["arm"] == "literal" and settings["persp_init"] == "default"
    assert all(r["persp_init"] == "default" and isinstance(r["trained"], bool) for r in results["affine_diffeo"])


def test_stability_run_reports_divergence_instead_of_raising(tmp_path, monkeypatch):
    # A run whose loss turns non-finite is a data point of Fig. 1 ("diverged"), not a crash.
    from inference.errors import NonFiniteLossError

    def diverge(*args, **kwargs):
        raise NonFiniteLossError("loss", 7, float("nan"))
    monkeypatch.setattr(V, "fit", diverge)
    train, test, _ = V.load_split(None, 32, 16, 8)
    s = dict(V.STABILITY_QUICK, steps=1, warmup_steps=0)
    row = V.stability_run("affine", 0.1, tmp_path / "run", train, test, s, "cpu", 0)
    assert row["elbo"] is None and row["diverged_at"] == 7
    assert "diverged (step 7)" in V.stability_table({"affine": [row]}, [0.1])
