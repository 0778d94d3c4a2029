"""Observation models p(x | decoder output) over a whole image (or vector) as one event."""

from __future__ import annotations

import torch
import pyro.distributions as dist


class BernoulliLikelihood:
    """Pixels are Bernoulli with the decoder's logits (binary or [0, 1]-valued data)."""

    name = "bernoulli"

    def __call__(self, out: torch.Tensor, event_dim: int):
        # validate_args=False: grey-scale data in [0, 1] is scored with the same cross-entropy.
        return dist.Bernoulli(logits=out, validate_args=False).to_event(event_dim)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out)


class GaussianLikelihood:
    """Pixels are Normal around the decoder's output with a fixed scale."""

    name = "gaussian"

    def __init__(self, scale: float = 0.1):
        if not scale > 0:
            raise ValueError(f"Gaussian likelihood scale must be > 0, got {scale!r}")
        self.scale = float(scale)

    def __call__(self, out: torch.Tensor, event_dim: int):
        return dist.Normal(out, self.scale).to_event(event_dim)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return out


def make_likelihood(name: str, scale: float = 0.1):
    if name == "bernoulli":
        return BernoulliLikelihood()
    if name == "gaussian":
        return GaussianLikelihood(scale)
    raise ValueError(f"unknown likelihood {name!r}; expected 'bernoulli' or 'gaussian'")
