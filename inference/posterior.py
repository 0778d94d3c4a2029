"""The amortized posterior, as numbers and as an ArviZ ``InferenceData``.

``encode`` gives the guide's posterior means and scales for a dataset; ``to_inferencedata`` draws
from q(z | x) (the ``posterior`` group, dims ``(chain, draw, obs, <site>_dim)``) and from the
model's prior (``prior`` group, the model run without the guide), next to the ``observed_data``,
so ``az.summary``, ``az.plot_posterior`` and netCDF export work on any model/guide pair whose
latent sites sit in a data plate sized by the batch (``model(x)`` / ``guide(x)``).
"""

from __future__ import annotations

import numpy as np
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from ppl_data import Data

from .handlers import local_params


def items_of(data, index: torch.Tensor, device) -> torch.Tensor:
    """The items ``index`` of a tensor or a ``ppl_data`` dataset, on ``device``."""
    if isinstance(data, Data):
        return data.batch(index, device=device)[0]
    return data[index].to(device)


def _device(module):
    params = list(module.parameters()) if hasattr(module, "parameters") else []
    return params[0].device if params else torch.device("cpu")


def _concat(parts: list):
    """Concatenate a list of like outputs along the first axis: tensors, arrays, tuples, dicts."""
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(parts)
    if isinstance(first, np.ndarray):
        return np.concatenate(parts)
    if isinstance(first, (tuple, list)):
        return type(first)(_concat(list(p)) for p in zip(*parts))
    if isinstance(first, dict):
        return {k: _concat([p[k] for p in parts]) for k in first}
    raise TypeError(f"cannot concatenate outputs of type {type(first).__name__}")


@torch.no_grad()
def encode_batched(fn, x, batch_size: int = 256):
    """``fn`` applied to consecutive chunks of ``x`` under ``no_grad``, the outputs concatenated.

    ``x`` is a tensor (or anything sliceable with ``len``), or a tuple of them of one length, in
    which case ``fn`` receives one chunk of each. ``fn`` may return a tensor, a NumPy array, or a
    tuple/list/dict of them (nested), concatenated element-wise along the first axis. The one home
    of every chunked pass over a dataset (encoding, decoding, scoring).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    many = isinstance(x, tuple)
    n = len(x[0]) if many else len(x)
    if many and any(len(part) != n for part in x):
        raise ValueError(f"the tensors of x must have one length, got {[len(p) for p in x]}")
    if n == 0:
        raise ValueError("encode_batched needs at least one item")
    chunks = (tuple(p[s:s + batch_size] for p in x) if many else (x[s:s + batch_size],)
              for s in range(0, n, batch_size))
    return _concat([fn(*chunk) for chunk in chunks])


@torch.no_grad()
def posterior_code(guide, x: torch.Tensor, site: str | None = None):
    """``(loc, scale)`` of the whole code of a batch: the guide's posterior sites concatenated in the
    order ``guide.posterior`` lists them (or one ``site``).

    This is the code ``model.decode`` takes (VITAE: ``[z_persp, z_app]``), and the representation
    the metrics score, so models with several latent sites work wherever one with ``z`` does.
    """
    post = guide.posterior(x)
    if site is not None:
        if site not in post:
            raise ValueError(f"the guide has no latent site {site!r}; it has {list(post)}")
        return post[site]
    locs, scales = zip(*post.values())
    return torch.cat(locs, dim=-1), torch.cat(scales, dim=-1)


@torch.no_grad()
def encode(guide, data, batch_size: int = 256, device=None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{site: (loc (N, d), scale (N, d))}`` of ``guide.posterior`` over a tensor or a dataset."""
    device = device or _device(guide)

    def chunk(index):
        post = guide.posterior(items_of(data, index, device))
        return {site: (loc.cpu(), scale.cpu()) for site, (loc, scale) in post.items()}

    return encode_batched(chunk, torch.arange(len(data)), batch_size)


def _latent_values(trace, num_draws: int, n: int) -> dict[str, torch.Tensor]:
    """Latent sample values of a trace of a batch repeated ``num_draws`` times: ``(draw, obs, ...)``."""
    out = {}
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"] or site_is_subsample(site):
            continue
        value = site["value"]
        if value.ndim == 0 or value.shape[0] != num_draws * n:
            continue  # a site outside the data plate has no per-observation draws
        out[name] = value.reshape(num_draws, n, *value.shape[1:]).cpu()
    return out


def _dims(name: str, value: torch.Tensor) -> list[str]:
    extra = value.ndim - 2
    if extra == 1:
        return ["obs", f"{name}_dim"]
    return ["obs"] + [f"{name}_dim_{i}" for i in range(extra)]


@torch.no_grad()
def to_inferencedata(model, guide, data, num_draws: int = 100, num_obs: int | None = 100,
                     seed: int = 0, device=None):
    """``arviz.InferenceData`` with posterior and prior draws of every latent site and the data.

    :param data: a tensor batch ``(N, ...)`` (all of it is used) or a ``ppl_data`` dataset (a seeded
        random subset of ``num_obs`` items; ``None`` for all of it).
    :param num_draws: draws per observation from q(z | x) and from the prior.
    """
    import arviz as az

    if num_draws < 1:
        raise ValueError(f"num_draws must be >= 1, got {num_draws}")
    device = device or _device(guide)
    gen = torch.Generator().manual_seed(seed)
    if isinstance(data, Data):
        n_all = len(data)
        k = n_all if num_obs is None else min(num_obs, n_all)
        x = items_of(data, torch.randperm(n_all, generator=gen)[:k].sort().values, device)
    else:
        x = torch.as_tensor(data).to(device)
    n = x.shape[0]
    xs = x.repeat(num_draws, *([1] * (x.ndim - 1)))
    with torch.random.fork_rng(devices=[device] if torch.device(device).type == "cuda" else []):
        torch.manual_seed(seed)
        posterior = _latent_values(poutine.trace(local_params(guide)).get_trace(xs), num_draws, n)
        # The model alone, run forward: its latent sites are drawn from the prior. Observed sites
        # are scored against x but their values are x itself, so they carry nothing here.
        prior = _latent_values(poutine.trace(local_params(model)).get_trace(xs), num_draws, n)
    if not posterior:
        raise ValueError("the guide has no latent sites inside a data plate sized by the batch")
    dims = {name: _dims(name, v) for name, v in {**posterior, **prior}.items()}
    dims["x"] = ["obs"] + [f"x_dim_{i}" for i in range(x.ndim - 1)]
    return az.from_dict(
        posterior={k: v[None].numpy() for k, v in posterior.items()},
        prior={k: v[None].numpy() for k, v in prior.items()},
        observed_data={"x": x.cpu().numpy()},
        dims=dims,
        coords={"obs": list(range(n))},
    )
