"""Low-posterior sampling (LP-Gen) and the aggregate posterior's density: generic over any pair.

dpVAE's LP-Gen (Bhalodia, Lee & Elhabian, ACCV 2020, §4.1) draws many codes from the prior, scores
each under the aggregate posterior q(z) = (1/N) Σₙ q(z | xₙ) of N training items, and keeps the
lowest-scoring fraction: the "pockets" a regularised VAE's decoder never saw in training. Nothing
here is particular to that paper's models: any model with ``sample_prior(n)`` and any guide with
``posterior(x)`` works, so :func:`inference.runs.sample_run` offers it for every run, and
:mod:`inference.papers.dpvae` uses it for the paper's tables.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ppl_data import Data

from .posterior import encode_batched


@torch.no_grad()
def aggregate_log_density(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor,
                          chunk: int = 1024) -> torch.Tensor:
    """log q(z) for each row of ``z`` (M, L) under the mixture (1/N) Σₙ N(loc_n, diag(scale_n²)).

    The squared Mahalanobis distances come from three matrix products, so memory is O(chunk · N)
    rather than O(chunk · N · L). Computed in float64.
    """
    if z.ndim != 2 or loc.shape != scale.shape or loc.ndim != 2 or loc.shape[1] != z.shape[1]:
        raise ValueError(f"expected z (M, L) and loc, scale (N, L); got {tuple(z.shape)}, "
                         f"{tuple(loc.shape)}, {tuple(scale.shape)}")
    z, loc, scale = z.double(), loc.double(), scale.double()
    precision = scale.pow(-2)                                       # (N, L)
    const = (-torch.log(scale).sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)
             - 0.5 * (loc.pow(2) * precision).sum(1))               # (N,)
    weighted_loc = loc * precision                                  # (N, L)
    out = []
    for zc in z.split(chunk):  # chunks of samples, each fully vectorised over the N components
        quad = zc.pow(2) @ precision.T - 2.0 * zc @ weighted_loc.T   # (m, N)
        out.append(torch.logsumexp(const - 0.5 * quad, dim=1) - math.log(loc.shape[0]))
    return torch.cat(out)


@torch.no_grad()
def encode_posterior(guide, data: Data, num_items: int | None = None, batch_size: int = 512,
                     site: str | None = None, seed: int = 0, device=None):
    """``(loc, scale)`` of q(z | x) for ``num_items`` items of ``data`` (all when None), seeded choice."""
    n = len(data)
    if num_items is None or num_items >= n:
        index = torch.arange(n)
    else:
        index = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:num_items]

    def chunk(part):
        post = guide.posterior(data.batch(part, device=device)[0])
        return tuple(post[site] if site is not None else next(iter(post.values())))
    return encode_batched(chunk, index, batch_size)


class LowPosteriorSamples(NamedTuple):
    z: torch.Tensor             # (k, L) the selected codes, lowest density first
    log_q: torch.Tensor         # (k,) their aggregate-posterior log density
    z_rest: torch.Tensor        # the codes not selected
    log_q_rest: torch.Tensor


@torch.no_grad()
def low_posterior_samples(model, guide, data: Data, num_samples: int = 5000, fraction: float = 0.02,
                          num_data: int = 10_000, seed: int = 0, device=None) -> LowPosteriorSamples:
    """LP-Gen: prior codes that the aggregate posterior of ``num_data`` training items finds least likely.

    ``model.sample_prior`` draws the codes (for the decoupled prior: z₀ ~ N(0, I) mapped through
    g⁻¹), inside ``fork_rng`` so no training RNG stream moves.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    if num_samples < 2:
        raise ValueError(f"num_samples must be >= 2, got {num_samples}")
    loc, scale = encode_posterior(guide, data, num_data, seed=seed, device=device)
    dev = loc.device
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        z = model.sample_prior(num_samples)
    log_q = aggregate_log_density(z, loc, scale).to(z.dtype)
    order = torch.argsort(log_q)
    k = max(1, int(round(fraction * num_samples)))
    low, rest = order[:k], order[k:]
    return LowPosteriorSamples(z[low], log_q[low], z[rest], log_q[rest])


__all__ = ["aggregate_log_density", "encode_posterior", "LowPosteriorSamples", "low_posterior_samples"]
