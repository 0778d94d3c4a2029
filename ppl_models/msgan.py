"""MS-GAN (MS-VAE appendix E): stage two as a conditional GAN whose generator takes Y and Z through AdaIN.

Nazari et al. (``papers/msvae-multi-stage-modelling.txt``), appendix E::

    c ~ p(c)                 the stage-one prior (frozen β-TCVAE, as for MS-VAE)
    y = E[p_θ(y | c)]        site "y": stage one's decoder mean
    z ~ N(0, I)              site "z"
    x = G_Θ(y, z)            site "x" (deterministic): Y is G's input, Z enters only through the
                             AdaIN layers (§E.3: "We replace all instances of BatchNorm in the
                             generator with Adaptive InstanceNorm")

G is MS-VAE's :class:`~ppl_models.msvae.ConditionalDecoder` (its output through a sigmoid is the
image). The discriminator D_ω(x, y) sees an image with its Y (a conditional GAN, Mirza & Osindero
2014; Y is an image as in Isola et al. 2017) and returns a logit that estimates
log p(x | y) / p_Θ(x | y) (eq. 3 and §E.2). Training lives in :mod:`inference.papers.msgan`, the
posterior q(z | x − y) in :mod:`guides.msgan`.
"""

from __future__ import annotations

import pyro
import torch
from torch import nn

from .likelihoods import BernoulliLikelihood
from .msvae import ConditionalDecoder
from .priors import StandardNormalPrior
from .registration import pyro_module


class PairDiscriminator(nn.Module):
    """D_ω(x, y) -> logit (N,): DCGAN-style strided convolutions (Radford et al. 2015) on [x, y] channels."""

    def __init__(self, data_shape, hidden: int = 32):
        super().__init__()
        channels, height, width = data_shape
        if height % 4 or width % 4:
            raise ValueError(f"image sides must be multiples of 4, got data shape {tuple(data_shape)}")
        self.net = nn.Sequential(
            nn.Conv2d(2 * channels, hidden, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(hidden, 2 * hidden, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(2 * hidden * (height // 4) * (width // 4), 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, y], 1))[:, 0]


class MSGANModel(nn.Module):
    """Pyro model ``model(n)`` of appendix E, with MS-VAE's interface for the conditioning measures.

    :param stage_one: the trained, frozen first stage (``prior``, ``decoder``, ``likelihood``).
    :param generator: G_Θ, a Y-conditioned :class:`ConditionalDecoder` with ``inject="adain"``.
    """

    first_site, second_site, condition, end_to_end = "c", "z", "y", False

    def __init__(self, stage_one: nn.Module, generator: ConditionalDecoder, second_dim: int):
        super().__init__()
        if generator.condition != "y" or generator.inject != "adain":
            raise ValueError("MS-GAN's generator reads Y and takes Z through AdaIN (appendix E.3)")
        self.stage_one, self.generator, self.second_dim = stage_one, generator, second_dim
        self.prior = StandardNormalPrior(second_dim)
        self.likelihood = BernoulliLikelihood()  # only its mean (sigmoid) is used: G's output -> image

    def first_stage_mean(self, code: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.stage_one.likelihood.mean(self.stage_one.decoder(code))

    def logits(self, code, y, second):
        return self.generator(y, second)

    def image(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """G_Θ(y, z) as an image in [0, 1]."""
        return torch.sigmoid(self.generator(y, z))

    def forward(self, n: int):
        pyro_module(self)
        with pyro.plate("data", n):
            code = pyro.sample("c", self.stage_one.prior(n))
            y = pyro.deterministic("y", self.first_stage_mean(code), event_dim=3)
            z = pyro.sample("z", self.prior(n))
            return pyro.deterministic("x", self.image(y, z), event_dim=3)

    @torch.no_grad()
    def generate(self, code: torch.Tensor, second: torch.Tensor):
        y = self.first_stage_mean(code)
        return y, self.image(y, second)

    @torch.no_grad()
    def sample_prior(self, n: int):
        return self.stage_one.prior(n).sample(), self.prior(n).sample()
