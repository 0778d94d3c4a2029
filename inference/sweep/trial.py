"""One trial: train with :func:`inference.runs.train_run`, evaluate with :func:`inference.report.evaluate_run`.

:func:`run_trial` is Ray Tune's function trainable, and a plain function: called directly with a
``report`` callable it runs the same trial in this process. Every log step of training is reported
(``{"step", "loss", "recon", "kl", ...}``, the ``metrics.jsonl`` row), then one final result with
the trial's ``status`` and its metrics (the columns of :data:`inference.sweep.tables.METRIC_FIELDS`).
A trial records itself in ``trial.json`` in its run directory, with the Ray node it ran on (also
in the final result; each start is a line of the study's ``attempts.jsonl``, :mod:`.nodes`); a
failed trial is recorded (status ``error``, the error's first line, the traceback in
``error.txt``) and does not stop the sweep.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import shutil
import signal
import threading
import time
import traceback
from pathlib import Path

from .. import preemption, runlock
from ..checkpoint import atomic_write_text
from ..preemption import Preempted
from ..report import REPORT, evaluate_run
from ..runs import train_run
from ..svi import CHECKPOINT, CONFIG, SUMMARY
from .nodes import log_attempt
from .tables import error_line, metric_values

TRIAL = "trial.json"


def is_finished(run_dir, evaluate: dict, scheduler: str = "fifo") -> bool:
    """Trained and evaluated with these evaluation settings (or, under ASHA, stopped by it)."""
    run = Path(run_dir)
    try:
        record = json.loads((run / TRIAL).read_text())
    except (OSError, ValueError):
        return False
    if record.get("status") == "stopped":
        return scheduler == "asha" and record.get("scheduler") == "asha"
    return (record.get("status") == "ok" and record.get("evaluate") == evaluate
            and (run / SUMMARY).is_file() and (run / REPORT).is_file())


def _summary(run: Path) -> dict:
    try:
        return json.loads((run / SUMMARY).read_text())
    except (OSError, ValueError):
        return {}


def train(flags: dict, run_dir, on_log=None) -> str:
    """Train the trial's run: fresh, resumed from its checkpoint, or already done (the label says which)."""
    run = Path(run_dir)
    if int(_summary(run).get("step", -1)) >= int(flags["steps"]):
        return "trained before"
    if (run / CONFIG).is_file() and (run / CHECKPOINT).is_file():
        train_run(flags, run, resume=True, progress=False, on_log=on_log)
        return "resumed"
    if run.exists():
        runlock.clear_folder(run)  # a trial that died before its first checkpoint: start it again
    if flags.get("tensorboard"):
        shutil.rmtree(flags["tensorboard"], ignore_errors=True)  # and its TensorBoard run
    train_run(flags, run, progress=False, on_log=on_log)
    return "trained"


def trial_flags(trial: dict) -> dict:
    """The trial's settings, its ``tensorboard`` folder made its own: a study's ``tensorboard``
    setting names a folder (relative to the study's folder, where ``runs/`` is) that holds one
    TensorBoard run per trial, ``<folder>/<trial name>``; ``tensorboard --logdir`` on it compares them."""
    flags = trial["flags"]
    if not flags.get("tensorboard"):
        return flags
    study = Path(trial["run_dir"]).parent.parent
    return {**flags, "tensorboard": str(study / flags["tensorboard"] / trial["name"])}


#: how long a trial's process, ending (Ray's ``__ray_terminate__``, SIGTERM), waits for its ``fit``
#: to finish the step and write the checkpoint before it exits anyway
FINISH_TIMEOUT_S = 120.0


def run_trial(config: dict, report=None) -> None:
    """Run one trial (:func:`_run_trial`) holding its run folder, stoppable the way Ray stops it.

    One writer per run folder: the trial holds its folder's lock (:mod:`inference.runlock`) from
    training to its last record, so a second sweep on the same folder fails that trial with the
    holder's pid. Ray stops a trial (a scheduler's decision, the end of a sweep, a preempted node)
    by asking the trial's actor to ``stop`` — its next ``report`` then raises ``SystemExit`` in the
    training thread — and then ending the actor's process, which runs its ``atexit`` handlers;
    SIGTERM to a worker ends it the same way. Python delivers signals to the main thread only, and
    the trial trains in another, so both routes are turned into a stop request
    (:func:`inference.preemption.request_stop`): ``fit`` finishes its step and writes its checkpoint
    and metrics row, as a script does on SIGTERM, and the next sweep resumes the trial bit-for-bit.
    """
    if report is None:
        from ray import tune
        report = tune.report
    stopped = False

    def stoppable(result):
        nonlocal stopped
        if stopped:
            return
        try:
            report(result)
        except SystemExit:  # Tune's report ends a trial it has stopped this way
            stopped = True
            preemption.request_stop(signal.SIGTERM)

    done = threading.Event()

    def finish_on_exit():  # the process is ending while the trial trains in another thread
        if not done.is_set():
            preemption.request_stop(signal.SIGTERM)
            done.wait(FINISH_TIMEOUT_S)

    atexit.register(finish_on_exit)
    try:
        with runlock.hold(config["trial"]["run_dir"]):
            _run_trial(config, stoppable)
    except Preempted:
        if stopped:
            raise SystemExit(0) from None  # how Tune's own report would have ended the thread
        raise
    finally:
        done.set()
        atexit.unregister(finish_on_exit)
        preemption.clear()


def _run_trial(config: dict, report) -> None:
    """Train and evaluate one trial; ``config`` holds ``trial`` (name, flags, run_dir), ``evaluate``
    (:func:`~inference.report.evaluate_run`'s options) and optionally ``threads``, ``scheduler`` and
    ``metric`` (the scheduler's, always present in the final result). ``report``: where results go."""
    trial, evaluate = config["trial"], config["evaluate"]
    run = Path(trial["run_dir"])
    if "threads" in config:
        import torch
        torch.set_num_threads(max(1, int(config["threads"])))
    t0 = time.perf_counter()
    record = {"name": trial["name"], "flags": trial["flags"], "run_dir": str(run), "evaluate": evaluate,
              "scheduler": config.get("scheduler", "fifo"), "status": "ok", "error": "",
              "host": os.uname().nodename}
    record["node"] = log_attempt(trial["name"], run)["node"]  # the Ray node id (None outside Ray)
    last = {}

    def on_log(step, terms):
        last.update(step=step, **terms)
        report(dict(last))

    try:
        record["training"] = train(trial_flags(trial), run, on_log)
        t1 = time.perf_counter()
        metrics = metric_values(evaluate_run(run, evaluate["sections"], full=evaluate["full"],
                                             device=evaluate["device"], seed=evaluate["seed"],
                                             sizes=evaluate["sizes"],
                                             dci_importance=evaluate.get("dci_importance", "gbt"),
                                             beta_vae_classifier=evaluate.get("beta_vae_classifier",
                                                                              "logistic"),
                                             beta_vae_balanced=evaluate.get("beta_vae_balanced", False)))
        record["eval_s"] = time.perf_counter() - t1
        (run / "error.txt").unlink(missing_ok=True)
    except Exception as err:  # noqa: BLE001  a failed trial must not stop the sweep
        metrics = {}
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
    summary = _summary(run)
    final = {"step": summary.get("step", last.get("step", 0)), **summary.get("terms", {}), **last,
             **metrics, "status": record["status"], "wall_s": record["wall_s"],
             "node": record["node"]}
    if config.get("metric"):
        final.setdefault(config["metric"], math.nan)
    report(final)
