"""VITAE's generative story: perspective z_P and appearance z_A, the image is the appearance warped by T_θ(z_P).

For every item in the data plate (supplement §1, p(x) = ∫∫ p(x | z_A, z_P) p(z_A) p(z_P)):

    z_persp ~ N(0, I),  z_app ~ N(0, I),
    θ = f_P(z_persp)                          (perspective decoder -> transformer parameters)
    μ_canonical = mean of g_A(z_app)          (appearance decoder -> image in a canonical frame)
    x ~ p(x | T_θ[μ_canonical])               (Bernoulli for [0, 1] images, supplement §2)

The transformer sits on the decoder side: the *mean* image is warped (bilinear, zeros outside the
frame) and, for the Bernoulli likelihood, turned back into logits.

Code convention: ``decode(z)`` and ``sample_prior(n)`` use the concatenation z = [z_persp, z_app]
(perspective first), like a single-latent model; ``decode_parts(z_persp, z_app)`` takes them apart.

References
[1] Detlefsen, Skafte & Hauberg. Explicit Disentanglement of Appearance and Perspective in
    Generative Models. NeurIPS 2019. arXiv:1906.11881
"""

from __future__ import annotations

import pyro
import torch
from torch import nn
from torch.nn import functional as F

from .likelihoods import BernoulliLikelihood
from .nets import MLPDecoder
from .plates import data_plate
from .priors import StandardNormalPrior
from .spatial import SpatialTransformer
from .registration import pyro_module

PERSP, APP = "z_persp", "z_app"
LOGIT_EPS = 1e-5  # warped probabilities are clamped to [eps, 1 − eps] before the logit


def canonical_shape(data_shape, fraction: float):
    """``(C, h, w)`` of a canonical frame covering ``fraction`` of each side, centred (same parity)."""
    c, h, w = (int(s) for s in data_shape)
    if not 0 < fraction <= 1:
        raise ValueError(f"canonical_fraction must be in (0, 1], got {fraction!r}")
    pad_h, pad_w = round((1 - fraction) * h / 2), round((1 - fraction) * w / 2)
    return c, max(h - 2 * pad_h, 1), max(w - 2 * pad_w, 1)


def perspective_decoder(persp_dim: int, theta_dim: int, hidden=(24, 24), start=0.0) -> MLPDecoder:
    """z_persp -> θ. ``start``: the θ the net outputs at initialisation (its last layer's weight zero,
    its bias ``start``; the transformer's ``identity(1)[0]`` starts it at the identity), or ``None``:
    PyTorch's default initialisation of the last layer, as the VITAE supplement's eqs. (1)-(3) read
    literally (θ ≈ small random values)."""
    net = MLPDecoder(persp_dim, (theta_dim,), hidden)
    if start is not None:
        last = net.net[-1]
        nn.init.zeros_(last.weight)
        with torch.no_grad():
            last.bias.copy_(torch.as_tensor(start, dtype=last.bias.dtype).expand_as(last.bias))
    return net


class VITAEModel(nn.Module):
    """Pyro model ``model(x, index=None)`` with latent sites ``"z_persp"``, ``"z_app"`` and observed ``"x"``.

    :param app_decoder: z_app ``(B, d_A)`` -> decoder output in the canonical frame ``(B, C, H, W)``
        (logits for the Bernoulli likelihood).
    :param persp_decoder: z_persp ``(B, d_P)`` -> θ ``(B, transformer.dim)``.
    :param transformer: a :class:`~ppl_models.spatial.SpatialTransformer`.
    :param canvas: ``(H, W)`` of the data when the appearance decoder draws a smaller canonical frame
        ``(C, h, w)``: its mean image is placed at the centre of an H×W canvas of zeros (background)
        before the warp, so position can only come from T_θ (ours, for small sprites; ``None``: the
        decoder draws the whole frame, as in the paper).
    """

    def __init__(self, app_decoder: nn.Module, persp_decoder: nn.Module, transformer: SpatialTransformer,
                 persp_dim: int, app_dim: int, dataset_size: int | None = None, likelihood=None,
                 persp_prior: nn.Module | None = None, app_prior: nn.Module | None = None, canvas=None):
        super().__init__()
        self.app_decoder = app_decoder
        self.persp_decoder = persp_decoder
        self.transformer = transformer
        self.persp_dim, self.app_dim = int(persp_dim), int(app_dim)
        self.dataset_size = dataset_size
        self.likelihood = likelihood or BernoulliLikelihood()
        self.persp_prior = persp_prior if persp_prior is not None else StandardNormalPrior(persp_dim)
        self.app_prior = app_prior if app_prior is not None else StandardNormalPrior(app_dim)
        self.canvas = None if canvas is None else (int(canvas[0]), int(canvas[1]))

    # -- the pieces of the story --------------------------------------------------------------
    def theta(self, z_persp: torch.Tensor) -> torch.Tensor:
        return self.persp_decoder(z_persp)

    def canonical(self, z_app: torch.Tensor) -> torch.Tensor:
        """Mean image of the appearance in the canonical frame (zero-padded to ``canvas`` if set)."""
        mean = self.likelihood.mean(self.app_decoder(z_app))
        if self.canvas is None or tuple(mean.shape[-2:]) == self.canvas:
            return mean
        dh, dw = self.canvas[0] - mean.shape[-2], self.canvas[1] - mean.shape[-1]
        return F.pad(mean, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))

    def output(self, z_persp: torch.Tensor, z_app: torch.Tensor) -> torch.Tensor:
        """Parameter of p(x | z_A, z_P): logits (Bernoulli) or mean (Gaussian) of T_θ[canonical]."""
        warped = self.transformer.warp(self.canonical(z_app), self.theta(z_persp))
        if isinstance(self.likelihood, BernoulliLikelihood):
            return torch.logit(warped, eps=LOGIT_EPS)
        return warped

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None):
        pyro_module(self)
        event_dim = x.ndim - 1
        with data_plate(x, index, self.dataset_size):
            z_persp = pyro.sample(PERSP, self.persp_prior(x.shape[0]))
            z_app = pyro.sample(APP, self.app_prior(x.shape[0]))
            pyro.sample("x", self.likelihood(self.output(z_persp, z_app), event_dim), obs=x)
        return z_persp, z_app

    # -- conventions shared with VAEModel -----------------------------------------------------
    def split(self, z: torch.Tensor):
        """[z_persp, z_app] -> (z_persp, z_app)."""
        return z[..., : self.persp_dim], z[..., self.persp_dim:]

    @torch.no_grad()
    def decode_parts(self, z_persp: torch.Tensor, z_app: torch.Tensor) -> torch.Tensor:
        """Mean of p(x | z_A, z_P): the canonical appearance warped by T_θ(z_P)."""
        return self.transformer.warp(self.canonical(z_app), self.theta(z_persp))

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Mean of p(x | z) for the concatenation z = [z_persp, z_app]."""
        return self.decode_parts(*self.split(z))

    @torch.no_grad()
    def sample_prior(self, n: int) -> torch.Tensor:
        """n draws of [z_persp, z_app] from the priors."""
        return torch.cat([self.persp_prior(n).sample(), self.app_prior(n).sample()], dim=-1)
