"""No host synchronisation in the steady training step, data path included (issue 27, part 1).

On a GPU, every device-to-host read in a step (``.item()``, ``bool(t)``, ``nonzero``, a boolean mask
as an index...) makes the host wait for the device's queue to drain before it can launch the next
kernel. On this CPU those reads are still visible as ATen ops, so a dispatch mode counts them in
one steady ``fit`` step (the batch draw, the rendering, the loss, the optimiser step, the bookkeeping),
per family, and the count must be 0.

Not counted: the optimisers' own step counters (``torch.optim`` keeps them on the host unless
``capturable``/``fused``, so reading them waits for nothing), and checks made with NumPy on host
tensors (``ppl_data.base.host_values``), which cannot read a device tensor without an explicit
``.cpu()`` and are where a training step checks its indices, before they move. ``make gpu-check``
runs a whole step under ``torch.cuda.set_sync_debug_mode("error")`` on a GPU (``tests/test_cuda.py``).
"""

from __future__ import annotations

import math
import sys
from collections import Counter

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from inference import TermsELBO, build, fit, resolve_config
from inference.catalog import MODELS
from inference.papers.msvae import family_member, msvae_pair, second_stage_loss
from inference.papers.robust import RobustELBO, robust_pair
from ppl_data import Data, DataError, DSprites, GroundTruthData, SpritePairs, Sprites, TexturedShapes
from ppl_data.pendulum import Pendulum, PendulumPairs, simulate

#: ATen ops whose result the host must read from the device (CUDA synchronises the stream for them):
#: a scalar read (``.item()``, ``bool``/``int``/``float`` of a tensor, ``if t:``), and ops whose
#: output size depends on the data.
HOST_READS = frozenset({
    "aten::_local_scalar_dense", "aten::item", "aten::is_nonzero", "aten::equal",
    "aten::nonzero", "aten::masked_select", "aten::unique_consecutive", "aten::_unique",
    "aten::_unique2", "aten::unique_dim", "aten::bincount", "aten::repeat_interleave",
})
#: Indexing ops that read a boolean index back to size their result (``t[mask]``, ``t[mask] = v``).
MASK_INDEXING = frozenset({"aten::index", "aten::index_put", "aten::index_put_", "aten::_index_put_impl_"})


def _from_optimizer() -> bool:
    """Whether the op being dispatched was called from ``torch.optim`` (its host-side step counter)."""
    frame = sys._getframe(2)
    while frame is not None:
        if "torch/optim/" in frame.f_code.co_filename.replace("\\", "/"):
            return True
        frame = frame.f_back
    return False


class HostReads(TorchDispatchMode):
    """Counts device-to-host reads by op name (optimiser step counters apart)."""

    def __init__(self):
        super().__init__()
        self.counts: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        reads = name in HOST_READS or (name in MASK_INDEXING and any(
            torch.is_tensor(i) and i.dtype in (torch.bool, torch.uint8)
            for a in args if isinstance(a, (list, tuple)) for i in a))
        if reads and not _from_optimizer():
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))


class OneStepCounted(Data):
    """``data`` whose batch calls mark fit's steps: reads are counted from batch ``counted`` to the next.

    ``fit`` draws the indices, calls ``batch``, then runs the step; so the window from one
    ``batch`` call to the next covers one whole step and the next step's index draw.
    """

    def __init__(self, data: Data, counted: int = 2):
        self.data, self.counted, self.calls = data, counted, 0
        self.data_shape, self.factor_names, self.factor_sizes = data.data_shape, data.factor_names, data.factor_sizes
        self.mode: HostReads | None = None
        self.stopped = False

    def __len__(self):
        return len(self.data)

    def batch(self, index, device=None, dtype=torch.float32):
        if self.calls == self.counted:
            self.mode = HostReads()
            self.mode.__enter__()
        elif self.calls == self.counted + 1:
            self.stop()
        self.calls += 1
        return self.data.batch(index, device=device, dtype=dtype)

    def stop(self):
        if self.mode is not None and not self.stopped:
            self.mode.__exit__(None, None, None)
            self.stopped = True


def catalog_family(name, **overrides):
    """A catalog objective on procedural dSprites at 16×16 (MLP nets: fast)."""
    def make():
        data = DSprites(16)
        config = resolve_config(name, {k: v for k, v in {"latent_dim": 3, **overrides}.items()
                                       if k in resolve_config(name)})
        return (*build(config, data.data_shape, len(data)), data)
    return make


def robust():
    data = SpritePairs(Sprites(16))
    model, guide = robust_pair(data.data_shape, pose_dim=3, appearance_dim=3, net="mlp", dataset_size=len(data))
    return model, guide, RobustELBO(3, 3, variant="full", warmup_steps=0, lambda_init=0.5), data


def msvae():
    data = TexturedShapes(16)
    m1, g1, loss1, _ = family_member("betatc", {"latent_dim": 3}, data.data_shape, len(data))
    model, guide = msvae_pair(m1, g1, "msvae", 2, data.data_shape, len(data), hidden=4, blocks=1)
    return model, guide, second_stage_loss("msvae", loss1), data


def pendulum():
    from guides.pendulum import PendulumGuide
    from ppl_models.pendulum import PendulumModel

    data = PendulumPairs(3, steps=10)
    model = PendulumModel(10, hidden=8, dataset_size=len(data))
    return model, PendulumGuide(model), TermsELBO(), data


FAMILIES = {
    **{name: catalog_family(name) for name in MODELS},
    "betatc_mws": catalog_family("betatc", estimator="mws"),
    "dip2_running": catalog_family("dip2", dip_momentum=0.5),
    "flow_prior": catalog_family("vae", prior="flow", flow_layers=2, flow_hidden=8),
    "robust": robust,
    "msvae": msvae,
    "pendulum": pendulum,
}


def steady_step_host_reads(name) -> Counter:
    torch.manual_seed(0)
    model, guide, loss, data = FAMILIES[name]()
    counted = OneStepCounted(data, counted=2)  # steps 0 and 1 warm up (validation, lazy state)
    try:
        fit(model, guide, loss, counted, steps=4, batch_size=8, lr=1e-3, log_every=10 ** 6,
            checkpoint_every=10 ** 6, device="cpu", progress=False)
    finally:
        counted.stop()
    assert counted.calls == 4 and counted.mode is not None
    return counted.mode.counts


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_steady_step_makes_no_host_read(name):
    # Each read stalls a GPU's launch queue; the data path's nonzero per shape and .any() checks were 5.
    counts = steady_step_host_reads(name)
    assert sum(counts.values()) == 0, dict(counts)


def test_the_counter_sees_the_reads_it_must_forbid():
    """The mode counts a scalar read, a data-dependent size and a boolean mask index; not optim's counter."""
    x = torch.randn(8)
    param = torch.nn.Parameter(torch.randn(3))
    opt = torch.optim.Adam([param], foreach=False)  # its step counter is read with .item()
    with HostReads() as mode:
        bool(x.sum() > 0), x.nonzero(), x[x > 0], x[0].item()
        param.sum().backward()
        opt.step()
    assert mode.counts["aten::_local_scalar_dense"] == 2 and mode.counts["aten::nonzero"] == 1
    assert mode.counts["aten::index"] == 1


# -- the renderers: same images, same errors, checks on the host ---------------------------------
def per_shape_reference(ds: DSprites, factors: torch.Tensor) -> torch.Tensor:
    """dSprites as rendered before issue 27: each shape's items gathered (nonzero), tested, scattered."""
    from ppl_data.dsprites import BASE_HALF_SIZE, POSITION_SPAN, SHAPES

    n, res = factors.shape[0], ds.resolution
    half = BASE_HALF_SIZE * ds.scale_values()[factors[:, 1]]
    theta = ds.orientation_values()[factors[:, 2]]
    pos = ds.position_values()
    cx = 0.5 + (pos[factors[:, 3]] - 0.5) * POSITION_SPAN
    cy = 0.5 + (pos[factors[:, 4]] - 0.5) * POSITION_SPAN
    win = min(res, 2 * math.ceil(math.sqrt(2) * BASE_HALF_SIZE * res + 1))
    offs = torch.arange(win)
    cols = (torch.floor(cx * res).long() - win // 2).clamp(0, res - win)[:, None] + offs
    rows = (torch.floor(cy * res).long() - win // 2).clamp(0, res - win)[:, None] + offs
    du = ((cols + 0.5) / res - cx[:, None]) / half[:, None]
    dv = ((rows + 0.5) / res - cy[:, None]) / half[:, None]
    cos, sin = torch.cos(theta)[:, None], torch.sin(theta)[:, None]
    window = torch.empty(n, win, win, dtype=torch.bool)
    for k, name in enumerate(SHAPES):  # three groups
        sel = (factors[:, 0] == k).nonzero().squeeze(1)
        p = (cos * du)[sel, None, :] + (sin * dv)[sel, :, None]
        q = (-sin * du)[sel, None, :] + (cos * dv)[sel, :, None]
        if name == "square":
            inside = torch.maximum(p.abs(), q.abs()) <= 1.0
        elif name == "ellipse":
            inside = p.square().add_(q.square(), alpha=4.0) <= 1.44
        else:
            x, y = p.mul(1.15), q.mul(-1.15).add_(0.1)
            x2, y2 = x.square(), y.square()
            inside = (x2 + y2 - 1.0).pow_(3) <= x2.mul_(y2.mul_(y))
        window[sel] = inside
    out = torch.zeros(n, res, res)
    out[torch.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]] = window.float()
    return out.unsqueeze(1)


@pytest.mark.parametrize("res", [16, 64])
def test_dsprites_images_are_unchanged_by_rendering_without_gathers(res):
    # Same pixels as the per-shape renderer, bit for bit, on every shape, scale and orientation.
    ds = DSprites(res)
    f = ds.sample_factors(1500, generator=torch.Generator().manual_seed(5))
    assert torch.equal(ds.images(f), per_shape_reference(ds, f))
    index = torch.randint(len(ds), (257,), generator=torch.Generator().manual_seed(6))
    assert torch.equal(ds.batch(index)[0], per_shape_reference(ds, ds.factors_of(index)))


def test_dsprites_renders_in_chunks_as_in_one_piece(monkeypatch):
    import ppl_data.dsprites as module

    ds = DSprites(32)
    f = ds.sample_factors(100, generator=torch.Generator().manual_seed(1))
    whole = ds.images(f)
    monkeypatch.setattr(module, "CHUNK", 7)  # a chunk boundary inside the batch, and a short last chunk
    assert torch.equal(ds.images(f), whole)


@pytest.mark.parametrize("data", [DSprites(16), Sprites(16), TexturedShapes(16), Pendulum(4, steps=5)],
                         ids=lambda d: type(d).__name__)
def test_batch_renders_what_it_checked_on_the_host(data, monkeypatch):
    # batch checks its indices once on the host; images(factors) checks the factors it is given.
    index = torch.randint(len(data), (5,), generator=torch.Generator().manual_seed(0))
    x, f = data.batch(index)
    assert torch.equal(x, data.images(f))
    monkeypatch.setattr(type(data), "check_factors", lambda self, f: pytest.fail("checked on the device"))
    assert torch.equal(data.batch(index)[0], x)
    monkeypatch.undo()
    bad = f.clone()
    bad[3, -1] = data.factor_sizes[-1]
    with pytest.raises(DataError, match=fr"factor '{data.factor_names[-1]}' = {data.factor_sizes[-1]} is out of range"):
        data.images(bad)
    with pytest.raises(DataError, match=r"indices must be in \[0, "):
        data.batch(torch.tensor([0, len(data)]))


def test_bad_values_raise_the_same_clear_errors():
    ds = DSprites(16)
    with pytest.raises(DataError, match=r"factor 'orientation' = 40 is out of range \[0, 40\)"):
        ds.images(torch.tensor([[0, 0, 0, 0, 0], [0, 0, 40, 0, -1]]))  # the first bad value, row-major
    with pytest.raises(DataError, match=r"factor 'pos_y' = -1"):
        ds.index_of(torch.tensor([[0, 0, 0, 0, -1]]))
    with pytest.raises(DataError, match="integers"):
        ds.images(torch.zeros(2, 5))
    with pytest.raises(DataError, match=r"indices must be in \[0, "):
        ds.factors_of(torch.tensor([-1]))
    pairs = SpritePairs(Sprites(16))
    with pytest.raises(DataError, match=r"indices must be in \[0, "):
        pairs.batch(torch.tensor([len(pairs)]))
    with pytest.raises(DataError, match="damping >= 0"):
        simulate(torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([-0.1]))
    assert torch.isfinite(simulate(torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([0.0]), steps=3)).all()


def test_a_simulator_that_defines_only_images_still_batches():
    # A user's subclass written before render existed: batch falls back to its images.
    class Grid(GroundTruthData):
        factor_names, factor_sizes, data_shape = ("a", "b"), (2, 3), (2,)

        def images(self, factors, dtype=torch.float32):
            return self.check_factors(factors).to(dtype)

    x, f = Grid().batch(torch.arange(6))
    assert torch.equal(x, f.float())
    with pytest.raises(NotImplementedError, match="render"):
        GroundTruthData().render(torch.zeros(1, 0, dtype=torch.long))
