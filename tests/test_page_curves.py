"""Training curves on the DIP and MS-VAE pages (issue 26, part 3): a record keeps a thinned trajectory of
its run's logged terms, and the page's curves figure is drawn from the records alone by
``inference.pictures.training_curves``; older records without one give a sentence, not a failure."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from inference.pictures import read_metrics, thin_trajectory, trajectory_rows


def write_metrics(path: Path, n: int, every: int = 10, keys=("loss", "recon", "kl", "dip", "kl_weight")) -> list:
    """A metrics.jsonl of ``n`` log rows (steps every, 2·every, ...), distinct values, and a line a
    killed run cut short; its rows."""
    rows = [{"step": every * (i + 1), **{k: (j + 1) * 1000.0 + i / 7 for j, k in enumerate(keys)}}
            for i in range(n)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 99')
    return rows


@pytest.mark.parametrize("n", [1, 2, 99, 100, 101, 250, 1000, 1234])
def test_a_trajectory_keeps_the_first_and_last_step_and_the_files_values(tmp_path, n):
    rows = write_metrics(tmp_path / "metrics.jsonl", n)
    t = thin_trajectory(read_metrics(tmp_path), ("dip", "recon", "kl", "kl_weight", "not_logged"), points=100)
    assert list(t) == ["step", "dip", "recon", "kl", "kl_weight"]  # a key the run did not log is left out
    assert 1 <= len(t["step"]) <= 100 and len(t["step"]) == min(n, len(t["step"]))
    assert t["step"][0] == rows[0]["step"] and t["step"][-1] == rows[-1]["step"]
    assert t["step"] == sorted(set(t["step"]))
    by_step = {r["step"]: r for r in rows}
    for i, step in enumerate(t["step"]):
        assert all(t[k][i] == by_step[step][k] for k in ("dip", "recon", "kl", "kl_weight"))
    if n <= 100:
        assert t["step"] == [r["step"] for r in rows]  # nothing thinned
    gaps = {b - a for a, b in zip(t["step"][:-2], t["step"][1:-1])}
    assert len(gaps) <= 1  # evenly strided (the last appended)
    assert trajectory_rows(t) == [{k: by_step[s][k] for k in t} for s in t["step"]]


def test_a_trajectory_of_every_logged_number_and_of_nothing():
    rows = [{"step": 5, "loss": 1.0, "tc": 2.0}, {"step": 10, "loss": 0.5, "tc": 1.5}]
    assert thin_trajectory(rows) == {"step": [5, 10], "loss": [1.0, 0.5], "tc": [2.0, 1.5]}
    assert thin_trajectory([], ("loss",)) == {"step": []}
    with pytest.raises(ValueError, match="points"):
        thin_trajectory(rows, points=1)


# -- DIP ----------------------------------------------------------------------------------------------

def _dip_record(tmp_path, monkeypatch, row, seed, n):
    """The record ``_run_dip`` makes for a stored run whose metrics.jsonl has ``n`` rows (its training
    and evaluation replaced: the record's trajectory is what is tested)."""
    from inference.reproduce import shapes

    run_dir = tmp_path / "store" / f"{row}-{seed}"
    keys = ("loss", "recon", "kl", "kl_weight") + (("dip",) if row.startswith("DIP") else ())
    rows = write_metrics(run_dir / "metrics.jsonl", n, keys=keys)
    (run_dir / "summary.json").write_text(json.dumps({"step": rows[-1]["step"], "train_seconds": 1.0}))
    monkeypatch.setattr(shapes, "trained", lambda *a, **k: run_dir)
    monkeypatch.setattr(shapes, "cached", lambda run_dir, kind, compute: {f"{kind}_score": 0.5})
    settings = shapes.dip_rows("cpu")[row]
    return shapes._run_dip(row, settings, seed, tmp_path / "runs" / "dip" / "cpu" / row / f"seed_{seed}", "cpu"), rows


def test_a_dip_record_keeps_its_runs_thinned_trajectory_and_the_figure_draws_it(tmp_path, monkeypatch):
    from inference.reproduce import shapes

    results = {}
    for row, seed, n in (("DIP-VAE-I λ_od=20", 1, 1250), ("DIP-VAE-I λ_od=20", 0, 640), ("β-VAE β=4", 0, 30)):
        numbers, rows = _dip_record(tmp_path, monkeypatch, row, seed, n)
        t = numbers["trajectory"]
        assert t == thin_trajectory(rows, shapes.DIP_TRAJECTORY_KEYS, shapes.DIP_TRAJECTORY_POINTS)
        assert len(t["step"]) <= 100 and t["step"][0] == rows[0]["step"] and t["step"][-1] == rows[-1]["step"]
        assert ("dip" in t) == row.startswith("DIP") and "loss" not in t
        results.setdefault(row, {})[seed] = numbers
    results["DIP-VAE-II λ_od=20"] = {0: {"beta_vae": 0.5, "recon_l2": 0.01}}  # an older record: no trajectory

    series = shapes.dip_curves(results, tmp_path / "curves.png", "cpu")
    assert (tmp_path / "curves.png").stat().st_size > 0
    drawn = {row: t for row, (seed, t) in shapes._dip_curves(results, "cpu").items()}
    assert set(drawn) == {"DIP-VAE-I λ_od=20", "β-VAE β=4"}
    assert drawn["DIP-VAE-I λ_od=20"] is results["DIP-VAE-I λ_od=20"][0]["trajectory"]  # the lowest seed
    for term, lines in zip(("recon", "kl", "dip", "kl_weight"), series.values()):  # the figure's panels
        for row, t in drawn.items():
            steps, values = lines[(row, term)]
            if term in t:
                assert (steps, values) == (t["step"], t[term])  # exactly the record's trajectory
            else:
                assert steps == values == []  # β-VAE has no DIP penalty
    sentence = shapes._dip_missing_curves(results, "cpu")
    assert "1 of the 4 records" in sentence and "1 of the 3 rows have none yet" in sentence


def test_the_dip_page_says_how_many_records_lack_a_trajectory_and_draws_no_curves_without_them(tmp_path):
    from inference.reproduce.shapes import DIP_CURVES, _dip_figures, _dip_page

    old = {"β-VAE β=4": {0: {"beta_vae": 0.6, "recon_l2": 0.003, "beta_vae_logistic": 0.7},
                         1: {"beta_vae": 0.5, "recon_l2": 0.004, "beta_vae_logistic": 0.6}}}
    assert "None of the 2 records (row, seed) keeps its training trajectory" in _dip_page(old, "cpu")
    assert _dip_figures(old, tmp_path, "cpu") == ["dip_tradeoff.png"] and not (tmp_path / DIP_CURVES).exists()
    traj = {"step": [10, 20], "recon": [5.0, 4.0], "kl": [1.0, 2.0], "kl_weight": [1.0, 1.0]}
    new = {"β-VAE β=4": {s: {**n, "trajectory": traj} for s, n in old["β-VAE β=4"].items()}}
    assert "trajectory" not in _dip_page(new, "cpu")
    assert _dip_figures(new, tmp_path, "cpu") == ["dip_tradeoff.png", DIP_CURVES]


# -- MS-VAE -------------------------------------------------------------------------------------------

MSVAE_TERMS = {"betatc": ("loss", "recon", "kl", "mi", "tc", "dim_kl", "kl_weight"),
               "msvae": ("loss", "recon", "kl", "kl_weight"), "big_betatc": ("loss", "recon", "kl", "tc", "kl_weight")}


def test_an_msvae_record_keeps_each_stages_thinned_trajectory_and_the_figure_draws_them(tmp_path, monkeypatch):
    from inference.papers import msvae
    from inference.reproduce import experiments

    files = {}

    def run_experiment(settings, out, models, seed):  # what the experiment writes: a run folder per stage
        for m, n in (("betatc", 250), ("msvae", 50), ("big_betatc", 300)):
            files[m] = write_metrics(Path(out) / msvae.STAGES / m / "metrics.jsonl", n, keys=MSVAE_TERMS[m])
        return {"rows": {m: {"mig": 0.2, "fid": 2.0} for m in models}}

    monkeypatch.setattr(msvae, "run_experiment", run_experiment)
    numbers = experiments._run_msvae("experiment", {}, 0, tmp_path / "seed_0", "cpu")
    assert numbers["msvae/mig"] == 0.2
    for m, rows in files.items():
        t = numbers[f"{m}/trajectory"]
        assert list(t) == ["step", *MSVAE_TERMS[m]] and len(t["step"]) <= 100
        assert t["step"][0] == rows[0]["step"] and t["step"][-1] == rows[-1]["step"]
        by_step = {r["step"]: r for r in rows}
        assert all(t[k][i] == by_step[s][k] for i, s in enumerate(t["step"]) for k in MSVAE_TERMS[m])

    older = {k: v for k, v in numbers.items() if not k.endswith("/trajectory")}
    results = {"experiment": {0: older, 1: numbers, 2: numbers}}
    series = experiments.msvae_curves(results, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0
    plotted = {key: line for lines in series.values() for key, line in lines.items()}
    for m, label in experiments.MSVAE_CURVES.items():
        t = numbers[f"{m}/trajectory"]
        for term in MSVAE_TERMS[m]:
            assert plotted[(label, term)] == (t["step"], t[term])  # exactly the record's trajectory (seed 1)
    assert experiments._msvae_figures(results, tmp_path, "cpu") == [experiments.MSVAE_FIGURE]
    assert "1 of the 3 records (seeds) keep no stage trajectories" in experiments._msvae_page(results, "cpu")
    assert "trajectories" not in experiments._msvae_page({"experiment": {1: numbers}}, "cpu")


def test_the_msvae_page_without_trajectories_says_so_and_draws_no_curves(tmp_path):
    from inference.reproduce import experiments

    results = {"experiment": {s: {"betatc/mig": 0.2, "msvae/fid": 2.0} for s in (0, 1)}}
    assert "None of the 2 records (seeds) keeps its stages' training trajectories" in experiments._msvae_page(
        results, "cpu")
    assert experiments._msvae_figures(results, tmp_path, "cpu") == []
    assert not (tmp_path / experiments.MSVAE_FIGURE).exists()


def test_an_msvae_stage_logs_its_terms_at_a_hundred_steps_in_its_folder(tmp_path, one_thread):
    """fit_stage with a folder: a run folder whose metrics.jsonl has a row every steps // 100 steps, and
    the same weights as without one."""
    import torch

    from inference.papers.msvae import fit_stage, stage_one_member
    from ppl_data import TexturedShapes

    data = TexturedShapes(32)
    settings = {"batch_size": 4, "lr": 1e-3}
    trained = []
    for out_dir in (tmp_path / "stage", None):
        torch.manual_seed(0)
        model, guide, loss, _ = stage_one_member("betatc", 2, data.data_shape, len(data), net="mlp")
        fit_stage(model, guide, loss, data, 100, settings, seed=3, device="cpu", out_dir=out_dir)
        trained.append([p.detach().clone() for p in list(model.parameters()) + list(guide.parameters())])
    rows = read_metrics(tmp_path / "stage")
    assert [r["step"] for r in rows] == list(range(1, 101)) and all(math.isfinite(r["loss"]) for r in rows)
    assert all(torch.equal(a, b) for a, b in zip(*trained))


def test_dip_claims_never_compare_records_scored_two_ways():
    from inference.reproduce.shapes import _dip_claims, _dip_protocol_note

    def rec(metric, recon, balanced):
        return {"beta_vae": metric, "recon_l2": recon} | ({"beta_vae_balanced": True, "beta_vae_floor": 0.2,
                                                             "beta_vae_converged": True} if balanced else {})
    old = {"DIP-VAE-I λ_od=1": {0: rec(0.9, 0.001, False), 1: rec(0.95, 0.0011, False)},
           "β-VAE β=4": {0: rec(0.1, 0.01, False), 1: rec(0.12, 0.011, False)},
           "β-VAE β=60": {0: rec(0.1, 0.02, False), 1: rec(0.11, 0.021, False)}}
    assert "n = 2 vs 2" in _dip_claims(old, "cpu")[0].ours
    assert "6 of the 6 records" in _dip_protocol_note(old, "cpu")
    mixed = {k: v | {2: rec(0.5, 0.002, True), 3: rec(0.55, 0.0021, True), 4: rec(0.52, 0.0022, True)}
             for k, v in old.items()}
    claim = _dip_claims(mixed, "cpu")[0]
    assert "n = 3 vs 3" in claim.ours  # only the balanced records
    assert "6 of the 15 records" in _dip_protocol_note(mixed, "cpu")


# -- robust -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 299, 300, 301, 600, 900, 1200])
def test_the_robust_record_keeps_at_most_300_points_of_its_state(tmp_path, n):
    """The robust trajectories figure's record (I_T, I_T′, γ, λ): at most TRAJECTORY_POINTS rows, the
    first and the last step among them (the old stride kept 301 at n = 900), rows without the state
    (an ELBO-only log line) left out."""
    from inference.reproduce import experiments

    keys = experiments.TRAJECTORY_KEYS
    rows = write_metrics(tmp_path / "metrics.jsonl", n, keys=("loss",) + keys)
    with open(tmp_path / "metrics.jsonl", "a") as fh:
        fh.write('\n{"step": 0, "loss": 1.0}\n')  # no state: not a point of the figure
    t = experiments.trajectory(tmp_path / "metrics.jsonl")
    assert list(t) == ["step", *keys]
    assert len(t["step"]) == min(n, len(t["step"])) <= experiments.TRAJECTORY_POINTS == 300
    assert (t["step"][0], t["step"][-1]) == (rows[0]["step"], rows[-1]["step"])
    by_step = {r["step"]: r for r in rows}
    assert all(t[k][i] == by_step[s][k] for i, s in enumerate(t["step"]) for k in keys)
    assert experiments.trajectory(tmp_path / "absent.jsonl") == {k: [] for k in ("step", *keys)}
