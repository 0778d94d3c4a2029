"""Encoder networks: x -> (loc, scale) of a diagonal Normal over the latent code.

Mirrors of the decoders in :mod:`ppl_models.nets`: ``Conv64Encoder`` (four 4×4 stride-2
convolutions 32-32-64-64, dense 256; Burgess et al. 2018), ``Conv64DLEncoder``
(disentanglement_lib's ``conv_encoder``: 2×2 kernels in the last two convs, a log-variance head, TF's
init), ``Conv32Encoder`` (three, w-w-2w,
dense 128; our 32×32 choice) and ``MLPEncoder`` (VITAE supplement Table 1: 128-64, LeakyReLU 0.1,
softplus scale).
"""

from __future__ import annotations

import math

from torch import nn
from torch.nn import functional as F

from ppl_models.nets import CONV32_DENSE, CONV32_WIDTH, mlp, net_kind, tf_default_init_

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


class Conv64DLEncoder(nn.Module):
    """disentanglement_lib's ``conv_encoder`` (``methods/shared/architectures.py``) as written: convs
    32 (4×4), 32 (4×4), 64 (2×2), 64 (2×2), each stride 2 with "same" padding, ReLU; dense 256, ReLU;
    two dense heads, ``means`` and ``log_var``; scale = exp(log_var / 2). TF's default init
    (:func:`ppl_models.nets.tf_default_init_`)."""

    def __init__(self, channels: int, latent_dim: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(channels, 32, 4, 2, 1), nn.ReLU(),  # "same" for a 4×4 stride-2 kernel on an even side: 1 each side
            nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 64, 2, 2), nn.ReLU(),  # "same" for 2×2 stride 2 on an even side: no padding
            nn.Conv2d(64, 64, 2, 2), nn.ReLU())
        self.dense = nn.Sequential(nn.Linear(64 * 4 * 4, 256), nn.ReLU())
        self.means, self.log_var = nn.Linear(256, latent_dim), nn.Linear(256, latent_dim)
        tf_default_init_(self)

    def forward(self, x):
        batch = x.shape[:-3]
        h = self.dense(self.conv(x.reshape(-1, *x.shape[-3:])).flatten(1))
        loc, scale = self.means(h), (0.5 * self.log_var(h)).exp()
        return loc.reshape(*batch, -1), scale.reshape(*batch, -1)


class Conv32Encoder(nn.Module):
    """x ``(..., C, 32, 32)`` -> (loc, scale) ``(..., d)``: three 4×4 stride-2 convs, dense, head.

    With ``pool=True`` the last feature map is averaged over positions before the dense layer, so
    the code cannot depend on where the figure stands (the robust model's appearance encoder).
    """

    def __init__(self, channels: int, latent_dim: int, pool: bool = False, width: int = CONV32_WIDTH):
        super().__init__()
        self.pool = pool
        self.conv = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(width, width, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.ReLU())
        features = 2 * width if pool else 2 * width * 4 * 4
        self.dense = nn.Sequential(nn.Linear(features, CONV32_DENSE), nn.ReLU())
        self.head = GaussianHead(CONV32_DENSE, latent_dim)

    def forward(self, x):
        batch = x.shape[:-3]
        h = self.conv(x.reshape(-1, *x.shape[-3:]))
        h = h.mean((-2, -1)) if self.pool else h.flatten(1)
        loc, scale = self.head(self.dense(h))
        return loc.reshape(*batch, -1), scale.reshape(*batch, -1)


def make_encoder(kind: str, data_shape, latent_dim: int) -> nn.Module:
    """``kind``: ``"conv64"``, ``"conv64_dl"``, ``"conv32"``, ``"mlp"`` or ``"auto"`` (see :func:`ppl_models.nets.net_kind`)."""
    kind = net_kind(kind, data_shape)
    if kind == "conv64":
        return Conv64Encoder(data_shape[0], latent_dim)
    if kind == "conv64_dl":
        return Conv64DLEncoder(data_shape[0], latent_dim)
    if kind == "conv32":
        return Conv32Encoder(data_shape[0], latent_dim)
    return MLPEncoder(data_shape, latent_dim)
