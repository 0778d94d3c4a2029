"""Small datasets that need no download: two moons (the dpVAE toy) and scikit-learn's 8×8 digits."""

from __future__ import annotations

import math

import torch

from .base import DataError, TensorData


def two_moons(n: int = 10_000, noise: float = 0.05, seed: int = 0) -> TensorData:
    """Two interleaved half circles in 2-D (as ``sklearn.datasets.make_moons``), factor = moon.

    Points are rescaled to [0, 1]² so that every dataset here lives in the unit range.
    """
    if n < 2:
        raise DataError(f"two_moons needs n >= 2, got {n}")
    if noise < 0:
        raise DataError(f"noise must be >= 0, got {noise}")
    gen = torch.Generator().manual_seed(seed)
    n_out = n // 2
    n_in = n - n_out
    t_out = torch.linspace(0, math.pi, n_out, dtype=torch.float64)
    t_in = torch.linspace(0, math.pi, n_in, dtype=torch.float64)
    outer = torch.stack([torch.cos(t_out), torch.sin(t_out)], 1)
    inner = torch.stack([1 - torch.cos(t_in), 1 - torch.sin(t_in) - 0.5], 1)
    pts = torch.cat([outer, inner]) + noise * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    labels = torch.cat([torch.zeros(n_out, dtype=torch.long), torch.ones(n_in, dtype=torch.long)])
    # Fixed affine map of the noiseless range [-1, 2] x [-0.5, 1] (plus margin) into [0, 1]².
    lo = torch.tensor([-1.5, -1.0], dtype=torch.float64)
    hi = torch.tensor([2.5, 1.5], dtype=torch.float64)
    pts = ((pts - lo) / (hi - lo)).clamp(0, 1).float()
    perm = torch.randperm(n, generator=gen)
    return TensorData(pts[perm], labels[perm], factor_names=("moon",), factor_sizes=(2,),
                      name="two_moons")


def digits() -> TensorData:
    """The 1,797 8×8 handwritten digits shipped with scikit-learn, as (N, 1, 8, 8) in [0, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.as_tensor(bunch.target, dtype=torch.long)
    return TensorData(images, labels, factor_names=("digit",), factor_sizes=(10,), name="digits")
