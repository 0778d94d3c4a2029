"""MS-FLOW (MS-VAE appendix D): the experiment that fits a 10-component Gaussian mixture for C → Y and a
conditional coupling flow for (Y, Z) → X (:mod:`ppl_models.msflow`), and reports appendix D's densities.

Nazari et al. (``papers/msvae-multi-stage-modelling.txt``), appendix D. Data are dequantised
(x = (k + u) / levels, u ~ U(0, 1)) and flattened, so every log density is a continuous density in nats
per image on [0, 1]^D. Reports on a held-out split: the mixture's log p(x), the whole model's
log p(x) = log Σ_c π_c p_flow(x | μ_c) (the paper's −1585 → −1356 on MNIST), and the conditional
log p(x | y) during training when the flow is trained with Y = the component means vs Y = samples of
the component (appendix D.1, fig. 20). Training keeps the flow state with the best log p(x | y) on a
validation split (the test split is only reported).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import NamedTuple

import torch

from ppl_data import digits, mnist
from ppl_models.msflow import COMPONENTS, ConditionalCouplingFlow, GaussianMixture, MSFlowModel

from ..checkpoint import atomic_save_figure, atomic_write_text
from ..pictures import save_grid
from ..posterior import encode_batched

QUICK = dict(steps=1000, batch_size=128, lr=1e-3, layers=6, hidden=128, eval_every=100)
PAPER = dict(steps=30_000, batch_size=128, lr=1e-3, layers=8, hidden=1024, eval_every=500)


class FlowData(NamedTuple):
    """A dataset of the experiment: the images, their number of pixel levels, the image side, a name."""
    data: object
    levels: int
    side: int
    name: str


def load_data(data_root=None) -> FlowData:
    """MNIST IDX files in ``data_root`` (256 levels, 28×28), else scikit-learn's 8×8 digits (17 levels)."""
    if data_root:
        return FlowData(mnist(data_root), 256, 28, "mnist")
    return FlowData(digits(), 17, 8, "digits8x8")


def dequantised(data, levels: int, gen: torch.Generator) -> torch.Tensor:
    """(k + u) / levels for pixel levels k, flattened to (N, D)."""
    x, _ = data.all()
    k = torch.round(x * (levels - 1))
    return ((k + torch.rand(k.shape, generator=gen)) / levels).flatten(1)


def mean_log_prob(fn, *xs) -> float:
    """Mean of ``fn(*xs)`` (a log density per item), computed in chunks."""
    return float(encode_batched(fn, xs if len(xs) > 1 else xs[0]).mean())


def train_flow(model: MSFlowModel, x_train, val, test, s: dict, sample_y: bool, seed: int):
    """Adam on −log p(x | y); returns the curve [(step, val, test)] and keeps the best-validation state."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.flow.parameters(), lr=s["lr"])
    gen = torch.Generator().manual_seed(seed)
    curve, best, best_state = [], -float("inf"), None
    for step in range(1, s["steps"] + 1):
        idx = torch.randint(len(x_train), (s["batch_size"],), generator=gen).to(x_train.device)
        loss = model.flow_loss(x_train[idx], sample_y=sample_y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % s["eval_every"] == 0 or step == s["steps"]:
            v, t = mean_log_prob(model.flow.log_prob, *val), mean_log_prob(model.flow.log_prob, *test)
            curve.append((step, v, t))
            if v > best:
                best, best_state = v, {k: w.clone() for k, w in model.flow.state_dict().items()}
    model.flow.load_state_dict(best_state)
    return curve


def run_experiment(source: FlowData, settings: dict, out, *, seed: int = 0, device="cpu",
                   command: str = "") -> dict:
    """Fit the mixture, then the flow twice (Y = means, Y = samples), under ``settings`` (:data:`QUICK`,
    :data:`PAPER`); writes ``results.json``, ``curves.png`` (fig. 20), ``means.png`` (fig. 18) and
    ``samples.png`` (fig. 19: data, mixture samples, flow samples, five rows each) under ``out``.

    Returns the results (densities in nats per image; ``curves``: {mode: [(step, val, test)]}).
    """
    t0, s, out = time.perf_counter(), dict(settings), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)  # the first flow's initialisation (before issue 15 it read an unseeded RNG)
    gen = torch.Generator().manual_seed(seed)
    x = dequantised(source.data, source.levels, gen)
    perm = torch.randperm(len(x), generator=gen)
    n_test = max(1, len(x) // 10)
    x_test, x_val = x[perm[:n_test]].to(device), x[perm[n_test:2 * n_test]].to(device)
    x_train = x[perm[2 * n_test:]].to(device)
    dim = x.shape[1]

    mixture = GaussianMixture.fit(x_train, COMPONENTS, seed=seed)
    y_of = lambda v: mixture.y_of(mixture.responsibilities(v).argmax(-1))  # noqa: E731
    y_test, y_val = y_of(x_test), y_of(x_val)
    residual_scale = (x_train - y_of(x_train)).std(0).clamp_min(1e-3)  # s of x = y + s ⊙ u
    results = {"data": source.name, "dim": dim, "settings": s,
               "mixture_log_p_test": mean_log_prob(mixture.log_prob, x_test),
               "mixture_log_p_train": mean_log_prob(mixture.log_prob, x_train)}
    curves, models = {}, {}
    for mode in ("means", "samples"):
        t = time.perf_counter()
        flow = ConditionalCouplingFlow(dim, dim, s["layers"], s["hidden"], residual_scale).to(device)
        model = MSFlowModel(mixture, flow)
        curves[mode] = train_flow(model, x_train, (x_val, y_val), (x_test, y_test), s, mode == "samples", seed)
        flow.eval()
        best = max(curves[mode], key=lambda r: r[1])
        results[f"msflow_{mode}_best_step"] = best[0]
        results[f"msflow_{mode}_log_p_test"] = mean_log_prob(model.log_prob, x_test)
        results[f"msflow_{mode}_cond_log_p_test"] = best[2]
        results[f"msflow_{mode}_cond_log_p_test_last"] = curves[mode][-1][2]
        results[f"msflow_{mode}_seconds"] = round(time.perf_counter() - t, 1)
        models[mode] = model
        print(mode, {k: v for k, v in results.items() if mode in k}, flush=True)
    results["curves"] = curves
    pictures(models["means"], mixture, x_test, source.side, curves, out, seed)
    results["wall_seconds"] = round(time.perf_counter() - t0, 1)
    results["command"] = command
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "curves"}, indent=2))
    return results


@torch.no_grad()
def pictures(model: MSFlowModel, mixture: GaussianMixture, x_test, side: int, curves: dict, out: Path,
             seed: int = 0) -> None:
    """``means.png`` (fig. 18), ``samples.png`` (fig. 19) and ``curves.png`` (fig. 20) under ``out``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img = lambda v: v.reshape(-1, 1, side, side).clamp(0, 1).cpu()  # noqa: E731
    save_grid(img(mixture.means), out / "means.png", nrow=COMPONENTS)
    torch.manual_seed(seed)
    n = 5 * COMPONENTS
    c = torch.arange(COMPONENTS, device=x_test.device).repeat(5)
    mix = mixture.y_of(c, sample=True)
    flow = model.flow.conditional(mixture.y_of(c)).sample()
    save_grid(torch.cat([img(x_test[:n]), img(mix), img(flow)]), out / "samples.png", nrow=COMPONENTS)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for mode, pts in curves.items():
        steps, val, _ = zip(*pts)
        ax.plot(steps, [max(v, -200.0) for v in val], label=f"Y = {mode}")
    ax.set_xlabel("step")
    ax.set_ylabel("validation log p(x | y) (nats, floored at −200)")
    ax.legend()
    fig.tight_layout()
    atomic_save_figure(fig, out / "curves.png", dpi=120)
    plt.close(fig)


__all__ = ["QUICK", "PAPER", "FlowData", "load_data", "dequantised", "mean_log_prob", "train_flow",
           "run_experiment", "pictures"]
