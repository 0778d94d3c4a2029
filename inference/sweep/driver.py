"""Run a study's unfinished trials on Ray Tune and write its tables.

The trials (resolved from the study's Tune search space, :mod:`.study`) go to a ``tune.Tuner`` as a
``tune.grid_search`` over the unfinished ones; the trainable is :func:`.trial.run_trial`, which
reports every log step to Tune. ``scheduler="asha"`` adds Tune's ``ASHAScheduler`` on the reported
``step`` (metric and budget from the study's ``asha`` mapping: by default the reconstruction term
``recon``, minimised, a grace period of a tenth of the longest trial), so bad trials stop early on a
cluster; a stopped trial is recorded as ``stopped`` and counts as done when the sweep is resumed
under ASHA again. Without ``address`` a local Ray with this machine's CPUs is started; with one,
the sweep joins that cluster (the output folder must then be on storage every node sees): the
address is probed first (:func:`check_address`), so a cluster that is not there is one line, not
Ray's endless retries. A trial whose worker or node dies is started again, up to ``max_failures``
times (Tune's ``FailureConfig``), and resumes from its run folder's checkpoint; the table has one
row per trial however often it was started (:mod:`.nodes`).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from ..checkpoint import atomic_write_text
from ..errors import ConfigError
from .extra import require
from .tables import collect, error_line, write_tables
from .trial import TRIAL, is_finished, run_trial

#: The packages a trial imports; ``ship_code`` uploads them to the cluster (Ray's ``py_modules``).
PACKAGES = ("ppl_data", "ppl_models", "guides", "inference")
SCHEDULERS = ("fifo", "asha")
#: how often Tune starts a trial again whose worker or node died (it resumes from its checkpoint)
MAX_FAILURES = 3
#: seconds to wait for the cluster's address to accept a connection
CONNECT_TIMEOUT_S = 5.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _package_dirs() -> list[str]:
    import importlib

    return [str(Path(importlib.import_module(name).__file__).parent) for name in PACKAGES]


def _where_ray_connects(address: str) -> tuple[str, int] | None:
    """``(host, port)`` that ``ray.init(address=...)`` will connect to: ``ray://`` addresses as given;
    ``auto`` read from ``RAY_ADDRESS`` or the last ``ray start`` on this machine (``None``: no
    cluster found); ``HOST:PORT`` with a loopback host replaced, as Ray replaces it, by this machine's
    node address (unless Ray runs loopback-only: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``)."""
    if address.startswith("ray://"):
        host, _, port = address.removeprefix("ray://").rpartition(":")
        return host.strip("[]"), int(port)
    try:  # Ray's own reading of the address (a private helper: fall back to the text if it moved)
        from ray._private.services import canonicalize_bootstrap_address
        resolved = canonicalize_bootstrap_address(address)
    except Exception:  # noqa: BLE001
        resolved = None if address == "auto" else address
    if resolved is None:
        return None
    host, _, port = resolved.rpartition(":")
    return host.strip("[]"), int(port)


def check_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise :class:`ConfigError` (one line) unless something accepts a TCP connection where
    ``ray.init(address=address)`` would connect, within ``timeout`` seconds; Ray itself would retry
    without end."""
    require("ray")
    where = _where_ray_connects(address)
    if where is None:
        raise ConfigError(f"--address {address}: no running Ray cluster found (start one with "
                          "'ray start --head', or give HOST:PORT)")
    host, port = where
    given = address.removeprefix("ray://").rpartition(":")[0].strip("[]")
    shown = address if address != "auto" and host == given else f"{address} ({host}:{port})"
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        reason = "timed out" if isinstance(err, TimeoutError) else (err.strerror or str(err))
        hint = ""
        if given in LOOPBACK and host not in LOOPBACK:
            hint = ("; Ray replaces a loopback address with this machine's network address: for a "
                    "cluster on 127.0.0.1 set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0")
        raise ConfigError(f"--address {shown}: nothing is listening ({reason}){hint}") from None


def init_ray(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None,
             log_to_driver: bool = True, ship_code: bool = False):
    """Join the cluster at ``address`` (probed first: :func:`check_address`), or start a local Ray
    with this machine's CPUs."""
    # Offline by design: Ray's usage report would try to reach its server.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray = require("ray")
    if address:
        check_address(address)

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
    ASHAScheduler = require("ray.tune.schedulers").ASHAScheduler

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
    tune = require("ray.tune")

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
              verbose: int = 0, scheduler: str = "fifo", max_failures: int = MAX_FAILURES) -> list[dict]:
    """Run the study's unfinished trials on Ray Tune; write sweep.csv/.md/.png; return the rows.

    ``max_failures``: how often a trial whose worker or node died is started again."""
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
        ray, tune = require("ray"), require("ray.tune")

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
                                          failure_config=tune.FailureConfig(max_failures=max_failures)))
            _record_outcomes(study, tuner.fit(), {t.name: t for t in todo})
        finally:
            if started:
                ray.shutdown()
    rows = collect(study)
    write_tables(study, rows, out, skipped=len(study.trials) - len(todo),
                 seconds=time.perf_counter() - t0)
    return rows
