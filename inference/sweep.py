"""Hyperparameter × seed sweeps: expand a study file into trials, run each on Ray Tune with the same
code path as ``scripts/train.py`` + ``scripts/evaluate.py``, and tabulate the results.

A study file (YAML or JSON) holds::

    name: my_study
    base: {data: dsprites, steps: 2000, batch_size: 64}      # train.py flags every trial shares
    seeds: [0, 1, 2]                                          # crossed with every block
    blocks:                                                   # union of sub-grids (or one top-level
      - fixed: {model: dip1}                                  #   fixed/grid/tie/random)
        grid: {lambda_od: [1, 10]}                            # full cross product
        tie: {lambda_d: {of: lambda_od, times: 10}}           # derived flag: λ_d = 10·λ_od
      - fixed: {model: beta}
        random: {beta: {loguniform: [1, 256]}}                # random search ...
        num_samples: 4                                        # ... this many draws (seeded)
    evaluate: {sections: [training, reconstruction, beta_vae], sizes: {beta_vae_train: 300},
               beta_vae_classifier: svm, dci_importance: gbt}    # options: evaluation.py
    resources: {cpu: 1, gpu: 0}
    plot: {x: [lambda_od, beta], metrics: [beta_vae, recon_l2], tradeoff: [recon_l2, beta_vae]}

Flag names are train.py's (``--lambda-od`` is ``lambda_od``). Each trial's run directory is
``OUT/runs/<name>``, its name built from the flags that vary plus a hash of all its flags, so a
changed study never mistakes an old run for a finished trial. A trial is finished when its run
directory holds ``summary.json``, ``report.json`` and a ``trial.json`` saying ``ok`` for the same
evaluation settings; a resumed sweep skips those, re-evaluates trained runs, and continues
half-trained ones from their checkpoint.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import itertools
import json
import math
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .checkpoint import atomic_write_text
from .errors import ConfigError
from .svi import CHECKPOINT, CONFIG, SUMMARY

ROOT = Path(__file__).resolve().parents[1]
TRIAL = "trial.json"
REPORT = "report.json"
STUDY_KEYS = {"name", "base", "seeds", "blocks", "fixed", "grid", "tie", "random", "num_samples",
              "random_seed", "evaluate", "resources", "plot", "max_concurrent", "description"}
BLOCK_KEYS = {"fixed", "grid", "tie", "random", "num_samples"}
DEFAULT_SECTIONS = ("training", "reconstruction", "factor_metrics")
SECTIONS = ("training", "reconstruction", "beta_vae", "factor_metrics", "likelihood", "pictures",
            "posterior", "fid")
#: Table columns taken from report.json: name -> (metric key, field).
METRIC_FIELDS = {"beta_vae": ("beta_vae", "eval_accuracy"), "factor_vae": ("factor_vae", "eval_accuracy"),
                 "mig": ("mig", "value"), "dci_d": ("dci", "disentanglement"),
                 "dci_c": ("dci", "completeness"), "dci_i": ("dci", "informativeness_test"),
                 "sap": ("sap", "continuous"), "recon_l1": ("reconstruction", "l1"),
                 "recon_l2": ("reconstruction", "l2"), "log_px": ("log_likelihood", "mean"),
                 "fid": ("fid_kid", "fid")}
TIMES = ("train_s", "eval_s", "wall_s")
RANDOM_KINDS = ("uniform", "loguniform", "randint", "choice")
EVALUATE_KEYS = ("sections", "sizes", "full", "seed", "device", "beta_vae_classifier",
                 "dci_importance")


def load_script(name: str):
    """``scripts/<name>.py`` as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"_sweep_{name}", ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# -- the study -----------------------------------------------------------------------------------
@dataclass
class Trial:
    name: str
    flags: dict
    run_dir: str
    varied: tuple = ()


@dataclass
class Study:
    name: str
    trials: list
    evaluate: dict
    resources: dict = field(default_factory=lambda: {"cpu": 1, "gpu": 0})
    plot: dict = field(default_factory=dict)
    tied: tuple = ()
    max_concurrent: int | None = None


def read_study_file(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"study file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml
            raw = yaml.safe_load(text)
        else:
            raw = json.loads(text)
    except ValueError as err:  # yaml.YAMLError and json errors are ValueErrors or close enough
        raise ConfigError(f"study file {path} is not valid {path.suffix[1:]}: {err}") from None
    except Exception as err:  # noqa: BLE001  yaml's errors do not subclass ValueError
        raise ConfigError(f"study file {path} is not valid {path.suffix[1:]}: "
                          f"{str(err).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"study file {path}: expected a mapping at the top, got {type(raw).__name__}")
    raw.setdefault("name", path.stem)
    return raw


def apply_overrides(raw: dict, sets) -> dict:
    """``KEY.PATH=VALUE`` edits (VALUE read as YAML; list items by index), e.g. ``base.steps=300``,
    ``seeds=[0]``, ``blocks.0.grid.lambda_od=[10]``."""
    import yaml

    for item in sets or ():
        path, sep, text = item.partition("=")
        if not sep or not path:
            raise ConfigError(f"--set {item!r}: expected KEY.PATH=VALUE")
        node, keys = raw, path.split(".")
        for k in keys[:-1]:
            try:
                node = node[int(k)] if isinstance(node, list) else node.setdefault(k, {})
            except (ValueError, IndexError, AttributeError):
                raise ConfigError(f"--set {item!r}: no {k!r} in the study at this point") from None
        try:
            value = yaml.safe_load(text)
        except Exception:  # noqa: BLE001
            raise ConfigError(f"--set {item!r}: {text!r} is not a YAML value") from None
        last = keys[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise ConfigError(f"--set {item!r}: {last!r} is not an index of a {len(node)}-item list")
            node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"--set {item!r}: {'.'.join(keys[:-1])} is not a mapping or list")
    return raw


def train_flags() -> dict:
    """train.py's flags: dest name -> argparse action (built from the live parser)."""
    parser = load_script("train").make_parser()
    return {a.dest: a for a in parser._actions if a.dest not in ("help", "out", "resume")}


def _mapping(value, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{what}: expected a mapping of flag -> value, got {value!r}")
    return value


def _choice(ev: dict, key: str, default: str, allowed) -> str:
    value = ev.get(key, default)
    if value not in allowed:
        raise ConfigError(f"evaluate.{key}: unknown {value!r}; expected one of {list(allowed)}")
    return value


def _check_flags(names, known, what: str) -> None:
    for name in names:
        if name not in known:
            raise ConfigError(f"{what}: unknown train.py flag {name!r}; expected one of "
                              f"{', '.join(sorted(known))}")


def _check_value(name: str, value, action) -> None:
    """``value`` read as train.py's parser reads ``--name``: a bad value fails the study at once, not
    each trial after the cluster started (``device`` is left to the workers, which may have GPUs)."""
    if value is None or action.nargs == 0 or name == "device" or action.type is None:
        return
    try:
        action.type(str(value))
    except Exception as err:  # noqa: BLE001  argparse types raise ArgumentTypeError, ValueError...
        raise ConfigError(f"flag {name}: {err}") from None


def _draw(spec, rng: np.random.Generator, what: str):
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in RANDOM_KINDS:
        raise ConfigError(f"{what}: expected one of {{{', '.join(RANDOM_KINDS)}: ...}}, got {spec!r}")
    kind, args = next(iter(spec.items()))
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise ConfigError(f"{what}: choice needs a non-empty list, got {args!r}")
        return args[int(rng.integers(len(args)))]
    if not (isinstance(args, list) and len(args) == 2 and all(isinstance(a, (int, float)) for a in args)
            and args[0] < args[1]):
        raise ConfigError(f"{what}: {kind} needs [low, high] with low < high, got {args!r}")
    low, high = args
    if kind == "uniform":
        return float(rng.uniform(low, high))
    if kind == "randint":
        return int(rng.integers(int(low), int(high) + 1))  # both ends included
    if low <= 0:
        raise ConfigError(f"{what}: loguniform needs low > 0, got {low!r}")
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _block_points(block: dict, rng: np.random.Generator, where: str) -> list[dict]:
    grid = _mapping(block.get("grid"), f"{where}.grid")
    for k, v in grid.items():
        if not isinstance(v, list) or not v:
            raise ConfigError(f"{where}.grid.{k}: expected a non-empty list of values, got {v!r}")
    points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
    random = _mapping(block.get("random"), f"{where}.random")
    n = block.get("num_samples", 1)
    if random:
        if not isinstance(n, int) or n < 1:
            raise ConfigError(f"{where}.num_samples: expected a positive integer, got {n!r}")
        points = [{**p, **{k: _draw(s, rng, f"{where}.random.{k}") for k, s in random.items()}}
                  for p in points for _ in range(n)]
    return points


def _tie(point: dict, tie: dict, where: str) -> dict:
    out = dict(point)
    for name, rule in tie.items():
        if not (isinstance(rule, dict) and set(rule) <= {"of", "times", "plus"} and "of" in rule):
            raise ConfigError(f"{where}.tie.{name}: expected {{of: FLAG, times: NUMBER}}, got {rule!r}")
        if rule["of"] not in out:
            raise ConfigError(f"{where}.tie.{name}: flag {rule['of']!r} is not set in this block")
        out[name] = out[rule["of"]] * rule.get("times", 1) + rule.get("plus", 0)
    return out


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def trial_name(flags: dict, varied) -> str:
    """Readable flags that vary, plus a hash of every flag (a changed study gets new names)."""
    digest = hashlib.sha1(json.dumps(flags, sort_keys=True, default=str).encode()).hexdigest()[:6]
    parts = [f"{k}={_fmt(flags[k])}" for k in varied if k in flags]
    stem = "-".join(parts).replace("/", "_").replace(" ", "")[:120] or "trial"
    return f"{stem}-{digest}"


def expand(raw: dict, out_dir) -> Study:
    """The trials of a study: every block's points × seeds, over ``base``; ConfigError if bad."""
    unknown = set(raw) - STUDY_KEYS
    if unknown:
        raise ConfigError(f"study: unknown key(s) {sorted(unknown)}; expected some of {sorted(STUDY_KEYS)}")
    known = train_flags()
    base = _mapping(raw.get("base"), "base")
    _check_flags(base, known, "base")
    blocks = raw.get("blocks")
    if blocks is None:
        blocks = [{k: raw[k] for k in BLOCK_KEYS if k in raw}]
    elif not isinstance(blocks, list) or not blocks or any(BLOCK_KEYS & set(raw)):
        raise ConfigError("study: 'blocks' must be a non-empty list, and then fixed/grid/tie/random "
                          "belong inside the blocks")
    seeds = raw.get("seeds")
    if seeds is not None and not (isinstance(seeds, list) and seeds
                                  and all(isinstance(s, int) and s >= 0 for s in seeds)):
        raise ConfigError(f"seeds: expected a non-empty list of non-negative integers, got {seeds!r}")
    rng = np.random.default_rng(int(raw.get("random_seed", 0)))
    flag_sets, tied = [], set()
    for i, block in enumerate(blocks):
        where = f"blocks[{i}]"
        if not isinstance(block, dict) or set(block) - BLOCK_KEYS:
            raise ConfigError(f"{where}: expected a mapping with keys among {sorted(BLOCK_KEYS)}, "
                              f"got {block!r}")
        fixed = _mapping(block.get("fixed"), f"{where}.fixed")
        tie = _mapping(block.get("tie"), f"{where}.tie")
        for part in ("fixed", "grid", "tie", "random"):
            _check_flags(_mapping(block.get(part), f"{where}.{part}"), known, f"{where}.{part}")
        tied |= set(tie)
        for point in _block_points(block, rng, where):
            flags = _tie({**base, **fixed, **point}, tie, where)
            for seed in (seeds if seeds is not None else [flags.get("seed", 0)]):
                flag_sets.append({**flags, "seed": seed})
    for flags in flag_sets:
        for k, v in flags.items():
            if isinstance(v, (list, dict)):
                raise ConfigError(f"flag {k}: expected a single value, got {v!r}")
            if k in known:
                _check_value(k, v, known[k])
        if "steps" not in flags:
            raise ConfigError("every trial needs 'steps' (set it in base)")
    keys = list(dict.fromkeys(k for f in flag_sets for k in f))
    varied = tuple(k for k in keys if len({json.dumps(f.get(k)) for f in flag_sets}) > 1)
    order = (tuple(["model"] if "model" in varied else [])
             + tuple(k for k in varied if k not in ("model", "seed"))
             + tuple(["seed"] if "seed" in varied else []))
    runs = Path(out_dir).resolve() / "runs"
    trials, seen = [], set()
    for flags in flag_sets:
        name = trial_name(flags, order)
        if name in seen:
            continue  # the same trial listed twice (e.g. overlapping blocks)
        seen.add(name)
        trials.append(Trial(name, flags, str(runs / name), order))
    from . import metrics as M  # the metric options' names

    ev = _mapping(raw.get("evaluate"), "evaluate")
    extra = set(ev) - set(EVALUATE_KEYS)
    if extra:
        raise ConfigError(f"evaluate: unknown key(s) {sorted(extra)}; expected some of "
                          f"{', '.join(EVALUATE_KEYS)}")
    sections = ev.get("sections", list(DEFAULT_SECTIONS))
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        raise ConfigError(f"evaluate.sections: unknown {bad}; expected some of {list(SECTIONS)}")
    evaluate = {"sections": list(sections), "sizes": _mapping(ev.get("sizes"), "evaluate.sizes"),
                "full": bool(ev.get("full", False)), "seed": int(ev.get("seed", 0)),
                "device": ev.get("device", "cpu"),
                "beta_vae_classifier": _choice(ev, "beta_vae_classifier", "logistic",
                                               M.BETA_VAE_CLASSIFIERS),
                "dci_importance": _choice(ev, "dci_importance", "gbt", M.DCI_IMPORTANCE_MODELS)}
    resources = {"cpu": 1, "gpu": 0, **_mapping(raw.get("resources"), "resources")}
    return Study(str(raw["name"]), trials, evaluate, resources, _mapping(raw.get("plot"), "plot"),
                 tuple(sorted(tied)), raw.get("max_concurrent"))


# -- one trial (runs inside a Ray worker) --------------------------------------------------------
def to_argv(flags: dict, known: dict, run_dir: str) -> list[str]:
    argv = ["--out", run_dir]
    for k, v in flags.items():
        flag = "--" + k.replace("_", "-")
        if known[k].nargs == 0:  # store_true switches
            argv += [flag] if v else []
        elif v is not None:
            argv += [flag, str(v)]
    return argv


def is_finished(run_dir, evaluate: dict) -> bool:
    run = Path(run_dir)
    if not ((run / SUMMARY).is_file() and (run / REPORT).is_file() and (run / TRIAL).is_file()):
        return False
    try:
        record = json.loads((run / TRIAL).read_text())
    except ValueError:
        return False
    return record.get("status") == "ok" and record.get("evaluate") == evaluate


def _trained(run: Path, steps: int) -> bool:
    try:
        return int(json.loads((run / SUMMARY).read_text()).get("step", -1)) >= steps
    except (OSError, ValueError):
        return False


def train(flags: dict, run_dir: str) -> str:
    """Train through train.py's own ``main``: fresh, resumed from a checkpoint, or already done."""
    run = Path(run_dir)
    if _trained(run, int(flags["steps"])):
        return "trained before"
    train_py = load_script("train")
    known = {a.dest: a for a in train_py.make_parser()._actions}
    argv = to_argv(flags, known, run_dir)
    if (run / CONFIG).is_file() and (run / CHECKPOINT).is_file():
        train_py.main(argv + ["--resume"])
        return "resumed"
    if run.exists():
        shutil.rmtree(run)  # a trial that died before its first checkpoint: start it again
    train_py.main(argv)
    return "trained"


def evaluate_run(run_dir: str, evaluate: dict) -> dict:
    """``inference.evaluation.Evaluation`` (what evaluate.py runs) on the chosen sections and sample
    sizes; writes report.json/.md."""
    import torch

    from . import metrics as M
    from .evaluation import Evaluation, markdown

    run = Path(run_dir)
    ev = Evaluation(run, evaluate["full"], evaluate["device"], evaluate["seed"],
                    dci_importance=evaluate.get("dci_importance", "gbt"),
                    beta_vae_classifier=evaluate.get("beta_vae_classifier", "logistic"))
    ev.sizes = {**ev.sizes, **evaluate["sizes"]}
    ev.report["sizes"] = dict(ev.sizes)

    def beta_vae():  # evaluate.py computes this inside factor_metrics; alone it is much cheaper
        if not ev.ground_truth:
            return ev.skip("beta_vae", "needs a simulator that can fix one factor (GroundTruthData)")
        s = ev.sizes
        ev.report["metrics"]["beta_vae"] = {
            **M.compute_beta_vae(ev.data, ev.represent, ev.gen(4), num_train=s["beta_vae_train"],
                                       num_eval=s["beta_vae_eval"], batch_size=s["group_size"],
                                       device=ev.device, classifier=ev.beta_vae_classifier),
            "num_train": s["beta_vae_train"], "num_eval": s["beta_vae_eval"], "group_size": s["group_size"]}

    sections = {"training": ev.training, "reconstruction": ev.reconstruction, "beta_vae": beta_vae,
                "factor_metrics": ev.factor_metrics, "likelihood": ev.likelihood,
                "pictures": ev.pictures, "posterior": ev.posterior, "fid": lambda: ev.fid(True)}
    t_all = time.perf_counter()
    for name in evaluate["sections"]:
        t0 = time.perf_counter()
        with torch.no_grad() if name != "fid" else torch.enable_grad():
            sections[name]()
        ev.report["seconds"][name] = time.perf_counter() - t0
    ev.report["seconds"]["total"] = time.perf_counter() - t_all
    atomic_write_text(run / REPORT, json.dumps(ev.report, indent=2))
    atomic_write_text(run / "report.md", markdown(ev.report))
    return ev.report


def error_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".strip()


def run_trial(config: dict) -> dict:
    """Ray Tune's function trainable: train + evaluate one trial, record it in ``trial.json``.

    Errors are caught and recorded (status ``error`` and the error's first line) so that Tune
    carries on with the other trials; the traceback goes to ``error.txt`` in the run directory.
    """
    trial, evaluate = config["trial"], config["evaluate"]
    run = Path(trial["run_dir"])
    import torch

    torch.set_num_threads(max(1, int(config.get("threads", 1))))
    t0 = time.perf_counter()
    record = {"name": trial["name"], "flags": trial["flags"], "run_dir": str(run),
              "evaluate": evaluate, "status": "ok", "error": "", "host": os.uname().nodename}
    try:
        record["training"] = train(trial["flags"], str(run))
        t1 = time.perf_counter()
        evaluate_run(str(run), evaluate)
        record["eval_s"] = time.perf_counter() - t1
        (run / "error.txt").unlink(missing_ok=True)
    except (Exception, SystemExit) as err:  # noqa: BLE001  a failed trial must not stop the sweep
        record.update(status="error", error=error_line(err))
        run.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run / "error.txt", traceback.format_exc())
    record["wall_s"] = time.perf_counter() - t0
    if record.get("training") in ("trained before", "resumed"):  # count the earlier attempts' time
        try:
            record["wall_s"] += float(json.loads((run / TRIAL).read_text()).get("wall_s") or 0.0)
        except (OSError, ValueError):
            pass
    atomic_write_text(run / TRIAL, json.dumps(record, indent=2, default=str))
    return {"status": record["status"], "error": record["error"], "wall_s": record["wall_s"]}


# -- the sweep (driver) --------------------------------------------------------------------------
def init_ray(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None,
             log_to_driver: bool = True, ship_code: bool = False):
    """Join the cluster at ``address``, or start a local Ray with this machine's CPUs."""
    # Offline by design: Ray's usage report would try to reach its server.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    env = {"env_vars": {"PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}}
    if ship_code:  # nodes without the repository: upload it (not runs/, not the venv)
        env = {"working_dir": str(ROOT), "excludes": ["runs/", ".venv/", ".git/", "*.pt"]}
    kwargs = dict(runtime_env=env, log_to_driver=log_to_driver, include_dashboard=False,
                  configure_logging=False)
    if address:
        return ray.init(address=address, **kwargs)
    # address="local": always a fresh local instance, never a cluster some other process started
    return ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, num_gpus=num_gpus,
                    **kwargs)


def run_sweep(study: Study, out_dir, *, address: str | None = None, num_cpus: int | None = None,
              max_concurrent: int | None = None, log_to_driver: bool = True, ship_code: bool = False,
              verbose: int = 0) -> list[dict]:
    """Run the study's unfinished trials on Ray Tune; write sweep.csv/.md/.png; return the rows."""
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "sweep.json", json.dumps(
        {"name": study.name, "evaluate": study.evaluate, "resources": study.resources,
         "trials": [t.__dict__ for t in study.trials]}, indent=2, default=str))
    todo = [t for t in study.trials if not is_finished(t.run_dir, study.evaluate)]
    t0 = time.perf_counter()
    if todo:
        import ray
        from ray import tune

        started = not ray.is_initialized()
        if started:
            init_ray(address, num_cpus, log_to_driver=log_to_driver, ship_code=ship_code,
                     num_gpus=None)
        try:
            cpu = float(study.resources.get("cpu", 1))
            trainable = tune.with_resources(run_trial, {"cpu": cpu,
                                                        "gpu": float(study.resources.get("gpu", 0))})
            by_name = {t.name: t for t in todo}
            tuner = tune.Tuner(
                trainable,
                param_space={"trial": tune.grid_search([t.__dict__ for t in todo]),
                             "evaluate": study.evaluate, "threads": max(1, int(cpu))},
                tune_config=tune.TuneConfig(
                    max_concurrent_trials=max_concurrent or study.max_concurrent,
                    reuse_actors=True,  # one warm worker per slot: imports once, not per trial
                    trial_dirname_creator=lambda tr: tr.config["trial"]["name"][:100]),
                run_config=tune.RunConfig(name="tune", storage_path=str(out / "_ray"), verbose=verbose,
                                          failure_config=tune.FailureConfig(max_failures=0)))
            results = tuner.fit()
            for result in results:  # a worker that died outright never wrote its trial.json
                name = (result.config or {}).get("trial", {}).get("name")
                if result.error is not None and name in by_name:
                    t = by_name[name]
                    Path(t.run_dir).mkdir(parents=True, exist_ok=True)
                    atomic_write_text(Path(t.run_dir) / TRIAL, json.dumps(
                        {"name": t.name, "flags": t.flags, "run_dir": t.run_dir, "status": "error",
                         "error": error_line(result.error), "evaluate": study.evaluate}, default=str))
        finally:
            if started:
                ray.shutdown()
    rows = collect(study)
    write_tables(study, rows, out, skipped=len(study.trials) - len(todo),
                 seconds=time.perf_counter() - t0)
    return rows


# -- tables and plot -----------------------------------------------------------------------------
def collect(study: Study) -> list[dict]:
    """One row per trial: flags, status, error, metrics from report.json, times."""
    rows = []
    for t in study.trials:
        run = Path(t.run_dir)
        row = {"name": t.name, **t.flags, "status": "not run", "error": ""}
        try:
            record = json.loads((run / TRIAL).read_text())
            row.update(status=record.get("status", "?"), error=record.get("error", ""),
                       wall_s=record.get("wall_s"), eval_s=record.get("eval_s"))
        except (OSError, ValueError):
            pass
        if row["status"] == "ok":
            try:
                report = json.loads((run / REPORT).read_text())
                summary = json.loads((run / SUMMARY).read_text())
            except (OSError, ValueError) as err:
                row.update(status="error", error=error_line(err))
            else:
                for col, (key, fld) in METRIC_FIELDS.items():
                    value = report.get("metrics", {}).get(key, {}).get(fld)
                    if value is not None:
                        row[col] = float(value)
                row["train_s"] = summary.get("train_seconds")
        rows.append(row)
    return rows


def metric_columns(rows) -> list[str]:
    return [c for c in METRIC_FIELDS if any(c in r for r in rows)]


def group_key_names(study: Study) -> list[str]:
    varied = study.trials[0].varied if study.trials else ()
    return [k for k in varied if k != "seed"]


def aggregate(study: Study, rows) -> list[dict]:
    """Mean ± sample std (ddof 1) over seeds of every metric, per setting of the other varied flags.

    Only trials with status ``ok`` count; ``n`` says how many did.
    """
    keys = group_key_names(study)
    cols = metric_columns(rows) + list(TIMES)
    groups: dict = {}
    for r in rows:
        groups.setdefault(tuple(json.dumps(r.get(k), default=str) for k in keys), []).append(r)
    out = []
    for members in groups.values():
        ok = [r for r in members if r["status"] == "ok"]
        agg = {k: members[0].get(k) for k in keys}
        agg.update(n=len(ok), trials=len(members))
        for c in cols:
            vals = np.array([r[c] for r in ok if r.get(c) is not None], dtype=float)
            agg[c] = float(vals.mean()) if len(vals) else None
            agg[c + "_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else None
        out.append(agg)
    return out


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|")


def write_tables(study: Study, rows, out: Path, skipped: int = 0, seconds: float = 0.0) -> None:
    metrics = metric_columns(rows)
    flag_cols = list(dict.fromkeys(k for t in study.trials for k in t.flags))
    cols = ["name"] + flag_cols + ["status"] + metrics + list(TIMES) + ["error"]
    lines = []
    with open(out / "sweep.csv.tmp", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") if r.get(c) is not None else "" for c in cols})
    os.replace(out / "sweep.csv.tmp", out / "sweep.csv")
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "error", "not run")}
    shown = [k for k in (study.trials[0].varied if study.trials else ())]
    lines += [f"# Sweep `{study.name}`", "",
              f"{len(rows)} trials: {counts['ok']} ok, {counts['error']} failed, "
              f"{counts['not run']} not run; finished before this call: {skipped}; this call took "
              f"{seconds:.0f} s. Evaluation: {', '.join(study.evaluate['sections'])}; "
              f"β-VAE metric classifier: {study.evaluate.get('beta_vae_classifier', 'logistic')}, "
              f"DCI importances: {study.evaluate.get('dci_importance', 'gbt')}. "
              "Fixed flags are in sweep.csv; each trial's run directory is runs/<name>.", "",
              "## Trials", "",
              "| " + " | ".join(shown + ["status"] + metrics + list(TIMES) + ["error"]) + " |",
              "|" + "---|" * (len(shown) + 2 + len(metrics) + len(TIMES))]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r.get(c)) for c in shown + ["status"] + metrics
                                       + list(TIMES) + ["error"]) + " |")
    keys = group_key_names(study)
    agg = aggregate(study, rows)
    lines += ["", "## Mean ± std over seeds", "",
              "std is the sample standard deviation (ddof 1) over the seeds that finished (n); "
              "— where n < 2.", "",
              "| " + " | ".join(keys + ["n"] + metrics + ["wall_s"]) + " |",
              "|" + "---|" * (len(keys) + 2 + len(metrics))]
    for a in agg:
        cells = [_cell(a.get(k)) for k in keys] + [f"{a['n']}/{a['trials']}"]
        for c in metrics + ["wall_s"]:
            m, s = a.get(c), a.get(c + "_std")
            cells.append("—" if m is None else f"{m:.4g}" + (f" ± {s:.2g}" if s is not None else ""))
        lines.append("| " + " | ".join(cells) + " |")
    if plot(study, rows, out / "sweep.png"):
        lines += ["", "![metric vs hyperparameter](sweep.png)"]
    atomic_write_text(out / "sweep.md", "\n".join(lines) + "\n")
    with open(out / "sweep_summary.json.tmp", "w") as fh:
        json.dump({"counts": counts, "evaluate": study.evaluate, "aggregate": agg}, fh, indent=2,
                  default=str)
    os.replace(out / "sweep_summary.json.tmp", out / "sweep_summary.json")


def series_of(study: Study, rows) -> dict:
    """Plot series: ``{label: (x_flag, [rows])}``. Rows are grouped by the non-numeric flags that
    vary (e.g. model); a group's x is the first of ``plot.x`` (default: the varied numeric flags)
    that varies within it, and any other numeric flag that varies there splits it further. Seeds
    and tied flags never split a series."""
    varied = [k for k in (study.trials[0].varied if study.trials else ()) if k != "seed"]
    numeric = [k for k in varied if k not in study.tied
               and all(isinstance(r.get(k), (int, float, type(None))) for r in rows)]
    candidates = list(study.plot.get("x", numeric))
    split = [k for k in varied if k not in numeric and k not in study.tied]
    groups: dict = {}
    for r in rows:
        groups.setdefault(tuple(r.get(k) for k in split), []).append(r)
    out = {}
    for key, members in groups.items():
        varies = [c for c in candidates if len({json.dumps(m.get(c)) for m in members}) > 1]
        numeric_in = [c for c in candidates if all(isinstance(m.get(c), (int, float)) for m in members)]
        x = next((c for c in varies if c in numeric_in), numeric_in[0] if numeric_in else None)
        if x is None:
            continue
        extra = [k for k in numeric if k != x and len({json.dumps(m.get(k)) for m in members}) > 1]
        sub: dict = {}
        for m in members:
            sub.setdefault(tuple(m.get(k) for k in extra), []).append(m)
        for skey, smembers in sub.items():
            label = ", ".join(f"{k}={_fmt(v)}" for k, v in [*zip(split, key), *zip(extra, skey)])
            out[label or x] = (x, smembers)
    return out


def plot(study: Study, rows, path: Path) -> bool:
    """Each metric against its series' hyperparameter: seeds as dots, mean ± std as a line/band."""
    metrics = list(study.plot.get("metrics", metric_columns(rows)))
    metrics = [m for m in metrics if any(r.get(m) is not None for r in rows)]
    series = series_of(study, rows)
    if not metrics or not series:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs_all = {x for x, _ in series.values()}
    panels = [(m, x) for m in metrics for x in sorted(xs_all)]
    trade = study.plot.get("tradeoff")  # [x metric, y metric], e.g. the DIP paper's Fig. 1
    trade = list(trade) if trade and all(any(r.get(m) is not None for r in rows) for m in trade) else None
    fig, axes = plt.subplots(1, len(panels) + bool(trade), figsize=(4.2 * (len(panels) + bool(trade)), 3.6),
                             squeeze=False)
    for ax, (metric, xname) in zip(axes[0], panels):
        for i, (label, (x, members)) in enumerate(series.items()):
            if x != xname:
                continue
            color = f"C{i}"
            ok = [r for r in members if r["status"] == "ok" and r.get(metric) is not None]
            if not ok:
                continue
            ax.scatter([r[x] for r in ok], [r[metric] for r in ok], s=12, alpha=0.5, color=color)
            xv = sorted({r[x] for r in ok})
            vals = [np.array([r[metric] for r in ok if r[x] == v]) for v in xv]
            mean = np.array([v.mean() for v in vals])
            std = np.array([v.std(ddof=1) if len(v) > 1 else 0.0 for v in vals])
            ax.plot(xv, mean, "-o", ms=3, color=color, label=label)
            ax.fill_between(xv, mean - std, mean + std, color=color, alpha=0.15)
        xv = [r[xname] for r in rows if isinstance(r.get(xname), (int, float))]
        if xv and min(xv) > 0 and max(xv) / min(xv) >= 20:
            ax.set_xscale("log")
        ax.set_xlabel(xname)
        ax.set_ylabel(metric)
        ax.legend(fontsize=7)
    if trade:  # e.g. the DIP paper's Fig. 1: disentanglement against reconstruction error
        ax, (mx, my) = axes[0][-1], trade
        for i, (label, (x, members)) in enumerate(series.items()):
            ok = [r for r in members if r["status"] == "ok" and r.get(mx) is not None
                  and r.get(my) is not None]
            xv = sorted({r[x] for r in ok})
            px = [np.mean([r[mx] for r in ok if r[x] == v]) for v in xv]
            py = [np.mean([r[my] for r in ok if r[x] == v]) for v in xv]
            ax.plot(px, py, "-o", ms=3, color=f"C{i}", label=label)
            for v, a, b in zip(xv, px, py):
                ax.annotate(_fmt(v), (a, b), fontsize=6)
        ax.set_xlabel(mx + " (seed mean)")
        ax.set_ylabel(my + " (seed mean)")
        ax.legend(fontsize=7)
    fig.suptitle(study.name, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
