"""MS-FLOW (MS-VAE appendix D): the conditional flow is invertible, its log-density is the change of
variables (checked with a brute-force Jacobian), and the mixture/marginal densities match loops."""

import json
import math
import runpy
from pathlib import Path

import pytest
import torch
from pyro import poutine
from torch.autograd.functional import jacobian

from inference.papers.msflow import load_data, run_experiment
from ppl_models.msflow import ConditionalCouplingFlow, GaussianMixture, MSFlowModel

DIM, CTX = 6, 3


def random_flow(seed=0, layers=3):
    torch.manual_seed(seed)
    flow = ConditionalCouplingFlow(DIM, CTX, layers=layers, hidden=16).double()
    for p in flow.parameters():
        torch.nn.init.normal_(p, std=0.3)  # away from any special (identity-like) initialisation
    return flow


def test_flow_is_invertible():
    flow = random_flow()
    x, y = torch.randn(5, DIM).double(), torch.randn(5, CTX).double()
    z = flow.inverse_map(x, y)
    assert not torch.allclose(z, x)
    assert torch.allclose(flow.forward_map(z, y), x, atol=1e-10)
    assert torch.allclose(flow.inverse_map(flow.forward_map(z, y), y), z, atol=1e-10)


@pytest.mark.parametrize("residual", [False, True])
def test_conditional_log_density_is_the_brute_force_change_of_variables(residual):
    # log p(x | y) = log N(f(x; y); 0, I) + log |det ∂f/∂x| (appendix D; Dinh et al. 2016 eq. 3)
    flow = random_flow(1)
    ctx = CTX
    if residual:  # x = y + s ⊙ u after the couplings
        torch.manual_seed(1)
        flow = ConditionalCouplingFlow(DIM, DIM, 3, 16, residual_scale=0.1 + torch.rand(DIM)).double()
        for p in flow.parameters():
            torch.nn.init.normal_(p, std=0.3)
        ctx = DIM
    xs, ys = torch.randn(3, DIM).double(), torch.randn(3, ctx).double()
    got = flow.log_prob(xs, ys)
    for i in range(3):
        f = lambda v: flow.inverse_map(v[None], ys[i:i + 1])[0]  # noqa: E731
        z = f(xs[i])
        jac = jacobian(f, xs[i])
        want = (-0.5 * z.square().sum() - 0.5 * DIM * math.log(2 * math.pi)
                + torch.linalg.slogdet(jac)[1])
        assert torch.allclose(got[i], want, atol=1e-9)
    # the context matters: another y gives another density
    assert not torch.allclose(flow.log_prob(xs, ys.flip(0)), got)


def mixture(k=3):
    g = torch.Generator().manual_seed(0)
    return GaussianMixture(torch.tensor([0.2, 0.5, 0.3]).double(), torch.randn(k, DIM, generator=g).double(),
                           (0.5 + torch.rand(k, DIM, generator=g)).double())


def test_mixture_density_and_responsibilities_match_a_loop_over_components():
    mix, x = mixture(), torch.randn(4, DIM).double()
    parts = torch.stack([math.log(float(w)) - 0.5 * (((x - m) / s) ** 2 + torch.log(2 * math.pi * s * s)).sum(-1)
                         for w, m, s in zip(mix.weights, mix.means, mix.scales)], -1)
    assert torch.allclose(mix.log_prob(x), torch.logsumexp(parts, -1))
    assert torch.allclose(mix.responsibilities(x), torch.softmax(parts, -1))
    assert torch.equal(mix.y_of(torch.tensor([2, 0])), mix.means[[2, 0]])


def test_marginal_density_is_the_mixture_of_flow_conditionals():
    x = torch.randn(4, DIM).double()
    model_full = MSFlowModel(mixture(), ConditionalCouplingFlow(DIM, DIM, layers=2, hidden=8).double())
    cond = torch.stack([model_full.flow.log_prob(x, m.expand(4, DIM)) for m in model_full.mixture.means], -1)
    want = torch.logsumexp(model_full.mixture.weights.log() + cond, -1)
    assert torch.allclose(model_full.log_prob(x), want, atol=1e-10)


def test_pyro_model_has_c_then_y_then_x():
    model = MSFlowModel(mixture(), ConditionalCouplingFlow(DIM, DIM, layers=2, hidden=8).double())
    tr = poutine.trace(model).get_trace(n=5)
    c, y, x = (tr.nodes[k]["value"] for k in ("c", "y", "x"))
    assert torch.equal(y, model.mixture.means[c]) and x.shape == (5, DIM)
    assert torch.allclose(tr.nodes["x"]["fn"].log_prob(x), model.flow.log_prob(x, y))


def test_em_fit_recovers_well_separated_components():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0]])
    x = (centres.repeat(200, 1) + 0.3 * torch.randn(600, 2, generator=g))
    mix = GaussianMixture.fit(x, components=3, seed=0)
    order = torch.argsort(mix.means[:, 1] * 10 + mix.means[:, 0])
    assert torch.allclose(mix.means[order], centres[[0, 2, 1]], atol=0.1)
    assert torch.allclose(mix.scales, torch.full_like(mix.scales, 0.3), atol=0.05)
    assert torch.allclose(mix.weights, torch.full((3,), 1 / 3), atol=0.01)


def test_flow_loss_with_means_uses_the_component_mean():
    model = MSFlowModel(mixture(), ConditionalCouplingFlow(DIM, DIM, layers=2, hidden=8).double())
    x = model.mixture.means[1:2].repeat(3, 1)  # responsibilities are essentially one-hot on c = 1
    assert torch.allclose(model.flow_loss(x), -model.flow.log_prob(x, model.mixture.means[1:2].repeat(3, 1)).mean())
    with pytest.raises(ValueError, match="shapes disagree"):
        GaussianMixture(torch.ones(2), torch.zeros(3, 2), torch.ones(3, 2))


# -- the experiment (scripts/msflow.py -> inference.papers.msflow.run_experiment) ---------------------
ROOT = Path(__file__).resolve().parents[1]
TINY = dict(steps=3, batch_size=32, lr=1e-3, layers=2, hidden=8, eval_every=2)


def test_experiment_script_reports_finite_densities_and_writes_the_figures(tmp_path):
    out = tmp_path / "msflow"
    main = runpy.run_path(str(ROOT / "scripts" / "msflow.py"))["main"]
    main(["--quick", "--steps", "3", "--eval-every", "2", "--out", str(out)])
    for name in ("results.json", "curves.png", "means.png", "samples.png"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert results["data"] == "digits8x8" and results["dim"] == 64
    for mode in ("means", "samples"):
        assert [step for step, _, _ in results["curves"][mode]] == [2, 3]
        assert results[f"msflow_{mode}_best_step"] in (2, 3)
        for key in ("log_p_test", "cond_log_p_test", "cond_log_p_test_last"):
            assert math.isfinite(results[f"msflow_{mode}_{key}"])
    assert math.isfinite(results["mixture_log_p_test"]) and math.isfinite(results["mixture_log_p_train"])


def test_experiment_function_gives_the_same_numbers_for_the_same_seed(tmp_path):
    # Before issue 15 the first flow was initialised from an unseeded RNG: two runs differed.
    source = load_data()
    torch.manual_seed(1)
    a = run_experiment(source, TINY, tmp_path / "a", seed=0)
    torch.manual_seed(2)  # whatever ran before in the process
    b = run_experiment(source, TINY, tmp_path / "b", seed=0)
    drop = lambda r: {k: v for k, v in r.items() if not k.endswith("seconds")}  # noqa: E731
    assert drop(a) == drop(b)
