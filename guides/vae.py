"""The VAE's amortized guide: q(z | x) = N(loc(x), diag(scale(x)²)) for every item in the data plate."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from ppl_models.plates import data_plate
from ppl_models.registration import pyro_module


class VAEGuide(nn.Module):
    """Pyro guide ``guide(x, index=None)`` matching :class:`ppl_models.vae.VAEModel`.

    :param encoder: ``nn.Module`` mapping ``x`` to ``(loc, scale)``, each ``(B, d)``.
    """

    def __init__(self, encoder: nn.Module, dataset_size: int | None = None, site: str = "z"):
        super().__init__()
        self.encoder = encoder
        self.dataset_size = dataset_size
        self.site = site

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None):
        pyro_module(self)
        with data_plate(x, index, self.dataset_size):
            loc, scale = self.encoder(x)
            return pyro.sample(self.site, dist.Normal(loc, scale).to_event(1))

    @torch.no_grad()
    def posterior(self, x: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{site: (loc, scale)}`` of q(z | x) for a batch."""
        return {self.site: self.encoder(x)}
