"""Where each trial ran: the Ray node of every attempt, for a sweep on a cluster.

A trial whose node dies (a preempted or lost machine) is started again by Tune on another node and
resumes from its run folder's checkpoint (:func:`inference.sweep.trial.train`). Each start of a
trial is one line of the study's ``attempts.jsonl`` (trial name, Ray node id, host, pid, time): a
line is written by the trial's own process as it starts, so it survives the node. The table's
``attempts`` column counts them, and ``node`` (from ``trial.json``) is where the trial finished.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ATTEMPTS = "attempts.jsonl"


def node_id() -> str | None:
    """The Ray node this process runs on (``ray.get_runtime_context().get_node_id()``), or ``None``
    outside Ray (a trial run in this process); Ray is never imported here."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    return ray.get_runtime_context().get_node_id()


def attempts_file(run_dir) -> Path:
    """The study's attempts log: ``OUT/attempts.jsonl`` for a trial in ``OUT/runs/<name>``."""
    return Path(run_dir).resolve().parent.parent / ATTEMPTS


def log_attempt(name: str, run_dir) -> dict:
    """Append this start of trial ``name`` to the study's attempts log; return the line's record.

    One ``write`` of one line on a file opened for appending: lines from trials running at once on
    the nodes of one machine (or of a shared folder that keeps appends whole) do not interleave.
    """
    record = {"trial": name, "node": node_id(), "host": os.uname().nodename, "pid": os.getpid(),
              "time": time.time()}
    path = attempts_file(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)
    return record


def attempts(out_dir) -> dict[str, list[dict]]:
    """Every trial's starts, in order, from ``OUT/attempts.jsonl`` (a cut last line is skipped)."""
    out: dict[str, list[dict]] = {}
    try:
        lines = (Path(out_dir) / ATTEMPTS).read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "trial" in record:
            out.setdefault(record["trial"], []).append(record)
    return out
