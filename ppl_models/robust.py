"""Pose/appearance story of Esser et al. (2019): x2 ~ p(x2 | D(π, α)), π ~ r(π), α a point estimate.

The data are pairs (x1, x2) of one object in two poses, passed as one tensor ``x`` shaped
``(B, 2, C, H, W)``. Pose π is a latent site ``"pose"`` with prior r(π) = N(0, I) (eq. 9); its KL
is weighted by γ (eq. 21) with ``poutine.scale`` around the site, in model and guide alike, the way
``examples/dmm.py`` anneals its KL — γ is a tensor that changes every step. Appearance α is
deterministic (the paper's E_α(x1)): a site ``"appearance"`` with a flat improper prior here and a
Delta in the guide, so it adds exactly nothing to the ELBO (log q − log p = 0 − 0).

References
[1] Esser, Haux, Ommer. Unsupervised Robust Disentangling of Latent Characteristics for Image
    Synthesis. ICCV 2019, §3.1 eqs. (3)-(4), §3.5 eqs. (19)-(21). arXiv:1910.10223
"""

from __future__ import annotations

import contextlib

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn

from .likelihoods import GaussianLikelihood
from .plates import data_plate
from .priors import StandardNormalPrior
from .registration import pyro_module

#: σ of the Gaussian likelihood. The authors' code minimises the plain sum of squared errors
#: (σ² = 1/2) on 256×256×3 images; on our 32×32×3 / 64×64×3 sprites that makes the KL ~64× / 16×
#: dearer relative to the reconstruction. σ² = 0.5·(3·32²)/(3·256²) ≈ 0.1² keeps the paper's balance
#: of L_rec against γ·KL per image at 32×32, so 0.1 (the foundation's default) is used.
OBS_SCALE = 0.1

#: Pyro's scale handler refuses 0 under validation; γ = 0 (eq. 18 clamps at 0) is applied as this.
MIN_POSE_SCALE = 1e-12


def pose_scale_handler(pose_scale):
    """``poutine.scale(γ)`` for the pose site (γ floored at ``MIN_POSE_SCALE``); no-op for ``None``."""
    if pose_scale is None:
        return contextlib.nullcontext()
    if torch.is_tensor(pose_scale):
        return poutine.scale(scale=pose_scale.clamp(min=MIN_POSE_SCALE))
    return poutine.scale(scale=max(float(pose_scale), MIN_POSE_SCALE))


class PoseAppearanceModel(nn.Module):
    """Pyro model ``model(x, index=None, pose_scale=None)`` over pairs ``x = (x1, x2)``.

    :param decoder: D, mapping ``cat(π, α)`` ``(B, d_π + d_α)`` to decoder outputs ``(B, C, H, W)``.
    :param likelihood: p(x2 | D(π, α)); default Gaussian with σ = 0.1 (see ``OBS_SCALE``).
    """

    def __init__(self, decoder: nn.Module, pose_dim: int, appearance_dim: int,
                 dataset_size: int | None = None, likelihood=None, prior: nn.Module | None = None):
        super().__init__()
        if pose_dim < 1 or appearance_dim < 1:
            raise ValueError(f"pose_dim and appearance_dim must be >= 1, got {pose_dim}, {appearance_dim}")
        self.decoder = decoder
        self.pose_dim, self.appearance_dim = pose_dim, appearance_dim
        self.dataset_size = dataset_size
        self.likelihood = likelihood or GaussianLikelihood(OBS_SCALE)
        self.prior = prior if prior is not None else StandardNormalPrior(pose_dim)

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None, pose_scale=None):
        pyro_module(self)
        if x.ndim < 3 or x.shape[1] != 2:
            raise ValueError(f"expected pairs shaped (B, 2, ...), got {tuple(x.shape)}")
        x2 = x[:, 1]
        batch = x.shape[0]
        with data_plate(x, index, self.dataset_size):
            with pose_scale_handler(pose_scale):
                pose = pyro.sample("pose", self.prior(batch))
            flat = dist.ImproperUniform(dist.constraints.real, (batch,), (self.appearance_dim,))
            appearance = pyro.sample("appearance", flat)
            out = self.decoder(torch.cat([pose, appearance], -1))
            pyro.sample("x", self.likelihood(out, x2.ndim - 1), obs=x2)
        return pose, appearance

    def decode_mean(self, pose: torch.Tensor, appearance: torch.Tensor) -> torch.Tensor:
        """Mean of p(x | π, α) (differentiable)."""
        return self.likelihood.mean(self.decoder(torch.cat([pose, appearance], -1)))

    @torch.no_grad()
    def decode(self, pose: torch.Tensor, appearance: torch.Tensor) -> torch.Tensor:
        return self.decode_mean(pose, appearance)
