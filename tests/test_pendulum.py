"""Pendulum MS-VAE (MS-VAE appendix C): the simulator against closed forms, the model's figure-17 graph,
the stage switch, and each stage's ELBO against a hand computation."""

import json
import math
import runpy
from pathlib import Path

import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer.inspect import get_dependencies

from guides.pendulum import PendulumGuide
from inference import TermsELBO, fit
from inference.papers.pendulum import STAGES
from ppl_data import DataError, load
from ppl_data.pendulum import DT, GRAVITY, PendulumPairs, period, simulate
from ppl_models.pendulum import DAMPING_RANGE, LENGTH_RANGE, PendulumModel, unpack

T = torch.arange(101, dtype=torch.float64) * DT


def test_small_angle_undamped_is_a_cosine_of_period_2pi_sqrt_l_over_g():
    # θ'' = −(g/L) sin θ ≈ −(g/L) θ: θ(t) = θ₀ cos(√(g/L) t), period 2π√(L/g) (appendix C with b = 0)
    length = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    theta0 = 1e-3
    got = simulate(length, torch.ones(3), torch.zeros(3), theta0=theta0)
    want = theta0 * torch.cos(torch.sqrt(GRAVITY / length)[:, None] * T)
    assert torch.allclose(got, want, atol=2e-7 * 1e3 * theta0)
    # the first upward zero crossing after t = 0 sits at 3/4 of the period
    for i, l_ in enumerate(length.tolist()):
        s = got[i]
        k = int(((s[:-1] < 0) & (s[1:] >= 0)).nonzero()[0])
        t_cross = T[k] + DT * (-s[k]) / (s[k + 1] - s[k])
        assert abs(float(t_cross) - 0.75 * period(l_)) < 1e-3


def test_damping_acts_through_b_over_m_and_matches_the_damped_oscillator():
    # small angle: θ = θ₀ e^{−kt/2} (cos ω_d t + k/(2ω_d) sin ω_d t), k = b/m, ω_d² = g/L − k²/4
    theta0, l_, b, m = 1e-3, 1.5, 0.6, 2.0
    k = b / m
    wd = math.sqrt(GRAVITY / l_ - k * k / 4)
    want = theta0 * torch.exp(-k * T / 2) * (torch.cos(wd * T) + k / (2 * wd) * torch.sin(wd * T))
    got = simulate(torch.tensor([l_]).double(), torch.tensor([m]).double(), torch.tensor([b]).double(),
                   theta0=theta0)[0]
    assert torch.allclose(got, want, atol=1e-8)
    same = simulate(torch.tensor([l_]).double(), torch.tensor([1.0]).double(), torch.tensor([b / m]).double(),
                    theta0=theta0)[0]
    assert torch.allclose(got, same, atol=1e-12)  # only b/m matters


def test_damping_decays_the_swing_and_more_damping_decays_it_faster():
    length = torch.full((3,), 1.0, dtype=torch.float64)
    th = simulate(length, torch.ones(3), torch.tensor([0.0, 0.5, 1.5]).double())
    half = th.shape[1] // 2
    early, late = th[:, :half].abs().max(1).values, th[:, half:].abs().max(1).values
    assert abs(late[0] - early[0]) < 1e-3  # undamped keeps its amplitude (RK4 energy drift tiny)
    assert late[1] < 0.5 * early[1] and late[2] < late[1]


def test_angles_are_wrapped_into_minus_pi_pi_and_the_batch_is_independent():
    length, mass, damping = torch.tensor([1.0, 2.0]), torch.ones(2), torch.tensor([0.0, 0.3])
    th = simulate(length, mass, damping, theta0=3.0, omega0=6.0)  # goes over the top
    assert th.abs().max() <= math.pi + 1e-6 and th.abs().max() > 3.0
    one = simulate(length[1:], mass[1:], damping[1:], theta0=3.0, omega0=6.0)
    assert torch.allclose(th[1:], one)
    with pytest.raises(DataError, match="length > 0"):
        simulate(torch.tensor([0.0]), torch.ones(1), torch.zeros(1))


def test_paired_records_hold_l_b_y0_y1_theta_and_never_the_mass():
    data = load("pendulum", grid=3)
    assert isinstance(data, PendulumPairs) and len(data) == 27
    rec, f = data.batch(torch.tensor([5, 26]))
    length, damping, y0, y1, theta = unpack(rec)
    lmb = data.sim.values(f)
    assert torch.allclose(length[:, 0], lmb[:, 0]) and torch.allclose(damping[:, 0], lmb[:, 2])
    ones, zeros = torch.ones(2), torch.zeros(2)
    assert torch.allclose(y0, simulate(lmb[:, 0].double(), ones, zeros).float(), atol=1e-6)
    assert torch.allclose(y1, simulate(lmb[:, 0].double(), ones, lmb[:, 2].double()).float(), atol=1e-6)
    assert torch.allclose(theta, simulate(*lmb.double().unbind(-1)).float(), atol=1e-6)
    assert torch.equal(data.mass(torch.tensor([5, 26])), lmb[:, 1])


def records(n=6, grid=3):
    data = PendulumPairs(grid, steps=10)
    return data, data.batch(torch.arange(n))[0]


def test_model_trace_has_the_figure_17_graph():
    data, rec = records()
    model = PendulumModel(10, hidden=8)
    deps = get_dependencies(poutine.uncondition(model), (rec,))["prior_dependencies"]
    parents = {site: set(d) - {site} for site, d in deps.items()}
    assert parents == {"length": set(), "damping": set(), "z": set(), "y0": {"length"},
                       "y1": {"damping", "y0"}, "theta": {"y1", "z"}}


@pytest.mark.parametrize("stage, sites", [("y0", {"length", "y0"}), ("y1", {"damping", "y1"}),
                                          ("theta", {"z", "theta"}),
                                          ("all", {"length", "y0", "damping", "y1", "z", "theta"})])
def test_stage_switch_keeps_only_that_stages_sites(stage, sites):
    data, rec = records()
    model = PendulumModel(10, hidden=8, stage=stage)
    tr = poutine.trace(model).get_trace(rec)
    assert {n for n, s in tr.nodes.items() if s["type"] == "sample" and n != "data"} == sites


def test_stage_losses_equal_the_conditional_gaussian_log_likelihoods():
    # stages 1–2 have no latent: −ELBO = −log p(L) − log N(y0; μ₀(L), σ₀²) (resp. B, y1): appendix C
    torch.manual_seed(0)
    data, rec = records()
    model, length, damping, y0, y1, theta = PendulumModel(10, hidden=8), *unpack(rec)
    guide = PendulumGuide(model)
    loss = TermsELBO()
    model.stage = "y0"
    want = -(dist.Uniform(*LENGTH_RANGE).log_prob(length).sum() + model.undamped(length).log_prob(y0).sum())
    assert torch.allclose(loss.differentiable_loss(model, guide, rec), want, rtol=1e-5)
    model.stage = "y1"
    want = -(dist.Uniform(*DAMPING_RANGE).log_prob(damping).sum()
             + model.damped(torch.cat([damping, y0], -1)).log_prob(y1).sum())
    assert torch.allclose(loss.differentiable_loss(model, guide, rec), want, rtol=1e-5)
    # stage 3: −E_q log N(θ; y1 + r(y1, z), σ²) + KL(q(z | θ − y1) ‖ N(0, 1)); one particle, same z
    model.stage = "theta"
    tr = poutine.trace(guide).get_trace(rec)
    loc, scale = guide.encoder(theta - y1)
    assert torch.allclose(tr.nodes["z"]["fn"].base_dist.loc, loc)
    z = tr.nodes["z"]["value"]
    kl = (0.5 * (loc.square() + scale.square() - 1) - scale.log()).sum()  # closed-form KL to N(0, 1)
    want = -model.theta_dist(y1, z).log_prob(theta).sum() + kl
    got = loss.differentiable_loss(poutine.replay(model, trace=tr), poutine.replay(guide, trace=tr), rec)
    assert torch.allclose(got, want, rtol=1e-5)


def test_each_stage_trains_only_its_own_network():
    data, _ = records(grid=3)
    model = PendulumModel(10, hidden=8, dataset_size=len(data))
    guide = PendulumGuide(model)
    model.stage = "y1"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fit(model, guide, TermsELBO(), data, steps=3, batch_size=4, lr=1e-2, device="cpu", progress=False)
    changed = {k.split(".")[0] for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"damped"}


# -- the experiment (scripts/msvae_pendulum.py -> inference.papers.pendulum.run_experiment) -----------
ROOT = Path(__file__).resolve().parents[1]


def test_experiment_script_trains_three_stages_and_reports_finite_measures(tmp_path):
    out = tmp_path / "pendulum"
    main = runpy.run_path(str(ROOT / "scripts" / "msvae_pendulum.py"))["main"]
    main(["--quick", "--steps", "2", "--grid", "4", "--out", str(out)])
    for name in ("results.json", "z_vs_mass.png", "traversals.png"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert list(results["stage_seconds"]) == list(STAGES)
    assert results["settings"]["grid"] == 4 and results["settings"]["steps"] == 2
    for key in ("corr_z_mass", "corr_z_length", "corr_z_damping"):
        assert set(results[key]) == {"pearson", "spearman"}
        assert all(math.isfinite(v) for v in results[key].values())
    rmse = [k for k in results if k.startswith("rmse_")]
    assert len(rmse) == 5 and all(math.isfinite(results[k]) and results[k] >= 0 for k in rmse)

