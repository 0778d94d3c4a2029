"""MS-VAE on the damped pendulum (MS-VAE appendix C): three stages, then corr(Z, M) and traversals.

Nazari et al. (``papers/msvae-multi-stage-modelling.txt``), appendix C. Trains L → Y0, then
(B, Y0) → Y1, then the residual VAE (Z, Y1) → θ (:class:`ppl_models.pendulum.PendulumModel`,
:class:`guides.pendulum.PendulumGuide`), each on its paired data (``ppl_data.pendulum.PendulumPairs``;
L and B observed, M never). Reports on held-out items: the Pearson and Spearman correlation between
Z's posterior mean and the unseen mass M over 500 items (fig. 16), Z's correlation with L and B
(should be small), and the RMSE of each stage's mean against the simulator. The paper gives no
training settings for the pendulum; :data:`PAPER` is ours, longer.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from guides.pendulum import PendulumGuide
from ppl_data.pendulum import PendulumPairs, simulate
from ppl_models.pendulum import PendulumModel, unpack

from ..checkpoint import atomic_save_figure, atomic_write_text
from ..elbo import TermsELBO
from .msvae import fit_stage, timed

QUICK = dict(grid=20, steps=4000, batch_size=64, lr=1e-3, hidden=128, n_corr=500)
PAPER = dict(grid=30, steps=30_000, batch_size=64, lr=1e-3, hidden=256, n_corr=500)
STAGES = ("y0", "y1", "theta")  # appendix C: three separate training steps


def corr(a, b) -> dict[str, float]:
    """Pearson and Spearman correlation of two vectors."""
    from scipy.stats import spearmanr

    return {"pearson": float(np.corrcoef(a, b)[0, 1]), "spearman": float(spearmanr(a, b)[0])}


@torch.no_grad()
def evaluate(model, guide, data, test, n_corr: int):
    """``(metrics, z posterior means, simulator parameters)`` on the first ``n_corr`` test items."""
    model.stage = "all"
    index = test.indices[:n_corr]
    rec, _ = data.batch(index, device=model.raw_theta_scale.device)
    length, damping, y0, y1, theta = unpack(rec)
    z = guide.posterior(rec)["z"][0]
    g0, g1, gt = model.generate(length, damping, z)
    _, _, gt0 = model.generate(length, damping, torch.zeros_like(z))
    rmse = lambda a, b: float((a - b).square().mean().sqrt())  # noqa: E731
    params = data.params[index].numpy()
    zc = z[:, 0].cpu().numpy()
    return {
        "corr_z_mass": corr(zc, params[:, 1]), "corr_z_length": corr(zc, params[:, 0]),
        "corr_z_damping": corr(zc, params[:, 2]),
        "rmse_y0": rmse(g0, y0), "rmse_y1": rmse(g1, y1), "rmse_theta_posterior_z": rmse(gt, theta),
        "rmse_theta_z0": rmse(gt0, theta), "rmse_theta_vs_y1": rmse(y1, theta),
    }, zc, params


@torch.no_grad()
def pictures(model, guide, data, zc, params, out: Path) -> None:
    """``z_vs_mass.png`` (fig. 16) and ``traversals.png`` (fig. 15) under ``out``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.scatter(params[:, 1], zc, s=4)
    ax.set_xlabel("mass M (never seen)")
    ax.set_ylabel("posterior mean of z")
    fig.tight_layout()
    atomic_save_figure(fig, out / "z_vs_mass.png", dpi=120)
    plt.close(fig)

    dev = model.raw_theta_scale.device
    t = np.arange(data.steps + 1)
    # z for a mass: posterior mean of the grid item nearest (L=1.5, B=1.0, M) (fig. 15c's choice).
    def z_for(l_, b_, m_):
        rec = torch.cat([torch.tensor([[l_, b_]]).double(),
                         simulate(torch.tensor([l_]).double(), torch.ones(1).double(), torch.zeros(1).double()),
                         simulate(torch.tensor([l_]).double(), torch.ones(1).double(), torch.tensor([b_]).double()),
                         simulate(torch.tensor([l_]).double(), torch.tensor([m_]).double(),
                                  torch.tensor([b_]).double())], -1).float().to(dev)
        return guide.posterior(rec)["z"][0]

    rows = {"length": [(l_, 1.0, 1.5) for l_ in (1.0, 1.5, 2.0, 3.0)],
            "damping": [(1.5, b_, 1.5) for b_ in (0.1, 0.57, 1.05, 2.0)],
            "z (mass)": [(1.5, 1.0, m_) for m_ in (0.1, 0.5, 1.0, 2.0)]}
    fig, axes = plt.subplots(3, 4, figsize=(14, 8), sharex=True, sharey=True)
    z_fixed = z_for(1.5, 1.0, 1.5)
    for r, (name, settings) in enumerate(rows.items()):
        for c, (l_, b_, m_) in enumerate(settings):
            sim = simulate(torch.tensor([l_]), torch.tensor([m_]), torch.tensor([b_]))[0]
            z = z_for(l_, b_, m_) if name.startswith("z") else z_fixed
            _, _, th = model.generate(torch.tensor([[l_]], device=dev), torch.tensor([[b_]], device=dev), z)
            ax = axes[r, c]
            ax.plot(t, sim.numpy(), color="tab:blue", label="simulator")
            ax.plot(t, th[0].cpu().numpy(), color="tab:red", ls="--", label="MS-VAE")
            ax.set_title(f"L={l_}, B={b_}, " + (f"M={m_} (z={float(z):.2f})" if name.startswith("z")
                                                else f"M={m_}, z={float(z_fixed):.2f}"), fontsize=8)
        axes[r, 0].set_ylabel(f"{name} traversal\nθ (rad)")
    axes[0, 0].legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("time step")
    fig.tight_layout()
    atomic_save_figure(fig, out / "traversals.png", dpi=100)
    plt.close(fig)


def run_experiment(settings: dict, out, *, seed: int = 0, device="cpu", command: str = "") -> dict:
    """Train the three stages under ``settings`` (:data:`QUICK`, :data:`PAPER`), evaluate, and write
    ``results.json``, ``z_vs_mass.png`` (fig. 16) and ``traversals.png`` (fig. 15: L, B and Z
    traversals, simulator in blue, model in red) under ``out``. Returns the results."""
    s, out, t0 = dict(settings), Path(out), time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    data = PendulumPairs(s["grid"])
    train, test = data.split(0.1, seed=seed)
    model = PendulumModel(data.steps, z_dim=1, hidden=s["hidden"], dataset_size=len(train))
    guide = PendulumGuide(model)
    seconds = {}
    for stage in STAGES:
        model.stage = stage
        timed(seconds, stage, lambda: fit_stage(model, guide, TermsELBO(), train, s["steps"], s, seed, device))
        seconds[stage] = round(seconds[stage], 1)
        print(f"stage {stage}: {s['steps']} steps, {seconds[stage]} s", flush=True)
    metrics, zc, params = evaluate(model, guide, data, test, s["n_corr"])
    pictures(model, guide, data, zc, params, out)
    wall = time.perf_counter() - t0
    results = {"settings": s, "stage_seconds": seconds, "wall_seconds": round(wall, 1), "command": command,
               **metrics}
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return results


__all__ = ["QUICK", "PAPER", "STAGES", "corr", "evaluate", "pictures", "run_experiment"]
