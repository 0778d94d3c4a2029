"""Claim 1 at the field's resolution (issue 25): the ``cpu64`` and ``gpu`` code paths at a tiny
budget, records that survive the loss of the run folder, and the MI reading of the page."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from inference.errors import ConfigError
from inference.reproduce import reproduce
from inference.reproduce import driver, shapes

TINY64 = dict(data="dsprites", resolution=64, net="conv64_dl", steps=6, batch_size=8, lr=1e-4, log_every=3,
              checkpoint_every=3)


@pytest.fixture
def tiny64(monkeypatch):
    """The cpu64 budget cut to a few steps and the tiny evaluation (same code path, same nets)."""
    monkeypatch.setitem(shapes.BASE, "cpu64", TINY64)
    monkeypatch.setattr(shapes, "CPU64_V1", {**TINY64, "net": "conv64"})
    monkeypatch.setattr(shapes, "CPU64_LR1E3", {**TINY64, "net": "conv64", "lr": shapes.PILOT64_FIRST_LR})
    monkeypatch.setitem(shapes.SIZES, "cpu64", shapes.SIZES["tiny"])
    monkeypatch.setitem(shapes.CONTINUES, "cpu64", (3,))
    monkeypatch.setattr(shapes, "PILOT64_STEPS", (3, 6))


def test_cpu64_row_record_survives_the_run_folder_and_regenerates_the_page(tiny64, tmp_path, monkeypatch):
    runs, results = tmp_path / "runs", tmp_path / "results"
    real = shapes.evaluate_run  # DCI's GBT over 32 position classes costs ~15 s; this test is about records
    monkeypatch.setattr(shapes, "evaluate_run", lambda *a, **k: real(*a, **{**k, "dci_importance": "forest"}))
    out = reproduce("baselines", budget="cpu64", runs=runs, results=results, seeds=(0,), only=("VAE",))
    page = json.loads((results / "baselines.json").read_text())
    record = page["records"]["VAE"]["0"]
    assert page["protocol"]["train"]["resolution"] == 64 and page["protocol"]["train"]["net"] == "conv64_dl"
    mi = np.asarray(record["mi"])
    assert mi.shape == (10, 5) and record["mi_factors"] == ["shape", "scale", "orientation", "pos_x", "pos_y"]
    # the page's reading divides by each factor's entropy: a share of it, within [0, 1] up to binning
    share = shapes.normalised_mi(record)
    np.testing.assert_allclose(share, mi / np.asarray(record["factor_entropy"]))
    assert share.min() >= 0 and share.max() <= 1 + 1e-9
    text = (results / "baselines.md").read_text()
    assert "64×64 procedural dSprites" in text and "baselines_mi_cpu64.png" in text
    assert (results / "baselines_mi_cpu64.png").is_file()
    assert "VAE" in out["results"] and 0 in out["results"]["VAE"]

    # a new machine: the run folder is gone; the committed record counts, nothing is trained again
    shutil.rmtree(runs)
    def no_training(*args, **kwargs):
        raise AssertionError("a (row, seed) the page already records was trained again")
    before = (results / "baselines.md").read_text()
    import inference.reproduce.shapes as mod
    original = mod.trained
    mod.trained = no_training
    try:
        reproduce("baselines", budget="cpu64", runs=runs, results=results, seeds=(0,), only=("VAE",))
    finally:
        mod.trained = original
    assert (results / "baselines.md").read_text() == before


@pytest.mark.slow
def test_pilot_records_each_milestone_and_continues_the_shorter_run(tiny64, tmp_path):
    records = shapes.pilot64(tmp_path / "runs", tmp_path, rows=("VAE",), seeds=(0,), log=lambda *_: None)
    assert list(records) == ["VAE|0|3|0.0001", "VAE|0|6|0.0001"]  # at the budget's rate, 1e-4
    assert [records[k]["steps"] for k in records] == [3, 6]
    appendix = shapes._pilot_appendix(tmp_path, "cpu64")
    assert "| VAE | 0.0001 | 0 | 6 |" in appendix  # the table comes from the records file
    # the 6-step milestone is the budget's own run (same store folder as a cpu64 row)
    assert shapes.store_dir(tmp_path / "runs", "cpu64", shapes.BASELINES["VAE"], 0).joinpath("summary.json").is_file()


@pytest.mark.slow
def test_gpu_budget_runs_disentanglement_libs_protocol_on_cpu_at_a_tiny_size(monkeypatch, tmp_path):
    gpu = shapes.BASE["gpu"]
    # disentanglement_lib (Locatello et al. 2019): 64×64, conv64, Adam 1e-4, batch 64, 300,000 steps
    assert (gpu["resolution"], gpu["net"], gpu["lr"], gpu["batch_size"], gpu["steps"]) == (64, "conv64", 1e-4, 64, 300_000)
    monkeypatch.setitem(shapes.BASE, "gpu", {**gpu, "steps": 4, "batch_size": 8, "log_every": 2,
                                             "checkpoint_every": 2, "device": "cpu"})
    monkeypatch.setitem(shapes.SIZES, "gpu", shapes.SIZES["tiny"])
    reproduce("baselines", budget="gpu", runs=tmp_path / "runs", results=tmp_path / "results", seeds=(0,),
              only=("β-TCVAE",))
    page = json.loads((tmp_path / "results" / "baselines.json").read_text())
    assert page["budget"] == "gpu" and page["protocol"]["train"]["lr"] == 1e-4
    assert np.isfinite(page["records"]["β-TCVAE"]["0"]["mig"])


def test_a_budget_the_page_does_not_have_is_refused_by_name(tmp_path):
    with pytest.raises(ConfigError, match="--budget cpu is not a budget of baselines"):
        reproduce("baselines", budget="cpu", runs=tmp_path / "r", results=tmp_path / "p")
    with pytest.raises(ConfigError, match="--budget cpu64 is not a budget of dip"):
        reproduce("dip", budget="cpu64", runs=tmp_path / "r", results=tmp_path / "p")


def test_the_idle_speed_enters_the_pilot_record_and_the_page_reads_it(tiny64, tmp_path):
    (tmp_path / shapes.PILOT_FILE).write_text(json.dumps({"records": {"VAE|0|3": {
        "mig": 0.1, "factor_vae": 0.5, "dci_d": 0.2, "recon_l2": 0.01, "train_s": 60.0, "s_per_step": 0.2}}}))
    speed = shapes.pilot64_speed(tmp_path / "runs", tmp_path, steps=3, warmup=2)
    kept = json.loads((tmp_path / shapes.PILOT_FILE).read_text())
    assert kept["speed"] == pytest.approx(speed) and kept["records"]["VAE|0|3"]["mig"] == 0.1  # nothing lost
    text = shapes._pilot_appendix(tmp_path, "cpu64")
    # the budget's cost is computed from the record: steps × s/step
    assert f"{shapes.CPU64_STEPS * speed['s_per_step'] / 60:.0f} minutes of training per run" in text
    assert f"{speed['s_per_step'] * 1000:.0f} ms" in text


def test_each_64_reading_trains_and_keeps_its_own_runs_and_page(tiny64, tmp_path, monkeypatch):
    """Issue 25: the pilot replaced the budget's first rate, 1e-3, by disentanglement_lib's 1e-4, and an
    audit replaced the first nets by disentanglement_lib's; the earlier runs stay as second readings.
    Each page trains its own protocol (read back from the trained runs' own configs), none takes
    another's records, and their figures do not collide."""
    assert "Adam lr 0.0001 (disentanglement_lib: 1e-4" in shapes.CPU64_NOTE  # the real budget's rate
    assert "disentanglement_lib's nets as written" in shapes.CPU64_NOTE and "our first conv64 nets" in shapes.CPU64_V1_NOTE
    runs, results = tmp_path / "runs", tmp_path / "results"
    real = shapes.evaluate_run
    monkeypatch.setattr(shapes, "evaluate_run", lambda *a, **k: real(*a, **{**k, "dci_importance": "forest"}))
    pages = {}
    for paper in ("baselines64_lr1e-3", "baselines64_v1", "baselines"):
        assert paper not in {p.stem for p in results.glob("*.json")}  # nothing of this page's yet
        reproduce(paper, budget="cpu64", runs=runs, results=results, seeds=(0,), only=("VAE",))
        pages[paper] = json.loads((results / f"{paper}.json").read_text())
    old, v1, new = (pages[p]["protocol"]["train"] for p in ("baselines64_lr1e-3", "baselines64_v1", "baselines"))
    assert old == {**v1, "lr": 1e-3} and v1 == {**new, "net": "conv64"}  # one change at a time
    assert new["lr"] == 1e-4 and new["net"] == "conv64_dl"
    trained_at = sorted((c["net"], c["lr"]) for c in (json.loads(p.read_text())
                        for p in (runs / "shapes" / "cpu64").glob(f"*/seed_0/{shapes.RUN_CONFIG}")))
    assert trained_at == [("conv64", 1e-4), ("conv64", 1e-3), ("conv64_dl", 1e-4)]  # three runs, one per protocol
    recon = {p: pages[p]["records"]["VAE"]["0"]["recon_l2"] for p in pages}
    assert len(set(recon.values())) == 3
    for name in ("baselines64_lr1e-3_mi_cpu64.png", "baselines64_v1_mi_cpu64.png", "baselines_mi_cpu64.png"):
        assert (results / name).is_file()
    # no page takes another's records: with the lead page gone, the lead page finds nothing
    (results / "baselines.json").unlink()
    shutil.rmtree(runs / "baselines", ignore_errors=True)
    from inference.reproduce import PAPERS, collect
    assert collect(PAPERS["baselines"], runs, "cpu64", results) == {}
    for paper in ("baselines64_lr1e-3", "baselines64_v1"):
        assert set(collect(PAPERS[paper], runs, "cpu64", results)) == {"VAE"}
    # FactorVAE's row is the only one whose settings differ: disentanglement_lib's discriminator
    assert {r: s for r, s in shapes.BASELINES.items() if shapes.BASELINES_V1[r] != s} == {
        "FactorVAE": {"model": "factor", "gamma": 40.0, "discriminator": "dl"}}


def test_the_learning_rate_arm_of_the_pilot_has_its_own_records_and_reading(tmp_path):
    """Issue 25 asks for the learning rate to be piloted: an arm at another lr keeps its own keys
    (the budget's keep theirs), and the page's reading compares the two at their last common
    milestone with the means of the records (computed here by hand)."""
    budget = first = shapes.PILOT64_FIRST_LR  # the rate the pilot began at: keys without an lr suffix
    # a key's meaning never follows the budget's rate: the budget's default is now the arm's 1e-4
    assert shapes.pilot_key("VAE", 0, 30_000, first) == "VAE|0|30000"
    assert shapes.pilot_key("VAE", 1, 30_000) == shapes.pilot_key("VAE", 1, 30_000, 1e-4) == "VAE|1|30000|0.0001"
    assert shapes.parse_pilot_key("VAE|1|30000|0.0001") == ("VAE", 1, 30_000, 1e-4)
    assert shapes.parse_pilot_key("VAE|0|30000") == ("VAE", 0, 30_000, first)
    rec = lambda mig, l2: {"mig": mig, "factor_vae": 0.5, "dci_d": 0.1, "recon_l2": l2, "train_s": 60.0,
                           "s_per_step": 0.07}
    records = {"VAE|0|20000": rec(0.01, 0.003), "VAE|0|30000": rec(0.02, 0.002), "VAE|1|30000": rec(0.04, 0.004),
               "VAE|0|30000|0.0001": rec(0.10, 0.005)}
    (tmp_path / shapes.PILOT_FILE).write_text(json.dumps({"records": records}))
    text = shapes._pilot_appendix(tmp_path, "cpu64")
    assert (f"VAE at 30,000 steps, MIG 0.030 at {budget:g} (n = 2) against 0.100 at 0.0001 (n = 1), "
            "recon L2 0.0030 against 0.0050") in text
    assert "| VAE | 0.0001 | 0 | 30,000 | 0.100 |" in text and "not piloted" not in text
    del records["VAE|0|30000|0.0001"]
    (tmp_path / shapes.PILOT_FILE).write_text(json.dumps({"records": records}))
    assert "no other rate is piloted yet" in shapes._pilot_appendix(tmp_path, "cpu64")
    with pytest.raises(ConfigError, match="lr must be a positive number, got -0.1"):
        shapes.pilot64(tmp_path / "runs", tmp_path, rows=("VAE",), seeds=(0,), lr=-0.1)


def test_lr_outside_the_pilot_is_one_line(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    from inference.cli import run_main
    script = Path(__file__).resolve().parents[1] / "scripts" / "reproduce.py"
    spec = importlib.util.spec_from_file_location("reproduce_script_lr", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for argv, message in ((["baselines", "--lr", "1e-4"], "--lr 0.0001 is for --pilot"),
                          (["baselines", "--pilot", "--lr", "0"], "argument --lr: expected a positive number, got '0'"),
                          (["baselines", "--amend", "--only", "VAE"], "--amend takes no --only"),
                          (["dip", "--amend"], "--amend: dip keeps every number its records need")):
        assert run_main(module.main, [*argv, "--runs", str(tmp_path / "r"), "--results", str(tmp_path / "p")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").iterdir())


def test_the_budget_check_is_also_judged_without_the_seeds_that_chose_the_budget():
    """The pilot chose lr 1e-4 from β-TCVAE's and the VAE's seeds 0 and 1, which are also the page's;
    the page therefore also judges the budget check on the other seeds alone. Its p is scipy's
    one-sided Welch test on exactly those seeds (an independent computation)."""
    from scipy.stats import ttest_ind

    from inference.reproduce import PAPERS

    tc = {0: 0.30, 1: 0.31, 2: 0.20, 3: 0.24, 4: 0.22}
    vae = {0: 0.05, 1: 0.06, 2: 0.08, 3: 0.12, 4: 0.07}
    results = {"β-TCVAE": {s: {"mig": v} for s, v in tc.items()}, "VAE": {s: {"mig": v} for s, v in vae.items()}}
    claims = PAPERS["baselines64_v1"].claims(results, "cpu64")  # the pilot's runs are that reading's
    fresh = [c for c in claims if c.claim.startswith("Budget check on the seeds the pilot did not see (all but 0, 1)")]
    assert len(fresh) == 1 and "n = 3 vs 3" in fresh[0].ours
    p = ttest_ind([0.20, 0.24, 0.22], [0.08, 0.12, 0.07], equal_var=False, alternative="greater").pvalue
    assert f"p = {p:.2g}" in fresh[0].ours
    # the other pages' runs did not choose their rate: no such claim there (the lead page's nets came
    # after the pilot, whose runs are none of its own), nor at gpu
    for paper in ("baselines64_lr1e-3", "baselines"):
        assert not any("did not see" in c.claim for c in PAPERS[paper].claims(results, "cpu64"))
    assert not any("did not see" in c.claim for c in PAPERS["baselines"].claims(results, "gpu"))


def test_the_codes_reading_names_each_factors_latent_and_groups_factors_that_share_one():
    """Issue 25 asks which factors each model codes: a factor counts as coded where one latent carries
    ≥ CODES_AT of its entropy, and factors whose best latent is the same one are shown together
    (coded, but not apart). Hand-made MI: z1 carries half of shape's and of scale's entropy, z2 0.3 of
    pos_x's, nothing else reaches 0.2."""
    entropy = [1.0, 2.0, 3.0, 4.0]
    share = np.zeros((3, 4))
    share[1, 0], share[1, 1], share[2, 2], share[0, 3] = 0.5, 0.5, 0.3, 0.1
    share[0, 0] = 0.4  # below z1's share of shape: z1 is shape's latent
    record = {"mi": (share * np.asarray(entropy)).tolist(), "mi_factors": ["shape", "scale", "pos_x", "pos_y"],
              "factor_entropy": entropy, "mig": 0.1}
    text = shapes._mi_table({"VAE": {0: record}})
    assert "| VAE | 0 | 0.50 (z1) | 0.50 (z1) | 0.30 (z2) | 0.10 (z0) | z1: shape + scale; z2: pos_x |" in text


def test_amend_adds_the_active_units_of_old_records_from_their_runs_and_changes_no_number(tiny64, tmp_path, monkeypatch):
    """A record made before the evaluation kept each latent's variance of its posterior mean gets it
    from its stored run (the same codes as its MIG: Burda et al. 2016 §5.2's A_u), every other number
    unchanged; a record whose run is not on this machine stays as it was, and the page says so."""
    from inference.reproduce import amend
    runs, results = tmp_path / "runs", tmp_path / "results"
    real = shapes.evaluate_run  # GBT's DCI costs seconds; this test is about the records
    monkeypatch.setattr(shapes, "evaluate_run", lambda *a, **k: real(*a, **{**k, "dci_importance": "forest"}))
    reproduce("baselines", budget="cpu64", runs=runs, results=results, seeds=(0,), only=("VAE",))
    kept = json.loads((results / "baselines.json").read_text())["records"]["VAE"]["0"]
    assert len(kept["code_var"]) == 10 and "active units" in (results / "baselines.md").read_text()
    row_file = runs / "baselines" / "cpu64" / "VAE" / "seed_0" / "row.json"
    assert json.loads(row_file.read_text())["device"] == driver.device_name()  # where it trained

    def as_made_before(drop_row_file: bool):
        """The record as an older evaluation made it: no code_var, in the page and in its row file."""
        page = json.loads((results / "baselines.json").read_text())
        del page["records"]["VAE"]["0"]["code_var"]
        (results / "baselines.json").write_text(json.dumps(page))
        if drop_row_file:  # only the page keeps it (a record from another machine)
            row_file.unlink()
        else:
            record = json.loads(row_file.read_text())
            del record["numbers"]["code_var"]
            row_file.write_text(json.dumps(record))
        return page["records"]["VAE"]["0"]

    for drop in (False, True):
        old = as_made_before(drop)
        out = amend("baselines", budget="cpu64", runs=runs, results=results, log=lambda *_: None)
        assert out["amended"] == [("VAE", 0)] and out["missing"] == []
        after = json.loads((results / "baselines.json").read_text())["records"]["VAE"]["0"]
        assert after["code_var"] == kept["code_var"]  # the very codes the evaluation kept
        assert {k: v for k, v in after.items() if k != "code_var"} == old  # no other number changes
        assert json.loads(row_file.read_text())["amended"][-1]["keys"] == ["code_var"]
    # the trained run is gone: the record stays as it was, counted on the page
    old = as_made_before(False)
    store = shapes.store_dir(runs, "cpu64", shapes.BASELINES["VAE"], 0)
    moved = store.with_name("elsewhere")
    store.rename(moved)
    out = amend("baselines", budget="cpu64", runs=runs, results=results, log=lambda *_: None)
    assert out["amended"] == [] and out["missing"] == [("VAE", 0)]
    assert json.loads((results / "baselines.json").read_text())["records"]["VAE"]["0"] == old
    # a record the codes no longer give (another run, another draw) is refused, not amended
    with pytest.raises(ConfigError, match="not the codes the record was evaluated on"):
        shapes.code_variance(moved, "cpu64", 0, mig=old["mig"] + 0.01)


def test_the_codes_reading_marks_a_latent_the_decoder_gets_no_signal_from():
    """An inactive latent (variance of its posterior mean ≤ 10⁻², Burda et al. 2016) that carries a
    factor's largest MI share is marked †: the histogram sees wiggles of a mean, not a code. z0's mean
    varies by 10⁻³, z1's by 0.5, z2's by 0.02."""
    entropy = [1.0, 2.0]
    share = np.array([[0.3, 0.0], [0.6, 0.1], [0.0, 0.25]])
    record = {"mi": (share * np.asarray(entropy)).tolist(), "mi_factors": ["shape", "pos_x"],
              "factor_entropy": entropy, "mig": 0.1, "code_var": [1e-3, 0.5, 0.02]}
    old = {**record, "mi": (share[[0, 2, 1]] * np.asarray(entropy)).tolist()}
    del old["code_var"]
    text = shapes._mi_table({"VAE": {0: record}, "β-VAE": {0: old}})
    assert "| VAE | 0 | 0.60 (z1) | 0.25 (z2) | z1: shape; z2: pos_x | z1, z2 |" in text
    assert "| β-VAE | 0 | 0.60 (z2) | 0.25 (z1) | z1: pos_x; z2: shape | – |" in text
    inactive = {**record, "mi": (share[[1, 0, 2]] * np.asarray(entropy)).tolist()}  # shape's best latent is z0 now
    assert "| VAE | 0 | 0.60 (z0†) | 0.25 (z2) | z0†: shape; z2: pos_x | z1, z2 |" in shapes._mi_table({"VAE": {0: inactive}})
    assert "1 of the 2 records shown predate the active units" in text


def test_a_record_trained_on_a_gpu_is_never_counted_as_cpu_time(tmp_path):
    """A reproduction run on a machine with CUDA trains there (``train_run``'s default device), and its
    record keeps the device: its minutes go to a GPU line, not into CPU-hours or the CPU training column."""
    from pathlib import Path

    from inference.reproduce import PAPERS, write_index
    from inference.reproduce.driver import write_page
    committed = json.loads((Path(__file__).resolve().parents[1] / "results" / "baselines64_v1.json").read_text())
    vae = {int(s): n for s, n in committed["records"]["VAE"].items() if int(s) in (0, 1)}
    vae[1] = {**vae[1], "device": "cuda (Fake GPU)", "train_s": 120.0, "wall_s": 150.0}
    cpu_s = max(vae[0]["wall_s"], vae[0]["train_s"])
    results = tmp_path / "results"
    write_page(PAPERS["baselines64_v1"], {"VAE": vae}, budget="cpu64", results=results, command="", runs=tmp_path / "runs")
    page = json.loads((results / "baselines64_v1.json").read_text())
    assert page["wall_s"] == pytest.approx(cpu_s) and page["gpu_wall_s"] == {"cuda (Fake GPU)": 150.0}
    text = (results / "baselines64_v1.md").read_text()
    assert f"{cpu_s / 60:.1f} minutes of runs" in text and "and 2.5 minutes of runs trained on cuda (Fake GPU)" in text
    assert f"| {vae[0]['train_s'] / 60:.1f} ± 0.0 (1 seed) (1 trained on a GPU left out) |" in text
    index = write_index(results).read_text()
    assert f"| {cpu_s / 3600:.2f} (and {150 / 3600:.2f} GPU-hours) |" in index
    assert f"{cpu_s / 3600:.2f} CPU-hours (one core per run), and {150 / 3600:.2f} GPU-hours." in index


def test_the_floor_is_the_encoder_the_vae_started_from_scored_on_the_trained_runs_codes(tiny64, tmp_path,
                                                                                        monkeypatch):
    """The floor row (shapes.FLOOR): the VAE's encoder before its first step, on the very points its
    trained encoder is scored on; a record of its own, kept on the page like any row."""
    import torch

    import inference.runs as runs_mod

    monkeypatch.setattr(shapes, "DCI_IMPORTANCE", "forest")  # GBT over 32 classes costs ~15 s; not the point
    started = {}
    real_fit = runs_mod.fit

    def fit(model, guide, *args, **kwargs):  # the encoder train_run hands to fit, before any step
        started.update({k: v.detach().clone() for k, v in guide.state_dict().items()})
        return real_fit(model, guide, *args, **kwargs)
    monkeypatch.setattr(runs_mod, "fit", fit)
    runs, results = tmp_path / "runs", tmp_path / "results"
    reproduce("baselines", budget="cpu64", runs=runs, results=results, seeds=(0,), only=("VAE", shapes.FLOOR))
    records = json.loads((results / "baselines.json").read_text())["records"]
    run = shapes.store_dir(runs, "cpu64", shapes.BASELINES["VAE"], 0)

    # the floor's encoder is the one training started from, weight for weight
    initial = shapes.initial_guide(run).state_dict()
    assert started and initial.keys() == started.keys()
    assert all(torch.equal(initial[k], started[k]) for k in started)
    # the floor's protocol is the trained rows': with the run's own encoder it gives the VAE record's numbers
    again = shapes.factor_metrics_of(run, "cpu64", 0)
    for key in ("mig", "factor_vae", "dci_d", "sap", "beta_vae", "code_var"):
        assert again[key] == records["VAE"]["0"][key], key
    floor = records[shapes.FLOOR]["0"]
    assert floor["untrained"] is True and "recon_l2" not in floor and "train_s" not in floor
    assert isinstance(floor["factor_vae_active"], int)
    # scoring the floor writes nothing into the VAE's run folder: its heatmap stays the trained encoder's
    heatmap = (run / "mi_heatmap.png").read_bytes()
    shapes.factor_metrics_of(run, "cpu64", 0, shapes.initial_guide(run))
    assert (run / "mi_heatmap.png").read_bytes() == heatmap
    assert floor["mig"] == shapes.factor_metrics_of(run, "cpu64", 0, shapes.initial_guide(run))["mig"]
    text = (results / "baselines.md").read_text()
    assert f"| {shapes.FLOOR} | 1 |" in text


def test_every_model_is_tested_against_the_floor_and_a_model_at_the_floor_fails():
    """The prerequisite claim: each model's DCI informativeness against the untrained encoder's, one Welch
    test each; MIG at the floor alone (a rotated code) does not fail it."""
    def rows(**values):
        return {name: {s: {"dci_i": v, "mig": 0.005} for s, v in enumerate(vs)} for name, vs in values.items()}
    floor = [0.218, 0.229, 0.241, 0.225]
    learned = dict(zip(shapes.BASELINES, ([0.37, 0.39, 0.33, 0.40],) * len(shapes.BASELINES)))
    results = rows(**{shapes.FLOOR: floor}, **learned)

    def prerequisite():
        return next(c for c in shapes._baselines_claims(results, "cpu64", floor=True) if c.claim.startswith("Prerequisite"))
    assert prerequisite().verdict == "holds", prerequisite()
    assert "DCI inform. (GBT): VAE 0.373" in prerequisite().ours
    # one model left at its initialisation (a broken objective): indistinguishable from the floor
    results["DIP-VAE-II"] = rows(x=[0.220, 0.231, 0.238, 0.226])["x"]
    assert prerequisite().verdict == "inconclusive" and "DIP-VAE-II: n = 4 vs 4" in prerequisite().ours
    # a model below the floor: does not hold
    results["DIP-VAE-II"] = rows(x=[0.101, 0.122, 0.110, 0.105])["x"]
    assert prerequisite().verdict == "does not hold"
    # without the floor's records the claim waits for them; the second readings have no such claim
    del results[shapes.FLOOR]
    assert prerequisite().verdict == "inconclusive" and f"not run: {shapes.FLOOR}" in prerequisite().ours
    assert not any(c.claim.startswith("Prerequisite") for c in shapes._baselines_claims(results, "cpu64"))


def test_the_floor_note_says_why_its_factor_vae_score_is_zero_only_where_every_latent_was_pruned():
    from inference.metrics.factor_vae import PRUNE_STD

    results = {shapes.FLOOR: {0: {"mig": 0.01, "factor_vae": 0.0, "factor_vae_active": 0, "untrained": True},
                              1: {"mig": 0.01, "factor_vae": 0.3, "factor_vae_active": 1, "untrained": True}}}
    text = shapes._baselines_page(results, "cpu64")
    assert f"In 1 of its 2 seeds the FactorVAE metric found no latent whose code varies by std {PRUNE_STD:g}" in text
    results[shapes.FLOOR].pop(0)
    assert "found no latent" not in shapes._baselines_page(results, "cpu64")
    # a floor record from before the count is run again; a trained model's record never for this
    repro = driver_repro = __import__("inference.reproduce", fromlist=["PAPERS"]).PAPERS["baselines"]
    assert repro.why_rerun({"mig": 0.01, "untrained": True}) and driver_repro.why_rerun(results[shapes.FLOOR][1]) is None
    assert repro.why_rerun({"mig": 0.1}) is None
