"""Run a study's unfinished trials on Ray Tune and write its tables.

The trials (resolved from the study's Tune search space, :mod:`.study`) go to a ``tune.Tuner`` as a
``tune.grid_search`` over the unfinished ones; the trainable is :func:`.trial.run_trial`, which
reports every log step to Tune. ``scheduler="asha"`` adds Tune's ``ASHAScheduler`` on the reported
``step`` (metric and budget from the study's ``asha`` mapping: by default the reconstruction term
``recon``, minimised, a grace period of a tenth of the longest trial), so bad trials stop early on a
cluster; a stopped trial is recorded as ``stopped`` and counts as done when the sweep is resumed
under ASHA again. Without ``address`` a local Ray with this machine's CPUs is started; with one,
the sweep joins that cluster (the output folder must then be on storage every node sees).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..checkpoint import atomic_write_text
from ..errors import ConfigError
from .tables import collect, error_line, write_tables
from .trial import TRIAL, is_finished, run_trial

#: The packages a trial imports; ``ship_code`` uploads them to the cluster (Ray's ``py_modules``).
PACKAGES = ("ppl_data", "ppl_models", "guides", "inference")
SCHEDULERS = ("fifo", "asha")


def _package_dirs() -> list[str]:
    import importlib

    return [str(Path(importlib.import_module(name).__file__).parent) for name in PACKAGES]


def init_ray(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None,
             log_to_driver: bool = True, ship_code: bool = False):
    """Join the cluster at ``address``, or start a local Ray with this machine's CPUs."""
    # Offline by design: Ray's usage report would try to reach its server.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    dirs = _package_dirs()
    env = {"env_vars": {"PYTHONPATH": os.pathsep.join(
        list(dict.fromkeys(str(Path(d).parent) for d in dirs))
        + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}}
    if ship_code:  # nodes without the packages: upload them (wherever they are installed here)
        env = {"py_modules": dirs}
    kwargs = dict(runtime_env=env, log_to_driver=log_to_driver, include_dashboard=False,
                  configure_logging=False)
    if address:
        return ray.init(address=address, **kwargs)
    # address="local": always a fresh local instance, never a cluster some other process started
    return ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, num_gpus=num_gpus,
                    **kwargs)


def make_scheduler(study, scheduler: str = "fifo"):
    """``None`` (Tune's FIFO) or an ``ASHAScheduler`` on the reported ``step``, from ``study.asha``."""
    if scheduler not in SCHEDULERS:
        raise ConfigError(f"unknown scheduler {scheduler!r}; expected one of {', '.join(SCHEDULERS)}")
    if scheduler == "fifo":
        return None
    from ray.tune.schedulers import ASHAScheduler

    options = dict(study.asha)
    steps = max(int(t.flags["steps"]) for t in study.trials)
    # ASHA stops a trial whose step reaches max_t: one more, so a trial that ran its budget is
    # left to be evaluated and to report its final result.
    return ASHAScheduler(time_attr="step", metric=options.get("metric", "recon"),
                         mode=options.get("mode", "min"), max_t=steps + 1,
                         grace_period=int(options.get("grace_period", max(1, steps // 10))),
                         reduction_factor=options.get("reduction_factor", 4))


def tune_space(study, todo, scheduler: str = "fifo") -> dict:
    """Tune's ``param_space``: one grid point per unfinished trial, and what every trial shares."""
    from ray import tune

    space = {"trial": tune.grid_search([t.__dict__ for t in todo]), "evaluate": study.evaluate,
             "threads": max(1, int(float(study.resources.get("cpu", 1)))), "scheduler": scheduler}
    if scheduler == "asha":
        space["metric"] = study.asha.get("metric", "recon")
    return space


def _record_outcomes(study, results, by_name: dict) -> None:
    """trial.json for the trials that could not write their own: a worker that died (``error``) and
    a trial the scheduler stopped (``stopped``; its last result has no ``status``)."""
    for result in results:
        name = (result.config or {}).get("trial", {}).get("name")
        if name not in by_name:
            continue
        t = by_name[name]
        metrics = result.metrics or {}
        if result.error is not None:
            record = {"status": "error", "error": error_line(result.error)}
        elif "status" not in metrics:
            record = {"status": "stopped", "scheduler": "asha", "step": metrics.get("step"),
                      "error": f"stopped by ASHA at step {metrics.get('step')}"}
        else:
            continue
        Path(t.run_dir).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(t.run_dir) / TRIAL, json.dumps(
            {"name": t.name, "flags": t.flags, "run_dir": t.run_dir, "evaluate": study.evaluate,
             **record}, default=str))


def run_sweep(study, out_dir, *, address: str | None = None, num_cpus: int | None = None,
              max_concurrent: int | None = None, log_to_driver: bool = True, ship_code: bool = False,
              verbose: int = 0, scheduler: str = "fifo") -> list[dict]:
    """Run the study's unfinished trials on Ray Tune; write sweep.csv/.md/.png; return the rows."""
    if study.trials:
        make_scheduler(study, scheduler)  # a bad scheduler or ASHA option fails before Ray starts
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "sweep.json", json.dumps(
        {"name": study.name, "evaluate": study.evaluate, "resources": study.resources,
         "trials": [t.__dict__ for t in study.trials]}, indent=2, default=str))
    todo = [t for t in study.trials if not is_finished(t.run_dir, study.evaluate, scheduler)]
    t0 = time.perf_counter()
    if todo:
        import ray
        from ray import tune

        started = not ray.is_initialized()
        if started:
            init_ray(address, num_cpus, log_to_driver=log_to_driver, ship_code=ship_code)
        try:
            trainable = tune.with_resources(run_trial, {"cpu": float(study.resources.get("cpu", 1)),
                                                        "gpu": float(study.resources.get("gpu", 0))})
            tuner = tune.Tuner(
                trainable, param_space=tune_space(study, todo, scheduler),
                tune_config=tune.TuneConfig(
                    max_concurrent_trials=max_concurrent or study.max_concurrent,
                    scheduler=make_scheduler(study, scheduler),
                    reuse_actors=True,  # one warm worker per slot: imports once, not per trial
                    trial_dirname_creator=lambda tr: tr.config["trial"]["name"][:100]),
                run_config=tune.RunConfig(name="tune", storage_path=str(out / "_ray"), verbose=verbose,
                                          failure_config=tune.FailureConfig(max_failures=0)))
            _record_outcomes(study, tuner.fit(), {t.name: t for t in todo})
        finally:
            if started:
                ray.shutdown()
    rows = collect(study)
    write_tables(study, rows, out, skipped=len(study.trials) - len(todo),
                 seconds=time.perf_counter() - t0)
    return rows
