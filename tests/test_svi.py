"""The SVI runner: exact resume, atomic checkpoints, NaN stop, safe loading, load_run."""

import json
import pickle

import pytest
import torch

import ppl_data
from inference import build, fit, load_run, resolve_config
from inference.checkpoint import load_checkpoint, save_checkpoint
from inference.errors import CheckpointError, ConfigError, NonFiniteLossError
from inference.svi import CHECKPOINT, METRICS, warmup_weight


@pytest.fixture(scope="module")
def digits():
    return ppl_data.load("digits")


def make(digits, **overrides):
    config = resolve_config("vae", {"latent_dim": 3, **overrides})
    config.update(data="digits", data_shape=list(digits.data_shape), dataset_size=len(digits))
    torch.manual_seed(0)
    model, guide, loss = build(config, digits.data_shape, len(digits))
    return config, model, guide, loss


def params(run_dir):
    return load_checkpoint(run_dir / CHECKPOINT)["params"]


def run(digits, out, steps, resume=False, **kw):
    config, model, guide, loss = make(digits, beta=2.0)
    kw = {"batch_size": 16, "lr": 1e-3, "warmup_steps": 5, "log_every": 2, "checkpoint_every": 3, **kw}
    return fit(model, guide, loss, digits, steps=steps, out_dir=out, resume=resume, config=config,
               progress=False, device="cpu", **kw)


def test_resume_is_bit_identical(digits, tmp_path):
    run(digits, tmp_path / "straight", 11)
    run(digits, tmp_path / "split", 7)  # last checkpoint at step 7 (the end)
    res = run(digits, tmp_path / "split", 11, resume=True)
    assert res.step == 11
    a, b = params(tmp_path / "straight"), params(tmp_path / "split")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The log holds the first session's last step too; the final window is the same.
    lines = lambda p: [json.loads(s) for s in (p / METRICS).read_text().splitlines()]
    assert [r["step"] for r in lines(tmp_path / "split")] == [2, 4, 6, 7, 8, 10, 11]
    assert lines(tmp_path / "split")[-1] == lines(tmp_path / "straight")[-1]


def test_killed_run_resumes_from_last_checkpoint(digits, tmp_path):
    """A run killed after step 8 (checkpoint at 6) resumes from 6 and ends like a straight run."""
    run(digits, tmp_path / "straight", 10)
    out = tmp_path / "killed"

    class Kill(Exception):
        pass

    config, model, guide, loss = make(digits, beta=2.0)
    calls = {"n": 0}
    original = loss.loss_and_grads

    def die_at_8(*a, **k):
        calls["n"] += 1
        out = original(*a, **k)
        if calls["n"] == 8:
            raise Kill
        return out

    loss.loss_and_grads = die_at_8
    with pytest.raises(Kill):
        fit(model, guide, loss, digits, steps=10, out_dir=out, batch_size=16, lr=1e-3, warmup_steps=5,
            log_every=2, checkpoint_every=3, config=config, progress=False, device="cpu")
    assert load_checkpoint(out / CHECKPOINT)["step"] == 6
    run(digits, out, 10, resume=True)
    a, b = params(tmp_path / "straight"), params(out)
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(s)["step"] for s in (out / METRICS).read_text().splitlines()]
    assert steps == [2, 4, 6, 8, 10]


def test_crash_during_checkpoint_write_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / CHECKPOINT
    good = {"step": 3, "params": {"w": torch.ones(2)}, "optimizer": {}, "rng": {}}
    save_checkpoint(path, good)

    def broken_save(obj, fh):
        fh.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {**good, "step": 4})
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["step"] == 3 and torch.equal(state["params"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT]  # no temporary left behind


class _RunsCode:
    """Unpickling this would create a marker file: a checkpoint must never be able to do that."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_checkpoint_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "pyro-disentangle/1", "step": 1, "params": {}, "optimizer": {}, "rng": {},
                "payload": _RunsCode(marker)}, evil)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(evil)
    # The same through a raw pickle file.
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(CheckpointError, match="raw.pt"):
        load_checkpoint(raw)
    assert not marker.exists()


@pytest.mark.parametrize("content, match", [
    (b"", "not a readable checkpoint"),
    (b"garbage" * 10, "not a readable checkpoint"),
])
def test_corrupt_checkpoints_refused(tmp_path, content, match):
    path = tmp_path / "c.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_truncated_and_foreign_checkpoints_refused(tmp_path):
    path = tmp_path / "t.pt"
    save_checkpoint(path, {"step": 1, "params": {"w": torch.ones(100)}, "optimizer": {}, "rng": {}})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)
    torch.save({"state_dict": {"w": torch.ones(1)}}, path)
    with pytest.raises(CheckpointError, match="not a pyro-disentangle"):
        load_checkpoint(path)


def test_nan_stops_with_term_and_step_and_keeps_last_good_checkpoint(digits, tmp_path):
    config, model, guide, loss = make(digits)
    original = model.decoder.forward
    calls = {"n": 0}

    def poisoned(z):
        calls["n"] += 1
        out = original(z)
        return out * float("nan") if calls["n"] >= 5 else out

    model.decoder.forward = poisoned
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss .* at step 5") as info:
        fit(model, guide, loss, digits, steps=20, out_dir=tmp_path, batch_size=8, log_every=10,
            checkpoint_every=2, config=config, progress=False, device="cpu")
    assert info.value.step == 5 and info.value.term == "loss"
    state = load_checkpoint(tmp_path / CHECKPOINT)
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["params"].values())


def test_existing_run_dir_is_not_overwritten(digits, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    config, model, guide, loss = make(digits)
    with pytest.raises(ConfigError, match="already exists"):
        fit(model, guide, loss, digits, steps=1, out_dir=tmp_path, progress=False)
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_resume_refuses_mismatched_model(digits, tmp_path):
    run(digits, tmp_path, 3)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    config, model, guide, loss = make(digits, latent_dim=4)
    with pytest.raises(CheckpointError, match="does not match"):
        fit(model, guide, loss, digits, steps=6, out_dir=tmp_path, resume=True, progress=False)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_load_run_gives_the_trained_pair(digits, tmp_path):
    res = run(digits, tmp_path, 4)
    loaded = load_run(tmp_path)
    assert loaded.step == 4 and loaded.config["beta"] == 2.0
    x, _ = digits.batch(torch.arange(5))
    saved = params(tmp_path)
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, saved["model." + k])
    loc, scale = loaded.guide.posterior(x)["z"]
    assert loc.shape == (5, 3) and (scale > 0).all()


def test_warmup_weight_schedule():
    assert warmup_weight(0, 10, 0.01) == pytest.approx(0.01)
    assert warmup_weight(5, 10, 0.01) == pytest.approx(0.01 + 0.99 * 0.5)
    assert warmup_weight(10, 10, 0.01) == 1.0 and warmup_weight(50, 10, 0.01) == 1.0
    assert warmup_weight(0, 0, 0.01) == 1.0


def test_warmup_scales_the_logged_loss(digits, tmp_path):
    """During warm-up the loss is recon + w·KL with w the logged weight."""
    run(digits, tmp_path, 4, warmup_steps=100, log_every=1)
    rows = [json.loads(s) for s in (tmp_path / METRICS).read_text().splitlines()]
    for r in rows:
        # beta 2 times the warm-up weight.
        assert r["loss"] == pytest.approx(r["recon"] + 2.0 * r["kl_weight"] * r["kl"], rel=1e-5)


@pytest.mark.parametrize("kw, match", [
    ({"steps": -1}, "steps"), ({"steps": 2, "batch_size": 0}, "batch_size"),
    ({"steps": 2, "lr": -1.0}, "lr"), ({"steps": 2, "lr": float("nan")}, "lr"),
])
def test_bad_arguments_named(digits, kw, match):
    config, model, guide, loss = make(digits)
    with pytest.raises(ConfigError, match=match):
        fit(model, guide, loss, digits, progress=False, **kw)
