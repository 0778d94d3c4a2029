"""The results of a sweep as tables: one row per trial (``collect``), mean ± std over seeds per
setting (``aggregate``), written as ``sweep.csv``, ``sweep.md`` and ``sweep_summary.json``."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from ..checkpoint import atomic_write_text
from ..svi import SUMMARY

#: Table columns taken from report.json: name -> (metric key, field).
METRIC_FIELDS = {"beta_vae": ("beta_vae", "eval_accuracy"), "factor_vae": ("factor_vae", "eval_accuracy"),
                 "mig": ("mig", "value"), "dci_d": ("dci", "disentanglement"),
                 "dci_c": ("dci", "completeness"), "dci_i": ("dci", "informativeness_test"),
                 "sap": ("sap", "continuous"), "recon_l1": ("reconstruction", "l1"),
                 "recon_l2": ("reconstruction", "l2"), "log_px": ("log_likelihood", "mean"),
                 "fid": ("fid_kid", "fid")}
TIMES = ("train_s", "eval_s", "wall_s")
STATUSES = ("ok", "error", "stopped", "not run")


def metric_values(report: dict) -> dict[str, float]:
    """The :data:`METRIC_FIELDS` columns a report has, as floats."""
    out = {}
    for col, (key, fld) in METRIC_FIELDS.items():
        value = report.get("metrics", {}).get(key, {}).get(fld)
        if value is not None:
            out[col] = float(value)
    return out


def error_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".strip()


def collect(study) -> list[dict]:
    """One row per trial (a trial started again after its node died is still one row): flags,
    status, error, metrics from report.json, times, the Ray node it finished on and how many times
    it was started (:mod:`.nodes`)."""
    from ..report import REPORT
    from .nodes import attempts, attempts_file
    from .trial import TRIAL

    starts = attempts(attempts_file(study.trials[0].run_dir).parent) if study.trials else {}
    rows = []
    for t in study.trials:
        run = Path(t.run_dir)
        row = {"name": t.name, **t.flags, "status": "not run", "error": "",
               "attempts": len(starts.get(t.name, ()))}
        try:
            record = json.loads((run / TRIAL).read_text())
            row.update(status=record.get("status", "?"), error=record.get("error", ""),
                       wall_s=record.get("wall_s"), eval_s=record.get("eval_s"), node=record.get("node"))
        except (OSError, ValueError):
            pass
        if row["status"] == "ok":
            try:
                report = json.loads((run / REPORT).read_text())
                summary = json.loads((run / SUMMARY).read_text())
            except (OSError, ValueError) as err:
                row.update(status="error", error=error_line(err))
            else:
                row.update(metric_values(report))
                row["train_s"] = summary.get("train_seconds")
        rows.append(row)
    return rows


def metric_columns(rows) -> list[str]:
    return [c for c in METRIC_FIELDS if any(c in r for r in rows)]


def group_key_names(study) -> list[str]:
    varied = study.trials[0].varied if study.trials else ()
    return [k for k in varied if k != "seed"]


def aggregate(study, rows) -> list[dict]:
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


def write_tables(study, rows, out: Path, skipped: int = 0, seconds: float = 0.0) -> None:
    """sweep.csv (every trial), sweep.md (trials and seed means) and sweep.png (:mod:`.plots`)."""
    from .plots import plot

    metrics = metric_columns(rows)
    flag_cols = list(dict.fromkeys(k for t in study.trials for k in t.flags))
    cols = ["name"] + flag_cols + ["status"] + metrics + list(TIMES) + ["node", "attempts", "error"]
    lines = []
    table = io.StringIO(newline="")
    w = csv.DictWriter(table, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c, "") if r.get(c) is not None else "" for c in cols})
    atomic_write_text(out / "sweep.csv", table.getvalue())
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    shown = [k for k in (study.trials[0].varied if study.trials else ())]
    lines += [f"# Sweep `{study.name}`", "",
              f"{len(rows)} trials: {counts['ok']} ok, {counts['error']} failed, "
              + (f"{counts['stopped']} stopped early (ASHA), " if counts["stopped"] else "")
              + f"{counts['not run']} not run; finished before this call: {skipped}; this call took "
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
    atomic_write_text(out / "sweep_summary.json", json.dumps(
        {"counts": counts, "evaluate": study.evaluate, "aggregate": agg}, indent=2, default=str))


