"""Preemption: SIGTERM or SIGINT finishes the step, writes the checkpoint and the metrics row, says how
to resume (one line), exits 143 or 130; resuming is bit-identical to an uninterrupted run."""

import importlib
import importlib.util
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import ppl_data
from inference import build, fit, resolve_config, svi
from inference.checkpoint import load_checkpoint
from inference.cli import run_main
from inference.preemption import Preempted
from inference.svi import CHECKPOINT, METRICS

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: one thread is faster on a shared CPU

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "scripts" / "train.py"


@pytest.fixture(scope="module")
def digits():
    return ppl_data.load("digits")


@pytest.fixture(scope="module")
def train_main():
    spec = importlib.util.spec_from_file_location("train_script_preemption", TRAIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


class Unhandled(Exception):
    pass


@pytest.fixture
def strict_signals():
    """SIGTERM and SIGINT raise :class:`Unhandled` unless ``fit`` handles them (and puts this back)."""
    def refuse(signum, frame):
        raise Unhandled(signal.Signals(signum).name)
    previous = {s: signal.signal(s, refuse) for s in (signal.SIGTERM, signal.SIGINT)}
    yield refuse
    for s, handler in previous.items():
        signal.signal(s, handler)


def signal_at(monkeypatch, step: int, *signums):
    """Send ``signums`` to this process just before step ``step`` runs (from inside fit's loop)."""
    real = svi.warmup_weight

    def weight(s, *args):
        if s == step:
            for signum in signums:
                os.kill(os.getpid(), signum)
        return real(s, *args)
    monkeypatch.setattr(svi, "warmup_weight", weight)


def run(digits, out, steps, resume=False):
    config = resolve_config("vae", {"latent_dim": 3, "beta": 2.0})
    config.update(data="digits", data_shape=list(digits.data_shape), dataset_size=len(digits))
    torch.manual_seed(0)
    model, guide, loss = build(config, digits.data_shape, len(digits))
    return fit(model, guide, loss, digits, steps=steps, out_dir=out, resume=resume, config=config,
               progress=False, device="cpu", batch_size=8, lr=1e-3, warmup_steps=5, log_every=4,
               checkpoint_every=100)


def params(run_dir):
    return load_checkpoint(run_dir / CHECKPOINT)["params"]


def test_signal_finishes_the_step_saves_and_resumes_bit_for_bit(digits, tmp_path, monkeypatch,
                                                                 strict_signals):
    signum = signal.SIGTERM  # SIGINT: test_train_script_prints_one_line_with_the_resume_command
    run(digits, tmp_path / "straight", 8)
    signal_at(monkeypatch, 5, signum)  # arrives while step 5 (the 6th) runs
    with pytest.raises(Preempted) as stop:
        run(digits, tmp_path / "split", 8)
    assert (stop.value.signum, stop.value.step) == (signum, 6)
    assert stop.value.exit_code == 143
    assert stop.value.checkpoint == tmp_path / "split" / CHECKPOINT
    assert load_checkpoint(tmp_path / "split" / CHECKPOINT)["step"] == 6  # no step lost
    rows = [json.loads(s) for s in (tmp_path / "split" / METRICS).read_text().splitlines()]
    assert [r["step"] for r in rows] == [4, 6]  # the metrics row of the step it stopped at
    assert signal.getsignal(signal.SIGTERM) is strict_signals  # the handlers are given back
    assert signal.getsignal(signal.SIGINT) is strict_signals
    assert svi.preemption.requested() is None
    monkeypatch.undo()
    assert run(digits, tmp_path / "split", 8, resume=True).step == 8
    a, b = params(tmp_path / "straight"), params(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_second_sigint_stops_at_once(digits, tmp_path, monkeypatch, strict_signals):
    signal_at(monkeypatch, 2, signal.SIGINT, signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        run(digits, tmp_path / "r", 12)
    assert not (tmp_path / "r" / CHECKPOINT).exists()


def test_train_script_prints_one_line_with_the_resume_command(train_main, tmp_path, monkeypatch, capsys,
                                                              strict_signals):
    out = tmp_path / "run"
    argv = ["--data", "digits", "--steps", "8", "--out", str(out), "--latent-dim", "2", "--batch-size", "8",
            "--log-every", "4", "--device", "cpu", "--no-pictures"]
    signal_at(monkeypatch, 2, signal.SIGINT)
    assert run_main(train_main, argv, resume_flag="--resume") == 130
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"stopped by SIGINT: checkpoint {out / CHECKPOINT} at step 3; resume with: " in lines[0]
    command = shlex.split(lines[0].split("resume with: ", 1)[1])
    assert command[-len(argv) - 1:] == [*argv, "--resume"]
    assert load_checkpoint(out / CHECKPOINT)["step"] == 3


def _params_of(path: Path) -> dict:
    return torch.load(path, weights_only=True)["params"]


def _wait_for(predicate, timeout: float, proc=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_real_signal_to_train_script_then_resume_is_bit_identical(tmp_path, signum):
    """A real ``scripts/train.py`` process, a real signal mid-run, the printed command to resume."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    common = ["--data", "digits", "--steps", "3000", "--latent-dim", "2", "--batch-size", "8",
              "--log-every", "10", "--checkpoint-every", "1000", "--device", "cpu", "--no-pictures"]
    split, straight = tmp_path / "split", tmp_path / "straight"
    proc = subprocess.Popen([sys.executable, str(TRAIN), *common, "--out", str(split)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert _wait_for(lambda: (split / METRICS).is_file() and (split / METRICS).stat().st_size > 0, 120, proc)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    stopped = load_checkpoint(split / CHECKPOINT)["step"]
    assert 0 < stopped < 3000
    assert f"checkpoint {split / CHECKPOINT} at step {stopped}; resume with: " in lines[0]
    last_row = json.loads((split / METRICS).read_text().splitlines()[-1])
    assert last_row["step"] == stopped  # the metrics row of the step it stopped at
    resume = shlex.split(lines[0].split("resume with: ", 1)[1])
    subprocess.run(resume, cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
    subprocess.run([sys.executable, str(TRAIN), *common, "--out", str(straight)], cwd=ROOT, env=env,
                   check=True, capture_output=True, timeout=600)
    a, b = _params_of(straight / CHECKPOINT), _params_of(split / CHECKPOINT)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- Ray trials ------------------------------------------------------------------------------------
TRIAL_FLAGS = {"data": "digits", "steps": 8, "batch_size": 8, "latent_dim": 2, "net": "mlp",
               "no_pictures": True, "log_every": 2, "checkpoint_every": 100}
TRIAL_EVAL = {"sections": ["training"], "full": False, "device": "cpu", "seed": 0, "sizes": {}}


def trial_config(run_dir):
    return {"trial": {"name": "t", "flags": TRIAL_FLAGS, "run_dir": str(run_dir)}, "evaluate": TRIAL_EVAL}


def test_a_trial_tune_stops_saves_its_step_and_resumes_bit_for_bit(tmp_path):
    """Tune stops a trial by making its next ``report`` raise SystemExit in the training thread: the
    trial's fit finishes that step and writes its checkpoint, and the next sweep resumes it exactly."""
    from inference.runs import train_run
    from inference.sweep import run_trial

    reported = []

    def tune_report(result):  # Tune's report once the trial's actor was told to stop
        reported.append(result)
        if result["step"] == 4:
            raise SystemExit(0)

    run = tmp_path / "trial"
    with pytest.raises(SystemExit):
        run_trial(trial_config(run), report=tune_report)
    assert [r["step"] for r in reported] == [2, 4]  # nothing reported once stopped
    assert load_checkpoint(run / CHECKPOINT)["step"] == 5  # the step under way, finished and saved
    assert svi.preemption.requested() is None
    run_trial(trial_config(run), report=lambda result: None)
    train_run(TRIAL_FLAGS, tmp_path / "straight")
    a, b = params(tmp_path / "straight"), params(run)
    assert load_checkpoint(run / CHECKPOINT)["step"] == 8
    assert all(torch.equal(a[k], b[k]) for k in a)


ACTOR = """
import sys, threading, time
from pathlib import Path
from inference.sweep import run_trial
config = {"trial": {"name": "t", "flags": dict(%r, steps=100000), "run_dir": sys.argv[1]},
          "evaluate": %r}
threading.Thread(target=run_trial, args=(config, lambda r: None), daemon=True).start()
metrics = Path(sys.argv[1]) / "metrics.jsonl"
while not metrics.is_file() or len(metrics.read_text().splitlines()) < 3:
    time.sleep(0.05)
sys.exit(0)  # what Ray's __ray_terminate__ (and SIGTERM to a worker) does: the process ends
"""


@pytest.mark.slow
def test_a_trial_whose_process_ends_saves_its_step(tmp_path):
    """A Ray worker's process ending (``exit_actor``, SIGTERM) while its trial trains in a daemon
    thread: the trial's fit still finishes the step and writes the checkpoint before the exit."""
    run = tmp_path / "trial"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", ACTOR % (TRIAL_FLAGS, TRIAL_EVAL), str(run)], env=env, cwd=ROOT,
                   check=True, timeout=300)
    step = load_checkpoint(run / CHECKPOINT)["step"]
    assert 6 <= step < 100000
    assert json.loads((run / METRICS).read_text().splitlines()[-1])["step"] == step


# Scripts other than train.py: the line names the command that resumes them (reproduce.py: the same one).
PREEMPTED_SCRIPTS = [
    ("reproduce.py", "inference.reproduce.reproduce", ["baselines", "--budget", "tiny", "--seeds", "0"], []),
    ("robust_sprites.py", "inference.papers.robust.run_robust_ablation", ["--quick"], ["--resume"]),
    ("dpvae_compare.py", "inference.papers.dpvae.run_dpvae_comparison", ["--quick"], ["--resume"]),
]


@pytest.mark.parametrize("script, call, argv, added", PREEMPTED_SCRIPTS, ids=[s[0] for s in PREEMPTED_SCRIPTS])
def test_every_resumable_script_prints_the_command_that_resumes_it(script, call, argv, added, tmp_path,
                                                                     monkeypatch, capsys):
    import runpy

    if script == "reproduce.py":
        argv = [*argv, "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    else:
        argv = [*argv, "--out", str(tmp_path / "out")]
    checkpoint = tmp_path / "run" / CHECKPOINT

    def preempted(*args, **kwargs):  # the library call, stopped by SIGTERM at step 5 of a run
        raise Preempted(signal.SIGTERM, 5, checkpoint)
    module, name = call.rsplit(".", 1)
    monkeypatch.setattr(importlib.import_module(module), name, preempted)
    path = str(ROOT / "scripts" / script)
    monkeypatch.setattr(sys, "argv", [path, *argv])
    monkeypatch.setattr(sys, "orig_argv", [sys.executable, "-u", path, *argv])  # as the shell started it
    with pytest.raises(SystemExit) as done:
        runpy.run_path(path, run_name="__main__")
    assert done.value.code == 143
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"stopped by SIGTERM: checkpoint {checkpoint} at step 5; resume with: " in lines[0]
    command = shlex.split(lines[0].split("resume with: ", 1)[1])
    assert command == [sys.executable, "-u", path, *argv, *added]


@pytest.mark.parametrize("flag, advice", [(None, ""), ("", "; run the same command to resume from the last checkpoint"),
                                          ("--resume", "; resume with --resume from the last checkpoint")])
def test_a_second_ctrl_c_advises_only_what_the_script_can_do(flag, advice, capsys):
    def main(argv):
        raise KeyboardInterrupt
    assert run_main(main, [], resume_flag=flag) == 130
    err = capsys.readouterr().err.strip()
    assert err.endswith(": interrupted" + advice) and len(err.splitlines()) == 1
