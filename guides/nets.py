"""Encoder networks: x -> (loc, scale) of a diagonal Normal over the latent code.

Mirrors of the decoders in :mod:`ppl_models.nets`: ``Conv64Encoder`` (four 4×4 stride-2
convolutions 32-32-64-64, dense 256; Burgess et al. 2018) and ``MLPEncoder`` (VITAE supplement
Table 1: 128-64, LeakyReLU 0.1, softplus scale).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ppl_models.nets import is_conv64_shape, mlp

MIN_SCALE = 1e-4  # keeps the posterior scale positive when softplus underflows


class GaussianHead(nn.Module):
    """Features -> (loc, scale) with scale = softplus(.) + MIN_SCALE (VITAE supplement, Table 1)."""

    def __init__(self, in_features: int, latent_dim: int):
        super().__init__()
        self.linear = nn.Linear(in_features, 2 * latent_dim)

    def forward(self, h):
        loc, raw = self.linear(h).chunk(2, dim=-1)
        return loc, F.softplus(raw) + MIN_SCALE


class MLPEncoder(nn.Module):
    def __init__(self, data_shape, latent_dim: int, hidden=(128, 64)):
        super().__init__()
        self.data_shape = tuple(data_shape)
        self.body = nn.Sequential(mlp([math.prod(self.data_shape), *hidden]), nn.LeakyReLU(0.1))
        self.head = GaussianHead(hidden[-1], latent_dim)

    def forward(self, x):
        batch = x.shape[: x.ndim - len(self.data_shape)]
        return self.head(self.body(x.reshape(*batch, -1)))


class Conv64Encoder(nn.Module):
    def __init__(self, channels: int, latent_dim: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(channels, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(64, 64, 4, 2, 1), nn.ReLU())
        self.dense = nn.Sequential(nn.Linear(64 * 4 * 4, 256), nn.ReLU())
        self.head = GaussianHead(256, latent_dim)

    def forward(self, x):
        batch = x.shape[:-3]
        h = self.conv(x.reshape(-1, *x.shape[-3:])).flatten(1)
        loc, scale = self.head(self.dense(h))
        return loc.reshape(*batch, -1), scale.reshape(*batch, -1)


def make_encoder(kind: str, data_shape, latent_dim: int) -> nn.Module:
    """``kind`` is ``"conv64"``, ``"mlp"`` or ``"auto"`` (conv64 for 64×64 images, else MLP)."""
    if kind == "auto":
        kind = "conv64" if is_conv64_shape(data_shape) else "mlp"
    if kind == "conv64":
        if not is_conv64_shape(data_shape):
            raise ValueError(f"net 'conv64' needs (C, 64, 64) images, got data shape {tuple(data_shape)}")
        return Conv64Encoder(data_shape[0], latent_dim)
    if kind == "mlp":
        return MLPEncoder(data_shape, latent_dim)
    raise ValueError(f"unknown net {kind!r}; expected 'auto', 'conv64' or 'mlp'")
