"""GPU readiness (``make gpu-check`` runs ``pytest -m cuda``): every model family trains on CUDA,
resumes there bit-for-bit, and makes its adaptive updates with no host synchronisation.

* Each family trains 20 steps with ``fit`` (its fast path: channels-last conv weights, fused Adam)
  in one go, and 10 + 10 with a resume in between; the two end with equal weights and ELBO state.
  A GPU run is exactly repeatable only with deterministic kernels (cuDNN's and cuBLAS's fastest
  ones may sum in a different order each call), so these tests turn them on, as a user who needs
  bit-for-bit resume on a GPU must: ``torch.use_deterministic_algorithms(True)`` and
  ``CUBLAS_WORKSPACE_CONFIG=:4096:8``. A family that needs a kernel with no deterministic CUDA
  implementation (VITAE's ``grid_sample`` backward adds with atomics) cannot resume bit-for-bit
  on a GPU: torch says so, the test names the kernel in a warning and checks the resumed run to
  a tolerance instead.
* The adaptive updates — γ and λ of ``RobustELBO``, C(t) of ``CapacityELBO``, the discriminator
  of ``FactorELBO`` — run in ``svi_step`` (``fit``'s step) under
  ``torch.cuda.set_sync_debug_mode("error")``, which raises on any host synchronisation. The batch
  is put on the device beforehand (copying it there from pageable memory is a synchronisation of
  its own, and no part of the update).
* A whole steady ``fit`` step, data included, runs under ``set_sync_debug_mode("error")`` for every
  family, on procedurally rendered data (dSprites, sprite pairs, textured shapes) and the
  pendulum's records: the index draw, the copy to the device (pinned, non-blocking), the rendering
  (no gather per shape, no check of the factors on the device), the loss, the optimiser and the
  bookkeeping. ``tests/test_host_sync.py`` counts the same step's host reads on the CPU.

Without a CUDA device every test here is skipped. ``PYRO_DISENTANGLE_TEST_DEVICE=cpu`` runs the
training and resume tests on the CPU, to check the tests themselves on a machine without a GPU.
"""

import math
import os
import warnings

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before cuBLAS starts: deterministic GEMMs

import pytest  # noqa: E402
import torch  # noqa: E402

from guides.pendulum import PendulumGuide  # noqa: E402
from inference import TermsELBO, build, fit, resolve_config  # noqa: E402
from inference.checkpoint import load_checkpoint  # noqa: E402
from inference.handlers import local_params  # noqa: E402
from inference.papers.msvae import family_member, msvae_pair, second_stage_loss  # noqa: E402
from inference.papers.robust import RobustELBO, robust_pair  # noqa: E402
from inference.svi import CHECKPOINT, _takes_index, make_optimizer, pair_module, svi_step  # noqa: E402
from ppl_data import Data, DSprites, SpritePairs, Sprites, TensorData, TexturedShapes  # noqa: E402
from ppl_data.base import to_device  # noqa: E402
from ppl_data.pendulum import PendulumPairs  # noqa: E402
from ppl_models.pendulum import PendulumModel  # noqa: E402

DEVICE = torch.device(os.environ.get("PYRO_DISENTANGLE_TEST_DEVICE", "cuda"))
STEPS = 20

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(DEVICE.type == "cuda" and not torch.cuda.is_available(),
                                 reason="needs a CUDA device (make gpu-check on a GPU machine)")]


@pytest.fixture(autouse=True)
def _deterministic():
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True, warn_only=True)  # a kernel without one warns, see above
    torch.backends.cudnn.benchmark = False
    yield
    torch.use_deterministic_algorithms(before[0])
    torch.backends.cudnn.benchmark = before[1]


def binary64(n=128):
    x = torch.rand(n, 1, 64, 64, generator=torch.Generator().manual_seed(0)) < 0.5
    return TensorData(x.to(torch.uint8) * 255, name="binary64")


def grey16(n=64):
    return TensorData(torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(0)), name="grey16")


def registry(name, **overrides):
    """A model of ``scripts/train.py --model name`` (conv64 nets on 64×64 images, or VITAE's MLPs)."""
    def make():
        data = grey16() if name.startswith("vitae") else binary64()
        config = resolve_config(name, {"latent_dim": 4, **overrides} if not name.startswith("vitae")
                                else overrides)
        return (*build(config, data.data_shape, len(data)), data)
    return make


def robust(warmup_steps=2):
    data = SpritePairs(Sprites(16))
    model, guide = robust_pair(data.data_shape, pose_dim=3, appearance_dim=3, net="mlp",
                               dataset_size=len(data))
    return model, guide, RobustELBO(3, 3, variant="full", warmup_steps=warmup_steps, lambda_init=0.5), data


def msvae():
    shape, n = (3, 16, 16), 64
    data = TensorData(torch.rand(n, *shape, generator=torch.Generator().manual_seed(0)))
    m1, g1, loss1, _ = family_member("betatc", {"latent_dim": 3}, shape, n)
    model, guide = msvae_pair(m1, g1, "msvae", 2, shape, n, hidden=4, blocks=1)
    return model, guide, second_stage_loss("msvae", loss1), data


def pendulum():
    data = PendulumPairs(3, steps=10)
    model = PendulumModel(10, hidden=8, dataset_size=len(data))
    return model, PendulumGuide(model), TermsELBO(), data


FAMILIES = {
    **{name: registry(name) for name in ("vae", "beta", "betatc", "capacity", "factor", "dip1", "info")},
    "betatc_mws": registry("betatc", estimator="mws", beta=6.0),
    "dip2_running": registry("dip2", dip_momentum=0.5),
    "flow_prior": registry("vae", prior="flow"),
    "vitae_u": registry("vitae_u"),
    "vitae_c": registry("vitae_c"),
    "robust": robust,
    "msvae": msvae,
    "pendulum": pendulum,
}


def train(name, out, steps, resume=False):
    torch.manual_seed(0)
    model, guide, loss, data = FAMILIES[name]()
    batch = min(16, len(data))
    result = fit(model, guide, loss, data, steps=steps, out_dir=out, resume=resume, batch_size=batch,
                 lr=1e-3, log_every=5, checkpoint_every=10, device=DEVICE, progress=False)
    return result, load_checkpoint(out / CHECKPOINT)


def equal_nested(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(equal_nested(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(equal_nested(x, y) for x, y in zip(a, b))
    if torch.is_tensor(a):
        return torch.equal(a, b)
    return a == b


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_trains_and_resumes_bit_for_bit(name, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        straight, a = train(name, tmp_path / "straight", STEPS)
        train(name, tmp_path / "split", STEPS // 2)
        split, b = train(name, tmp_path / "split", STEPS, resume=True)
    assert straight.step == split.step == STEPS
    assert all(v == v and abs(v) != float("inf") for v in straight.terms.values()), straight.terms
    assert a["params"].keys() == b["params"].keys()
    nondeterministic = sorted({str(w.message).split(" does not have")[0] for w in caught
                               if "does not have a deterministic implementation" in str(w.message)})
    if nondeterministic:
        warnings.warn(f"{name} uses {', '.join(nondeterministic)}, which has no deterministic "
                      f"{DEVICE.type} kernel: its resume is checked to a tolerance only")
        for k, v in a["params"].items():
            assert torch.allclose(v, b["params"][k], rtol=1e-2, atol=1e-2), k
        return
    differ = [k for k in a["params"] if not torch.equal(a["params"][k], b["params"][k])]
    assert not differ, differ
    assert equal_nested(a["optimizer"]["state"], b["optimizer"]["state"])
    assert equal_nested(a["loss_state"], b["loss_state"])
    assert straight.terms == split.terms


def adaptive_state(name, loss):
    if name == "robust":
        return [loss.gamma.clone(), loss.lam.clone(), loss.step.clone()]
    if name == "capacity":
        return [torch.tensor(float(loss.capacity())), torch.tensor(loss.step)]
    if name == "factor":
        return [p.detach().clone() for p in loss.discriminator.parameters()]
    raise KeyError(name)


@pytest.mark.skipif(DEVICE.type != "cuda", reason="host synchronisation is a CUDA notion")
@pytest.mark.parametrize("name", ["capacity", "factor", "robust"])
def test_adaptive_updates_make_no_host_sync(name):
    torch.manual_seed(0)
    model, guide, loss, data = robust(warmup_steps=0) if name == "robust" else FAMILIES[name]()
    pair = pair_module(model, guide).to(DEVICE)
    loss.to(DEVICE)
    optimizer = make_optimizer(pair.parameters(), lr=1e-3)
    index = torch.arange(16)
    x, _ = data.batch(index, device=DEVICE)
    args = (x, index.to(DEVICE)) if _takes_index(model) and _takes_index(guide) else (x,)
    m, g = local_params(model), local_params(guide)
    svi_step(loss, m, g, optimizer, args)  # first step: lazy state (FactorVAE's discriminator), caches
    torch.cuda.synchronize()
    before = adaptive_state(name, loss)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            value = svi_step(loss, m, g, optimizer, args)
            terms = torch.stack([t.float() for t in loss.terms.values()])  # fit's bookkeeping
    finally:
        torch.cuda.set_sync_debug_mode("default")
    after = adaptive_state(name, loss)
    assert value.device.type == "cuda" and bool(torch.isfinite(terms).all())
    assert any(not torch.equal(u.cpu(), v.cpu()) for u, v in zip(before, after)), "no update was made"


def rendered(name):
    """Family ``name`` of :data:`FAMILIES` on data rendered in the step (the data path under test)."""
    if name in ("robust", "pendulum"):  # sprite pairs are rendered per batch; the pendulum's records copied
        return FAMILIES[name]()
    if name == "msvae":
        data = TexturedShapes(16)
        m1, g1, loss1, _ = family_member("betatc", {"latent_dim": 3}, data.data_shape, len(data))
        model, guide = msvae_pair(m1, g1, "msvae", 2, data.data_shape, len(data), hidden=4, blocks=1)
        return model, guide, second_stage_loss("msvae", loss1), data
    model, guide, loss, small = FAMILIES[name]()
    data = DSprites(small.data_shape[-1])
    return model, guide, loss, data


class SyncErrorForOneStep(Data):
    """``data`` whose ``batch`` turns CUDA's sync debug mode to "error" from its 3rd call to its 4th.

    ``fit`` draws the indices, calls ``batch`` and runs the step, so that window is one whole steady
    step (after two warm-up steps: validation, lazy state) and the next step's index draw.
    """

    def __init__(self, data):
        self.data, self.calls = data, 0
        self.data_shape, self.factor_names, self.factor_sizes = data.data_shape, data.factor_names, data.factor_sizes

    def __len__(self):
        return len(self.data)

    def batch(self, index, device=None, dtype=torch.float32):
        if self.calls == 2:
            torch.cuda.set_sync_debug_mode("error")
        elif self.calls == 3:
            torch.cuda.set_sync_debug_mode("default")
        self.calls += 1
        return self.data.batch(index, device=device, dtype=dtype)


@pytest.mark.skipif(DEVICE.type != "cuda", reason="host synchronisation is a CUDA notion")
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_fit_step_with_its_data_makes_no_host_sync(name):
    torch.manual_seed(0)
    model, guide, loss, data = rendered(name)
    checked = SyncErrorForOneStep(data)
    try:
        result = fit(model, guide, loss, checked, steps=4, batch_size=min(16, len(data)), lr=1e-3,
                     log_every=10 ** 6, checkpoint_every=10 ** 6, device=DEVICE, progress=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert checked.calls == 4 and result.step == 4
    assert all(math.isfinite(v) for v in result.terms.values()), result.terms


@pytest.mark.skipif(DEVICE.type != "cuda", reason="pinned, non-blocking copies are a CUDA notion")
def test_to_device_copies_host_values_without_a_sync():
    host = torch.arange(1000)
    torch.cuda.set_sync_debug_mode("error")
    try:
        on_device = to_device(host, DEVICE)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert on_device.device.type == "cuda" and torch.equal(on_device.cpu(), host)
