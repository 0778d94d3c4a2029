"""A study: a YAML/JSON file of hyperparameter blocks × seeds, expanded into Ray Tune's search space.

A study file holds::

    name: my_study
    base: {data: dsprites, steps: 2000, batch_size: 64}      # run settings every trial shares
    seeds: [0, 1, 2]                                          # crossed with every block
    blocks:                                                   # union of sub-grids (or one top-level
      - fixed: {model: dip1}                                  #   fixed/grid/tie/random)
        grid: {lambda_od: [1, 10]}                            # tune.grid_search: full cross product
        tie: {lambda_d: {of: lambda_od, times: 10}}           # tune.sample_from: λ_d = 10·λ_od
      - fixed: {model: beta}
        random: {beta: {loguniform: [1, 256]}}                # tune.loguniform (uniform, randint, choice)
        num_samples: 4                                        # ... this many draws (seeded)
    random_seed: 0                                            # the draws' seed
    evaluate: {sections: [training, reconstruction, beta_vae], sizes: {beta_vae_train: 300},
               beta_vae_classifier: svm, dci_importance: gbt}    # options: inference.report
    resources: {cpu: 1, gpu: 0}
    asha: {metric: recon, mode: min, grace_period: 200, reduction_factor: 4}  # with --scheduler asha
    plot: {x: [lambda_od, beta], metrics: [beta_vae, recon_l2], tradeoff: [recon_l2, beta_vae]}

Setting names are :func:`inference.runs.train_run`'s (``scripts/train.py``'s flags: ``--lambda-od`` is
``lambda_od``), checked by the same parsers. Each block becomes a Tune search space
(:func:`block_space`) that Tune's own variant generator resolves with one seeded random state; every
point is then crossed with the seeds, so all seeds of a point share its random draw (the mean ± std
over seeds needs that, and Tune would draw afresh per seed). The resolved trials are known before
anything runs: each trial's run directory is ``OUT/runs/<name>``, its name built from the settings
that vary plus a hash of all of them, so a resumed sweep finds its finished trials and a changed
study never mistakes an old run for one of its own.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .extra import require

STUDY_KEYS = {"name", "base", "seeds", "blocks", "fixed", "grid", "tie", "random", "num_samples",
              "random_seed", "evaluate", "resources", "plot", "max_concurrent", "description", "asha"}
BLOCK_KEYS = {"fixed", "grid", "tie", "random", "num_samples"}
DEFAULT_SECTIONS = ("training", "reconstruction", "factor_metrics")
RANDOM_KINDS = ("uniform", "loguniform", "randint", "choice")
EVALUATE_KEYS = ("sections", "sizes", "full", "seed", "device", "beta_vae_classifier",
                 "beta_vae_balanced", "dci_importance")
ASHA_KEYS = ("metric", "mode", "grace_period", "reduction_factor")


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
    asha: dict = field(default_factory=dict)


def read_study_file(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"study file {path} does not exist")
    text = path.read_text()
    yaml = require("yaml") if path.suffix in (".yaml", ".yml") else None  # outside the try below
    try:
        if yaml is not None:
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
    yaml = require("yaml")

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


def _mapping(value, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{what}: expected a mapping of setting -> value, got {value!r}")
    return value


def _choice(ev: dict, key: str, default: str, allowed) -> str:
    value = ev.get(key, default)
    if value not in allowed:
        raise ConfigError(f"evaluate.{key}: unknown {value!r}; expected one of {list(allowed)}")
    return value


def _flag(ev: dict, key: str) -> bool:
    value = ev.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"evaluate.{key}: expected true or false, got {value!r}")
    return value


def _check_names(names, known, what: str) -> None:
    for name in names:
        if name not in known:
            raise ConfigError(f"{what}: unknown train.py flag {name!r}; expected one of "
                              f"{', '.join(sorted(known))}")


def _domain(spec, what: str):
    """A ``random:`` entry as a Tune domain: uniform, loguniform, randint (both ends in), choice."""
    tune = require("ray.tune")

    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in RANDOM_KINDS:
        raise ConfigError(f"{what}: expected one of {{{', '.join(RANDOM_KINDS)}: ...}}, got {spec!r}")
    kind, args = next(iter(spec.items()))
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise ConfigError(f"{what}: choice needs a non-empty list, got {args!r}")
        return tune.choice(args)
    if not (isinstance(args, list) and len(args) == 2 and all(isinstance(a, (int, float)) for a in args)
            and args[0] < args[1]):
        raise ConfigError(f"{what}: {kind} needs [low, high] with low < high, got {args!r}")
    low, high = args
    if kind == "uniform":
        return tune.uniform(low, high)
    if kind == "randint":
        return tune.randint(int(low), int(high) + 1)  # Tune's upper end is exclusive
    if low <= 0:
        raise ConfigError(f"{what}: loguniform needs low > 0, got {low!r}")
    return tune.loguniform(low, high)


def _tied(rule: dict, name: str, where: str):
    tune = require("ray.tune")

    if not (isinstance(rule, dict) and set(rule) <= {"of", "times", "plus"} and "of" in rule):
        raise ConfigError(f"{where}.tie.{name}: expected {{of: FLAG, times: NUMBER}}, got {rule!r}")
    of, times, plus = rule["of"], rule.get("times", 1), rule.get("plus", 0)
    return tune.sample_from(lambda config: config[of] * times + plus)


def block_space(base: dict, block: dict, where: str) -> dict:
    """One block as a Tune search space: base and fixed values, ``tune.grid_search`` for the grid,
    Tune's random domains, and ``tune.sample_from`` for tied settings."""
    tune = require("ray.tune")

    grid = _mapping(block.get("grid"), f"{where}.grid")
    for k, v in grid.items():
        if not isinstance(v, list) or not v:
            raise ConfigError(f"{where}.grid.{k}: expected a non-empty list of values, got {v!r}")
    random = _mapping(block.get("random"), f"{where}.random")
    tie = _mapping(block.get("tie"), f"{where}.tie")
    space = {**base, **_mapping(block.get("fixed"), f"{where}.fixed"),
             **{k: tune.grid_search(v) for k, v in grid.items()},
             **{k: _domain(s, f"{where}.random.{k}") for k, s in random.items()}}
    for name, rule in tie.items():
        if isinstance(rule, dict) and rule.get("of") not in space:
            raise ConfigError(f"{where}.tie.{name}: flag {rule.get('of')!r} is not set in this block")
        space[name] = _tied(rule, name, where)
    return space


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def resolve(space: dict, num_samples: int, random_state) -> list[dict]:
    """The points of a search space, by Tune's own variant generator: ``num_samples`` passes over the
    grid, each drawing the random domains from ``random_state`` (a NumPy generator)."""
    generate_variants = require("ray.tune.search.variant_generator").generate_variants
    return [{k: _plain(v) for k, v in config.items()}
            for _ in range(num_samples)
            for _, config in generate_variants(space, random_state=random_state)]


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def trial_name(flags: dict, varied) -> str:
    """Readable flags that vary, plus a hash of every flag (a changed study gets new names)."""
    digest = hashlib.sha1(json.dumps(flags, sort_keys=True, default=str).encode()).hexdigest()[:6]
    parts = [f"{k}={_fmt(flags[k])}" for k in varied if k in flags]
    stem = "-".join(parts).replace("/", "_").replace(" ", "")[:120] or "trial"
    return f"{stem}-{digest}"


def _check_values(flags: dict, known: set) -> None:
    """Every setting as train_run reads it (``device`` is left to the workers, which may have GPUs)."""
    from ..runs import check_settings

    for k, v in flags.items():
        if isinstance(v, (list, dict)):
            raise ConfigError(f"flag {k}: expected a single value, got {v!r}")
    check_settings({k: v for k, v in flags.items() if k in known and k != "device"})
    if "steps" not in flags:
        raise ConfigError("every trial needs 'steps' (set it in base)")


def _evaluate_options(raw: dict) -> dict:
    from .. import metrics as M
    from ..report import SECTIONS, SIZES

    ev = _mapping(raw.get("evaluate"), "evaluate")
    extra = set(ev) - set(EVALUATE_KEYS)
    if extra:
        raise ConfigError(f"evaluate: unknown key(s) {sorted(extra)}; expected some of "
                          f"{', '.join(EVALUATE_KEYS)}")
    sections = ev.get("sections", list(DEFAULT_SECTIONS))
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        raise ConfigError(f"evaluate.sections: unknown {bad}; expected some of {list(SECTIONS)}")
    sizes = _mapping(ev.get("sizes"), "evaluate.sizes")
    unknown = set(sizes) - set(SIZES["quick"])
    if unknown:
        raise ConfigError(f"evaluate.sizes: unknown {sorted(unknown)}; expected some of {list(SIZES['quick'])}")
    return {"sections": list(sections), "sizes": sizes,
            "full": bool(ev.get("full", False)), "seed": int(ev.get("seed", 0)),
            "device": ev.get("device", "cpu"),
            "beta_vae_classifier": _choice(ev, "beta_vae_classifier", "logistic", M.BETA_VAE_CLASSIFIERS),
            "dci_importance": _choice(ev, "dci_importance", "gbt", M.DCI_IMPORTANCE_MODELS),
            # only when set, so the records of studies from before the option still match
            **({"beta_vae_balanced": True} if _flag(ev, "beta_vae_balanced") else {})}


def _asha_options(raw: dict) -> dict:
    asha = _mapping(raw.get("asha"), "asha")
    extra = set(asha) - set(ASHA_KEYS)
    if extra:
        raise ConfigError(f"asha: unknown key(s) {sorted(extra)}; expected some of {', '.join(ASHA_KEYS)}")
    if asha.get("mode", "min") not in ("min", "max"):
        raise ConfigError(f"asha.mode: expected min or max, got {asha['mode']!r}")
    for key in ("grace_period", "reduction_factor"):
        if key in asha and not (isinstance(asha[key], (int, float)) and asha[key] >= (1 if key == "grace_period" else 2)):
            raise ConfigError(f"asha.{key}: expected a number >= {1 if key == 'grace_period' else 2}, "
                              f"got {asha[key]!r}")
    return asha


def expand(raw: dict, out_dir) -> Study:
    """The trials of a study: every block's points (Tune's variant generator) × seeds, over ``base``."""
    from ..runs import all_settings

    unknown = set(raw) - STUDY_KEYS
    if unknown:
        raise ConfigError(f"study: unknown key(s) {sorted(unknown)}; expected some of {sorted(STUDY_KEYS)}")
    known = set(all_settings())
    base = _mapping(raw.get("base"), "base")
    _check_names(base, known, "base")
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
    random_state = np.random.default_rng(int(raw.get("random_seed", 0)))
    flag_sets, tied = [], set()
    for i, block in enumerate(blocks):
        where = f"blocks[{i}]"
        if not isinstance(block, dict) or set(block) - BLOCK_KEYS:
            raise ConfigError(f"{where}: expected a mapping with keys among {sorted(BLOCK_KEYS)}, "
                              f"got {block!r}")
        for part in ("fixed", "grid", "tie", "random"):
            _check_names(_mapping(block.get(part), f"{where}.{part}"), known, f"{where}.{part}")
        n = block.get("num_samples", 1) if block.get("random") else 1
        if not isinstance(n, int) or n < 1:
            raise ConfigError(f"{where}.num_samples: expected a positive integer, got {n!r}")
        tied |= set(_mapping(block.get("tie"), f"{where}.tie"))
        for flags in resolve(block_space(base, block, where), n, random_state):
            for seed in (seeds if seeds is not None else [flags.get("seed", 0)]):
                flag_sets.append({**flags, "seed": seed})
    for flags in flag_sets:
        _check_values(flags, known)
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
    resources = {"cpu": 1, "gpu": 0, **_mapping(raw.get("resources"), "resources")}
    return Study(str(raw["name"]), trials, _evaluate_options(raw), resources,
                 _mapping(raw.get("plot"), "plot"), tuple(sorted(tied)), raw.get("max_concurrent"),
                 _asha_options(raw))
