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
def reconstructions(model, guide, x: torch.Tensor, site: str = "z") -> torch.Tensor:
    """Rows of inputs over rows of their reconstructions at the posterior mean."""
    loc, _ = guide.posterior(x)[site]
    return torch.cat([x, model.decode(loc)])


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
