"""Sweeps (inference/sweep/, scripts/sweep.py): study expansion into Tune's search space against
hand-built trial lists, a trial run in this process (reports at every log step, records, resume),
the tables from hand-made rows against statistics.mean/stdev, the ASHA scheduler's options; and,
marked slow, tiny sweeps on a local Ray whose table must match the run directories' report.json
files, with a failing trial reported, a resumed sweep that redoes nothing finished, and ASHA."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

import pytest

from inference import sweep
from inference.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

TINY_BASE = {"data": "digits", "steps": 3, "batch_size": 16, "latent_dim": 2, "net": "mlp",
             "no_pictures": True, "log_every": 1}
TINY_EVAL = {"sections": ["training", "reconstruction"], "sizes": {"recon": 40}}


def test_expand_grid_seeds_tie_and_random(tmp_path):
    raw = {"name": "s", "base": {"data": "digits", "steps": 5}, "seeds": [0, 3],
           "blocks": [{"fixed": {"model": "dip1"}, "grid": {"lambda_od": [1.0, 5.0]},
                       "tie": {"lambda_d": {"of": "lambda_od", "times": 10}}},
                      {"fixed": {"model": "beta"},
                       "random": {"beta": {"loguniform": [1, 256]}, "latent_dim": {"randint": [2, 4]}},
                       "num_samples": 3}]}
    study = sweep.expand(raw, tmp_path)
    dip = [(t.flags["lambda_od"], t.flags["lambda_d"], t.flags["seed"])
           for t in study.trials if t.flags["model"] == "dip1"]
    # DIP-VAE-I: λ_d = 10·λ_od (Kumar et al. 2018, §4), every point crossed with every seed.
    assert dip == [(1.0, 10.0, 0), (1.0, 10.0, 3), (5.0, 50.0, 0), (5.0, 50.0, 3)]
    beta = [t.flags for t in study.trials if t.flags["model"] == "beta"]
    assert len(beta) == 6 and [f["seed"] for f in beta] == [0, 3] * 3
    assert all(1 <= f["beta"] <= 256 and f["latent_dim"] in (2, 3, 4) for f in beta)
    assert all(f["steps"] == 5 and f["data"] == "digits" for f in beta)
    assert beta[0]["beta"] == beta[1]["beta"] != beta[2]["beta"]  # one draw per sample, all seeds
    again = sweep.expand(json.loads(json.dumps(raw)), tmp_path)
    assert [t.name for t in again.trials] == [t.name for t in study.trials]  # resume finds them
    assert len({t.name for t in study.trials}) == 10
    assert study.tied == ("lambda_d",)
    assert all(Path(t.run_dir).parent == tmp_path.resolve() / "runs" for t in study.trials)
    changed = sweep.expand({**raw, "base": {"data": "digits", "steps": 6}}, tmp_path)
    assert not {t.name for t in changed.trials} & {t.name for t in study.trials}


def test_overrides_and_settings(tmp_path):
    from inference.runs import check_settings

    raw = {"base": {"steps": 100}, "blocks": [{"grid": {"beta": [1.0, 2.0]}}], "seeds": [0, 1]}
    sweep.apply_overrides(raw, ["base.steps=7", "seeds=[4]", "blocks.0.grid.beta=[3.5]"])
    assert raw == {"base": {"steps": 7}, "blocks": [{"grid": {"beta": [3.5]}}], "seeds": [4]}
    t = sweep.expand({"name": "x", **raw, "base": {"steps": 7, "model": "beta", "no_pictures": True}},
                     tmp_path).trials[0]
    # what train_run receives: the trial's settings, read by the parsers of train.py's flags
    assert check_settings(t.flags) == {"steps": 7, "model": "beta", "beta": 3.5, "seed": 4,
                                       "no_pictures": True}


def test_study_is_tunes_search_space_resolved_by_tunes_generator_seeded(tmp_path):
    from ray.tune.search.sample import Domain

    block = {"fixed": {"model": "beta"}, "grid": {"latent_dim": [2, 3]},
             "random": {"beta": {"uniform": [1, 2]}}, "tie": {"lambda_d": {"of": "latent_dim", "times": 2}}}
    space = sweep.block_space({"steps": 1}, block, "b")
    assert space["latent_dim"] == {"grid_search": [2, 3]}
    assert isinstance(space["beta"], Domain) and isinstance(space["lambda_d"], Domain)
    import numpy as np
    points = sweep.resolve(space, 2, np.random.default_rng(5))
    assert [(p["latent_dim"], p["lambda_d"]) for p in points] == [(2, 4), (3, 6)] * 2
    assert all(1 <= p["beta"] <= 2 and type(p["beta"]) is float for p in points)
    assert points == sweep.resolve(space, 2, np.random.default_rng(5))  # seeded: the same draws
    assert points != sweep.resolve(space, 2, np.random.default_rng(6))
    raw = {"name": "r", "base": {"steps": 1, "model": "beta"}, "random": {"beta": {"choice": [1.0, 2.0, 3.0]}},
           "num_samples": 4}
    a, b = sweep.expand(dict(raw), tmp_path), sweep.expand({**raw, "random_seed": 1}, tmp_path)
    assert [t.name for t in a.trials] == [t.name for t in sweep.expand(dict(raw), tmp_path).trials]
    assert {t.flags["beta"] for t in a.trials + b.trials} <= {1.0, 2.0, 3.0}


@pytest.mark.parametrize("raw, words", [
    ({"base": {"steps": 1, "lamda_od": 1}}, ["lamda_od", "unknown"]),
    ({"base": {"steps": 1}, "grid": {"beta": 4}}, ["grid.beta", "list"]),
    ({"base": {"steps": 1}, "tie": {"lambda_d": {"of": "lambda_od"}}}, ["lambda_od", "not set"]),
    ({"base": {"steps": 1}, "evaluate": {"sections": ["mig"]}}, ["mig", "sections"]),
    ({"base": {"steps": 1}, "random": {"beta": {"normal": [0, 1]}}}, ["normal", "loguniform"]),
    ({"base": {"model": "beta"}}, ["steps"]),
])
def test_bad_study_names_the_bad_value(tmp_path, raw, words):
    with pytest.raises(ConfigError) as err:
        sweep.expand({"name": "bad", **raw}, tmp_path)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_aggregate_is_mean_and_sample_std_over_seeds(tmp_path):
    study = sweep.expand({"name": "a", "base": {"steps": 1, "model": "beta"}, "seeds": [0, 1, 2],
                          "grid": {"beta": [1.0, 4.0]}}, tmp_path)
    values = {(1.0, 0): 0.5, (1.0, 1): 0.7, (1.0, 2): 0.9, (4.0, 0): 0.2, (4.0, 1): 0.4, (4.0, 2): None}
    rows = []
    for t in study.trials:
        v = values[(t.flags["beta"], t.flags["seed"])]
        rows.append({**t.flags, "name": t.name, "status": "ok" if v is not None else "error",
                     **({"beta_vae": v, "wall_s": 1.0} if v is not None else {})})
    agg = {a["beta"]: a for a in sweep.aggregate(study, rows)}
    assert agg[1.0]["n"] == 3 and agg[4.0]["n"] == 2 and agg[4.0]["trials"] == 3
    assert math.isclose(agg[1.0]["beta_vae"], statistics.mean([0.5, 0.7, 0.9]))
    assert math.isclose(agg[1.0]["beta_vae_std"], statistics.stdev([0.5, 0.7, 0.9]))
    assert math.isclose(agg[4.0]["beta_vae_std"], statistics.stdev([0.2, 0.4]))  # failed seed left out


# -- one trial, in this process -----------------------------------------------------------------------
def _trial_config(tmp_path, **flags):
    study = sweep.expand({"name": "one", "base": {**TINY_BASE, "model": "beta", **flags},
                          "evaluate": TINY_EVAL}, tmp_path)
    t = study.trials[0]
    return t, {"trial": t.__dict__, "evaluate": study.evaluate}


def test_trial_reports_every_log_step_records_itself_and_resumes(tmp_path):
    t, config = _trial_config(tmp_path)
    reported = []
    assert sweep.run_trial(config, report=reported.append) is None
    run = Path(t.run_dir)
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    # one report per metrics.jsonl row (log_every 1), with its numbers, then the final result
    assert [r["step"] for r in reported[:-1]] == [1, 2, 3] == [row["step"] for row in logged]
    assert all(r["recon"] == row["recon"] and r["loss"] == row["loss"] for r, row in zip(reported, logged))
    final = reported[-1]
    report = json.loads((run / "report.json").read_text())
    assert final["status"] == "ok" and final["step"] == 3
    assert final["recon_l2"] == report["metrics"]["reconstruction"]["l2"]
    record = json.loads((run / "trial.json").read_text())
    assert record["status"] == "ok" and record["training"] == "trained" and record["evaluate"] == config["evaluate"]
    assert sweep.is_finished(t.run_dir, config["evaluate"])
    assert not sweep.is_finished(t.run_dir, {**config["evaluate"], "seed": 1})  # other evaluation
    again = []
    sweep.run_trial(config, report=again.append)  # nothing to train: one final result
    assert len(again) == 1 and again[0]["status"] == "ok" and again[0]["step"] == 3
    assert json.loads((run / "trial.json").read_text())["training"] == "trained before"


def test_trial_numbers_are_train_runs(tmp_path):
    """A trial trains exactly what train_run (scripts/train.py) trains from the same settings."""
    from inference.runs import train_run

    t, config = _trial_config(tmp_path)
    sweep.run_trial(config, report=lambda r: None)
    train_run(t.flags, tmp_path / "direct")
    assert (Path(t.run_dir) / "metrics.jsonl").read_text() == (tmp_path / "direct" / "metrics.jsonl").read_text()


def test_failed_trial_is_recorded_not_raised(tmp_path):
    t, config = _trial_config(tmp_path, net="no_such_net")
    reported = []
    sweep.run_trial({**config, "metric": "recon"}, report=reported.append)
    record = json.loads((Path(t.run_dir) / "trial.json").read_text())
    assert record["status"] == "error" and "no_such_net" in record["error"]
    assert (Path(t.run_dir) / "error.txt").is_file()
    assert reported[-1]["status"] == "error" and math.isnan(reported[-1]["recon"])  # ASHA's metric present


def test_tables_from_rows(tmp_path):
    study = sweep.expand({"name": "t", "base": {"steps": 1, "model": "beta"}, "seeds": [0, 1],
                          "grid": {"beta": [1.0, 4.0]}}, tmp_path)
    rows = []
    for t, (status, l2) in zip(study.trials, [("ok", 0.1), ("ok", 0.3), ("error", None), ("stopped", None)]):
        rows.append({"name": t.name, **t.flags, "status": status, "error": "" if status == "ok" else "x",
                     **({"recon_l2": l2, "wall_s": 2.0} if l2 is not None else {})})
    sweep.write_tables(study, rows, tmp_path)
    table = _csv(tmp_path)
    assert [r["name"] for r in table] == [t.name for t in study.trials]
    assert {"beta", "seed", "status", "recon_l2", "wall_s", "error"} <= set(table[0])
    md = (tmp_path / "sweep.md").read_text()
    assert "2 ok, 1 failed, 1 stopped early (ASHA), 0 not run" in md
    assert f"{statistics.mean([0.1, 0.3]):.4g} ± {statistics.stdev([0.1, 0.3]):.2g}" in md
    summary = json.loads((tmp_path / "sweep_summary.json").read_text())
    assert summary["counts"] == {"ok": 2, "error": 1, "stopped": 1, "not run": 0}
    assert (tmp_path / "sweep.png").is_file()


def test_asha_scheduler_and_stopped_trials(tmp_path):
    from ray.tune.schedulers import ASHAScheduler

    from inference.sweep.driver import _record_outcomes

    study = sweep.expand({"name": "a", "base": {**TINY_BASE, "model": "beta", "steps": 50}, "seeds": [0, 1],
                          "asha": {"grace_period": 5}}, tmp_path)
    assert sweep.make_scheduler(study, "fifo") is None
    asha = sweep.make_scheduler(study, "asha")
    assert isinstance(asha, ASHAScheduler)
    assert (asha._time_attr, asha._metric, asha._mode, asha._max_t) == ("step", "recon", "min", 51)
    space = sweep.tune_space(study, study.trials, "asha")
    assert space["trial"] == {"grid_search": [t.__dict__ for t in study.trials]} and space["metric"] == "recon"
    with pytest.raises(ConfigError, match="'hyperband'"):
        sweep.make_scheduler(study, "hyperband")
    with pytest.raises(ConfigError, match="asha.mode"):
        sweep.expand({"name": "a", "base": {"steps": 1}, "asha": {"mode": "up"}}, tmp_path)

    class Result:  # what Tune's ResultGrid yields: the trial's config, its last result, its error
        def __init__(self, trial, metrics, error=None):
            self.config, self.metrics, self.error = {"trial": trial.__dict__}, metrics, error

    stopped, died = study.trials
    _record_outcomes(study, [Result(stopped, {"step": 10, "recon": 3.0}),
                             Result(died, {}, RuntimeError("worker died"))], {t.name: t for t in study.trials})
    record = json.loads((Path(stopped.run_dir) / "trial.json").read_text())
    assert record["status"] == "stopped" and "step 10" in record["error"]
    assert sweep.is_finished(stopped.run_dir, study.evaluate, "asha")
    assert not sweep.is_finished(stopped.run_dir, study.evaluate, "fifo")  # continued without ASHA
    assert json.loads((Path(died.run_dir) / "trial.json").read_text())["error"] == "RuntimeError: worker died"


def _sweep_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("sweep_script", ROOT / "scripts" / "sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _study_file(tmp_path, steps=3):
    import yaml

    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"name": "cli", "base": {**TINY_BASE, "model": "beta", "steps": steps},
                                    "seeds": [0, 1], "evaluate": TINY_EVAL}))
    return path


def test_sweep_script_dry_run_and_table_only(tmp_path, capsys):
    """scripts/sweep.py's main without Ray: the trial list, then tables from the run directories."""
    from inference.cli import run_main

    main, out = _sweep_script().main, tmp_path / "out"
    assert run_main(main, [str(_study_file(tmp_path)), "--out", str(out), "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"2 trials (0 finished) -> {out}" and "seed=0" in lines[0]
    study = sweep.expand(sweep.read_study_file(_study_file(tmp_path)), out)
    sweep.run_trial({"trial": study.trials[0].__dict__, "evaluate": study.evaluate}, report=lambda r: None)
    assert run_main(main, [str(_study_file(tmp_path)), "--out", str(out), "--table-only"]) == 0
    assert "1 ok, 0 failed, 0 stopped, 1 not run" in capsys.readouterr().out
    table = _csv(out)
    assert [r["status"] for r in table] == ["ok", "not run"] and math.isfinite(float(table[0]["recon_l2"]))


# -- through a local Ray (slow) --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    sweep.init_ray(num_cpus=2, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny(ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    raw = {"name": "tiny", "base": TINY_BASE, "seeds": [0, 1],
           "blocks": [{"fixed": {"model": "beta", "beta": 4.0}},
                      # a trial that raises inside the worker (ConfigError from the net factory)
                      {"fixed": {"model": "dip1", "net": "no_such_net"}}],
           "evaluate": TINY_EVAL}
    study = sweep.expand(raw, out)
    study.trials = study.trials[:3]  # beta seeds 0, 1; dip1 (broken) seed 0
    rows = sweep.run_sweep(study, out, verbose=0)
    return study, rows, out


def _csv(out):
    with open(out / "sweep.csv") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_tiny_sweep_table_and_failed_trial(tiny):
    study, rows, out = tiny
    table = _csv(out)
    assert [r["name"] for r in table] == [t.name for t in study.trials]
    status = {r["name"]: r for r in table}
    good = [t for t in study.trials if t.flags["model"] == "beta"]
    bad = [t for t in study.trials if t.flags["model"] == "dip1"]
    assert len(good) == 2 and len(bad) == 1
    assert status[bad[0].name]["status"] == "error"
    assert "no_such_net" in status[bad[0].name]["error"]
    assert (Path(bad[0].run_dir) / "error.txt").is_file()
    l2 = []
    for t in good:  # the table's numbers are the run directories' own report/summary values
        row = status[t.name]
        report = json.loads((Path(t.run_dir) / "report.json").read_text())
        summary = json.loads((Path(t.run_dir) / "summary.json").read_text())
        assert row["status"] == "ok" and row["error"] == ""
        assert summary["step"] == 3 and int(row["seed"]) == t.flags["seed"]
        assert float(row["recon_l2"]) == pytest.approx(report["metrics"]["reconstruction"]["l2"])
        assert float(row["recon_l1"]) == pytest.approx(report["metrics"]["reconstruction"]["l1"])
        assert report["metrics"]["reconstruction"]["num_points"] == 40
        assert float(row["train_s"]) == pytest.approx(summary["train_seconds"])
        assert float(row["wall_s"]) >= float(row["train_s"])
        l2.append(report["metrics"]["reconstruction"]["l2"])
    md = (out / "sweep.md").read_text()
    assert "1 failed" in md and "no_such_net" in md
    want = f"{statistics.mean(l2):.4g} ± {statistics.stdev(l2):.2g}"
    assert any(line.startswith("| beta |") and "2/2" in line and want in line
               for line in md.splitlines()), md


@pytest.mark.slow
def test_resume_redoes_nothing_finished(tiny):
    study, _, out = tiny
    good = [t for t in study.trials if t.flags["model"] == "beta"]
    finished, evaluated_only = Path(good[0].run_dir), Path(good[1].run_dir)
    stamp = {p: p.stat().st_mtime_ns for p in (finished / "trial.json", finished / "report.json",
                                               evaluated_only / "summary.json",
                                               evaluated_only / "checkpoint.pt")}
    (evaluated_only / "report.json").unlink()  # stopped between training and evaluation
    rows = sweep.run_sweep(study, out, verbose=0)
    assert [r["status"] for r in rows] == ["ok", "ok", "error"]
    assert all(p.stat().st_mtime_ns == m for p, m in stamp.items())  # not retrained, not redone
    assert (evaluated_only / "report.json").is_file()
    assert json.loads((evaluated_only / "trial.json").read_text())["training"] == "trained before"
    assert "finished before this call: 1;" in (out / "sweep.md").read_text()


@pytest.mark.slow
def test_asha_sweep_reports_to_tune_and_ends_every_trial(ray_local, tmp_path):
    study = sweep.expand({"name": "asha", "base": {**TINY_BASE, "model": "beta", "steps": 12},
                          "seeds": [0, 1, 2, 3], "evaluate": TINY_EVAL,
                          "asha": {"grace_period": 2, "reduction_factor": 2}}, tmp_path)
    rows = sweep.run_sweep(study, tmp_path, scheduler="asha", max_concurrent=2)
    status = [r["status"] for r in rows]
    assert set(status) <= {"ok", "stopped"} and "ok" in status, rows
    progress = list((tmp_path / "_ray" / "tune").glob("*/progress.csv"))
    assert len(progress) == 4  # Tune saw each trial's per-step reports
    assert all(sweep.is_finished(t.run_dir, study.evaluate, "asha") for t in study.trials)



@pytest.mark.slow
def test_sweep_script_runs_a_study_with_asha(tmp_path, capsys):
    """scripts/sweep.py end to end on a local Ray it starts itself, ASHA on."""
    from inference.cli import run_main

    out = tmp_path / "out"
    assert run_main(_sweep_script().main, [str(_study_file(tmp_path, steps=6)), "--out", str(out),
                                           "--num-cpus", "2", "--scheduler", "asha", "--quiet"]) == 0
    assert "-> " in capsys.readouterr().out
    table = _csv(out)
    assert len(table) == 2 and {r["status"] for r in table} <= {"ok", "stopped"}
    assert (out / "sweep.md").is_file() and (out / "sweep_summary.json").is_file()
