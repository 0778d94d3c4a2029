"""The sweep's figure: each metric against its series' hyperparameter (seeds as dots, mean ± std as a
line and band), and an optional trade-off panel of one metric against another (the DIP paper's Fig. 1)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..checkpoint import atomic_save_figure
from .study import _fmt
from .tables import metric_columns


def series_of(study, rows) -> dict:
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


def plot(study, rows, path: Path) -> bool:
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
    atomic_save_figure(fig, path, dpi=110)
    plt.close(fig)
    return True
