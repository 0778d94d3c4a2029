"""Sweeps on a Ray cluster (issue 26, part 4).

Fast, in this process: ``--address`` with nothing listening is one line and exit 2 well within 30 s
(Ray itself retries without end), and the probe accepts an address that listens; a trial whose
worker dies mid-run (a ``BaseException`` out of its report, as when its process goes) is resumed
from its run folder's checkpoint when started again, and the results table has it once, with its
final step and both starts counted.

Slow: a real two-node cluster on the loopback address (Ray's own multi-node harness,
``ray.cluster_utils.Cluster``: a head and a worker node, one CPU and a 100 MB object store each, each
with a custom resource that names its role), joined by ``scripts/sweep.py --address`` in a child
process. Trials land on both nodes (the node ids in trial.json and the table); then the worker node
is killed while one of its trials trains, and the study still finishes: the lost trial is started
again on the head, resumes from its checkpoint, and appears once in the table with its final step.
Ray on Linux replaces 127.0.0.1 with the machine's network address unless
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``; the nodes are given 127.0.0.1 and the driver that setting.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from inference import sweep
from inference.cli import run_main
from inference.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TINY_BASE = {"data": "digits", "batch_size": 16, "latent_dim": 2, "net": "mlp", "no_pictures": True,
             "model": "beta"}
TINY_EVAL = {"sections": ["training", "reconstruction"], "sizes": {"recon": 40}}


def _sweep_main():
    import importlib.util

    spec = importlib.util.spec_from_file_location("sweep_script", ROOT / "scripts" / "sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _study_file(path: Path, name: str, seeds, **base) -> Path:
    path.write_text(json.dumps({"name": name, "base": {**TINY_BASE, **base}, "seeds": list(seeds),
                                "evaluate": TINY_EVAL}))
    return path


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _csv(out: Path) -> list[dict]:
    with open(out / "sweep.csv") as fh:
        return list(csv.DictReader(fh))


def _steps(run_dir) -> list[int]:
    return [json.loads(line)["step"] for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


# -- fast ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_address_with_nothing_listening_is_one_line_and_exit_2(tmp_path, capsys, scheme):
    ray = pytest.importorskip("ray")
    address = f"{scheme}127.0.0.1:{_closed_port()}"
    study = _study_file(tmp_path / "s.json", "closed", [0], steps=3)
    t0 = time.monotonic()
    code = run_main(_sweep_main(), [str(study), "--address", address, "--out", str(tmp_path / "out")])
    elapsed = time.monotonic() - t0
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert f"--address {address}" in err[0] and "nothing is listening" in err[0], err
    assert elapsed < 30, elapsed
    assert not ray.is_initialized() and not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="nothing is listening"):
        sweep.init_ray(address)  # the library's entry point probes too


def test_address_probe_accepts_a_listening_address(monkeypatch):
    pytest.importorskip("ray")
    from ray._private import ray_constants

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        sweep.check_address(f"ray://127.0.0.1:{port}")
        # Ray keeps a loopback address as it is only in loopback-only mode (the env variable in
        # the docstring): then 127.0.0.1:PORT is what it dials, and the probe dials the same
        monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
        sweep.check_address(f"127.0.0.1:{port}")
        monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
        from ray._private.services import get_node_ip_address
        if get_node_ip_address() != "127.0.0.1":  # Ray dials the network address, where nobody listens
            with pytest.raises(ConfigError, match="RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0"):
                sweep.check_address(f"127.0.0.1:{port}")


class WorkerDied(BaseException):
    """What a trial's thread sees of its process going away: nothing the trial catches."""


def test_a_trial_lost_mid_run_resumes_and_is_counted_once(tmp_path):
    import inspect

    assert inspect.signature(sweep.run_sweep).parameters["max_failures"].default >= 1  # Tune retries
    study = sweep.expand({"name": "lost", "base": {**TINY_BASE, "steps": 6, "log_every": 1,
                                                   "checkpoint_every": 2},
                          "seeds": [0, 1], "evaluate": {"sections": ["training"]}}, tmp_path)
    lost, other = study.trials
    config = {"trial": lost.__dict__, "evaluate": study.evaluate}

    def dies_at_step_5(result):
        if result.get("step") == 5:
            raise WorkerDied

    with pytest.raises(WorkerDied):
        sweep.run_trial(config, report=dies_at_step_5)
    assert not (Path(lost.run_dir) / "trial.json").exists()  # died before it could record itself
    assert [r["status"] for r in sweep.collect(study)] == ["not run", "not run"]
    finals = []
    sweep.run_trial(config, report=finals.append)  # what Tune's retry runs: the same trial again
    sweep.run_trial({"trial": other.__dict__, "evaluate": study.evaluate}, report=lambda r: None)
    assert [r["step"] for r in finals[:-1]] == [5, 6] and finals[-1]["step"] == 6  # resumed at 4
    assert finals[-1]["node"] is None  # not on Ray: no node id
    assert _steps(lost.run_dir) == [1, 2, 3, 4, 5, 6] == _steps(other.run_dir)  # no step twice
    record = json.loads((Path(lost.run_dir) / "trial.json").read_text())
    assert record["training"] == "resumed" and record["status"] == "ok"
    sweep.write_tables(study, sweep.collect(study), tmp_path)
    table = _csv(tmp_path)
    assert [r["name"] for r in table] == [lost.name, other.name]  # once each
    assert [r["status"] for r in table] == ["ok", "ok"] and [r["attempts"] for r in table] == ["2", "1"]
    summary = json.loads((Path(lost.run_dir) / "summary.json").read_text())
    assert summary["step"] == 6
    starts = sweep.attempts(tmp_path)
    assert [len(starts[t.name]) for t in study.trials] == [2, 1]


# -- slow: a two-node cluster on the loopback address --------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    """A head and a worker node (one CPU each), started and shut down by this test module only."""
    pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ray.cluster_utils import Cluster

    # Ray's harness records its head as this machine's "current cluster": put back what was there.
    current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    before = current.read_text() if current.is_file() else None
    node = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "object_store_memory": 100 * 2 ** 20}
    c = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False,
                                                      "resources": {"role_head": 1}})
    try:
        worker = c.add_node(**node, resources={"role_worker": 1})
        c.wait_for_nodes()
        roles = {}
        for n in c.global_state.node_table():
            role = [r.removeprefix("role_") for r in n["Resources"] if r.startswith("role_")]
            roles[n["NodeID"]] = role[0]
        assert sorted(roles.values()) == ["head", "worker"] and roles[worker.node_id] == "worker"
        yield c, worker, roles
    finally:
        c.shutdown()
        if before is None:
            current.unlink(missing_ok=True)
        else:
            current.write_text(before)


def _driver(cluster_address: str, study: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keep 127.0.0.1 (see the module docstring)
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    return subprocess.Popen([sys.executable, str(ROOT / "scripts" / "sweep.py"), str(study), "--address",
                             cluster_address, "--out", str(out), "--quiet"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the sweep did not finish in {timeout} s: {err[-3000:]}")
    assert proc.returncode == 0, err[-4000:]
    return out, err


@pytest.mark.slow
def test_two_node_sweep_runs_trials_on_both_nodes(cluster, tmp_path):
    c, worker, roles = cluster
    study_file = _study_file(tmp_path / "two.json", "two", range(4), steps=3, log_every=1)
    out = tmp_path / "out"
    stdout, _ = _finish(_driver(c.address, study_file, out), 600)
    assert "4 ok, 0 failed" in stdout, stdout
    study = sweep.expand(sweep.read_study_file(study_file), out)
    table = _csv(out)
    assert [r["name"] for r in table] == [t.name for t in study.trials]  # complete, once each
    assert all(r["status"] == "ok" and r["recon_l2"] for r in table)
    nodes = {}
    for t in study.trials:
        record = json.loads((Path(t.run_dir) / "trial.json").read_text())
        nodes[t.name] = record["node"]
        assert json.loads((Path(t.run_dir) / "summary.json").read_text())["step"] == 3
    assert {r["name"]: r["node"] for r in table} == nodes
    assert set(nodes.values()) <= set(roles) and {roles[n] for n in nodes.values()} == {"head", "worker"}
    print("two-node sweep, node per trial:", {k: f"{roles[v]} {v}" for k, v in nodes.items()})


@pytest.mark.slow
def test_losing_the_worker_node_mid_study_still_finishes_every_trial_once(cluster, tmp_path):
    c, worker, roles = cluster
    steps = 400
    study_file = _study_file(tmp_path / "kill.json", "kill", range(3), steps=steps, log_every=25,
                             checkpoint_every=25)
    out = tmp_path / "out"
    study = sweep.expand(sweep.read_study_file(study_file), out)
    proc = _driver(c.address, study_file, out)
    victim, deadline = None, time.monotonic() + 300
    while victim is None:  # wait for a trial on the worker with a checkpoint, still training
        assert proc.poll() is None and time.monotonic() < deadline, "no trial trained on the worker"
        for name, starts in sweep.attempts(out).items():
            run = out / "runs" / name
            if (starts[-1]["node"] == worker.node_id and (run / "checkpoint.pt").is_file()
                    and not (run / "summary.json").is_file()):
                victim = name
        time.sleep(0.5)
    step_at_kill = _steps(out / "runs" / victim)[-1]
    c.remove_node(worker, allow_graceful=False)  # the worker node's processes are killed
    stdout, _ = _finish(proc, 600)
    assert "3 ok, 0 failed" in stdout, stdout
    table = _csv(out)
    assert [r["name"] for r in table] == [t.name for t in study.trials]  # every trial, once
    assert all(r["status"] == "ok" for r in table)
    head = next(n for n, role in roles.items() if role == "head")
    starts = sweep.attempts(out)
    lost = starts[victim]
    assert len(lost) >= 2 and lost[0]["node"] == worker.node_id and lost[-1]["node"] == head
    record = json.loads((out / "runs" / victim / "trial.json").read_text())
    assert record["training"] == "resumed" and record["node"] == head
    for t in study.trials:  # each trial's final step, and no step logged twice
        assert json.loads((Path(t.run_dir) / "summary.json").read_text())["step"] == steps
        logged = _steps(t.run_dir)
        assert logged == sorted(set(logged)) and logged[-1] == steps
    assert {r["name"]: int(r["attempts"]) for r in table} == {n: len(s) for n, s in starts.items()}
    print(f"killed the worker at step {step_at_kill} of {victim}; starts per trial:",
          {n: [roles.get(a["node"], a["node"]) for a in s] for n, s in starts.items()})
