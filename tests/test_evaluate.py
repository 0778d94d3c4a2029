"""scripts/evaluate.py end to end on tiny runs: the files, the report's numbers against independent
recomputation from the written artefacts, skipped metrics, and one-line errors."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import arviz as az
import numpy as np
import pytest
import torch

from inference import load_run, train_run
from inference import report as report_module

ROOT = Path(__file__).resolve().parents[1]


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


TINY = {"codes_train": 600, "codes_test": 200, "dci_train": 600, "sap_train": 600,
        "factor_vae_train": 20, "factor_vae_eval": 10, "factor_vae_variance": 300,
        "beta_vae_train": 30, "beta_vae_eval": 20, "group_size": 8, "recon": 50,
        "loglik_items": 8, "loglik_samples": 4, "fid_images": 64, "posterior_obs": 5,
        "posterior_draws": 7}


@pytest.fixture(scope="module")
def evaluate_script():
    return _script("evaluate")


@pytest.fixture
def evaluate(evaluate_script, monkeypatch):
    """scripts/evaluate.py with tiny quick sample sizes, for this test only."""
    monkeypatch.setitem(report_module.SIZES, "quick", dict(TINY))
    return evaluate_script


def _train(tmp, data, **extra):
    out = tmp / f"run-{data}"
    train_run({"data": data, "steps": 3, "latent_dim": 3, "net": "mlp", "batch_size": 16,
               "no_pictures": True, **extra}, out)
    return out


@pytest.fixture(scope="module")
def dsprites_report(evaluate_script, tmp_path_factory):
    """A dSprites run evaluated by scripts/evaluate.py at tiny sizes (SIZES restored afterwards)."""
    run = _train(tmp_path_factory.mktemp("dsprites"), "dsprites")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(report_module.SIZES, "quick", dict(TINY))
        # the forest keeps this end-to-end test quick (GBT fits 11,300 trees on dSprites' factors);
        # the default, GBT, is checked end to end on digits below
        evaluate_script.main([str(run), "--no-fid", "--dci-importance", "forest"])
    return run, json.loads((run / "report.json").read_text())


def test_dsprites_run_report_and_files(dsprites_report):
    run, report = dsprites_report
    for name in ("report.md", "reconstructions.png", "traversals.png", "prior_samples.png",
                 "mi_heatmap.png", "posterior.nc"):
        assert (run / name).is_file(), name
    m = report["metrics"]
    assert report["sizes"] == TINY
    assert m["mig"]["num_points"] == 600 and 0 <= m["mig"]["value"] <= 1
    assert np.asarray(m["mutual_information"]["matrix"]).shape == (3, 5)
    assert m["factor_vae"]["num_train"] == 20 and 0 <= m["factor_vae"]["eval_accuracy"] <= 1
    assert {"disentanglement", "completeness", "informativeness_test"} <= set(m["dci"])
    # the report names the metric options that change the numbers (issue 14)
    assert report["metric_options"] == {"dci_importance": "forest", "beta_vae_classifier": "logistic",
                                        "beta_vae_balanced": False}
    assert m["dci"]["importance_model"] == "forest" and m["beta_vae"]["classifier"] == "logistic"
    assert report["skipped"] == ["fid: --no-fid"]
    assert report["training"]["steps"] == 3 and report["training"]["train_seconds"] > 0
    # the exported posterior is the guide's: draw means sit near q's means for the same items
    idata = az.from_netcdf(str(run / "posterior.nc"))
    x = torch.as_tensor(idata.observed_data["x"].values)
    r = load_run(run)
    loc, scale = r.guide.posterior(x)["z"]
    z = idata.posterior["z"].values[0]  # (draw, obs, dim)
    assert z.shape == (7, 5, 3)
    assert np.all(np.abs(z.mean(0) - loc.detach().numpy()) < 5 * scale.detach().numpy() / np.sqrt(7))
    md = (run / "report.md").read_text()
    assert "| MIG |" in md and "600 points" in md and "Skipped:" in md
    assert "| DCI disentanglement (random-forest importances) |" in md
    assert "| β-VAE score (eval acc., logistic regression) |" in md
    assert "| β-VAE classifier's train acc. |" in md


def test_digits_skips_interventional_metrics(evaluate, tmp_path):
    run = _train(tmp_path, "digits")
    evaluate.main([str(run), "--no-fid"])
    report = json.loads((run / "report.json").read_text())
    assert "mig" in report["metrics"] and "factor_vae" not in report["metrics"]
    assert any(s.startswith("factor_vae: needs a simulator") for s in report["skipped"])
    # disentanglement_lib's DCI is the default, and the report says so
    assert report["metric_options"]["dci_importance"] == "gbt"
    assert report["metrics"]["dci"]["importance_model"] == "gbt"
    assert "| DCI disentanglement (GBT importances) |" in (run / "report.md").read_text()


@pytest.mark.slow  # a real process; test_bad_run_dir_is_one_line_exit_2 is its in-process twin
def test_missing_run_dir_is_one_line_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "evaluate.py"), str(tmp_path / "no")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"evaluate.py: error: run directory {tmp_path / 'no'} "
                                                "does not exist"]


@pytest.mark.parametrize("make, message", [("empty", "not a run directory (no config.json)"),
                                           ("bad_json", "is not valid JSON"),
                                           ("no_checkpoint", "no checkpoint at")])
def test_bad_run_dir_is_one_line_exit_2(evaluate, tmp_path, capsys, make, message):
    from inference.cli import run_main
    run = tmp_path / "run"
    run.mkdir()
    if make == "bad_json":
        (run / "config.json").write_text("{not json")
    if make == "no_checkpoint":
        (run / "config.json").write_text(json.dumps({"model": "vae", "data": "digits"}))
    assert run_main(evaluate.main, [str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_model_with_two_latent_sites_trains_and_evaluates(evaluate, tmp_path):
    """VITAE has z_persp and z_app: pictures, metrics and export use both, concatenated in order."""
    out = tmp_path / "run-vitae"
    train_run({"model": "vitae_u", "data": "dsprites", "steps": 2, "net": "mlp", "batch_size": 8}, out)
    assert (out / "reconstructions.png").is_file() and (out / "samples.png").is_file()
    evaluate.main([str(out), "--no-fid", "--dci-importance", "forest"])  # GBT is the other test's
    report = json.loads((out / "report.json").read_text())
    assert report["latent_site"] == "z_persp+z_app"
    assert report["metrics"]["dci"]["importance_model"] == "forest"
    r = load_run(out)
    x, _ = r.guide.posterior(torch.zeros(1, 1, 64, 64)), None
    dims = sum(loc.shape[-1] for loc, _ in x.values())
    assert np.asarray(report["metrics"]["mutual_information"]["matrix"]).shape == (dims, 5)
    idata = az.from_netcdf(str(out / "posterior.nc"))
    assert {"z_persp", "z_app"} <= set(idata.posterior.data_vars)


def test_posterior_code_concatenates_sites_in_guide_order():
    from inference.posterior import posterior_code

    class TwoSites(torch.nn.Module):
        def posterior(self, x):
            return {"a": (x[:, :1], x[:, :1] + 1), "b": (x[:, 1:], x[:, 1:] + 2)}

    x = torch.arange(6.0).reshape(2, 3)
    loc, scale = posterior_code(TwoSites(), x)
    assert torch.equal(loc, x) and torch.equal(scale, torch.cat([x[:, :1] + 1, x[:, 1:] + 2], 1))
    assert torch.equal(posterior_code(TwoSites(), x, "b")[0], x[:, 1:])
    with pytest.raises(ValueError, match="no latent site 'c'"):
        posterior_code(TwoSites(), x, "c")


def test_one_driver_for_script_and_sweep(dsprites_report):
    """evaluate_run on chosen sections and sizes (a sweep's call): the script's numbers, each section timed."""
    from inference.report import evaluate_run

    run, script = dsprites_report
    alone = evaluate_run(run, ["training", "beta_vae", "reconstruction"], sizes=TINY)
    for name in ("beta_vae", "reconstruction"):  # β-VAE alone = the one inside factor_metrics
        assert alone["metrics"][name] == script["metrics"][name]
    assert set(alone["seconds"]) == {"training", "beta_vae", "reconstruction", "total"}
    assert json.loads((run / "report.json").read_text()) == json.loads(json.dumps(alone))
    assert report_module.SIZES["quick"]["recon"] == 1_000  # the fixture's tiny sizes did not leak
    with pytest.raises(Exception, match="unknown evaluation section"):
        evaluate_run(run, ["mig"])
    with pytest.raises(Exception, match="unknown sample size"):
        evaluate_run(run, ["training"], sizes={"nope": 1})
