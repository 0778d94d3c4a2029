"""``fit``'s fast path computes the same step as the eager one, and resumes bit-for-bit.

The fast path (``inference.svi``: channels-last conv weights, fused Adam, the allocator setting)
changes how a step is computed, never what: same loss, same gradients to float tolerance.
"""

import copy

import pytest
import torch

from inference import build, fit, resolve_config
from inference.errors import ConfigError
from inference.svi import (CHECKPOINT, FAST_PARTS, fast_parts, keep_freed_memory, load_optimizer_state,
                           make_optimizer, match_state_layout)
from inference.checkpoint import load_checkpoint
from ppl_data import TensorData


@pytest.fixture(scope="module")
def images():
    """Random binary 64×64 images: the conv64 nets' input, like the peer benchmark's."""
    x = torch.rand(96, 1, 64, 64, generator=torch.Generator().manual_seed(0)) < 0.5
    return TensorData(x.to(torch.uint8) * 255, name="binary64")


def betatc_pair(data, seed=0):
    """What ``train.py --model betatc --estimator mws --beta 6`` builds, with a smaller code."""
    torch.manual_seed(seed)
    config = resolve_config("betatc", {"beta": 6.0, "estimator": "mws", "latent_dim": 4})
    return build(config, data.data_shape, len(data))


def one_step(data, fast, **kw):
    model, guide, loss = betatc_pair(data)
    before = copy.deepcopy((model.state_dict(), guide.state_dict()))
    result = fit(model, guide, loss, data, steps=1, batch_size=16, lr=1e-3, device="cpu",
                 progress=False, fast=fast, **kw)
    grads = {f"{part}.{n}": p.grad.clone() for part, m in (("model", model), ("guide", guide))
             for n, p in m.named_parameters()}
    return before, result.terms, grads, model, guide


def test_fast_step_gives_the_eager_loss_and_gradients(images):
    before_fast, terms_fast, grads_fast, *_ = one_step(images, True)
    before_eager, terms_eager, grads_eager, *_ = one_step(images, False)
    # the same start: same weights, same batch and the same z (fit seeds both)
    assert all(torch.equal(before_fast[0][k], before_eager[0][k]) for k in before_fast[0])
    assert terms_fast.keys() == terms_eager.keys()
    for name in terms_fast:
        assert terms_fast[name] == pytest.approx(terms_eager[name], rel=1e-5, abs=1e-4), name
    assert grads_fast.keys() == grads_eager.keys()
    for name, g in grads_fast.items():
        scale = grads_eager[name].abs().max().item()
        assert torch.allclose(g, grads_eager[name], rtol=1e-4, atol=1e-5 * scale), name


def test_fast_path_parts_each_give_the_eager_gradients(images):
    _, terms_eager, grads_eager, *_ = one_step(images, False)
    for part in sorted(FAST_PARTS):
        _, terms, grads, *_ = one_step(images, {part})
        assert terms["loss"] == pytest.approx(terms_eager["loss"], rel=1e-5), part
        for name, g in grads.items():
            scale = grads_eager[name].abs().max().item()
            assert torch.allclose(g, grads_eager[name], rtol=1e-4, atol=1e-5 * scale), (part, name)


def test_fused_adam_makes_the_for_loop_adam_update():
    torch.manual_seed(0)
    shapes = [(8, 3, 4, 4), (16,), (5, 7)]
    updates = []
    for fused in (True, False):
        params = [torch.nn.Parameter(torch.randn(s, generator=torch.Generator().manual_seed(i)))
                  for i, s in enumerate(shapes)]
        optimizer = make_optimizer(params, lr=1e-2, fast=fused)
        assert optimizer.defaults["fused"] is (True if fused else None)
        for step in range(3):
            for i, p in enumerate(params):
                p.grad = torch.randn(p.shape, generator=torch.Generator().manual_seed(100 * step + i))
            optimizer.step()
        updates.append([p.detach().clone() for p in params])
    for a, b in zip(*updates):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)


def test_fit_gives_back_the_default_layout(images):
    *_, model, guide = one_step(images, True)
    convs = [p for p in [*model.parameters(), *guide.parameters()] if p.dim() == 4]
    assert convs and all(p.is_contiguous() for p in convs)
    assert all(p.grad.is_contiguous() for p in convs)


def run(data, out, steps, fast=True, resume=False):
    model, guide, loss = betatc_pair(data)
    fit(model, guide, loss, data, steps=steps, out_dir=out, resume=resume, batch_size=16, lr=1e-3,
        log_every=2, checkpoint_every=2, device="cpu", progress=False, fast=fast)
    return load_checkpoint(out / CHECKPOINT)


def test_fast_run_resumes_bit_identically(images, tmp_path):
    straight = run(images, tmp_path / "straight", 6)
    run(images, tmp_path / "split", 4)
    split = run(images, tmp_path / "split", 6, resume=True)
    a, b = straight["params"], split["params"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(v.is_contiguous() for v in b.values())  # checkpoints hold the default layout
    sa, sb = straight["optimizer"]["state"], split["optimizer"]["state"]
    assert all(torch.equal(sa[i][k], sb[i][k]) for i in sa for k in sa[i])


@pytest.mark.parametrize("first, second", [(False, True), (True, False)])
def test_checkpoint_resumes_across_paths(images, tmp_path, monkeypatch, first, second):
    """An eager checkpoint resumed on the fast path (and the reverse) runs this run's Adam kernel,
    with the moments in their parameters' layout: the fused kernel walks memory flat and would mix
    up elements otherwise. It ends where a run on one path ends, to float tolerance."""
    import inference.svi as svi

    calls = []

    def spy(optimizer, saved):
        load_optimizer_state(optimizer, saved)
        state = optimizer.state.items()
        calls.append((all(s[k].stride() == p.stride() for p, s in state for k in ("exp_avg", "exp_avg_sq")),
                      any(p.dim() == 4 and not p.is_contiguous() for p, _ in state),
                      all(bool(g["fused"]) is second for g in optimizer.param_groups),
                      all(s["step"].device == p.device and float(s["step"]) == 2 for p, s in state)))

    monkeypatch.setattr(svi, "load_optimizer_state", spy)
    run(images, tmp_path / "a", 2, fast=first)
    crossed = run(images, tmp_path / "a", 4, fast=second, resume=True)
    run(images, tmp_path / "b", 2, fast=second)
    same = run(images, tmp_path / "b", 4, fast=second, resume=True)
    assert calls[0] == (True, second, True, True)
    for k, v in same["params"].items():
        assert torch.allclose(crossed["params"][k], v, rtol=1e-4, atol=3e-5), k


def test_match_state_layout_keeps_values_and_takes_the_parameter_layout():
    param = torch.nn.Parameter(torch.randn(4, 3, 2, 2).contiguous(memory_format=torch.channels_last))
    optimizer = torch.optim.Adam([param])
    moment = torch.randn(4, 3, 2, 2)
    optimizer.state[param] = {"step": torch.tensor(3.0), "exp_avg": moment.clone(),
                              "exp_avg_sq": moment.abs().clone()}
    match_state_layout(optimizer)
    state = optimizer.state[param]
    assert state["exp_avg"].stride() == param.stride() and torch.equal(state["exp_avg"], moment)
    assert torch.equal(state["exp_avg_sq"], moment.abs()) and state["step"].shape == ()


def test_fast_argument_is_checked(images):
    assert fast_parts(True) == FAST_PARTS and fast_parts(False) == frozenset()
    assert fast_parts("channels_last") == {"channels_last"}
    model, guide, loss = betatc_pair(images)
    with pytest.raises(ConfigError, match="'compile'"):
        fit(model, guide, loss, images, steps=1, fast={"compile"}, device="cpu")
    with pytest.raises(ConfigError, match="fast must be"):
        fit(model, guide, loss, images, steps=1, fast=3, device="cpu")


def test_keep_freed_memory_is_idempotent():
    first = keep_freed_memory()
    assert keep_freed_memory() is first


def test_channels_last_reaches_single_channel_layers_so_every_activation_shares_one_layout():
    """A (32, 1, 4, 4) weight is contiguous in both layouts; left with default strides, oneDNN runs
    that layer channels-first, and its ReLU's backward meets a channels-last gradient (slow path)."""
    from guides.nets import Conv64Encoder
    from ppl_models.nets import Conv64Decoder
    from inference.svi import channels_last_strides, restore_layout, to_channels_last

    torch.manual_seed(0)
    encoder, decoder = Conv64Encoder(1, 4), Conv64Decoder(4, 1)
    before = {k: v.clone() for k, v in {**encoder.state_dict(), **decoder.state_dict()}.items()}
    moved = to_channels_last(encoder) + to_channels_last(decoder)
    assert len(moved) == 8  # every conv weight, the two single-channel ones included
    outputs = []
    for conv in [*encoder.conv, *decoder.deconv]:
        if isinstance(conv, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            conv.register_forward_hook(lambda m, i, o: outputs.append(o))
    x = (torch.rand(3, 1, 64, 64) < 0.5).float()  # the batch as the data gives it
    decoder(encoder(x)[0]).sum().backward()
    assert len(outputs) == 8
    assert all(o.stride() == channels_last_strides(o.shape) for o in outputs if o.shape[1] > 1)
    restore_layout(moved)
    after = {**encoder.state_dict(), **decoder.state_dict()}
    assert all(torch.equal(before[k], after[k]) and after[k].is_contiguous() for k in before)
    assert encoder.conv[0].weight.stride() == (16, 16, 4, 1)  # the default strides are back
