"""Guide for the pendulum MS-VAE (appendix C): q(z | θ − y1), the residual encoder of the third stage.

L and B are observed and y0, y1 are observed paired data, so z is the only latent; as in MS-VAE
§3.2 the encoder reads the residual between the observation and the stage below it.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from ppl_models.pendulum import PendulumModel, unpack
from ppl_models.plates import data_plate

from .nets import MLPEncoder
from ppl_models.registration import pyro_module


class PendulumGuide(nn.Module):
    """Pyro guide ``guide(record, index=None)`` for :class:`ppl_models.pendulum.PendulumModel`."""

    def __init__(self, model: PendulumModel, hidden=(128, 64)):
        super().__init__()
        self.encoder = MLPEncoder((model.dim,), model.z_dim, hidden)
        self.__dict__["model"] = model  # reads its stage; keeps its parameters out of ours

    def forward(self, record: torch.Tensor, index: torch.Tensor | None = None):
        pyro_module(self)
        if not self.model.has("theta"):
            return None
        _, _, _, y1, theta = unpack(record)
        with data_plate(record, index, self.model.dataset_size):
            loc, scale = self.encoder(theta - y1)
            return pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    @torch.no_grad()
    def posterior(self, record: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        _, _, _, y1, theta = unpack(record)
        return {"z": self.encoder(theta - y1)}
