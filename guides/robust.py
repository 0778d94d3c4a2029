"""Guide for :class:`ppl_models.robust.PoseAppearanceModel`: two encoders (Esser et al. 2019, Fig. 4).

q(π | x2) = N(E_π(x2)) and α = E_α(x1), a point estimate (a Delta site). x = (x1, x2) is one tensor
``(B, 2, C, H, W)``; the KL weight γ is applied to the pose site as in the model.

At 32×32 the encoders are :class:`guides.nets.Conv32Encoder`; E_α uses ``pool=True`` (averaged over
positions before the dense layer), so it is invariant to where the figure stands, as appearance
is (our choice; E_π keeps the spatial layout, which pose needs).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from ppl_models.plates import data_plate
from ppl_models.registration import pyro_module
from ppl_models.robust import pose_scale_handler


class PointEncoder(nn.Module):
    """A deterministic encoder: the location head of a Gaussian encoder (its scale is unused)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, x):
        return self.encoder(x)[0]


class PoseAppearanceGuide(nn.Module):
    """Pyro guide ``guide(x, index=None, pose_scale=None)``: π from x2 = x[:, 1], α from x1 = x[:, 0].

    :param pose_encoder: E_π, ``x -> (loc, scale)``.
    :param appearance_encoder: E_α, ``x -> α`` (e.g. :class:`PointEncoder`).
    """

    def __init__(self, pose_encoder: nn.Module, appearance_encoder: nn.Module,
                 dataset_size: int | None = None):
        super().__init__()
        self.pose_encoder = pose_encoder
        self.appearance_encoder = appearance_encoder
        self.dataset_size = dataset_size

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None, pose_scale=None):
        pyro_module(self)
        if x.ndim < 3 or x.shape[1] != 2:
            raise ValueError(f"expected pairs shaped (B, 2, ...), got {tuple(x.shape)}")
        with data_plate(x, index, self.dataset_size):
            loc, scale = self.pose_encoder(x[:, 1])
            with pose_scale_handler(pose_scale):
                pose = pyro.sample("pose", dist.Normal(loc, scale).to_event(1))
            appearance = pyro.sample("appearance", dist.Delta(self.appearance_encoder(x[:, 0]), event_dim=1))
        return pose, appearance

    def encode(self, x_pose: torch.Tensor, x_appearance: torch.Tensor):
        """(posterior mean of π from ``x_pose``, α from ``x_appearance``); differentiable."""
        return self.pose_encoder(x_pose)[0], self.appearance_encoder(x_appearance)

    @torch.no_grad()
    def posterior(self, x: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{"pose": (loc, scale), "appearance": (α, 0)}`` for pairs ``x``."""
        loc, scale = self.pose_encoder(x[:, 1])
        app = self.appearance_encoder(x[:, 0])
        return {"pose": (loc, scale), "appearance": (app, torch.zeros_like(app))}
