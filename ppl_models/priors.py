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


class DecoupledFlowPrior(nn.Module):
    """The decoupled prior of dpVAE: p(z) = N(g(z); 0, I) |∂g/∂z|, g a stack of affine couplings.

    ``forward(batch)`` returns ``TransformedDistribution(N(0, I), g⁻¹)``: sampling draws
    z₀ ~ N(0, I) and maps it to z = g⁻¹(z₀); ``log_prob(z)`` is the change of variables of
    supplement eq. (1). No KL against a Normal guide is registered, so the ELBOs here estimate it
    by Monte Carlo (eq. 18: closed-form entropy of q, sampled log p(z)).

    :param latent_dim: L.
    :param num_layers: K coupling blocks (6 in the authors' code; the supplement's fig. 2 lost it).
    :param hidden: width of the two hidden tanh layers of s and t (64 in the authors' code).

    References: Bhalodia et al., dpVAEs, ACCV 2020, supplement §1 and §3.
    """

    def __init__(self, latent_dim: int, num_layers: int = 6, hidden: int = 64):
        super().__init__()
        from .flows import MaskedAffineCoupling, alternating_masks

        if latent_dim < 2:
            raise ValueError(f"the decoupled prior needs latent_dim >= 2, got {latent_dim}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.latent_dim = latent_dim
        # g = g⁽¹⁾ ∘ … ∘ g⁽ᴷ⁾ (eq. 3): g⁽ᴷ⁾ is applied to z first.
        self.blocks = nn.ModuleList(MaskedAffineCoupling(m, hidden)
                                    for m in alternating_masks(latent_dim, num_layers))
        self.register_buffer("loc", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("scale", torch.ones(latent_dim), persistent=False)

    def g(self):
        """The bijection z -> z₀ as one transform."""
        return dist.transforms.ComposeTransform(list(reversed(self.blocks)))

    def to_base(self, z: torch.Tensor) -> torch.Tensor:
        """z₀ = g(z)."""
        return self.g()(z)

    def from_base(self, z0: torch.Tensor) -> torch.Tensor:
        """z = g⁻¹(z₀)."""
        return self.g().inv(z0)

    def forward(self, batch_size: int):
        base = dist.Normal(self.loc, self.scale).expand([batch_size, self.latent_dim]).to_event(1)
        return dist.TransformedDistribution(base, [self.g().inv])


def make_prior(kind: str, latent_dim: int, flow_layers: int = 6, flow_hidden: int = 64) -> nn.Module:
    """``"normal"`` -> :class:`StandardNormalPrior`; ``"flow"`` -> :class:`DecoupledFlowPrior`."""
    if kind == "normal":
        return StandardNormalPrior(latent_dim)
    if kind == "flow":
        return DecoupledFlowPrior(latent_dim, flow_layers, flow_hidden)
    raise ValueError(f"unknown prior {kind!r}; expected 'normal' or 'flow'")
