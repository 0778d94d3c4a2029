"""Drawing observations from a ground-truth simulator and encoding them, for the metric wrappers.

A *representation function* maps a batch of observations ``x`` (a tensor on ``device``) to codes
``(B, D)`` — typically the posterior mean of a guide. Factors are drawn with the metric's own
``torch.Generator``, so a metric is a function of its seed.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from ppl_data import DataError, GroundTruthData

from .information import as_array


def check_ground_truth(data) -> GroundTruthData:
    if not (hasattr(data, "sample_factors") and hasattr(data, "images")) or not data.factor_sizes:
        raise DataError(f"this metric needs a dataset with ground-truth factors "
                        f"(sample_factors / images), got {type(data).__name__}")
    return data


@torch.no_grad()
def represent_factors(data, represent, factors: torch.Tensor, batch_size: int = 256,
                      device=None, progress: str | None = None) -> np.ndarray:
    """Codes ``(n, D)`` of the observations of ``factors`` (LongTensor ``(n, K)``), in batches."""
    out = []
    starts = range(0, len(factors), batch_size)
    for s in tqdm(starts, desc=progress, disable=progress is None, leave=False):
        f = factors[s:s + batch_size]
        if device is not None:
            f = f.to(device)
        out.append(as_array(represent(data.images(f)), np.float64))
    if not out:
        raise ValueError("no points to represent")
    return np.concatenate(out)


def sample_codes(data, represent, n: int, generator: torch.Generator, batch_size: int = 256,
                 device=None, progress: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random factor rows and their codes: ``(codes (n, D), factors (n, K))``."""
    check_ground_truth(data)
    factors = data.sample_factors(n, generator=generator)
    codes = represent_factors(data, represent, factors, batch_size, device, progress)
    return codes, factors.numpy()


def fixed_factor_groups(data, num_groups: int, group_size: int, generator: torch.Generator):
    """Factor rows ``(V, L, K)`` where, within each group, factor ``k_v`` shares one value.

    The setting of Higgins et al. (2017) §3 and Kim & Mnih (2018) §4: each group fixes one factor,
    chosen uniformly, and draws the others at random. Returns ``(factors, k)``.
    """
    k_all = len(data.factor_sizes)
    f = data.sample_factors(num_groups * group_size, generator=generator)
    f = f.view(num_groups, group_size, k_all)
    k = torch.randint(k_all, (num_groups,), generator=generator)
    rows = torch.arange(num_groups)
    f[rows, :, k] = f[rows, 0, k][:, None]
    return f, k
