"""Image grids for reconstructions and samples, written as PNG, and a run's training curves
(:func:`training_curves`: the logged terms, the KL weight and a stateful objective's state against
the step, from ``metrics.jsonl``)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .checkpoint import atomic_save_figure, atomic_write_bytes


def save_grid(images: torch.Tensor, path, nrow: int = 8, pad_value: float = 0.5) -> Path:
    """Save ``(N, C, H, W)`` images in [0, 1] as one PNG grid; vectors are not images and are refused."""
    from torchvision.utils import save_image

    if images.ndim != 4:
        raise ValueError(f"expected images shaped (N, C, H, W), got {tuple(images.shape)}")
    path = Path(path)
    grid = images.detach().float().clamp(0, 1).cpu()
    atomic_write_bytes(path, lambda fh: save_image(grid, fh, format=path.suffix.lstrip(".") or "png",
                                                   nrow=nrow, pad_value=pad_value))
    return path


@torch.no_grad()
def reconstructions(model, guide, x: torch.Tensor, site: str | None = None) -> torch.Tensor:
    """Rows of inputs over rows of their reconstructions at the posterior mean (of every latent site
    concatenated, see :func:`inference.posterior.posterior_code`, or of ``site``)."""
    from .posterior import posterior_code

    loc, _ = posterior_code(guide, x, site)
    return torch.cat([x, model.decode(loc).reshape(x.shape)])


@torch.no_grad()
def prior_samples(model, n: int, seed: int = 0) -> torch.Tensor:
    """Decoded means of ``n`` codes drawn from the model's prior under ``seed``.

    The draw happens inside ``torch.random.fork_rng``, so the training RNG stream is untouched.
    """
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        z = model.sample_prior(n)
    return model.decode(z)


@torch.no_grad()
def traversals(model, guide, x: torch.Tensor, site: str | None = None, limit: float = 3.0,
               steps: int = 7) -> torch.Tensor:
    """Latent traversals: row d varies code dimension d over [−limit, limit] in ``steps`` values,
    the other dimensions held at the posterior mean of the single item ``x`` (shaped ``(1, ...)``).

    Returns ``(D · steps, C, H, W)`` decoded means, to save with ``nrow=steps``.
    """
    from .posterior import posterior_code

    loc = posterior_code(guide, x[:1], site)[0][0]  # (D,): every latent site, concatenated
    return model.decode(traversal_codes(loc, range(loc.shape[0]), limit, steps))


def traversal_codes(loc: torch.Tensor, dims, limit: float = 3.0, steps: int = 7) -> torch.Tensor:
    """Codes ``(len(dims) · steps, D)``: row block i sweeps dimension ``dims[i]`` of ``loc`` (D,) over
    [−limit, limit] in ``steps`` values, the other dimensions held at ``loc``."""
    dims = torch.as_tensor(list(dims), dtype=torch.long, device=loc.device)
    codes = loc.repeat(len(dims), steps, 1)  # (len(dims), steps, D)
    codes[torch.arange(len(dims), device=loc.device), :, dims] = torch.linspace(-limit, limit, steps,
                                                                                device=loc.device)
    return codes.reshape(len(dims) * steps, -1)


def mi_heatmap(mi, path, factor_names=(), title: str = "mutual information (nats)") -> Path:
    """Save a (codes × factors) mutual-information matrix as an annotated heatmap PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    mi = np.asarray(mi, dtype=float)
    d, k = mi.shape
    names = list(factor_names) or [f"factor {j}" for j in range(k)]
    fig, ax = plt.subplots(figsize=(1.2 * k + 2, 0.45 * d + 1.5))
    im = ax.imshow(mi, cmap="viridis", aspect="auto", vmin=0)
    ax.set_xticks(range(k), names, rotation=30, ha="right")
    ax.set_yticks(range(d), [f"z{i}" for i in range(d)])
    ax.set_xlabel("factor")
    ax.set_ylabel("code dimension")
    ax.set_title(title)
    for i in range(d):
        for j in range(k):
            ax.text(j, i, f"{mi[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if mi[i, j] < 0.6 * mi.max() else "black")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    path = Path(path)
    atomic_save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


# -- training curves -----------------------------------------------------------------------------

#: The logged numbers that are the step's weights rather than terms of the objective.
WEIGHT_TERMS = {"kl_weight": "KL weight (warm-up)"}
#: The logged numbers that are a stateful objective's state (what its per-step update changes),
#: with what each is. FactorVAE's ``tc`` is its discriminator's estimate: state when the run logs
#: ``discriminator`` too (:func:`term_kind`); β-TCVAE's ``tc`` is a term of its objective.
STATE_TERMS = {"capacity": "C(t): β-VAE-B's capacity (nats)",
               "gamma": "γ: the robust model's adaptive weight",
               "lambda": "λ: the augmented-Lagrangian multiplier",
               "discriminator": "FactorVAE discriminator's loss",
               "tc": "TC estimate of FactorVAE's discriminator"}


def term_kind(name: str, names) -> str:
    """``"weight"``, ``"state"`` or ``"term"``: what the logged number ``name`` of a run that logs
    ``names`` is (:data:`WEIGHT_TERMS`, :data:`STATE_TERMS`, else a term of the objective)."""
    if name in WEIGHT_TERMS:
        return "weight"
    if name in STATE_TERMS and (name != "tc" or "discriminator" in names):
        return "state"
    return "term"


def read_metrics(path) -> list[dict]:
    """The rows of a ``metrics.jsonl`` (a run folder or the file), skipping lines that are not JSON
    objects with a step (a line cut short by a killed run)."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "step" in row:
            rows.append(row)
    return rows


def default_panels(rows) -> list[tuple[str, tuple[str, ...]]]:
    """One panel per logged number of ``rows``: the objective's terms (``loss`` first) in log order,
    then the weights, then the objective's state, each titled by what it is."""
    names = list(dict.fromkeys(k for row in rows for k in row if k != "step"))
    kinds = {n: term_kind(n, names) for n in names}
    terms = sorted((n for n in names if kinds[n] == "term"), key=lambda n: n != "loss")
    order = terms + [n for n in names if kinds[n] == "weight"] + [n for n in names if kinds[n] == "state"]
    titles = {"term": lambda n: n, "weight": lambda n: WEIGHT_TERMS[n],
              "state": lambda n: f"{n} — {STATE_TERMS[n]}"}
    return [(titles[kinds[n]](n), (n,)) for n in order]


LINE_STYLES = ("-", ":", "--", "-.")


def training_curves(runs, path, panels=None, *, hlines=None, title: str | None = None,
                    ncols: int | None = None, panel_size=(3.4, 2.6), dpi: int = 110) -> dict:
    """Logged numbers against the step, one panel per group; save the figure and return its data.

    :param runs: the rows of one ``metrics.jsonl`` (:func:`read_metrics`), or ``{label: rows}`` for
        several runs drawn over each other, one colour per run (legend in the first panel).
    :param panels: ``[(title, (name, ...)), ...]``; the names of a panel are drawn solid, dotted,
        dashed, dash-dot in order. Default :func:`default_panels`: every term, the KL weight and
        the objective's state, one panel each.
    :param hlines: ``{panel index: value}``, a reference line (black, dashed) in that panel.
    Returns ``{panel title: {line: (steps, values)}}``, a line named by its term (one run) or by
    ``(run label, term)`` (several): exactly what is plotted. Rows without a term are skipped in its line.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    several = isinstance(runs, dict)
    runs = runs if several else {None: list(runs)}
    if panels is None:
        panels = default_panels([row for rows in runs.values() for row in rows])
    if not panels:
        raise ValueError("no logged numbers to plot (empty metrics)")
    ncols = ncols or min(len(panels), 4)
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size[0] * ncols, panel_size[1] * nrows),
                             squeeze=False)
    axes = axes.ravel()
    data = {}
    for i, (name, terms) in enumerate(panels):
        ax, lines = axes[i], {}
        for label, rows in runs.items():
            color = None
            for term, style in zip(terms, LINE_STYLES):
                kept = [r for r in rows if term in r]
                steps, values = [r["step"] for r in kept], [float(r[term]) for r in kept]
                line, = ax.plot(steps, values, ls=style, lw=1, color=color,
                                label=(label if term == terms[0] else None) if several else term)
                color = line.get_color()
                lines[(label, term) if several else term] = (steps, values)
        if hlines and i in hlines:
            ax.axhline(hlines[i], color="k", lw=0.8, ls="--")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step")
        if not several and len(terms) > 1:
            ax.legend(fontsize=7)
        data[name] = lines
    if several:
        axes[0].legend(fontsize=7)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_save_figure(fig, Path(path), dpi=dpi)
    plt.close(fig)
    return data


def thin_trajectory(rows, keys=None, points: int = 100) -> dict:
    """``{"step": [...], key: [...]}``: the logged numbers ``keys`` of ``rows`` (:func:`read_metrics`)
    at no more than ``points`` evenly strided log steps, the first and the last always among them, each
    value as logged. A key the rows do not all log is left out (``None``: every number they all log),
    so a record keeps what a run logged and :func:`trajectory_rows` gives it back to
    :func:`training_curves`."""
    if points < 2:
        raise ValueError(f"points must be at least 2 (the first and the last step), got {points!r}")
    rows = [r for r in rows if "step" in r]
    names = [k for r in rows[:1] for k in r if k != "step"] if keys is None else list(keys)
    names = [k for k in names if rows and all(k in r for r in rows)]
    stride = max(1, -(-(len(rows) - 1) // (points - 1)))  # ceil((n - 1) / (points - 1))
    kept = rows[::stride]
    if rows and kept[-1] is not rows[-1]:
        kept.append(rows[-1])
    return {k: [r[k] for r in kept] for k in ("step", *names)}


def trajectory_rows(trajectory: dict) -> list[dict]:
    """The ``metrics.jsonl`` rows of a :func:`thin_trajectory` (for :func:`training_curves`)."""
    return [dict(zip(trajectory, values)) for values in zip(*trajectory.values())]
