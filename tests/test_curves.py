"""Training curves (issue 26): inference.pictures.training_curves plots exactly the logged numbers,
grouped by what they are; the robust page's trajectories figure is the same function."""

import json

import pytest

from inference.papers.robust import LABELS, trajectories
from inference.pictures import read_metrics, term_kind, training_curves

ROWS = [
    {"step": 2, "loss": 50.0, "recon": 45.0, "kl": 3.0, "capacity": 0.5, "kl_weight": 0.25},
    {"step": 4, "loss": 48.0, "recon": 44.0, "kl": 2.5, "capacity": 1.0, "kl_weight": 0.75},
    {"step": 5, "loss": 47.5, "recon": 43.0, "capacity": 1.25, "kl_weight": 1.0},  # no kl
]


def test_one_run_one_panel_per_term_then_weight_then_state(tmp_path):
    data = training_curves(ROWS, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0
    titles = list(data)
    assert titles[:3] == ["loss", "recon", "kl"]
    assert titles[3].startswith("KL weight") and titles[4].startswith("capacity — C(t)")
    assert data["loss"] == {"loss": ([2, 4, 5], [50.0, 48.0, 47.5])}
    assert data["kl"] == {"kl": ([2, 4], [3.0, 2.5])}  # a row without the term is skipped
    assert data[titles[3]] == {"kl_weight": ([2, 4, 5], [0.25, 0.75, 1.0])}
    assert data[titles[4]] == {"capacity": ([2, 4, 5], [0.5, 1.0, 1.25])}


def test_term_kinds():
    assert term_kind("kl_weight", []) == "weight"
    assert [term_kind(n, ["gamma", "lambda"]) for n in ("gamma", "lambda", "I_T")] == ["state", "state", "term"]
    assert term_kind("tc", ["tc", "discriminator"]) == "state"  # FactorVAE's discriminator estimate
    assert term_kind("tc", ["tc", "mi", "dim_kl"]) == "term"  # β-TCVAE's decomposition


def test_read_metrics_skips_a_line_cut_short(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS) + '{"step": 6, "lo')
    assert read_metrics(tmp_path) == ROWS


def test_robust_trajectories_are_training_curves(tmp_path):
    runs = {}
    for v, gamma in (("full", 1.0), ("no_bias", 2.0)):
        run = tmp_path / v
        run.mkdir()
        rows = [{"step": s, "loss": 1.0, "I_T": 0.1 * s, "I_T_prime": 0.2 * s, "gamma": gamma * s,
                 "lambda": 0.5, "kl_weight": 1.0} for s in (10, 20)]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        runs[v] = run
    data = trajectories(runs, tmp_path / "t.png", epsilon=0.05, title="t")
    assert list(data) == ["I_T (solid), I_T′ (dotted), ε (dashed)", "γ", "λ"]
    first = data["I_T (solid), I_T′ (dotted), ε (dashed)"]
    assert first[(LABELS["full"], "I_T_prime")] == ([10, 20], pytest.approx([2.0, 4.0]))
    assert data["γ"][(LABELS["no_bias"], "gamma")] == ([10, 20], [20.0, 40.0])
    assert (tmp_path / "t.png").stat().st_size > 0
