"""Plain Pyro works: ``pyro.infer.SVI`` trains every pair we ship, and our ELBOs behave under it as
under ``inference.fit`` — per-step updates included — while misuse is loud.

Each test is checked against an independent computation: parameters compared before and after, a
manual SVI loop against ``fit`` on the same batches, a hand-computed gradient.
"""

import copy
import importlib.util
import math
import warnings
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI
from torch import nn

import ppl_data
from inference import build, fit, resolve_config
from inference.catalog import MODELS
from inference.elbo import TermsELBO
from inference.elbos import BetaTCELBO, CapacityELBO, DIPELBO, FactorELBO, InfoELBO
from inference.errors import ConfigError
from inference.papers.robust import RobustELBO, robust_pair
from ppl_data.sprites import SpritePairs, Sprites
from ppl_models.nets import mlp
from ppl_models.registration import pyro_module

ROOT = Path(__file__).resolve().parents[1]
ADAM = {"lr": 1e-3, "betas": (0.9, 0.999)}  # inference.svi.ADAM_BETAS


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets (tests/conftest.py)


@pytest.fixture(scope="module")
def digits():
    return ppl_data.load("digits")


def _config(name):
    return resolve_config(name, {} if name.startswith("vitae") else {"latent_dim": 3, "net": "mlp"})


def _trainable(*modules):
    return {f"{i}.{n}": p for i, m in enumerate(modules) for n, p in m.named_parameters()
            if p.requires_grad}


def _batches(data, steps, batch_size=16, seed=0):
    """The batches ``fit`` draws: indices from a generator seeded with the run's seed."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        index = torch.randint(len(data), (batch_size,), generator=g)
        out.append((data.batch(index)[0], index))
    return out


# -- every registered model trains under plain SVI -------------------------------------------------
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_model_trains_under_plain_svi(name, digits):
    torch.manual_seed(0)
    model, guide, loss = build(_config(name), digits.data_shape, len(digits))
    before = {k: v.detach().clone() for k, v in _trainable(model, guide).items()}
    svi = SVI(model, guide, pyro.optim.Adam(ADAM), loss=loss)
    for x, index in _batches(digits, 3):
        assert math.isfinite(svi.step(x, index))
    after = _trainable(model, guide)
    unmoved = [k for k in before if torch.equal(before[k], after[k])]
    assert not unmoved, f"{name}: SVI left {unmoved} unchanged"
    # the param store holds the modules' own tensors: what SVI moved is what state_dict() saves
    stored = {id(pyro.get_param_store()[k]) for k in pyro.get_param_store().keys()}
    assert {id(p) for p in after.values()} <= stored


def test_two_pairs_in_one_process_never_alias(digits):
    pairs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model, guide, loss = build(_config("vae"), digits.data_shape, len(digits))
        pairs.append((model, guide, loss, {k: v.detach().clone() for k, v in _trainable(model, guide).items()}))
    clone = copy.deepcopy(pairs[0][0])
    for model, guide, loss, _ in pairs:
        svi = SVI(model, guide, pyro.optim.Adam(ADAM), loss=loss)
        for x, index in _batches(digits, 2):
            svi.step(x, index)
    for model, guide, _, before in pairs:  # each pair moved its own parameters, not the other's
        after = _trainable(model, guide)
        assert all(not torch.equal(before[k], after[k]) for k in before)
    assert pairs[0][0].pyro_name != pairs[1][0].pyro_name
    pyro_module(clone)  # a deepcopy of a registered module takes a name of its own
    assert clone.pyro_name != pairs[0][0].pyro_name


# -- stateful ELBOs: the per-step update under SVI is the one under fit --------------------------------
def _state_equal(a, b, atol):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_state_equal(a[k], b[k], atol) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_state_equal(x, y, atol) for x, y in zip(a, b))
    if torch.is_tensor(a):
        return torch.allclose(a.float(), b.float(), atol=atol, rtol=0)
    return a == b


def _robust_data():
    return SpritePairs(Sprites(16))


STATEFUL = {
    # name: (make the pair, make the ELBO, data, what must have changed after 4 steps)
    "capacity": (lambda d: build(_config("capacity"), d.data_shape, len(d))[:2],
                 lambda: CapacityELBO(c_stop=10), ppl_data.load,
                 lambda e: e.step == 4 and e.capacity() > 0),
    "factor": (lambda d: build(_config("factor"), d.data_shape, len(d))[:2],
               lambda: FactorELBO(gamma=10.0, discriminator=mlp([3, 32, 32, 2]), lr=1e-3),
               ppl_data.load, None),
    "dip_running": (lambda d: build(_config("dip1"), d.data_shape, len(d))[:2],
                    lambda: DIPELBO("i", momentum=0.9), ppl_data.load,
                    lambda e: e.running is not None),
    "robust": (lambda d: robust_pair(d.data_shape, pose_dim=3, appearance_dim=3, net="mlp"),
               lambda: RobustELBO(3, 3, variant="full", warmup_steps=1, lambda_init=0.5),
               lambda _: _robust_data(), lambda e: int(e.step) == 4 and float(e.gamma) != 1.0),
}


@pytest.mark.parametrize("name", sorted(STATEFUL))
def test_stateful_elbo_updates_under_svi_as_under_fit(name):
    make_pair, make_elbo, load, changed = STATEFUL[name]
    data = load("digits")
    steps = 4

    torch.manual_seed(0)
    fit_model, fit_guide = make_pair(data)
    fit_loss = make_elbo()
    initial = copy.deepcopy(fit_loss.state_dict())
    fit(fit_model, fit_guide, fit_loss, data, steps=steps, batch_size=16, lr=ADAM["lr"], seed=0,
        device="cpu", progress=False)

    torch.manual_seed(0)
    model, guide = make_pair(data)
    loss = make_elbo()
    svi = SVI(model, guide, pyro.optim.Adam(ADAM), loss=loss)
    torch.manual_seed(0)  # fit seeds the global RNG with its seed before the first step
    for x, index in _batches(data, steps):
        svi.step(x, index)

    assert not _state_equal(initial, loss.state_dict(), atol=0.0), f"{name}: state never changed"
    assert _state_equal(fit_loss.state_dict(), loss.state_dict(), atol=1e-5)
    for p, q in zip(_trainable(fit_model, fit_guide).values(), _trainable(model, guide).values()):
        assert torch.allclose(p, q, atol=1e-5)
    if changed is not None:
        assert changed(loss)


@pytest.mark.parametrize("name", sorted(STATEFUL))
def test_evaluation_calls_change_no_state(name):
    make_pair, make_elbo, load, _ = STATEFUL[name]
    data = load("digits")
    torch.manual_seed(0)
    model, guide = make_pair(data)
    loss = make_elbo()
    (x0, i0), (x1, i1), (x2, i2) = _batches(data, 3)
    svi = SVI(model, guide, pyro.optim.Adam(ADAM), loss=loss)
    svi.step(x0, i0)
    state = copy.deepcopy(loss.state_dict())
    loss.loss(model, guide, x1, i1)
    with torch.no_grad():
        loss.differentiable_loss(model, guide, x2, i2)
    assert _state_equal(state, loss.state_dict(), atol=0.0)


def test_factor_update_is_independent_of_an_evaluation_in_between(digits):
    # The update is made on the step's own codes: a loss() call between two steps changes nothing.
    def run(evaluate):
        torch.manual_seed(0)
        model, guide, _ = build(_config("factor"), digits.data_shape, len(digits))
        loss = FactorELBO(gamma=10.0, discriminator=mlp([3, 32, 32, 2]), lr=1e-3)
        svi = SVI(model, guide, pyro.optim.Adam(ADAM), loss=loss)
        for k, (x, index) in enumerate(_batches(digits, 3)):
            if evaluate and k == 1:
                loss.loss(model, guide, x[:8], index[:8])
            pyro.set_rng_seed(k)
            svi.step(x, index)
        return loss.discriminator.state_dict()
    assert _state_equal(run(False), run(True), atol=0.0)


# -- misuse is loud -------------------------------------------------------------------------------
class UserPair(nn.Module):
    """A user's pair with a standard plate that carries no dataset size."""

    def __init__(self, register=True, second_site=False):
        super().__init__()
        self.register, self.second_site = register, second_site
        self.dec, self.enc = nn.Linear(2, 4), nn.Linear(4, 4)

    def model(self, x):
        if self.register:
            pyro.module("user_dec", self.dec)
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(x.new_zeros(len(x), 2), 1.0).to_event(1))
            if self.second_site:
                pyro.sample("w", dist.Normal(x.new_zeros(len(x), 2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(self.dec(z), 0.5).to_event(1), obs=x)

    def guide(self, x):
        if self.register:
            pyro.module("user_enc", self.enc)
        loc, raw = self.enc(x).chunk(2, -1)
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(loc, nn.functional.softplus(raw) + 1e-3).to_event(1))
            if self.second_site:
                pyro.sample("w", dist.Normal(loc, 1.0).to_event(1))


def test_tc_on_a_plate_without_dataset_size_warns_once_naming_the_plate():
    pair, x = UserPair(), torch.randn(32, 4)
    loss = BetaTCELBO()
    svi = SVI(pair.model, pair.guide, pyro.optim.Adam(ADAM), loss=loss)
    with pytest.warns(UserWarning, match=r"'data'.*size 32.*subsample") as record:
        svi.step(x)
        svi.step(x)
    assert sum("dataset size" in str(w.message) for w in record) == 1
    with warnings.catch_warnings():  # penalties whose ratio to the ELBO is N-free do not warn
        warnings.simplefilter("error")
        for other in (DIPELBO("ii"), InfoELBO()):
            SVI(pair.model, pair.guide, pyro.optim.Adam(ADAM), loss=other).step(x)


def test_several_latent_sites_without_site_is_an_error_listing_them():
    pair, x = UserPair(second_site=True), torch.randn(8, 4)
    with pytest.raises(ValueError, match=r"2: 'z', 'w'.*site="):
        SVI(pair.model, pair.guide, pyro.optim.Adam(ADAM), loss=DIPELBO()).step(x)
    SVI(pair.model, pair.guide, pyro.optim.Adam(ADAM), loss=DIPELBO(site="w")).step(x)


def test_svi_step_without_registered_parameters_points_to_pyro_module():
    pair, x = UserPair(register=False), torch.randn(8, 4)
    before = pair.dec.weight.detach().clone()
    with pytest.raises(ValueError, match=r"pyro\.module"):
        SVI(pair.model, pair.guide, pyro.optim.Adam(ADAM), loss=TermsELBO()).step(x)
    assert torch.equal(before, pair.dec.weight)


def test_fit_refuses_a_pair_with_an_unregistered_network(digits):
    torch.manual_seed(0)
    model, _, loss = build(_config("vae"), digits.data_shape, len(digits))

    class Guide(nn.Module):  # registers its first layer only, as a user might by mistake
        def __init__(self):
            super().__init__()
            self.first, self.head = nn.Linear(64, 16), nn.Linear(16, 6)

        def forward(self, x, index=None):
            pyro.module("first_layer", self.first)
            loc, raw = self.head(torch.relu(self.first(x.flatten(1)))).chunk(2, -1)
            with pyro.plate("data", len(digits), subsample=index):
                pyro.sample("z", dist.Normal(loc, nn.functional.softplus(raw) + 1e-3).to_event(1))

    with pytest.raises(ConfigError, match=r"guide\.head\.weight.*pyro\.module"):
        fit(model, Guide(), loss, digits, steps=2, batch_size=8, device="cpu", progress=False)


def test_stateful_differentiable_loss_with_grad_warns_it_makes_no_update(digits):
    torch.manual_seed(0)
    model, guide, _ = build(_config("capacity"), digits.data_shape, len(digits))
    loss = CapacityELBO()
    x, index = _batches(digits, 1)[0]
    with pytest.warns(UserWarning, match="loss_and_grads"):
        loss.differentiable_loss(model, guide, x, index)
    assert loss.step == 0


# -- Info-dpVAE: the flow prior gets the MMD's gradient ------------------------------------------------
def test_info_mmd_gradient_reaches_the_flow_prior(digits):
    # dpVAE supplement eq. 27: η is optimised through the MMD term, so its prior draws are reparametrised.
    torch.manual_seed(0)
    config = resolve_config("info", {"latent_dim": 3, "net": "mlp", "prior": "flow", "flow_hidden": 8})
    model, guide, loss = build(config, digits.data_shape, len(digits))
    for block in model.prior.blocks:  # a non-identity flow
        nn.init.normal_(block.s[-1].weight, std=0.1)
    x, index = _batches(digits, 1)[0]
    model_trace, guide_trace = loss._get_trace(model, guide, (x, index), {})
    extra, logged = loss.penalty(model_trace, guide_trace, None)
    flow = list(model.prior.parameters())
    grads = torch.autograd.grad(logged["mmd"], flow, allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    # the same MMD computed by hand from the prior's reparametrised draw: its gradient w.r.t. η agrees
    z = guide_trace.nodes["z"]["value"]
    torch.manual_seed(5)
    _, logged = loss.penalty(model_trace, guide_trace, None)
    torch.manual_seed(5)
    from inference.penalties import mmd
    by_hand = mmd(z, model_trace.nodes["z"]["fn"].rsample().reshape(z.shape))
    assert torch.allclose(logged["mmd"], by_hand)
    g1 = torch.autograd.grad(logged["mmd"], flow, allow_unused=True, retain_graph=True)
    g2 = torch.autograd.grad(by_hand, flow, allow_unused=True)
    assert all((a is None) == (b is None) and (a is None or torch.allclose(a, b)) for a, b in zip(g1, g2))


# -- the example, values checked --------------------------------------------------------------------
def test_plain_pyro_example_trains_with_svi_alone():
    spec = importlib.util.spec_from_file_location("plain_pyro", ROOT / "examples" / "plain_pyro.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    results = example.main(steps=200)
    betatc, factor = results["betatc"], results["factor"]
    assert betatc["last"]["loss"] < betatc["first"]["loss"]
    assert abs(factor["tc_first"]) < 0.1             # an untrained discriminator: TC ≈ 0
    assert factor["tc_peak"] > 0.15                   # trained inside svi.step: it sees the dependence
    assert factor["discriminator_loss_min"] < 0.65    # better than chance (ln 2 = 0.693)
    assert results["inferencedata_shape"] == (1, 20, 500, 2)
    assert 0.0 <= results["mig"] <= 1.0
