"""Adaptive instance normalisation: features of Y, modulated by a scale and shift computed from Z.

MS-VAE §3.2 (Nazari et al., ``papers/msvae-multi-stage-modelling.txt``), after Huang & Belongie
(2017) and FiLM (Perez et al. 2018)::

    AdaIN(h, z) = γ(z) · (h − μ(h)) / σ(h) + β(z),
    μ(h) = 1/HW Σ_hw h_nhwc,   σ(h) = sqrt(1/HW Σ_hw (h_nhwc − μ(h))² + ε),

statistics per item and channel over the spatial positions; γ and β are a fully connected map of z.
Without a style vector (``style_dim=0``) γ and β are learned constants: plain instance norm with an
affine, which the concatenation ablation (MSVAE-C) uses so that only *how* Z enters differs.
"""

from __future__ import annotations

import torch
from torch import nn

EPS = 1e-5


def instance_normalise(h: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """(h − μ(h)) / σ(h) per item and channel of ``h`` (N, C, H, W); MS-VAE §3.2."""
    mu = h.mean(dim=(-2, -1), keepdim=True)
    var = (h - mu).square().mean(dim=(-2, -1), keepdim=True)
    return (h - mu) / torch.sqrt(var + eps)


def adain(h: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """γ · normalise(h) + β with ``gamma``/``beta`` shaped (N, C) (one value per item and channel)."""
    return gamma[..., None, None] * instance_normalise(h, eps) + beta[..., None, None]


class AdaIN(nn.Module):
    """``forward(h, z)``: AdaIN of features ``h`` (N, C, H, W) with γ(z), β(z) from a linear map of ``z``.

    γ = 1 + linear(z)_γ so that an untrained layer starts near plain instance normalisation.
    """

    def __init__(self, channels: int, style_dim: int = 0):
        super().__init__()
        self.channels = channels
        self.style_dim = style_dim
        if style_dim > 0:
            self.style = nn.Linear(style_dim, 2 * channels)
        else:
            self.gamma = nn.Parameter(torch.ones(channels))
            self.beta = nn.Parameter(torch.zeros(channels))

    def scale_shift(self, z: torch.Tensor | None, batch: int):
        if self.style_dim == 0:
            return self.gamma.expand(batch, -1), self.beta.expand(batch, -1)
        d_gamma, beta = self.style(z).chunk(2, dim=-1)
        return 1.0 + d_gamma, beta

    def forward(self, h: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        gamma, beta = self.scale_shift(z, h.shape[0])
        return adain(h, gamma, beta)
