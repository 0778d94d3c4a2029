"""The VAE's generative story: z ~ p(z), x ~ p(x | decoder(z)) for every item in the data plate.

References
[1] Kingma, D. P. and Welling, M. Auto-Encoding Variational Bayes. ICLR 2014. arXiv:1312.6114
"""

from __future__ import annotations

import pyro
import torch
from torch import nn

from .likelihoods import BernoulliLikelihood
from .plates import data_plate
from .priors import StandardNormalPrior
from .registration import pyro_module


class VAEModel(nn.Module):
    """Pyro model ``model(x, index=None)`` with latent site ``site`` (default ``"z"``) and observed ``"x"``.

    :param decoder: ``nn.Module`` mapping codes ``(B, d)`` to decoder outputs ``(B, *data_shape)``.
    :param latent_dim: d.
    :param dataset_size: N, carried by the data plate when the batch comes with its indices.
    :param likelihood: maps decoder outputs to the observation distribution (Bernoulli by default).
    :param prior: module returning p(z) for a batch (standard Normal by default).
    """

    def __init__(self, decoder: nn.Module, latent_dim: int, dataset_size: int | None = None,
                 likelihood=None, prior: nn.Module | None = None, site: str = "z"):
        super().__init__()
        self.decoder = decoder
        self.latent_dim = latent_dim
        self.dataset_size = dataset_size
        self.likelihood = likelihood or BernoulliLikelihood()
        self.prior = prior if prior is not None else StandardNormalPrior(latent_dim)
        self.site = site

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None):
        pyro_module(self)
        event_dim = x.ndim - 1
        with data_plate(x, index, self.dataset_size):
            z = pyro.sample(self.site, self.prior(x.shape[0]))
            out = self.decoder(z)
            pyro.sample("x", self.likelihood(out, event_dim), obs=x)
        return z

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Mean of p(x | z): images in [0, 1] for the Bernoulli likelihood."""
        return self.likelihood.mean(self.decoder(z))

    @torch.no_grad()
    def sample_prior(self, n: int) -> torch.Tensor:
        return self.prior(n).sample()
