"""Affine coupling layers for the decoupled prior of dpVAE (RealNVP with binary masks).

References
[1] Bhalodia, Lee, Elhabian. dpVAEs: Fixing Sample Generation for Regularized VAEs. ACCV 2020,
    supplement §1, eqs. (2), (3), (14)-(16).
[2] Dinh, Sohl-Dickstein, Bengio. Density estimation using Real NVP. ICLR 2017.
"""

from __future__ import annotations

import torch
from pyro.distributions.torch_transform import TransformModule
from torch import nn
from torch.distributions import constraints

from .nets import mlp


class MaskedAffineCoupling(TransformModule):
    """One block g⁽ᵏ⁾ of the g-bijection z -> z₀ (dpVAE supplement eq. 2):

        g(z) = b ⊙ z + (1 − b) ⊙ [z ⊙ exp(s(b ⊙ z)) + t(b ⊙ z)]

    with ``s`` and ``t`` MLPs (two hidden layers of ``hidden`` units, tanh — the authors' code).
    Its log-Jacobian is Σ_l (1 − b_l) s_l(b ⊙ z): the coordinates that are *transformed*
    contribute. (Eq. 16 of the supplement writes b_k there; the brute-force Jacobian test in
    ``tests/test_flow_prior.py`` confirms (1 − b_k).) The last layers start at zero, so a fresh
    block is the identity.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, mask: torch.Tensor, hidden: int = 64, num_hidden: int = 2):
        super().__init__(cache_size=1)
        mask = torch.as_tensor(mask, dtype=torch.float32)
        if mask.ndim != 1 or not ((mask == 0) | (mask == 1)).all():
            raise ValueError(f"mask must be a 1-D 0/1 vector, got {mask}")
        self.register_buffer("mask", mask)
        dim = mask.numel()
        sizes = [dim] + [hidden] * num_hidden + [dim]
        self.s = mlp(sizes, activation=nn.Tanh)
        self.t = mlp(sizes, activation=nn.Tanh)
        for net in (self.s, self.t):
            nn.init.zeros_(net[-1].weight)
            nn.init.zeros_(net[-1].bias)

    def _scale_shift(self, kept):
        free = 1.0 - self.mask
        return self.s(kept) * free, self.t(kept) * free

    def _call(self, z):
        kept = z * self.mask
        s, t = self._scale_shift(kept)
        return kept + (1.0 - self.mask) * (z * torch.exp(s) + t)

    def _inverse(self, z0):
        kept = z0 * self.mask  # b ⊙ z₀ = b ⊙ z: the kept half passes through unchanged
        s, t = self._scale_shift(kept)
        return kept + (1.0 - self.mask) * ((z0 - t) * torch.exp(-s))

    def log_abs_det_jacobian(self, z, z0):
        s, _ = self._scale_shift(z * self.mask)
        return s.sum(-1)


def alternating_masks(dim: int, num_layers: int) -> list[torch.Tensor]:
    """Checkerboard masks b_k, flipped from one layer to the next (supplement fig. 2)."""
    even = (torch.arange(dim) % 2 == 0).float()
    if dim == 1:
        raise ValueError("a coupling flow needs latent_dim >= 2")
    return [even if k % 2 == 0 else 1.0 - even for k in range(num_layers)]
