"""One writer per run folder: a second process (train, resume, evaluate, sweep trial) is refused with one
line naming the folder and the holder's pid; the OS lock does not outlive a killed holder."""

import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from inference import runlock
from inference.cli import run_main
from inference.errors import RunInUseError
from inference.runlock import LOCK

ROOT = Path(__file__).resolve().parents[1]

#: another process holding a folder's lock the way ours do (flock, pid in the file), without imports
HOLDER = """
import fcntl, os, sys, time
fd = os.open(os.path.join(sys.argv[1], ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.write(fd, str(os.getpid()).encode())
print("held", flush=True)
time.sleep(600)
"""


def script_main(name):
    spec = importlib.util.spec_from_file_location(f"{name}_script_lock", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture
def held(tmp_path):
    """A run folder (a config.json in it) whose lock another live process holds."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")  # the holder below makes its lock file
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield run, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def snapshot(folder: Path):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_second_process_is_refused_until_the_holder_is_killed(held, capsys):
    run, proc = held
    before = snapshot(run)
    with pytest.raises(RunInUseError, match=f"run folder {run} is in use by process {proc.pid}"):
        with runlock.hold(run):
            pass
    with pytest.raises(RunInUseError, match=str(proc.pid)):
        runlock.check_free(run)
    # train --resume, evaluate and a sweep trial: one line naming the folder and the pid, exit 2
    argv = ["--steps", "9", "--resume", "--out", str(run)]
    assert run_main(script_main("train"), argv) == 2
    assert one_line(capsys).endswith(f": error: run folder {run} is in use by process {proc.pid}; "
                                     "wait for it to finish or stop it")
    assert run_main(script_main("evaluate"), [str(run)]) == 2
    assert f"run folder {run} is in use by process {proc.pid}" in one_line(capsys)
    from inference.sweep import run_trial
    with pytest.raises(RunInUseError, match=str(proc.pid)):
        run_trial({"trial": {"name": "t", "flags": {"steps": 1}, "run_dir": str(run)}, "evaluate": {}},
                  report=lambda result: None)
    assert snapshot(run) == before  # nothing written
    proc.send_signal(signal.SIGKILL)  # killed: no chance to clean up, and yet the lock is gone
    proc.wait()
    with runlock.hold(run):
        assert (run / LOCK).read_text().strip() == str(os.getpid())


def test_holding_is_reentrant_in_a_thread_and_refused_in_another(tmp_path):
    run = tmp_path / "run"
    errors = []
    with runlock.hold(run):
        with runlock.hold(run):  # a trial holds its folder while train_run and evaluate_run do too
            pass
        runlock.check_free(run)
        thread = threading.Thread(target=lambda: errors.append(_try_hold(run)))
        thread.start()
        thread.join()
    assert len(errors) == 1 and "another thread of this process" in errors[0]
    assert _try_hold(run) is None  # released with the outermost hold


def _try_hold(run):
    try:
        with runlock.hold(run):
            return None
    except RunInUseError as err:
        return str(err)


def test_a_fresh_run_ignores_its_own_lock_file(tmp_path):
    """A folder holding only a lock file (a run refused before it wrote anything) is still empty."""
    from inference.cli import check_output_dir
    run = tmp_path / "run"
    with runlock.hold(run):
        pass
    assert [p.name for p in run.iterdir()] == [LOCK]
    assert check_output_dir(run) == run


@pytest.mark.slow
def test_two_train_processes_on_one_folder(tmp_path):
    """Two real ``scripts/train.py --resume`` on one folder: the second is refused with the first's pid;
    once the first is killed (SIGKILL), the folder is free again."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    train = [sys.executable, str(ROOT / "scripts" / "train.py")]
    common = ["--latent-dim", "2", "--batch-size", "8", "--log-every", "5", "--device", "cpu", "--no-pictures"]
    run = tmp_path / "run"
    subprocess.run([*train, "--data", "digits", "--steps", "5", "--out", str(run), *common], env=env,
                   check=True, capture_output=True, timeout=300)
    first = subprocess.Popen([*train, "--steps", "100000", "--resume", "--out", str(run), *common], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len((run / "metrics.jsonl").read_text().splitlines()) < 2:  # the first is training
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
            time.sleep(0.05)
        second = subprocess.run([*train, "--steps", "100000", "--resume", "--out", str(run), *common],
                                env=env, capture_output=True, text=True, timeout=300)
        assert second.returncode == 2
        assert second.stderr.strip() == (f"train.py: error: run folder {run} is in use by process "
                                         f"{first.pid}; wait for it to finish or stop it")
    finally:
        first.kill()
        first.wait()
    third = subprocess.run([*train, "--steps", "10", "--resume", "--out", str(run), *common], env=env,
                           capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr
