"""Every script in scripts/, every kind of bad input: one line on stderr naming the bad value, exit
status 2, no traceback, and nothing written or overwritten (issue 14 §3).

The table runs each script's ``main(argv)`` in this process through ``inference.cli.run_main`` (what
``python scripts/X.py`` runs), with the training entry points replaced by a function that fails the
test: a bad input must be refused before any training starts. Three cases run the real script in a
subprocess, as a user does, to show that no import chatter or traceback reaches stderr there either.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import inference.runs
from inference import resolve_config
from inference.checkpoint import save_checkpoint
from inference.cli import run_main

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
CUDA = torch.cuda.is_available()
STUDY = ROOT / "configs" / "sweeps" / "dip_study_quick.yaml"

#: Training and the costly set-up before it, in each script's namespace: a bad input never gets there.
TRAINING = ("fit", "train_flow", "train", "Experiment", "run_sweep", "Sprites", "TexturedShapes", "PendulumPairs",
            "feature_net", "run_experiment")


class ReachedTraining(AssertionError):
    pass


def _refuse(*args, **kwargs):
    raise ReachedTraining("a bad input was accepted and training started")


_modules: dict[str, object] = {}


def script(name: str):
    """``scripts/<name>.py`` as a module, loaded once (scripts/ is on sys.path for vitae_stability)."""
    if name not in _modules:
        if str(SCRIPTS) not in sys.path:
            sys.path.insert(0, str(SCRIPTS))
        spec = importlib.util.spec_from_file_location(f"_bad_input_{name}", SCRIPTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _modules[name] = module
    return _modules[name]


@pytest.fixture
def places(tmp_path):
    """Paths a user might pass: an existing file, a non-empty folder, run folders that are not runs..."""
    root = tmp_path / "p"
    root.mkdir()
    p = {"root": root, "new": root / "new", "nosuch": root / "no" / "such", "file": root / "file.txt",
         "full": root / "full", "empty": root / "empty", "nockpt": root / "nockpt", "badcfg": root / "badcfg",
         "partial": root / "partial", "foreign": root / "foreign", "badyaml": root / "bad.yaml",
         "listyaml": root / "list.yaml", "stopped": root / "stopped"}
    p["file"].write_bytes(b"precious bytes\n")
    p["full"].mkdir()
    (p["full"] / "keep.txt").write_bytes(b"keep me\n")
    p["empty"].mkdir()
    config = {**resolve_config("vae", {"net": "mlp", "latent_dim": 2}), "data": "digits", "data_root": None,
              "data_shape": [1, 8, 8], "dataset_size": 1797}
    for name in ("nockpt", "badcfg", "partial", "foreign"):
        p[name].mkdir()
        (p[name] / "config.json").write_text(json.dumps(config))
    (p["badcfg"] / "config.json").write_text("{not json")
    (p["partial"] / "config.json").write_text(json.dumps({"model": "vae"}))
    # Readable checkpoints of ours, with a config that is not a run's, or parameters not the config's model's.
    for name in ("partial", "foreign"):
        save_checkpoint(p[name] / "checkpoint.pt", {"step": 1, "params": {}, "optimizer": {}, "rng": {}})
    p["stopped"].mkdir()  # a stopped dpvae_compare whose results file is damaged
    (p["stopped"] / "compare.json").write_text("{damaged")
    p["badyaml"].write_text("name: [unclosed\n")
    p["listyaml"].write_text("- 1\n- 2\n")
    return p


def snapshot(root: Path) -> dict:
    return {q.relative_to(root).as_posix(): (q.read_bytes() if q.is_file() else None)
            for q in sorted(root.rglob("*"))}


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"expected one stderr line, got:\n{err}"
    assert "Traceback" not in err
    return lines[0]


S, O = ["--steps", "1"], ["--out", "{new}"]  # the flags train.py needs besides the bad one
cuda_only_absent = pytest.mark.skipif(CUDA, reason="needs a machine without CUDA")

CASES = [
    # -- train.py ---------------------------------------------------------------------------------
    ("train", [*S, "--out", "{file}"], "{file}"),
    ("train", [*S, "--out", "{full}"], "{full}"),
    ("train", [*S, *O, "--device", "tpu"], "'tpu'"),
    pytest.param("train", [*S, *O, "--device", "cuda"], "cuda", marks=cuda_only_absent),
    ("train", [*S, *O, "--device", "cuda:x"], "'cuda:x'"),
    ("train", [*S, *O, "--device", ""], "''"),
    ("train", ["--steps", "-1", *O], "'-1'"),
    ("train", ["--steps", "1.5", *O], "'1.5'"),
    ("train", [*S, *O, "--batch-size", "0"], "'0'"),
    ("train", [*S, *O, "--batch-size", "abc"], "'abc'"),
    ("train", [*S, *O, "--data", "digits", "--batch-size", "100000"], "100000"),
    ("train", [*S, *O, "--lr", "0"], "'0'"),
    ("train", [*S, *O, "--lr=-1e-3"], "'-1e-3'"),
    ("train", [*S, *O, "--lr", "nan"], "'nan'"),
    ("train", [*S, *O, "--warmup-steps", "-2"], "'-2'"),
    ("train", [*S, *O, "--seed", "-1"], "'-1'"),
    ("train", [*S, *O, "--seed", "x"], "'x'"),
    ("train", [*S, *O, "--seed", str(2 ** 40)], str(2 ** 40)),
    ("train", [*S, *O, "--log-every", "0"], "'0'"),
    ("train", [*S, *O, "--checkpoint-every", "0"], "'0'"),
    ("train", [*S, *O, "--model", "nope"], "'nope'"),
    ("train", [*S, *O, "--data", "nope"], "'nope'"),
    ("train", [*S, *O, "--data", "mnist", "--data-root", "{nosuch}"], "{nosuch}"),
    ("train", [*S, *O, "--data", "mnist", "--data-root", "{file}"], "{file}"),
    ("train", [*S, *O, "--data", "image_folder", "--data-root", "{empty}"], "{empty}"),
    # SmallNORB and Cars3D read the folder --data-root names (they were refused the flag itself)
    ("train", [*S, *O, "--data", "smallnorb", "--data-root", "{nosuch}"], "SmallNORB folder not found: {nosuch}"),
    ("train", [*S, *O, "--data", "cars3d", "--data-root", "{nosuch}"], "Cars3D folder not found: {nosuch}"),
    ("train", [*S, *O, "--data", "digits", "--beta", "abc"], "'abc'"),
    ("train", [*S, *O, "--data", "digits", "--beta", "nan"], "nan"),
    ("train", [*S, *O, "--data", "digits", "--beta", "inf"], "inf"),
    ("train", [*S, *O, "--data", "digits", "--latent-dim", "0"], "0"),
    ("train", [*S, *O, "--data", "digits", "--likelihood", "poisson"], "'poisson'"),
    ("train", [*S, *O, "--data", "digits", "--resolution", "32"], "32"),
    ("train", [*S, *O, "--resolution", "4"], "4"),
    ("train", [*S, *O, "--resolution", "0"], "'0'"),
    ("train", [*S, *O, "--resolution", "32", "--net", "conv64"], "conv64"),
    ("train", [*S, "--resume", "--out", "{nosuch}"], "{nosuch}"),
    ("train", [*S, "--resume", "--out", "{full}"], "{full}"),
    ("train", [*S, "--resume", "--out", "{file}"], "{file}"),
    ("train", [*S, "--out", "{file}/sub"], "{file}"),
    ("train", [*S, "--out", ""], "''"),
    ("train", [*S, *O, "--bogus"], "--bogus"),
    # -- evaluate.py ------------------------------------------------------------------------------
    ("evaluate", ["{nosuch}"], "{nosuch}"),
    ("evaluate", ["{file}"], "{file}"),
    ("evaluate", ["{empty}"], "{empty}"),
    ("evaluate", ["{nockpt}"], "{nockpt}"),
    ("evaluate", ["{badcfg}"], "{badcfg}"),
    ("evaluate", ["{partial}"], "{partial}"),
    ("evaluate", ["{foreign}"], "{foreign}"),
    ("evaluate", ["{nockpt}", "--device", "tpu"], "'tpu'"),
    pytest.param("evaluate", ["{nockpt}", "--device", "cuda"], "cuda", marks=cuda_only_absent),
    ("evaluate", ["{nockpt}", "--seed", "-1"], "'-1'"),
    ("evaluate", ["{nockpt}", "--seed", "x"], "'x'"),
    ("evaluate", [], "run_dir"),
    # -- sample.py --------------------------------------------------------------------------------
    ("sample", ["{nosuch}"], "{nosuch}"),
    ("sample", ["{file}"], "{file}"),
    ("sample", ["{empty}"], "{empty}"),
    ("sample", ["{nockpt}"], "{nockpt}"),
    ("sample", ["{badcfg}"], "{badcfg}"),
    ("sample", ["{partial}"], "{partial}"),
    ("sample", ["{foreign}"], "{foreign}"),
    ("sample", ["{nockpt}", "--num", "0"], "'0'"),
    ("sample", ["{nockpt}", "--num", "x"], "'x'"),
    ("sample", ["{nockpt}", "--pool", "-5"], "'-5'"),
    ("sample", ["{nockpt}", "--num-data", "0"], "'0'"),
    ("sample", ["{nockpt}", "--lp-gen", "--fraction", "1.5"], "1.5"),
    ("sample", ["{nockpt}", "--lp-gen", "--fraction", "abc"], "'abc'"),
    ("sample", ["{nockpt}", "--lp-gen", "--num", "6000"], "6000"),
    ("sample", ["{nockpt}", "--seed", "-3"], "'-3'"),
    # -- sweep.py ---------------------------------------------------------------------------------
    ("sweep", ["{nosuch}"], "{nosuch}"),
    ("sweep", ["{empty}"], "{empty}"),
    ("sweep", ["{badyaml}"], "{badyaml}"),
    ("sweep", ["{listyaml}"], "{listyaml}"),
    ("sweep", [str(STUDY), "--set", "nokey"], "'nokey'"),
    ("sweep", [str(STUDY), "--set", "base.batch_size=abc"], "abc"),
    ("sweep", [str(STUDY), "--set", "base.nope=1"], "nope"),
    ("sweep", [str(STUDY), "--address", "garbage"], "'garbage'"),
    ("sweep", [str(STUDY), "--address", "ray://host:port"], "'ray://host:port'"),
    ("sweep", [str(STUDY), "--num-cpus", "0"], "'0'"),
    ("sweep", [str(STUDY), "--max-concurrent", "x"], "'x'"),
    ("sweep", [str(STUDY), "--out", "{file}"], "{file}"),
    ("sweep", [str(STUDY), "--out", "{file}", "--dry-run"], "{file}"),
    ("sweep", [str(STUDY), "--out", "{full}"], "{full}"),
    ("sweep", [str(STUDY), "--out", "{nockpt}", "--table-only"], "{nockpt}"),
    # -- dpvae_compare.py -------------------------------------------------------------------------
    ("dpvae_compare", ["--out", "{file}"], "{file}"),
    ("dpvae_compare", ["--out", "{full}"], "{full}"),
    ("dpvae_compare", ["--out", "{stopped}", "--resume"], "{stopped}"),
    ("dpvae_compare", [*O, "--models", "beta,nope"], "nope"),
    ("dpvae_compare", [*O, "--models", ""], "''"),
    ("dpvae_compare", [*O, "--steps", "0"], "'0'"),
    ("dpvae_compare", [*O, "--steps", "x"], "'x'"),
    ("dpvae_compare", [*O, "--seed", "-1"], "'-1'"),
    ("dpvae_compare", [*O, "--device", "tpu"], "'tpu'"),
    pytest.param("dpvae_compare", [*O, "--device", "cuda"], "cuda", marks=cuda_only_absent),
    ("dpvae_compare", [], "--out"),
    # -- dpvae_two_moons.py -----------------------------------------------------------------------
    ("dpvae_two_moons", ["--out", "{file}"], "{file}"),
    ("dpvae_two_moons", ["--out", "{full}"], "{full}"),
    ("dpvae_two_moons", [*O, "--steps", "0"], "'0'"),
    ("dpvae_two_moons", [*O, "--obs-scale", "0"], "'0'"),
    ("dpvae_two_moons", [*O, "--obs-scale", "-1"], "'-1'"),
    ("dpvae_two_moons", [*O, "--obs-scale", "x"], "'x'"),
    ("dpvae_two_moons", [*O, "--seed", "x"], "'x'"),
    ("dpvae_two_moons", [*O, "--device", "tpu"], "'tpu'"),
    pytest.param("dpvae_two_moons", [*O, "--device", "cuda"], "cuda", marks=cuda_only_absent),
    # -- msflow.py --------------------------------------------------------------------------------
    ("msflow", ["--out", "{file}"], "{file}"),
    ("msflow", ["--out", "{full}"], "{full}"),
    ("msflow", ["--out", "{file}", "--force"], "{file}"),
    ("msflow", ["--out", "{file}/sub"], "{file}"),
    ("msflow", [*O, "--device", "tpu"], "'tpu'"),
    pytest.param("msflow", [*O, "--device", "cuda"], "cuda", marks=cuda_only_absent),
    ("msflow", [*O, "--steps", "0"], "'0'"),
    ("msflow", [*O, "--steps", "x"], "'x'"),
    ("msflow", [*O, "--seed", "-1"], "'-1'"),
    ("msflow", [*O, "--data-root", "{nosuch}"], "{nosuch}"),
    ("msflow", [*O, "--data-root", "{file}"], "{file}"),
    ("msflow", [*O, "--data-root", "{empty}"], "{empty}"),
    # -- msgan.py ---------------------------------------------------------------------------------
    ("msgan", ["--out", "{file}"], "{file}"),
    ("msgan", ["--out", "{full}"], "{full}"),
    ("msgan", [*O, "--device", "tpu"], "'tpu'"),
    pytest.param("msgan", [*O, "--device", "cuda"], "cuda", marks=cuda_only_absent),
    ("msgan", [*O, "--gan-steps", "0"], "'0'"),
    ("msgan", [*O, "--seed", "x"], "'x'"),
    # -- msvae_experiment.py ----------------------------------------------------------------------
    ("msvae_experiment", ["--out", "{file}"], "{file}"),
    ("msvae_experiment", ["--out", "{full}"], "{full}"),
    ("msvae_experiment", [*O, "--models", "betatc,nope"], "nope"),
    ("msvae_experiment", [*O, "--models", ","], "','"),
    ("msvae_experiment", [*O, "--steps1", "0"], "'0'"),
    ("msvae_experiment", [*O, "--steps2", "x"], "'x'"),
    ("msvae_experiment", [*O, "--device", "tpu"], "'tpu'"),
    ("msvae_experiment", [*O, "--seed", "-2"], "'-2'"),
    # -- msvae_pendulum.py ------------------------------------------------------------------------
    ("msvae_pendulum", ["--out", "{file}"], "{file}"),
    ("msvae_pendulum", ["--out", "{full}"], "{full}"),
    ("msvae_pendulum", [*O, "--device", "tpu"], "'tpu'"),
    ("msvae_pendulum", [*O, "--device", "garbage:3"], "'garbage:3'"),
    pytest.param("msvae_pendulum", [*O, "--device", "cuda"], "cuda", marks=cuda_only_absent),
    ("msvae_pendulum", [*O, "--steps", "-3"], "'-3'"),
    ("msvae_pendulum", [*O, "--seed", "x"], "'x'"),
    # -- robust_sprites.py ------------------------------------------------------------------------
    ("robust_sprites", ["--out", "{file}"], "{file}"),
    ("robust_sprites", ["--out", "{file}", "--resume"], "{file}"),
    ("robust_sprites", ["--out", "{full}"], "{full}"),
    ("robust_sprites", [*O, "--variants", "full,nope"], "nope"),
    ("robust_sprites", [*O, "--variants", ""], "''"),
    ("robust_sprites", [*O, "--steps", "0"], "'0'"),
    ("robust_sprites", [*O, "--batch-size", "x"], "'x'"),
    ("robust_sprites", [*O, "--lr", "0"], "'0'"),
    ("robust_sprites", [*O, "--warmup-steps", "-1"], "'-1'"),
    ("robust_sprites", [*O, "--resolution", "48"], "48"),
    ("robust_sprites", [*O, "--net", "nope"], "'nope'"),
    ("robust_sprites", [*O, "--net", "conv64", "--resolution", "32"], "32"),
    ("robust_sprites", [*O, "--l-gamma", "0"], "'0'"),
    ("robust_sprites", [*O, "--epsilon", "x"], "'x'"),
    ("robust_sprites", [*O, "--triplets", "0"], "'0'"),
    ("robust_sprites", [*O, "--eval-pairs", "0"], "'0'"),
    ("robust_sprites", [*O, "--fresh-steps", "x"], "'x'"),
    ("robust_sprites", [*O, "--seed", "-1"], "'-1'"),
    ("robust_sprites", [*O, "--log-every", "0"], "'0'"),
    ("robust_sprites", [*O, "--device", "tpu"], "'tpu'"),
    pytest.param("robust_sprites", [*O, "--device", "cuda"], "cuda", marks=cuda_only_absent),
    # -- vitae_mnist.py ---------------------------------------------------------------------------
    ("vitae_mnist", ["--out", "{file}"], "{file}"),
    ("vitae_mnist", ["--out", "{full}"], "{full}"),
    ("vitae_mnist", [*O, "--steps", "0"], "'0'"),
    ("vitae_mnist", [*O, "--batch-size", "0"], "'0'"),
    ("vitae_mnist", [*O, "--lr", "x"], "'x'"),
    ("vitae_mnist", [*O, "--persp-dim", "0"], "'0'"),
    ("vitae_mnist", [*O, "--app-dim", "x"], "'x'"),
    ("vitae_mnist", [*O, "--canonical-fraction", "0"], "'0'"),
    ("vitae_mnist", [*O, "--canonical-fraction", "2"], "2"),
    ("vitae_mnist", [*O, "--app-width", "0"], "'0'"),
    ("vitae_mnist", [*O, "--transformer", "nope"], "'nope'"),
    ("vitae_mnist", [*O, "--device", "tpu"], "'tpu'"),
    pytest.param("vitae_mnist", [*O, "--device", "cuda"], "cuda", marks=cuda_only_absent),
    ("vitae_mnist", [*O, "--data-root", "{nosuch}"], "{nosuch}"),
    ("vitae_mnist", [*O, "--data-root", "{empty}"], "{empty}"),
    ("vitae_mnist", [*O, "--seed", "-1"], "'-1'"),
    ("vitae_mnist", [*O, "--n-train", "0"], "'0'"),
    ("vitae_mnist", [*O, "--n-eval", "x"], "'x'"),
    # -- vitae_stability.py -----------------------------------------------------------------------
    ("vitae_stability", ["--out", "{file}"], "{file}"),
    ("vitae_stability", ["--out", "{full}"], "{full}"),
    ("vitae_stability", [*O, "--transformers", "affine,nope"], "nope"),
    ("vitae_stability", [*O, "--transformers", ""], "''"),
    ("vitae_stability", [*O, "--lrs", "1e-3,abc"], "abc"),
    ("vitae_stability", [*O, "--lrs", "0"], "'0'"),
    ("vitae_stability", [*O, "--lrs", ""], "''"),
    ("vitae_stability", [*O, "--lrs", "1e-3,,1e-2"], "1e-3,,1e-2"),
    ("vitae_stability", [*O, "--steps", "0"], "'0'"),
    ("vitae_stability", [*O, "--device", "tpu"], "'tpu'"),
    pytest.param("vitae_stability", [*O, "--device", "cuda"], "cuda", marks=cuda_only_absent),
    ("vitae_stability", [*O, "--data-root", "{nosuch}"], "{nosuch}"),
    # -- reproduce.py -----------------------------------------------------------------------------
    ("reproduce", ["nope", "--runs", "{new}", "--results", "{new}"], "'nope'"),
    ("reproduce", ["baselines", "--budget", "huge", "--runs", "{new}", "--results", "{new}"], "'huge'"),
    ("reproduce", ["baselines", "--seeds", "-1", "--runs", "{new}", "--results", "{new}"], "'-1'"),
    ("reproduce", ["baselines", "--seeds", "0,0", "--runs", "{new}", "--results", "{new}"], "'0,0'"),
    ("reproduce", ["baselines", "--seeds", "", "--runs", "{new}", "--results", "{new}"], "''"),
    ("reproduce", ["baselines", "--only", "nope", "--runs", "{new}", "--results", "{new}"], "'nope'"),
    ("reproduce", ["dip", "--only", "VAE", "--runs", "{new}", "--results", "{new}"], "'VAE'"),
    ("reproduce", ["baselines", "--runs", "{file}", "--results", "{new}"], "{file}"),
    ("reproduce", ["baselines", "--runs", "{new}", "--results", "{file}"], "{file}"),
    ("vitae_stability", [*O, "--seed", "x"], "'x'"),
    ("vitae_stability", [*O, "--n-train", "-3"], "'-3'"),
]
# Every script refuses an unknown flag the same way.
def _values(case) -> tuple:
    return case.values if hasattr(case, "marks") else case


REQUIRED = {"train": [*S, *O], "evaluate": ["{nockpt}"], "sample": ["{nockpt}"], "sweep": [str(STUDY)],
            "dpvae_compare": O, "dpvae_two_moons": O,
            "reproduce": ["baselines", "--runs", "{new}", "--results", "{new}"]}
CASES += [(name, [*REQUIRED.get(name, []), "--bogus"], "--bogus")
          for name in sorted({_values(c)[0] for c in CASES}) if name != "train"]


def _fill(text: str, places: dict) -> str:
    return text.format(**{k: str(v) for k, v in places.items()})


def _id(case) -> str:
    name, argv = _values(case)[:2]
    return f"{name}:{' '.join(argv) or '(none)'}"


@pytest.mark.parametrize("name, argv, expected", CASES, ids=[_id(c) for c in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(name, argv, expected, places, capfd, monkeypatch):
    module = script(name)
    for attr in TRAINING:
        if hasattr(module, attr):
            monkeypatch.setattr(module, attr, _refuse)
    if hasattr(module, "sweep"):
        monkeypatch.setattr(module.sweep, "run_sweep", _refuse)
    monkeypatch.setattr(inference.runs, "fit", _refuse)  # train.py trains through inference.runs.train_run
    before = snapshot(places["root"])
    capfd.readouterr()
    code = run_main(module.main, [_fill(a, places) for a in argv])
    err = capfd.readouterr().err
    assert code == 2, err
    line = one_line(err)
    assert _fill(expected, places) in line
    assert snapshot(places["root"]) == before  # nothing overwritten, nothing created


@pytest.mark.parametrize("name, argv, expected", [
    # real processes (slow): the in-process table above covers the same inputs, and
    # tests/test_train_cli.py keeps one real process in the fast suite
    pytest.param("robust_sprites", ["--out", "{file}"], "{file}", marks=pytest.mark.slow),
    pytest.param("msvae_pendulum", ["--device", "tpu", "--out", "{new}"], "'tpu'", marks=pytest.mark.slow),
])
def test_real_script_prints_one_clean_line(name, argv, expected, places):
    """As a user runs it: no warning or traceback on stderr, exit 2, the file given as --out intact."""
    before = snapshot(places["root"])
    proc = subprocess.run([sys.executable, str(SCRIPTS / f"{name}.py"), *[_fill(a, places) for a in argv]],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert _fill(expected, places) in one_line(proc.stderr)
    assert proc.stderr.endswith("\n") and proc.stderr.count("\n") == 1, proc.stderr
    assert snapshot(places["root"]) == before


# -- the shared validators of inference/cli.py ------------------------------------------------------
def test_shared_validators_accept_good_values_and_name_bad_ones(tmp_path):
    import argparse

    from inference import cli
    from inference.errors import ConfigError

    assert cli.torch_device("cpu") == "cpu" and cli.torch_device("cpu:0") == "cpu:0"
    assert cli.comma_list(("a", "b"))(" b, a,") == ["b", "a"]
    assert cli.number_list(cli.positive_float)("1e-3,0.1") == [1e-3, 0.1]
    assert cli.ray_address("auto") == "auto" and cli.ray_address("ray://10.0.0.1:10001")
    assert cli.random_seed(str(2 ** 32 - 1)) == 2 ** 32 - 1
    for parse, text, words in [(cli.comma_list(("a", "b")), "a,a", "'a' is listed twice"),
                               (cli.number_list(cli.positive_float), "1e-3,0.001", "listed twice"),
                               (cli.torch_device, "meta", "'meta'"), (cli.random_seed, str(2 ** 32), "4294967296"),
                               (cli.fraction, "1", "'1'"), (cli.fraction_or_one, "1.01", "'1.01'"),
                               (cli.existing_dir, str(tmp_path / "none"), "none")]:
        with pytest.raises(argparse.ArgumentTypeError, match=words):
            parse(text)
    # An output folder: new or empty is fine and not created; a non-empty one only when continuing.
    assert cli.check_output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x").write_text("x")
    assert cli.check_output_dir(tmp_path / "run", continuing=True) == tmp_path / "run"
    with pytest.raises(ConfigError, match="--resume to continue it, or another --out"):
        cli.check_output_dir(tmp_path / "run", how="--resume to continue it")
    with pytest.raises(ConfigError, match="larger than the dataset"):
        cli.check_batch_size(65, 64, "tiny")
    cli.check_batch_size(64, 64, "tiny")


def test_experiment_settings_refuse_earlier_results_unless_force(tmp_path):
    from inference.cli import experiment_parser, experiment_settings
    from inference.errors import ConfigError

    out = tmp_path / "o"
    out.mkdir()
    (out / "results.json").write_text("{}")
    p = experiment_parser("x", str(out))
    with pytest.raises(ConfigError, match="--force"):
        experiment_settings(p.parse_args([]), {}, {"steps": 1})
    assert experiment_settings(p.parse_args(["--force"]), {}, {"steps": 1}) == ({"steps": 1}, out)


@pytest.mark.parametrize("name, argv, named", [
    ("peer_speed", ["--steps", "0"], "'0'"),
    ("peer_speed", ["--allocator", "mine"], "'mine'"),
    ("train_speed", ["--rounds", "x"], "'x'"),
    ("render_speed", ["--batch", "-5"], "'-5'"),
    ("dci_speed", ["--train", "0"], "'0'"),
    ("fast_path_parts", ["--steps", "1.5"], "'1.5'"),
])
def test_benchmarks_refuse_bad_flags_in_one_line(name, argv, named, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))  # the benchmarks import their neighbours
    try:
        spec = importlib.util.spec_from_file_location(f"_bench_{name}", ROOT / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        with pytest.raises(SystemExit) as exit_:
            module.main(argv)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and named in err, err
