"""VITAE's amortized guides: U-VITAE q(z_P | x) q(z_A | x) and C-VITAE q(z_P | x) q(z_A | x, z_P).

C-VITAE's appearance encoder reads the input warped back into the canonical frame by the inverse
of the transform decoded from the *sampled* z_persp, x̃ = warp(x, T_θ⁻¹), θ = f_P(z_persp); the
perspective decoder and transformer are the model's own modules (shared, as in the paper's
Fig. 3), so both encoders and the decoder learn one θ. Both guides are ordinary Pyro guides, and
``TermsELBO`` gives the supplement's §1 bound: for C-VITAE the z_app KL is taken at the sampled
z_persp (term 2, one-sample outer expectation).

Encoders (:class:`VITAEEncoder`) follow the supplement's Table 1: the softplus head outputs the
posterior *variance* σ² ("σ²_encoder ... softplus"), so the Normal's scale is √σ². (The shared
:class:`~guides.nets.MLPEncoder` of the other models reads its softplus as a standard deviation.)

References
[1] Detlefsen, Skafte & Hauberg. Explicit Disentanglement of Appearance and Perspective in
    Generative Models. NeurIPS 2019, supplement §1. arXiv:1906.11881
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from ppl_models.plates import data_plate
from ppl_models.spatial import SpatialTransformer
from ppl_models.vitae import APP, PERSP
from ppl_models.registration import pyro_module

from .nets import MIN_SCALE, GaussianHead, MLPEncoder


class VarianceHead(GaussianHead):
    """Features -> (loc, scale) with σ² = softplus(.) and scale = √(σ² + MIN_SCALE²) (Table 1).

    The MIN_SCALE² floor keeps the scale ≥ MIN_SCALE (and √'s gradient finite) when softplus
    underflows; otherwise scale = √softplus(.) to within 1e-8 in the variance.
    """

    def forward(self, h):
        loc, raw = self.linear(h).chunk(2, dim=-1)
        return loc, torch.sqrt(F.softplus(raw) + MIN_SCALE ** 2)


class VITAEEncoder(MLPEncoder):
    """Supplement Table 1 MLP encoder x -> (μ, scale): LeakyReLU 0.1 layers, a linear μ head and a
    softplus σ² head (:class:`VarianceHead`)."""

    def __init__(self, data_shape, latent_dim: int, hidden=(128, 64)):
        super().__init__(data_shape, latent_dim, hidden)
        self.head = VarianceHead(hidden[-1], latent_dim)


class UVITAEGuide(nn.Module):
    """q(z_persp | x) q(z_app | x): two independent encoders ``x -> (loc, scale)``."""

    def __init__(self, persp_encoder: nn.Module, app_encoder: nn.Module, dataset_size: int | None = None):
        super().__init__()
        self.persp_encoder = persp_encoder
        self.app_encoder = app_encoder
        self.dataset_size = dataset_size

    def app_params(self, x: torch.Tensor, z_persp: torch.Tensor):
        return self.app_encoder(x)

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None):
        pyro_module(self)
        with data_plate(x, index, self.dataset_size):
            loc, scale = self.persp_encoder(x)
            z_persp = pyro.sample(PERSP, dist.Normal(loc, scale).to_event(1))
            loc, scale = self.app_params(x, z_persp)
            z_app = pyro.sample(APP, dist.Normal(loc, scale).to_event(1))
        return z_persp, z_app

    @torch.no_grad()
    def posterior(self, x: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{"z_persp": (loc, scale), "z_app": (loc, scale)}``; z_app's given z_persp at its mean."""
        persp = self.persp_encoder(x)
        return {PERSP: persp, APP: self.app_params(x, persp[0])}


class CVITAEGuide(UVITAEGuide):
    """q(z_persp | x) q(z_app | warp(x, T⁻¹_{f_P(z_persp)})).

    :param persp_decoder: the model's z_persp -> θ network (shared module).
    :param transformer: the model's transformer (shared module).
    """

    def __init__(self, persp_encoder: nn.Module, app_encoder: nn.Module, persp_decoder: nn.Module,
                 transformer: SpatialTransformer, dataset_size: int | None = None):
        super().__init__(persp_encoder, app_encoder, dataset_size)
        self.persp_decoder = persp_decoder
        self.transformer = transformer

    def aligned(self, x: torch.Tensor, z_persp: torch.Tensor) -> torch.Tensor:
        """x warped back into the canonical frame by T_θ⁻¹, θ = f_P(z_persp)."""
        return self.transformer.warp(x, self.persp_decoder(z_persp), inverse=True)

    def app_params(self, x, z_persp):
        return self.app_encoder(self.aligned(x, z_persp))
