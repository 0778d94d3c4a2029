"""MS-VAE: AdaIN, the trace's D-separation, frozen stage one, the ablation switches, M1–M4, MLP probes."""

import json
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
from pyro import poutine
from pyro.infer.inspect import get_dependencies
from sklearn.metrics import mutual_info_score
from torch import nn

from inference import TermsELBO, fit
from inference.metrics.conditioning import (conditioning_measures, downstream_table, mlp_accuracy, mlp_fit,
                                            normalised_code_mi)
from inference.metrics.information import discretize
from inference.papers.msvae import (EXPERIMENT_MODELS, QUICK, TABLE_COLUMNS, VARIANTS, big_family_pair,
                                    conditioning_codes, count_parameters, family_member, msvae_pair,
                                    run_experiment, second_stage_loss)
from inference.pictures import traversal_codes
from guides.msvae import MSVAEGuide
from ppl_data import TensorData
from ppl_models.adain import AdaIN, adain, instance_normalise
from ppl_models.likelihoods import GaussianLikelihood
from ppl_models.msvae import MSVAEModel
from ppl_models.priors import StandardNormalPrior

SHAPE = (3, 16, 16)
N = 64


def make(name, c_dim=3, z_dim=2):
    torch.manual_seed(0)
    stage_one = "vae" if VARIANTS[name].order == "zc" else "betatc"
    m1, g1, loss1, _ = family_member(stage_one, {"latent_dim": c_dim}, SHAPE, N)
    model, guide = msvae_pair(m1, g1, name, z_dim, SHAPE, N, hidden=4, blocks=1)
    return model, guide, second_stage_loss(name, loss1)


def images(n=8, seed=0):
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


# -- AdaIN (§3.2) -------------------------------------------------------------------------------
def test_adain_with_unit_scale_and_zero_shift_is_identity_on_normalised_features():
    h = torch.randn(4, 5, 6, 7) * 3 + 2
    flat = h.flatten(2)
    by_hand = (flat - flat.mean(-1, keepdim=True)) / torch.sqrt(flat.var(-1, unbiased=False, keepdim=True) + 1e-5)
    normed = instance_normalise(h)
    assert torch.allclose(normed, by_hand.reshape(h.shape), atol=1e-5)
    ones, zeros = torch.ones(4, 5), torch.zeros(4, 5)
    assert torch.allclose(adain(normed, ones, zeros), normed, atol=1e-4)
    gamma, beta = torch.rand(4, 5) + 0.5, torch.randn(4, 5)
    out = adain(h, gamma, beta)  # γ·normalised + β, channel by channel
    assert torch.allclose(out, gamma[:, :, None, None] * by_hand.reshape(h.shape) + beta[:, :, None, None], atol=1e-4)
    layer = AdaIN(5, style_dim=3)
    nn.init.zeros_(layer.style.weight)
    nn.init.zeros_(layer.style.bias)
    assert torch.allclose(layer(normed, torch.randn(4, 3)), normed, atol=1e-4)


# -- the generative story's graph ---------------------------------------------------------------
def sample_sites(tr):
    return [n for n, s in tr.nodes.items() if s["type"] == "sample" and n != "data"]


def x_log_prob(model, x, data):
    tr = poutine.trace(poutine.condition(model, data=data)).get_trace(x)
    return tr.nodes["x"]["fn"].log_prob(x)


def test_trace_has_the_d_separation_of_fig_2c():
    model, guide, _ = make("msvae")
    x = images(4)
    deps = get_dependencies(model, (x,))["prior_dependencies"]
    assert deps["c"] == {"c": set()} and deps["z"] == {"z": set()}  # c ⟂ z under the prior
    tr = poutine.trace(model).get_trace(x)
    assert sample_sites(tr) == ["c", "y", "z", "x"]
    y = tr.nodes["y"]["value"]
    assert torch.allclose(y, model.stage_one.likelihood.mean(model.stage_one.decoder(tr.nodes["c"]["value"])))
    # x depends on c only through y: with y and z held, any c gives the same p(x | ...).
    z = torch.randn(4, 2)
    a = x_log_prob(model, x, {"c": torch.randn(4, 3), "y": y, "z": z})
    b = x_log_prob(model, x, {"c": torch.randn(4, 3) * 5, "y": y, "z": z})
    assert torch.equal(a, b)
    # ... and it does depend on y and z.
    assert not torch.equal(a, x_log_prob(model, x, {"c": torch.randn(4, 3), "y": y.flip(0), "z": z}))
    assert not torch.equal(a, x_log_prob(model, x, {"c": torch.randn(4, 3), "y": y, "z": z * 3}))


def test_guide_reads_c_from_x_and_z_from_the_residual():
    model, guide, _ = make("msvae")
    x = images(4)
    tr = poutine.trace(guide).get_trace(x)
    c = tr.nodes["c"]["value"]
    loc, _ = guide.stage_one.encoder(x)
    assert torch.allclose(tr.nodes["c"]["fn"].base_dist.loc, loc)
    residual = x - model.first_stage_mean(c)
    assert torch.allclose(tr.nodes["z"]["fn"].base_dist.loc, guide.encoder(residual)[0])


def test_stage_two_leaves_stage_one_untouched():
    model, guide, loss = make("msvae")
    data = TensorData(images(N))
    before = {k: v.clone() for k, v in {**model.stage_one.state_dict(), **guide.stage_one.state_dict()}.items()}
    second = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    fit(model, guide, loss, data, steps=3, batch_size=8, lr=1e-2, device="cpu")
    after = {**model.stage_one.state_dict(), **guide.stage_one.state_dict()}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(not torch.equal(second[k], v) for k, v in model.decoder.state_dict().items())


def stage_one_grads(name):
    model, guide, loss = make(name)
    x = images(8)
    for p in list(model.stage_one.parameters()) + list(guide.stage_one.parameters()):
        p.requires_grad_(True)  # even a frozen stage one would show gradient if the graph reached it
    loss.differentiable_loss(model, guide, x).backward()
    grads = [p.grad for p in list(model.stage_one.parameters()) + list(guide.stage_one.parameters())]
    return sum(0.0 if g is None else float(g.abs().sum()) for g in grads)


def test_end_to_end_switch_lets_gradient_reach_stage_one():
    assert stage_one_grads("msvae") == 0.0
    assert stage_one_grads("msvae_e2e") > 0.0
    assert isinstance(make("msvae")[2], TermsELBO) and make("msvae_e2e")[2].sites == ("c",)


def test_condition_switch_makes_x_read_the_code_directly():
    x = images(4)
    for name, through_y_only in (("msvae", True), ("msvae_c_in", False), ("msvae_c", False)):
        model, _, _ = make(name)
        y = poutine.trace(model).get_trace(x).nodes["y"]["value"]
        z = torch.randn(4, 2)
        a = x_log_prob(model, x, {"c": torch.randn(4, 3), "y": y, "z": z})
        b = x_log_prob(model, x, {"c": torch.randn(4, 3) * 5, "y": y, "z": z})
        assert torch.equal(a, b) == through_y_only, name


def test_inject_switch_z_enters_only_through_adain_or_only_through_the_input():
    x = images(4)
    for name, adain_only in (("msvae_c_in", True), ("msvae_c", False)):
        model, _, _ = make(name)
        for m in model.decoder.modules():  # silence every AdaIN style map
            if isinstance(m, AdaIN) and m.style_dim > 0:
                nn.init.zeros_(m.style.weight)
                nn.init.zeros_(m.style.bias)
        c = torch.randn(4, 3)
        y = model.first_stage_mean(c)
        a = x_log_prob(model, x, {"c": c, "y": y, "z": torch.randn(4, 2)})
        b = x_log_prob(model, x, {"c": c, "y": y, "z": torch.randn(4, 2) * 4})
        assert torch.allclose(a, b) == adain_only, name


def test_order_switch_puts_z_first():
    model, guide, loss = make("msvae_zc")
    x = images(4)
    tr = poutine.trace(model).get_trace(x)
    assert sample_sites(tr) == ["z", "y", "c", "x"]
    deps = get_dependencies(model, (x,))["prior_dependencies"]
    assert deps["c"] == {"c": set()}
    z = tr.nodes["z"]["value"]
    assert torch.allclose(tr.nodes["y"]["value"], model.stage_one.likelihood.mean(model.stage_one.decoder(z)))
    assert loss.sites == ("c",) and set(poutine.trace(guide).get_trace(x).nodes) >= {"z", "c"}


# -- M1–M4 (§4, Appendix G) ----------------------------------------------------------------------
def test_normalised_code_mi_matches_sklearn_per_dimension():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 3))
    b = a + rng.normal(size=(2000, 3)) * np.array([0.1, 1.0, 10.0])
    da, db = discretize(a), discretize(b)
    by_hand = np.mean([mutual_info_score(da[:, i], db[:, i]) / mutual_info_score(da[:, i], da[:, i])
                       for i in range(3)])
    assert normalised_code_mi(a, b) == pytest.approx(by_hand, rel=1e-9)
    assert normalised_code_mi(a, 2 * a + 1) == pytest.approx(1.0)  # an affine copy keeps every bin
    assert normalised_code_mi(a, rng.normal(size=(2000, 3))) < 0.05


class _Linear(nn.Module):
    """x ↦ x·W with a fixed matrix; returns (loc, scale) when ``head``."""

    def __init__(self, weight, head=False):
        super().__init__()
        self.register_buffer("weight", torch.as_tensor(weight, dtype=torch.float32))
        self.head = head

    def forward(self, v):
        out = v @ self.weight
        return (out, torch.ones_like(out)) if self.head else out


class _G(nn.Module):
    condition = "y"

    def __init__(self, uses_y):
        super().__init__()
        self.uses_y = uses_y

    def forward(self, y, z):
        # copies Y (ignoring Z), or writes Z into both coordinates (ignoring Y)
        return y + 0 * z if self.uses_y else torch.cat([z, z], -1)


def constructed_msvae(uses_y):
    """x = (a, a): E reads x₁, stage one decodes c to y = (c, 0), R reads (x − y)₂ = a."""
    stage_one = nn.Module()
    stage_one.prior, stage_one.latent_dim = StandardNormalPrior(1), 1
    stage_one.decoder, stage_one.likelihood = _Linear([[1.0, 0.0]]), GaussianLikelihood()
    stage_one_guide = nn.Module()
    stage_one_guide.encoder = _Linear([[1.0], [0.0]], head=True)
    model = MSVAEModel(stage_one, _G(uses_y), 1, likelihood=GaussianLikelihood())
    guide = MSVAEGuide(stage_one_guide, _Linear([[0.0], [1.0]], head=True), model)
    return model, guide


def test_m1_to_m4_on_constructed_decoders():
    # §4: M1 > M3 ≫ M4 when G conditions on Y; M3 ≈ 0 and M4 high when G uses only Z.
    a = torch.randn(4000, 1)
    x = torch.cat([a, a], 1)
    gen = torch.Generator().manual_seed(0)
    m = conditioning_measures(conditioning_codes(*constructed_msvae(True), x, gen))
    # G copies Y: every reconstruction re-encodes to C_R; a random Y′ carries nothing of x.
    assert m["M1"] == pytest.approx(1) and m["M2"] == pytest.approx(1) and m["M3"] == pytest.approx(1)
    assert m["M4"] < 0.05
    m = conditioning_measures(conditioning_codes(*constructed_msvae(False), x, gen))
    # G uses only Z (which here encodes x): M3 collapses, M4 stays high (§4's warning case).
    assert m["M1"] == pytest.approx(1) and m["M2"] == pytest.approx(1)
    assert m["M3"] < 0.05 and m["M4"] == pytest.approx(1)


class _LinearG(nn.Module):
    """G(u, z) = u·A + z·B: a fixed linear stage two reading ``u`` = Y (or the code when ``condition="code"``)."""

    def __init__(self, a, b, condition="y"):
        super().__init__()
        self.register_buffer("a", torch.as_tensor(a, dtype=torch.float32))
        self.register_buffer("b", torch.as_tensor(b, dtype=torch.float32))
        self.condition = condition

    def forward(self, u, z):
        return u @ self.a + z @ self.b


def linear_msvae(g_a, g_b, condition="y"):
    """Stage one c ↦ y = c·D (D = [[1, 0]]), E(v) = v·W_E, R(r) = r·W_R, all fixed linear maps."""
    stage_one = nn.Module()
    stage_one.prior, stage_one.latent_dim = StandardNormalPrior(1), 1
    stage_one.decoder, stage_one.likelihood = _Linear([[1.0, 0.0]]), GaussianLikelihood()
    stage_one_guide = nn.Module()
    stage_one_guide.encoder = _Linear([[0.5], [2.0]], head=True)
    model = MSVAEModel(stage_one, _LinearG(g_a, g_b, condition), 1, likelihood=GaussianLikelihood(),
                       condition=condition)
    guide = MSVAEGuide(stage_one_guide, _Linear([[1.0], [-1.0]], head=True), model)
    return model, guide


@pytest.mark.parametrize("condition, g_a", [("y", [[1.0, 0.5], [-2.0, 1.0]]), ("code", [[3.0, -1.0]])])
def test_c_y_prime_is_e_of_g_of_noise_in_y_space_and_z_by_hand(condition, g_a):
    # §4: C_Y′ = E(G(ε′, Z)), ε′ ~ N(0, I) in the space of what G reads in Y's place (not a decoded prior code).
    g_b = [[0.7, -0.3]]
    model, guide = linear_msvae(g_a, g_b, condition)
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(1))
    codes = conditioning_codes(model, guide, x, torch.Generator().manual_seed(7))
    w_e, w_r, d = torch.tensor([[0.5], [2.0]]), torch.tensor([[1.0], [-1.0]]), torch.tensor([[1.0, 0.0]])
    a, b = torch.tensor(g_a), torch.tensor(g_b)
    c = x @ w_e                      # posterior mean of c
    z = (x - c @ d) @ w_r            # posterior mean of Z, R read at the residual x − Y
    gen = torch.Generator().manual_seed(7)  # documented draw order: ε, c′, ε′
    torch.randn(5, 1, generator=gen)                               # ε (for C_Z)
    c_prior = torch.randn(5, 1, generator=gen)                     # c′ (the old, decoded-prior measure)
    eps_prime = torch.randn(5, a.shape[0], generator=gen)          # ε′: 2-d like Y, or 1-d like the code
    want = (eps_prime @ a + z @ b) @ w_e                           # E(G(ε′, Z))
    assert np.allclose(codes["c_y_prime"], want.double().numpy(), atol=1e-6)
    u_prior = c_prior @ d if condition == "y" else c_prior        # G's input from the decoded prior code
    old = (u_prior @ a + z @ b) @ w_e                              # E(G(Y(c′), Z)), kept under its own name
    assert np.allclose(codes["c_decoded_prior"], old.double().numpy(), atol=1e-6)
    assert not np.allclose(codes["c_y_prime"], codes["c_decoded_prior"])


def test_m4_differs_from_the_decoded_prior_measure_when_g_reads_off_the_decoders_range():
    # §4: M4 = MI[C_R; E(G(ε′, Z))] with ε′ noise in Y's space; a decoded prior code Y(c′) only spans y₂ = 0.
    # G(y, z)₁ = 10·y₂ + z: decoded Y′ leaves Z (which encodes x) clean, noise ε′ drowns it.
    model, guide = linear_msvae([[0.0, 0.0], [10.0, 0.0]], [[1.0, 0.0]])
    model.stage_one.decoder = _Linear([[0.0, 0.0]])  # y = 0 ⇒ Z's encoder reads x itself
    guide.stage_one.encoder = _Linear([[1.0], [0.0]], head=True)  # E reads the first coordinate
    guide.encoder = _Linear([[1.0], [0.0]], head=True)
    a = torch.randn(4000, 1, generator=torch.Generator().manual_seed(2))
    x = torch.cat([a, torch.zeros_like(a)], 1)
    m = conditioning_measures(conditioning_codes(model, guide, x, torch.Generator().manual_seed(0)))
    assert m["M_decoded_prior"] == pytest.approx(1)  # E(G(Y(c′), Z)) = Z = a: the old "M4" would say 1
    assert m["M4"] < 0.05                             # E(G(ε′, Z)) = 10·ε′₂ + a: almost no information on x


def test_conditioning_measures_report_the_old_measure_only_under_its_own_name():
    # §4: M1–M4 are the paper's four; the decoded-prior measure is extra and optional, never "M4".
    rng = np.random.default_rng(3)
    c_r = rng.normal(size=(5000, 2))
    codes = {k: c_r for k in ("c_r", "c_y", "c_x", "c_z")}
    codes["c_y_prime"], codes["c_decoded_prior"] = rng.normal(size=(5000, 2)), c_r
    m = conditioning_measures(codes)
    assert set(m) == {"M1", "M2", "M3", "M4", "M_decoded_prior"}
    assert m["M4"] < 0.1 and m["M_decoded_prior"] == pytest.approx(1)
    del codes["c_decoded_prior"]
    assert set(conditioning_measures(codes)) == {"M1", "M2", "M3", "M4"}


# -- downstream MLP ----------------------------------------------------------------------------
def test_mlp_probe_reads_a_factor_in_c_and_not_noise():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 600)
    c = labels[:, None] + 0.05 * rng.normal(size=(600, 2))
    z = rng.normal(size=(600, 2))
    assert mlp_accuracy(c[:400], labels[:400], c[400:], labels[400:], hidden=(16,)) > 0.95
    table = downstream_table({"c": c[:400], "z": z[:400]}, {"c": c[400:], "z": z[400:]},
                             labels[:400, None], labels[400:, None], hidden=(16,))
    assert table["C"][0] > 0.95 and table["C+Z"][0] > 0.9 and table["Z"][0] < 0.5


def test_mlp_read_out_records_a_fit_that_stops_unconverged_without_changing_its_accuracy():
    """Issue 24 item 4: no ConvergenceWarning is silenced. The MLP read-out keeps its fixed epoch
    budget, so its accuracy is exactly that of the same scikit-learn pipeline fitted with the warning
    ignored (as before); what changes is that a fit which stopped unconverged is counted and named."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 300)
    c = labels[:, None] + 0.3 * rng.normal(size=(300, 2))
    z = rng.normal(size=(300, 2))
    plain = make_pipeline(StandardScaler(), MLPClassifier((8,), max_iter=2, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        expected = plain.fit(c[:200], labels[:200]).score(c[200:], labels[200:])
    assert mlp_fit(c[:200], labels[:200], c[200:], labels[200:], hidden=(8,), max_iter=2) == (expected, False)
    with pytest.warns(ConvergenceWarning, match="1 of 1 MLP"):
        assert mlp_accuracy(c[:200], labels[:200], c[200:], labels[200:], hidden=(8,), max_iter=2) == expected
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = downstream_table({"c": c[:200], "z": z[:200]}, {"c": c[200:], "z": z[200:]},
                                 labels[:200, None], labels[200:, None], hidden=(8,), max_iter=2)
    said = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert (table.fits, table.unconverged) == (3, 3) and len(said) == 1 and "3 of 3" in str(said[0].message)
    assert table["C"][0] == expected
    # given the epochs it needs, the same fit converges and nothing is said
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = downstream_table({"c": c[:200]}, {"c": c[200:]}, labels[:200, None], labels[200:, None],
                                 hidden=(8,), max_iter=5000)
    assert (table.fits, table.unconverged) == (1, 0)
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]


def test_big_baseline_matches_parameter_count_and_traversal_codes():
    model, guide, _ = make("msvae")
    target = count_parameters(model, guide)
    big, big_guide, _, _ = big_family_pair("betatc", {"latent_dim": 5}, SHAPE, N, target, blocks=1, hidden=4)
    assert abs(count_parameters(big, big_guide) - target) / target < 0.05
    # the matched capacity is dense: its convolutional refiner is no larger than MS-VAE's G ...
    dec = big.decoder
    assert count_parameters(dec.refiner) <= count_parameters(model.decoder) and dec.dense is not None
    # ... and the decoder is G(mean(decoder(c) + dense(c))), computed here by hand
    code = torch.randn(3, 5)
    by_hand = dec.refiner(torch.sigmoid(dec.decoder(code) + dec.dense(code)))
    assert torch.allclose(big.decode(code), torch.sigmoid(by_hand), atol=1e-6)
    codes = traversal_codes(torch.zeros(4), [1, 3], limit=2.0, steps=5)
    assert codes.shape == (10, 4) and torch.equal(codes[:5, 1], torch.linspace(-2, 2, 5))
    assert (codes[:5, [0, 2, 3]] == 0).all() and torch.equal(codes[5:, 3], torch.linspace(-2, 2, 5))


# -- the experiment (scripts/msvae_experiment.py -> inference.papers.msvae.run_experiment) ------------
ROOT = Path(__file__).resolve().parents[1]


def script_main(name):
    """``main`` of ``scripts/<name>.py``: the entry point itself (the logic it calls is imported above)."""
    return runpy.run_path(str(ROOT / "scripts" / f"{name}.py"))["main"]


def cache_random_feature_net():
    """An untrained FID feature net in the test's private cache: FID is computed, the net not trained."""
    from inference import fid

    path = fid.cache_dir() / f"feature_net-v{fid.FEATURE_NET_VERSION}-{fid.FEATURE_STEPS}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(fid.FeatureNet().state_dict(), path)


def finite_numbers(row: dict) -> bool:
    values = [v for v in row.values() if isinstance(v, float)] + [a for v in row.values() if isinstance(v, list)
                                                                   for a in v]
    return bool(values) and all(np.isfinite(values))


def test_experiment_script_trains_and_tabulates_every_model_at_a_tiny_budget(tmp_path):
    cache_random_feature_net()
    out = tmp_path / "msvae"
    script_main("msvae_experiment")(["--quick", "--steps1", "2", "--steps2", "2", "--n-eval", "40",
                                     "--n-probe", "40", "--mlp-iter", "3", "--out", str(out)])
    for name in ("results.json", "table.md", "reconstructions.png", "traversals.png", "z_perturbation.png",
                 "pictures.txt", "reconstructions.txt"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    assert list(rows) == list(EXPERIMENT_MODELS)
    assert results["settings"]["steps1"] == 2 and results["settings"]["mlp_iter"] == 3
    assert all(finite_numbers(r) for r in rows.values())
    # the FID column's calibration, in the same feature space and at the same size (issue 24)
    cal = results["fid_calibration"]
    assert cal["n"] == 40 and {"sample", "blur3x3", "noise", "factor:texture"} <= set(cal["rows"])
    assert (out / "fid_calibration.md").is_file()
    for name, row in rows.items():
        two_stage = name.startswith("msvae")
        assert {"mig", "fid", "l1", "l2", "acc_C", "acc_C_fine"} <= set(row)
        assert ({"M1", "M2", "M3", "M4", "M_decoded_prior", "acc_Z", "acc_C+Z"} <= set(row)) == two_stage, name
        assert len(row["acc_C_per_factor"]) == 10
    # Appendix H: the big β-TCVAE is matched to MS-VAE's parameter count.
    assert abs(rows["big_betatc"]["params"] - rows["msvae"]["params"]) / rows["msvae"]["params"] < 0.05
    lines = (out / "table.md").read_text().splitlines()
    assert lines[2] == "| model | " + " | ".join(TABLE_COLUMNS) + " |"
    assert [line.split(" | ")[0] for line in lines[4:]] == [f"| {m}" for m in EXPERIMENT_MODELS]


def test_experiment_function_is_seeded_and_takes_a_subset(tmp_path):
    # The library function a notebook calls: same seed, same numbers; only the asked-for rows.
    cache_random_feature_net()
    settings = {**QUICK, "steps1": 1, "steps2": 1, "n_eval": 24, "n_probe": 24, "mlp_iter": 5}
    a = run_experiment(settings, tmp_path / "a", models=["msvae_c"], seed=3)
    b = run_experiment(settings, tmp_path / "b", models=["msvae_c"], seed=3)
    assert list(a["rows"]) == ["msvae_c"]
    strip = lambda r: {k: v for k, v in r.items() if k != "train_s"}  # noqa: E731
    assert strip(a["rows"]["msvae_c"]) == strip(b["rows"]["msvae_c"])
    assert not (tmp_path / "a" / "traversals.png").exists()  # pictures of MS-VAE only when it was trained
