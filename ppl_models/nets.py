"""Decoder networks, and the small building blocks the encoders in ``guides.nets`` share.

* ``Conv64Decoder``: the 64×64 decoder of Burgess et al. (2018) / disentanglement_lib
  (dense 256, dense 4·4·64, four 4×4 stride-2 transposed convolutions 64-32-32-C).
* ``MLPDecoder``: the MNIST decoder of the VITAE supplement, Table 1 (64-64, LeakyReLU 0.1).
"""

from __future__ import annotations

import math

import torch
from torch import nn

LEAKY_SLOPE = 0.1  # VITAE supplement, Table 1: LeakyReLU with α = 0.1


def mlp(sizes, activation=lambda: nn.LeakyReLU(LEAKY_SLOPE)) -> nn.Sequential:
    """Linear layers of ``sizes`` with ``activation`` between them (none after the last)."""
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class MLPDecoder(nn.Module):
    """z (..., d) -> output (..., *data_shape): logits or means, depending on the likelihood."""

    def __init__(self, latent_dim: int, data_shape, hidden=(64, 64)):
        super().__init__()
        self.data_shape = tuple(data_shape)
        self.net = mlp([latent_dim, *hidden, math.prod(self.data_shape)])

    def forward(self, z):
        out = self.net(z)
        return out.reshape(*z.shape[:-1], *self.data_shape)


class Conv64Decoder(nn.Module):
    """z (..., d) -> (..., C, 64, 64) logits; Burgess et al. 2018, disentanglement_lib ``deconv_decoder``."""

    def __init__(self, latent_dim: int, channels: int = 1):
        super().__init__()
        self.channels = channels
        self.dense = nn.Sequential(
            nn.Linear(latent_dim, 256), nn.ReLU(), nn.Linear(256, 64 * 4 * 4), nn.ReLU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, channels, 4, 2, 1))

    def forward(self, z):
        batch = z.shape[:-1]
        h = self.dense(z.reshape(-1, z.shape[-1])).reshape(-1, 64, 4, 4)
        return self.deconv(h).reshape(*batch, self.channels, 64, 64)


def is_conv64_shape(data_shape) -> bool:
    return len(data_shape) == 3 and tuple(data_shape[1:]) == (64, 64)


def make_decoder(kind: str, latent_dim: int, data_shape) -> nn.Module:
    """``kind`` is ``"conv64"``, ``"mlp"`` or ``"auto"`` (conv64 for 64×64 images, else MLP)."""
    if kind == "auto":
        kind = "conv64" if is_conv64_shape(data_shape) else "mlp"
    if kind == "conv64":
        if not is_conv64_shape(data_shape):
            raise ValueError(f"net 'conv64' needs (C, 64, 64) images, got data shape {tuple(data_shape)}")
        return Conv64Decoder(latent_dim, data_shape[0])
    if kind == "mlp":
        return MLPDecoder(latent_dim, data_shape)
    raise ValueError(f"unknown net {kind!r}; expected 'auto', 'conv64' or 'mlp'")
