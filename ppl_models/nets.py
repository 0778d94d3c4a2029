"""Decoder networks, and the small building blocks the encoders in ``guides.nets`` share.

* ``Conv64Decoder``: the 64×64 decoder of Burgess et al. (2018) / disentanglement_lib
  (dense 256, dense 4·4·64, four 4×4 stride-2 transposed convolutions 64-32-32-C).
* ``Conv32Decoder``: the same design one stage shorter for 32×32 images (our choice for CPU budgets:
  dense 128, dense 2w·4·4, three 4×4 stride-2 transposed convolutions 2w-w-w-C, w = 32).
* ``MLPDecoder``: the MNIST decoder of the VITAE supplement, Table 1 (64-64, LeakyReLU 0.1).
"""

from __future__ import annotations

import math

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


def tf_default_init_(module: nn.Module) -> nn.Module:
    """TensorFlow 1's layer defaults, as disentanglement_lib's nets start: Glorot-uniform weights
    (bound √(6 / (fan_in + fan_out)), symmetric in the fans, so a transposed conv's swapped fans give
    TF's bound) and zero biases, for every dense, conv and transposed-conv layer. In place; returns it."""
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module


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


CONV32_WIDTH = 32  # channels of the 32×32 nets' convolutions (the 64×64 nets use 32-32-64-64)
CONV32_DENSE = 128  # units of their dense layer (shared with guides.nets.Conv32Encoder)


class Conv32Decoder(nn.Module):
    """z ``(..., d)`` -> ``(..., C, 32, 32)``: dense to 2w×4×4, three 4×4 stride-2 transposed convs."""

    def __init__(self, latent_dim: int, channels: int = 1, width: int = CONV32_WIDTH):
        super().__init__()
        self.channels, self.width = channels, width
        self.dense = nn.Sequential(nn.Linear(latent_dim, CONV32_DENSE), nn.ReLU(),
                                   nn.Linear(CONV32_DENSE, 2 * width * 4 * 4), nn.ReLU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(width, width, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(width, channels, 4, 2, 1))

    def forward(self, z):
        batch = z.shape[:-1]
        h = self.dense(z.reshape(-1, z.shape[-1])).reshape(-1, 2 * self.width, 4, 4)
        return self.deconv(h).reshape(*batch, self.channels, 32, 32)


#: The conv nets by name, with the image side each needs. ``conv64``: Burgess et al. 2018's kernels
#: with PyTorch's init; ``conv64_dl``: disentanglement_lib's ``conv_encoder``/``deconv_decoder`` as
#: written (2×2 kernels in the encoder's last two convs, a log-variance head, TF's init).
CONV_SIDES = {"conv64": 64, "conv32": 32, "conv64_dl": 64}


def net_kind(kind: str, data_shape) -> str:
    """``kind`` resolved and checked against ``data_shape``: ``"auto"`` is conv64 for (C, 64, 64)
    images, conv32 for (C, 32, 32), else ``"mlp"``; ``ValueError`` names a mismatch or an unknown kind."""
    shape = tuple(data_shape)
    square = len(shape) == 3 and shape[1] == shape[2]
    if kind == "auto":
        return next((k for k, side in CONV_SIDES.items() if square and shape[1] == side), "mlp")
    if kind in CONV_SIDES:
        side = CONV_SIDES[kind]
        if not (square and shape[1] == side):
            raise ValueError(f"net {kind!r} needs (C, {side}, {side}) images, got data shape {shape}")
        return kind
    if kind == "mlp":
        return kind
    raise ValueError(f"unknown net {kind!r}; expected 'auto', {', '.join(map(repr, CONV_SIDES))} or 'mlp'")


def make_decoder(kind: str, latent_dim: int, data_shape) -> nn.Module:
    """``kind``: ``"conv64"``, ``"conv64_dl"``, ``"conv32"``, ``"mlp"`` or ``"auto"`` (see :func:`net_kind`)."""
    kind = net_kind(kind, data_shape)
    if kind == "conv64":
        return Conv64Decoder(latent_dim, data_shape[0])
    if kind == "conv64_dl":  # deconv_decoder is Conv64Decoder's layers; TF's init
        return tf_default_init_(Conv64Decoder(latent_dim, data_shape[0]))
    if kind == "conv32":
        return Conv32Decoder(latent_dim, data_shape[0])
    return MLPDecoder(latent_dim, data_shape)
