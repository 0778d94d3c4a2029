"""Reconstruction error of images: the one definition every report uses."""

from __future__ import annotations

import torch


def image_errors(x: torch.Tensor, recon: torch.Tensor) -> dict[str, float]:
    """Mean per-element L1 and L2 (squared, i.e. MSE) error of ``recon`` against ``x``.

    ``{"l1": mean |recon − x|, "l2": mean (recon − x)²}``, averaged over every element (items,
    channels, pixels). MS-VAE Appendix J's measures; also the evaluation report's.
    """
    if recon.shape != x.shape and recon.numel() == x.numel():
        recon = recon.reshape(x.shape)  # a decoder's flat output for image-shaped x
    if recon.shape != x.shape:
        raise ValueError(f"recon and x must have one shape, got {tuple(recon.shape)} and {tuple(x.shape)}")
    diff = recon - x
    return {"l1": float(diff.abs().mean()), "l2": float(diff.square().mean())}


@torch.no_grad()
def reconstruction_error(model, guide, x: torch.Tensor, site: str | None = None) -> dict[str, float]:
    """:func:`image_errors` of the decoded posterior mean (every latent site, or ``site``) against ``x``."""
    from ..posterior import posterior_code

    loc = posterior_code(guide, x, site)[0]
    return image_errors(x, model.decode(loc).reshape(x.shape))
