"""DIP-VAE's study and protocol (inference.papers.dip, DIP-VAE §3): the study files' grids obey the
paper's λ_d = 10·λ_od (DIP-I) and λ_d = λ_od (DIP-II), every study run here scores the β-VAE metric with
the linear SVM (C = 0.01) unless the file names another classifier, one trial of the quick study runs
in this process at a tiny budget with that protocol, and (slow) the study runs through a local Ray."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from inference import sweep
from inference.metrics.beta_vae import compute_beta_vae
from inference.report import evaluate_run
from inference.papers import dip
from ppl_data import load

ROOT = Path(__file__).resolve().parents[1]
QUICK_STUDY = ROOT / "configs" / "sweeps" / "dip_study_quick.yaml"
FULL_STUDY = ROOT / "configs" / "sweeps" / "dip_study_full.yaml"
#: The quick study cut to seconds: 2 steps of an MLP on dSprites, a 20-point β-VAE metric.
TINY = ["base.steps=2", "base.net=mlp", "base.batch_size=16", "base.checkpoint_every=2", "base.log_every=1",
        "seeds=[0]", "evaluate.sizes={beta_vae_train: 20, beta_vae_eval: 10, group_size: 4, recon: 32}"]


@pytest.mark.parametrize("path", [QUICK_STUDY, FULL_STUDY], ids=["quick", "full"])
def test_study_files_follow_the_papers_grid_and_protocol(path, tmp_path):
    study = dip.study(path, tmp_path)
    models = {t.flags["model"] for t in study.trials}
    assert models == {"dip1", "dip2", "beta"}
    for t in study.trials:
        if t.flags["model"] in dip.LAMBDA_D_PER_LAMBDA_OD:  # §3: λ_d = 10·λ_od for DIP-VAE-I
            assert t.flags["lambda_d"] == dip.LAMBDA_D_PER_LAMBDA_OD[t.flags["model"]] * t.flags["lambda_od"]
    assert study.evaluate["beta_vae_classifier"] == "svm" and study.evaluate["beta_vae_balanced"]
    assert {"beta_vae", "factor_metrics"} & set(study.evaluate["sections"])
    assert "reconstruction" in study.evaluate["sections"]


def test_the_svm_is_the_default_and_a_study_may_name_another(tmp_path):
    raw = {"name": "s", "base": {"data": "dsprites", "model": "dip1", "steps": 2}, "evaluate": {"sections": ["beta_vae"]}}
    path = tmp_path / "s.json"
    path.write_text(json.dumps(raw))
    assert dip.study(path, tmp_path / "a").evaluate["beta_vae_classifier"] == "svm"
    assert dip.study(path, tmp_path / "b", ["evaluate.beta_vae_classifier=logistic"]).evaluate[
        "beta_vae_classifier"] == "logistic"
    del raw["evaluate"]
    path.write_text(json.dumps(raw))
    assert dip.study(path, tmp_path / "c").evaluate["beta_vae_classifier"] == "svm"


def test_beta_vae_metric_is_the_linear_svm_of_section_3():
    data = load("dsprites")
    represent = lambda x: x.flatten(1)[:, ::97].float()  # noqa: E731  a fixed, crude code
    sizes = dict(num_train=20, num_eval=10, batch_size=2)
    got = dip.beta_vae_metric(data, represent, torch.Generator().manual_seed(0), **sizes)
    want = compute_beta_vae(data, represent, torch.Generator().manual_seed(0), classifier="svm",
                            balanced=True, **sizes)
    assert got == want and got["classifier"] == "svm"
    assert got["balanced"] and got["train_counts"] == [4] * 5 and got["eval_counts"] == [2] * 5  # §3: n per factor


def test_one_trial_of_the_quick_study_in_process(tmp_path):
    study = dip.study(QUICK_STUDY, tmp_path, TINY)
    trial = next(t for t in study.trials if t.flags["model"] == "dip1")
    reported = []
    sweep.run_trial({"trial": trial.__dict__, "evaluate": study.evaluate}, report=reported.append)
    final = reported[-1]
    assert final["status"] == "ok" and final["step"] == 2
    assert [r["step"] for r in reported[:-1]] == [1, 2]  # every log step reaches Tune
    report = json.loads((Path(trial.run_dir) / "report.json").read_text())
    beta_vae = report["metrics"]["beta_vae"]
    assert beta_vae["classifier"] == "svm" and beta_vae["num_train"] == 20
    assert beta_vae["balanced"] and beta_vae["train_counts"] == [4] * 5  # §3: every factor equally often
    assert "train_accuracy" in beta_vae and isinstance(beta_vae["converged"], bool)
    assert 0 <= final["beta_vae"] <= 1 and math.isfinite(final["recon_l2"])
    # the §3 protocol as a function of a run directory: the same numbers again
    again = dip.evaluate(trial.run_dir, sizes=study.evaluate["sizes"])
    assert again["metrics"]["beta_vae"] == beta_vae
    # the floor: an untrained encoder of the same architecture, same protocol and points, seeded
    floor = again["metrics"][dip.FLOOR_KEY]
    assert floor["untrained"] and floor["init_seed"] == 0 and floor["eval_counts"] == beta_vae["eval_counts"]
    assert json.loads((Path(trial.run_dir) / "report.json").read_text())["metrics"][dip.FLOOR_KEY] == floor
    assert "| β-VAE score of an untrained encoder (the floor; init seed 0) |" in (Path(trial.run_dir) / "report.md").read_text()
    assert dip.beta_vae_floor(trial.run_dir, sizes=study.evaluate["sizes"]) == floor
    other = dip.beta_vae_floor(trial.run_dir, sizes=study.evaluate["sizes"], init_seed=1, classifier="logistic")
    assert other["init_seed"] == 1 and other["classifier"] == "logistic"
    # disentanglement_lib's logistic reading of the same features, beside the SVM: equal to the
    # evaluation driver's with that classifier, and nothing in the run directory is rewritten
    before = (Path(trial.run_dir) / "report.json").read_text()
    ref = dip.reference_beta_vae(trial.run_dir, sizes=study.evaluate["sizes"])
    assert (Path(trial.run_dir) / "report.json").read_text() == before
    copy = shutil.copytree(trial.run_dir, tmp_path / "copy")
    want = evaluate_run(copy, ("beta_vae",), sizes=study.evaluate["sizes"], beta_vae_classifier="logistic",
                        beta_vae_balanced=True)
    assert ref == want["metrics"]["beta_vae"] and ref["classifier"] == "logistic"


@pytest.mark.slow
def test_quick_study_runs_through_a_local_ray(tmp_path):
    pytest.importorskip("ray")
    sets = TINY + ["blocks.0.grid.lambda_od=[5.0]", "blocks.1.grid.lambda_od=[5.0]", "blocks.2.grid.beta=[4.0]"]
    rows = dip.run_study(QUICK_STUDY, tmp_path / "sweep", sets=sets, num_cpus=2, log_to_driver=False)
    assert [r["status"] for r in rows] == ["ok"] * 3
    assert all(0 <= r["beta_vae"] <= 1 and math.isfinite(r["recon_l2"]) for r in rows)
    for name in ("sweep.csv", "sweep.md"):
        assert (tmp_path / "sweep" / name).is_file()
    again = dip.run_study(QUICK_STUDY, tmp_path / "sweep", sets=sets, num_cpus=2, log_to_driver=False)
    assert [r["beta_vae"] for r in again] == [r["beta_vae"] for r in rows]  # resumed: nothing redone
