"""MS-VAE for the damped pendulum (appendix C, figure 17): three stages in one Pyro model.

Nazari et al. (``papers/msvae-multi-stage-modelling.txt``), appendix C and figure 17::

    L ~ U(L range)                     site "length"   (observed in training)
    y0 ~ N(μ₀(L), σ₀²)                 site "y0"       undamped displacement, conditional Gaussian
    B ~ U(B range)                     site "damping"  (observed in training)
    y1 ~ N(μ₁(B, y0), σ₁²)             site "y1"       damped with M = 1, conditional Gaussian
    z ~ N(0, 1)                        site "z"        the residual (1-D, as in fig. 16)
    θ ~ N(y1 + r(y1, z), σ²)           site "theta"    a VAE decoder for the residual θ − y1

M never appears: Z models what the mass does. The three stages are trained in three steps on their
paired data ({L, y0}, {B, y0, y1}, {y1, θ}); ``stage`` selects which stage's sites the model has
(an earlier stage's output enters a later one as the paired data's observed value), ``"all"`` is
the whole hierarchy. Z enters the residual decoder by FiLM (γ(z)·h + β(z) on its hidden
features), the vector form of §3.2's AdaIN conditioning.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from .nets import mlp
from .plates import data_plate
from .registration import pyro_module

STAGES = ("y0", "y1", "theta", "all")
MIN_SCALE = 1e-3
# Uniform priors a little wider than fig. 15a/b traversal ranges (L 1–3, B 0.1–2) so the ends have support.
LENGTH_RANGE, DAMPING_RANGE = (0.9, 3.1), (0.0, 2.1)


def unpack(record: torch.Tensor):
    """``[L, B, y0, y1, θ]`` (N, 2 + 3(T+1)) -> (L (N, 1), B (N, 1), y0, y1, θ (N, T+1) each)."""
    n = (record.shape[-1] - 2) // 3
    if record.shape[-1] != 2 + 3 * n or n < 1:
        raise ValueError(f"a pendulum record has 2 + 3(T+1) entries, got {record.shape[-1]}")
    y0, y1, theta = record[..., 2:].split(n, dim=-1)
    return record[..., :1], record[..., 1:2], y0, y1, theta


class ConditionalGaussian(nn.Module):
    """context (N, c) -> N(mlp(context), diag σ²) over (N, d), σ a learned vector (appendix C)."""

    def __init__(self, context_dim: int, dim: int, hidden: int = 128):
        super().__init__()
        self.loc = mlp([context_dim, hidden, hidden, dim])
        self.raw_scale = nn.Parameter(torch.full((dim,), -2.0))

    def forward(self, context: torch.Tensor):
        return dist.Normal(self.loc(context), F.softplus(self.raw_scale) + MIN_SCALE).to_event(1)


class FiLMResidualDecoder(nn.Module):
    """(y1, z) -> mean of θ = y1 + out(FiLM₂(FiLM₁(in(y1), z), z)): z only scales and shifts features."""

    def __init__(self, dim: int, z_dim: int = 1, hidden: int = 128):
        super().__init__()
        self.inp, self.mid, self.out = nn.Linear(dim, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, dim)
        self.film = nn.ModuleList(nn.Linear(z_dim, 2 * hidden) for _ in range(2))

    def modulate(self, h, z, k):
        d_gamma, beta = self.film[k](z).chunk(2, dim=-1)
        return F.leaky_relu((1.0 + d_gamma) * h + beta, 0.1)

    def forward(self, y1, z):
        h = self.modulate(self.inp(y1), z, 0)
        h = self.modulate(self.mid(h), z, 1)
        return y1 + self.out(h)


class PendulumModel(nn.Module):
    """Pyro model ``model(record, index=None)`` of figure 17; ``stage`` picks the sites (see module doc)."""

    def __init__(self, steps: int = 100, z_dim: int = 1, hidden: int = 128, dataset_size: int | None = None,
                 stage: str = "all"):
        super().__init__()
        dim = steps + 1
        self.dim, self.z_dim, self.dataset_size = dim, z_dim, dataset_size
        self.undamped = ConditionalGaussian(1, dim, hidden)  # L → Y0
        self.damped = ConditionalGaussian(1 + dim, dim, hidden)  # (B, Y0) → Y1
        self.residual = FiLMResidualDecoder(dim, z_dim, hidden)  # (Z, Y1) → θ
        self.raw_theta_scale = nn.Parameter(torch.full((dim,), -2.0))
        self.stage = stage

    @property
    def stage(self) -> str:
        return self._stage

    @stage.setter
    def stage(self, value: str):
        if value not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {value!r}")
        self._stage = value

    def has(self, stage: str) -> bool:
        return self._stage in (stage, "all")

    def theta_dist(self, y1, z):
        return dist.Normal(self.residual(y1, z), F.softplus(self.raw_theta_scale) + MIN_SCALE).to_event(1)

    def forward(self, record: torch.Tensor, index: torch.Tensor | None = None):
        pyro_module(self)
        length, damping, y0, y1, theta = unpack(record)
        n = record.shape[0]
        zeros, ones = record.new_zeros(n, self.z_dim), record.new_ones(n, self.z_dim)
        with data_plate(record, index, self.dataset_size):
            if self.has("y0"):
                length = pyro.sample("length", dist.Uniform(*LENGTH_RANGE).expand([n, 1]).to_event(1), obs=length)
                y0 = pyro.sample("y0", self.undamped(length), obs=y0)
            if self.has("y1"):
                damping = pyro.sample("damping", dist.Uniform(*DAMPING_RANGE).expand([n, 1]).to_event(1),
                                      obs=damping)
                y1 = pyro.sample("y1", self.damped(torch.cat([damping, y0], -1)), obs=y1)
            if self.has("theta"):
                z = pyro.sample("z", dist.Normal(zeros, ones).to_event(1))
                pyro.sample("theta", self.theta_dist(y1, z), obs=theta)

    @torch.no_grad()
    def generate(self, length: torch.Tensor, damping: torch.Tensor, z: torch.Tensor):
        """Means (y0, y1, θ) down the hierarchy for (N, 1) L, B and (N, z_dim) z."""
        y0 = self.undamped(length).mean
        y1 = self.damped(torch.cat([damping, y0], -1)).mean
        return y0, y1, self.residual(y1, z)
