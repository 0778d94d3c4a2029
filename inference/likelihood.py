"""Importance-sampled log-likelihood log p(x) with the guide as proposal (the IWAE bound).

log p̂(x) = log (1/S) Σ_s p(x, z_s) / q(z_s | x),  z_s ~ q(· | x)   (Burda et al. 2016, eq. 8).
It is a lower bound on log p(x) in expectation that tightens as S grows and equals log p(x) for
any S when q is the exact posterior. The S samples are drawn at once by repeating the batch S
times (so the model and guide see a data plate S·B wide), in chunks of ``particle_batch``.

References
[1] Burda, Grosse, Salakhutdinov. Importance Weighted Autoencoders. ICLR 2016. arXiv:1509.00519
"""

from __future__ import annotations

import math

import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from .handlers import local_params
from .posterior import encode_batched, items_of


def _per_item_log_prob(trace, sites, width: int) -> torch.Tensor:
    """Σ over ``sites`` of log-densities, one value per item of a plate ``width`` wide (unscaled)."""
    total = torch.zeros(width)
    for name in sites:
        site = trace.nodes[name]
        lp = site["fn"].log_prob(site["value"])
        if lp.shape != (width,):
            raise ValueError(f"site {name!r} has log-density shaped {tuple(lp.shape)}; "
                             f"log_likelihood needs one value per item ({width},): put every "
                             "sample site inside the data plate and declare event dims with to_event")
        total = total.to(lp.device) + lp
    return total


@torch.no_grad()
def log_weights(model, guide, x: torch.Tensor, num_samples: int) -> torch.Tensor:
    """``(S, B)`` importance log-weights log p(x, z_s) − log q(z_s | x), batch repeated S times."""
    b = x.shape[0]
    xs = x.repeat(num_samples, *([1] * (x.ndim - 1)))
    guide_trace = poutine.trace(local_params(guide)).get_trace(xs)
    model_trace = poutine.trace(poutine.replay(local_params(model), trace=guide_trace)).get_trace(xs)
    latent = [n for n, s in guide_trace.nodes.items()
              if s["type"] == "sample" and not s["is_observed"] and not site_is_subsample(s)]
    if not latent:
        raise ValueError("the guide has no latent sample sites; nothing to importance-sample")
    model_sites = [n for n, s in model_trace.nodes.items()
                   if s["type"] == "sample" and not site_is_subsample(s)]
    width = num_samples * b
    logw = _per_item_log_prob(model_trace, model_sites, width) \
        - _per_item_log_prob(guide_trace, latent, width)
    return logw.view(num_samples, b)


def log_likelihood(model, guide, data, num_samples: int = 1000, batch_size: int = 64,
                   particle_batch: int | None = None, device=None) -> torch.Tensor:
    """Per-item estimates ``(N,)`` of log p(x) (nats); ``data`` a tensor batch or a ``Data`` set.

    ``particle_batch`` bounds memory: at most ``batch_size · particle_batch`` model evaluations at
    once (default: ``max(1, 4096 // batch_size)`` samples per chunk).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if device is None:
        params = list(guide.parameters()) if hasattr(guide, "parameters") else []
        device = params[0].device if params else torch.device("cpu")
    chunk = particle_batch or max(1, 4096 // batch_size)

    def batch_log_likelihood(index):
        x = items_of(data, index, device)
        logw = encode_batched(lambda draws: log_weights(model, guide, x, len(draws)),
                              torch.arange(num_samples), chunk)  # (S, B), S in chunks
        return (torch.logsumexp(logw, 0) - math.log(num_samples)).cpu()

    return encode_batched(batch_log_likelihood, torch.arange(len(data)), batch_size)
