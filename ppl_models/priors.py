"""Priors over a latent code: modules that return a distribution for a batch of codes.

A prior is an ``nn.Module`` whose ``forward(batch_size)`` returns a distribution with batch shape
``(batch_size,)`` and event shape ``(latent_dim,)``, on the module's device. Models call it inside
their data plate, so anything with this interface (a flow prior, a mixture) drops in.
"""

from __future__ import annotations

import torch
from torch import nn
import pyro.distributions as dist


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I); its KL against a diagonal-Normal guide is analytic."""

    def __init__(self, latent_dim: int):
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("scale", torch.ones(latent_dim), persistent=False)

    def forward(self, batch_size: int):
        return dist.Normal(self.loc, self.scale).expand([batch_size, self.latent_dim]).to_event(1)
