"""Image grids for reconstructions and samples, written as PNG."""

from __future__ import annotations

from pathlib import Path

import torch


def save_grid(images: torch.Tensor, path, nrow: int = 8, pad_value: float = 0.5) -> Path:
    """Save ``(N, C, H, W)`` images in [0, 1] as one PNG grid; vectors are not images and are refused."""
    from torchvision.utils import save_image

    if images.ndim != 4:
        raise ValueError(f"expected images shaped (N, C, H, W), got {tuple(images.shape)}")
    path = Path(path)
    save_image(images.detach().float().clamp(0, 1).cpu(), path, nrow=nrow, pad_value=pad_value)
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
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
