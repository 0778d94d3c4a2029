"""TensorBoard logging (issue 26): the event files read back with TensorBoard's own reader.

Tags and values equal metrics.jsonl's; a resumed run logs every step once; the config is the
run's hparams and an evaluation adds its metrics beside them; a sweep trial logs under the study's
folder; without the package, one line naming the extra.
"""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader  # noqa: E402
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402

import ppl_data  # noqa: E402
from inference import build, fit, resolve_config  # noqa: E402
from inference.errors import ConfigError  # noqa: E402
from inference.report import evaluate_run  # noqa: E402
from inference.runs import train_run  # noqa: E402
from inference.sweep.trial import run_trial, trial_flags  # noqa: E402
from inference.svi import CHECKPOINT, METRICS  # noqa: E402
from inference.checkpoint import load_checkpoint  # noqa: E402
from inference.tensorboard import INSTALL, tag  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = {"data": "digits", "latent_dim": 3, "net": "mlp", "batch_size": 16, "no_pictures": True}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def board(folder) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def rows(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / METRICS).read_text().splitlines()]


def scalar_series(acc, name):
    return [(e.step, e.value) for e in acc.Scalars(name)]


def assert_matches_metrics(acc, run_dir):
    """Every number of every metrics.jsonl row is the scalar of its tag at its step, once."""
    logged = rows(run_dir)
    names = [k for k in logged[0] if k != "step"]
    assert sorted(acc.Tags()["scalars"]) == sorted(tag(n, names) for n in names)
    for name in names:
        series = scalar_series(acc, tag(name, names))
        assert [s for s, _ in series] == [r["step"] for r in logged]
        assert [v for _, v in series] == pytest.approx([r[name] for r in logged], rel=1e-6)


def hparams_of(acc) -> dict:
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    ssi = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in ssi.hparams.items()}


def test_train_cli_logs_terms_weights_state_pictures_and_hparams(tmp_path):
    out, tb = tmp_path / "run", tmp_path / "tb"
    assert _script("train").main(
        ["--model", "capacity", "--data", "digits", "--steps", "6", "--log-every", "2",
         "--warmup-steps", "4", "--batch-size", "16", "--latent-dim", "3", "--net", "mlp",
         "--no-pictures", "--out", str(out), "--tensorboard", str(tb),
         "--tensorboard-images", "4"]) is None
    acc = board(tb)
    assert set(acc.Tags()["scalars"]) == {"elbo/loss", "elbo/recon", "elbo/kl", "state/capacity",
                                          "weights/kl_weight"}
    assert_matches_metrics(acc, out)
    assert [r["kl_weight"] for r in rows(out)] == pytest.approx([0.2575, 0.7525, 1.0])  # the warm-up
    assert sorted(acc.Tags()["images"]) == ["pictures/reconstructions", "pictures/traversals"]
    rec = acc.Images("pictures/reconstructions")
    assert [e.step for e in rec] == [4]  # every 4 steps, at log steps only
    assert rec[0].height > 2 * 8 and rec[0].width > 8 * 8  # 2 rows of 8 digits, framed
    trav = acc.Images("pictures/traversals")[0]
    assert trav.height > 3 * 8 and trav.width > 7 * 8  # 3 code dimensions × 7 values
    hp = hparams_of(acc)
    assert hp["model"] == "capacity" and hp["c_max"] == 25.0 and hp["steps"] == 6 and hp["lr"] == 1e-4
    assert "tensorboard" not in hp  # a machine path is not a hyperparameter
    assert json.loads((out / "config.json").read_text())["tensorboard"] == str(tb.resolve())


def _pair(digits, model="factor"):
    config = resolve_config(model, {"latent_dim": 3, "net": "mlp"})
    config.update(data="digits", data_shape=list(digits.data_shape), dataset_size=len(digits))
    torch.manual_seed(0)
    return config, *build(config, digits.data_shape, len(digits))


def test_factor_state_and_resume_appends_without_duplicate_steps(tmp_path):
    """A run killed after logging step 8 (checkpoint at 6) resumes: TensorBoard has each step once,
    with the resumed session's values, as metrics.jsonl has; the discriminator's state is tagged."""
    digits = ppl_data.load("digits")
    out, tb = tmp_path / "run", tmp_path / "tb"
    kw = dict(batch_size=16, lr=1e-3, log_every=2, checkpoint_every=3, progress=False, device="cpu",
              log_dir=tb)

    class Kill(Exception):
        pass

    config, model, guide, loss = _pair(digits)
    original, calls = loss.loss_and_grads, {"n": 0}

    def die_at_9(*a, **k):
        calls["n"] += 1
        if calls["n"] == 9:
            raise Kill
        return original(*a, **k)

    loss.loss_and_grads = die_at_9
    with pytest.raises(Kill):
        fit(model, guide, loss, digits, steps=10, out_dir=out, config=config, **kw)
    assert load_checkpoint(out / CHECKPOINT)["step"] == 6
    first = [e.step for f in sorted(tb.glob("events.*")) for e in EventFileLoader(str(f)).Load()
             if e.summary.value and e.summary.value[0].tag == "elbo/loss"]
    assert first == [2, 4, 6, 8]  # step 8 was logged after the last checkpoint

    config, model, guide, loss = _pair(digits)
    fit(model, guide, loss, digits, steps=10, out_dir=out, config=config, resume=True, **kw)
    acc = board(tb)
    assert {"state/tc", "state/discriminator", "elbo/loss"} <= set(acc.Tags()["scalars"])
    assert [s for s, _ in scalar_series(acc, "elbo/loss")] == [2, 4, 6, 8, 10]
    assert_matches_metrics(acc, out)


def test_bad_tensorboard_requests(tmp_path):
    digits = ppl_data.load("digits")
    config, model, guide, loss = _pair(digits, "vae")
    kw = dict(steps=2, batch_size=16, log_every=2, progress=False, device="cpu")
    with pytest.raises(ConfigError, match="multiple of log_every"):
        fit(model, guide, loss, digits, log_dir=tmp_path / "tb", image_every=3, **kw)
    with pytest.raises(ConfigError, match="needs log_dir"):
        fit(model, guide, loss, digits, image_every=2, **kw)
    fit(model, guide, loss, digits, log_dir=tmp_path / "tb", **kw)
    with pytest.raises(ConfigError, match="already holds another run's events"):
        fit(model, guide, loss, digits, log_dir=tmp_path / "tb", **kw)


def test_without_the_package_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if absent
    from inference.cli import run_main

    main = _script("train").main
    argv = ["--data", "digits", "--steps", "2", "--latent-dim", "3", "--net", "mlp", "--batch-size", "16",
            "--out", str(tmp_path / "run"), "--tensorboard", str(tmp_path / "tb")]
    assert run_main(main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and INSTALL in err[0]
    assert not (tmp_path / "run").exists() and not (tmp_path / "tb").exists()  # nothing written


def test_evaluation_metrics_join_the_runs_hparams(tmp_path):
    out, tb = tmp_path / "run", tmp_path / "tb"
    train_run({**TINY, "steps": 4, "log_every": 2, "tensorboard": str(tb)}, out)
    for _ in range(2):  # evaluating again replaces the point at that step
        report = evaluate_run(out, ("training", "reconstruction"))
    evaluation = board(tb / "evaluation")
    (step, l1), = scalar_series(evaluation, "eval/reconstruction_l1")
    assert step == 4 and l1 == pytest.approx(report["metrics"]["reconstruction"]["l1"], rel=1e-6)
    assert "eval/reconstruction_num_points" not in evaluation.Tags()["scalars"]
    assert report["tensorboard"] == str((tb / "evaluation").resolve())
    assert "curves.png" in report["files"] and (out / "curves.png").stat().st_size > 0
    # resuming through train_run keeps the folder (config.json) and appends
    train_run({"steps": 6, "log_every": 2}, out, resume=True)
    assert [s for s, _ in scalar_series(board(tb), "elbo/loss")] == [2, 4, 6]


def test_sweep_trial_logs_under_the_study_folder(tmp_path):
    study = tmp_path / "study"
    trial = {"name": "seed=0-abc123", "run_dir": str(study / "runs" / "seed=0-abc123"),
             "flags": {**TINY, "steps": 2, "log_every": 1, "seed": 0, "tensorboard": "tensorboard"}}
    assert trial_flags(trial)["tensorboard"] == str(study / "tensorboard" / "seed=0-abc123")
    assert trial_flags({**trial, "flags": {"steps": 2}}) == {"steps": 2}
    results = []
    run_trial({"trial": trial, "evaluate": {"sections": ["training"], "full": False, "device": "cpu",
                                            "seed": 0, "sizes": {}}}, report=results.append)
    assert results[-1]["status"] == "ok", results[-1]
    acc = board(study / "tensorboard" / "seed=0-abc123")
    assert [s for s, _ in scalar_series(acc, "elbo/loss")] == [1, 2]
    assert hparams_of(acc)["seed"] == 0


def test_no_host_sync_beyond_the_log_windows(tmp_path, monkeypatch):
    """The same device-to-host reads with and without TensorBoard: it logs the window's host values."""
    digits = ppl_data.load("digits")
    counts = {}
    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy"):
        original = getattr(torch.Tensor, name)

        def counted(self, *a, _name=name, _original=original, **k):
            counts[_name] = counts.get(_name, 0) + 1
            return _original(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, counted)
    reads = []
    for log_dir in (None, tmp_path / "tb"):
        counts.clear()
        config, model, guide, loss = _pair(digits, "capacity")
        fit(model, guide, loss, digits, steps=8, batch_size=16, log_every=2, warmup_steps=4,
            progress=False, device="cpu", log_dir=log_dir)
        reads.append(dict(counts))
    monkeypatch.undo()
    assert reads[0].get("tolist", 0) >= 4  # the counting works: one read per log window at least
    assert reads[0] == reads[1]
    assert len(board(tmp_path / "tb").Scalars("state/capacity")) == 4


def test_pictures_leave_every_module_in_its_mode_and_the_rng_alone(tmp_path):
    from inference.tensorboard import TrainingBoard

    digits = ppl_data.load("digits")
    _, model, guide, _ = _pair(digits, "vae")
    frozen = next(m for m in model.modules() if m is not model)
    model.train()
    guide.train()
    frozen.eval()  # a frozen part (e.g. MS-VAE's stage one) stays in eval mode
    modes = [m.training for m in (*model.modules(), *guide.modules())]
    tb = TrainingBoard(tmp_path / "tb", start=0, resume=False, log_every=1, image_every=1)
    torch.manual_seed(3)
    tb.log_images(1, model, guide, digits, "cpu")
    after = torch.rand(3)
    torch.manual_seed(3)
    assert torch.equal(after, torch.rand(3))  # training's random stream untouched
    assert [m.training for m in (*model.modules(), *guide.modules())] == modes
    tb.close()
    assert board(tmp_path / "tb").Tags()["images"] == ["pictures/reconstructions", "pictures/traversals"]
