"""Sweeps (inference/sweep.py, scripts/sweep.py): study expansion against hand-built trial lists,
the mean ± std table against statistics.mean/stdev, and a tiny sweep on a local Ray whose table
must match the run directories' report.json files, with a failing trial reported and a resumed
sweep that redoes nothing finished."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

import pytest

from inference import sweep
from inference.errors import ConfigError

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


def test_overrides_and_argv(tmp_path):
    raw = {"base": {"steps": 100}, "blocks": [{"grid": {"beta": [1.0, 2.0]}}], "seeds": [0, 1]}
    sweep.apply_overrides(raw, ["base.steps=7", "seeds=[4]", "blocks.0.grid.beta=[3.5]"])
    assert raw == {"base": {"steps": 7}, "blocks": [{"grid": {"beta": [3.5]}}], "seeds": [4]}
    t = sweep.expand({"name": "x", **raw, "base": {"steps": 7, "model": "beta", "no_pictures": True}},
                     tmp_path).trials[0]
    train_py = sweep.load_script("train")
    known = {a.dest: a for a in train_py.make_parser()._actions}
    args = train_py.make_parser().parse_args(sweep.to_argv(t.flags, known, t.run_dir))
    assert (args.steps, args.model, args.beta, args.seed, args.no_pictures, args.out) == \
        (7, "beta", 3.5, 4, True, t.run_dir)


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


# -- through a local Ray ---------------------------------------------------------------------------
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
