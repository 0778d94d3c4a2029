"""The data interface every model, metric and script in this project reads.

Two kinds of dataset:

* :class:`TensorData` wraps images (or vectors) already in memory, with optional integer
  labels used as factors (MNIST, digits, image folders, two moons).
* :class:`GroundTruthData` is a procedural simulator with known generative factors: it can
  sample factors and render the observation of any factor combination (dSprites-style shapes).

Both give batches as ``(x, factors)`` with ``x`` a float tensor in [0, 1] shaped ``(N, C, H, W)``
or ``(N, D)`` and ``factors`` a LongTensor ``(N, K)`` (``K = 0`` when nothing is known), through
:meth:`Data.batch`, which takes a LongTensor of dataset indices. Training draws indices, so Pyro's
data plate can be given ``subsample=index`` and exact resume stays possible.

No host synchronisation in a batch: indices and factors are made and checked on the host (with
NumPy, which cannot read a device tensor), then copied to the device without waiting
(:func:`to_device`), and rendered there with fixed-shape tensor operations only, so a training
step on a GPU never stalls its launch queue on the data (``tests/test_host_sync.py``).
"""

from __future__ import annotations

import math

import numpy as np
import torch


class DataError(ValueError):
    """A problem with the user's data or data arguments (missing folder, bad shape, NaN...)."""


def to_device(tensor: torch.Tensor, device) -> torch.Tensor:
    """``tensor`` on ``device``; a host tensor goes to a GPU through pinned memory, without waiting.

    A blocking copy from pageable memory is a host synchronisation of its own (CUDA's
    ``cudaMemcpy``; ``torch.cuda.set_sync_debug_mode`` reports it); from pinned memory with
    ``non_blocking=True`` the copy is queued on the stream, and PyTorch's pinned allocator keeps the
    source alive until it has run.
    """
    if device is None:
        return tensor
    device = torch.device(device)
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def host_values(tensor: torch.Tensor) -> np.ndarray:
    """The values of ``tensor`` as a NumPy array, for checks made on the host.

    Free for a host tensor (shared memory, no tensor operation). A device tensor is copied back
    first: one synchronisation, made only where a user hands device values to a checking call,
    never in a training step (which checks its indices on the host before they move).
    """
    return tensor.detach().cpu().numpy()


def check_indices(index: torch.Tensor, n: int) -> None:
    """Raise :class:`DataError` unless every dataset index is in [0, n) (checked on the host)."""
    values = host_values(index)
    if values.size and (values.min() < 0 or values.max() >= n):
        raise DataError(f"indices must be in [0, {n})")


class Data:
    """Base class: a finite, indexable dataset of observations ``x`` and factors."""

    #: ``(C, H, W)`` for images, ``(D,)`` for vectors.
    data_shape: tuple[int, ...] = ()
    factor_names: tuple[str, ...] = ()
    factor_sizes: tuple[int, ...] = ()

    def __len__(self) -> int:
        raise NotImplementedError

    def batch(self, index: torch.Tensor, device=None, dtype=torch.float32):
        """Observations and factors of the items at ``index`` (LongTensor ``(B,)``)."""
        raise NotImplementedError

    def __getitem__(self, i: int):
        n = len(self)
        if not -n <= int(i) < n:
            raise IndexError(f"index {i} out of range for a dataset of {n} items")
        x, f = self.batch(torch.tensor([int(i) % n]))
        return x[0], f[0]

    @property
    def has_factors(self) -> bool:
        return len(self.factor_sizes) > 0

    def split(self, test_fraction: float = 0.1, seed: int = 0) -> tuple["Subset", "Subset"]:
        """A seeded random train/test split; the same seed gives the same split every time."""
        if not 0.0 < test_fraction < 1.0:
            raise DataError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
        n = len(self)
        n_test = max(1, int(round(n * test_fraction)))
        if n_test >= n:
            raise DataError(f"a dataset of {n} items cannot give a test split of {n_test}")
        gen = torch.Generator().manual_seed(seed)
        perm = torch.randperm(n, generator=gen)
        return Subset(self, perm[n_test:]), Subset(self, perm[:n_test])

    def all(self, device=None, dtype=torch.float32):
        """Every item at once; for small datasets only."""
        return self.batch(torch.arange(len(self)), device=device, dtype=dtype)


class Subset(Data):
    """Items ``indices`` of ``parent``, with the parent's interface."""

    def __init__(self, parent: Data, indices: torch.Tensor):
        self.parent = parent
        self.indices = torch.as_tensor(indices, dtype=torch.long)
        self.data_shape = parent.data_shape
        self.factor_names = parent.factor_names
        self.factor_sizes = parent.factor_sizes

    def __len__(self) -> int:
        return len(self.indices)

    def batch(self, index, device=None, dtype=torch.float32):
        return self.parent.batch(self.indices[index.cpu()], device=device, dtype=dtype)

    def __getattr__(self, name):
        # sample_factors / images / index_of ... of a ground-truth parent stay reachable.
        if name == "parent":
            raise AttributeError(name)
        return getattr(self.parent, name)


class TensorData(Data):
    """In-memory observations (uint8 or float in [0, 1]) with optional integer labels as factors."""

    def __init__(self, images: torch.Tensor, factors: torch.Tensor | None = None,
                 factor_names=(), factor_sizes=None, name: str = "data"):
        if images.ndim not in (2, 4):
            raise DataError(f"{name}: expected images shaped (N, C, H, W) or vectors (N, D), "
                            f"got shape {tuple(images.shape)}")
        if images.is_floating_point():
            if not torch.isfinite(images).all():
                raise DataError(f"{name}: data contains NaN or inf values")
        self.images = images
        self.name = name
        self.data_shape = tuple(images.shape[1:])
        if factors is None:
            factors = torch.zeros(len(images), 0, dtype=torch.long)
        factors = torch.as_tensor(factors, dtype=torch.long)
        if factors.ndim == 1:
            factors = factors[:, None]
        if len(factors) != len(images):
            raise DataError(f"{name}: {len(factors)} factor rows for {len(images)} items")
        self.factors = factors
        self.factor_names = tuple(factor_names)
        if factor_sizes is None:
            factor_sizes = tuple(int(factors[:, k].max()) + 1 for k in range(factors.shape[1]))
        self.factor_sizes = tuple(factor_sizes)

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, index, device=None, dtype=torch.float32):
        index = to_device(torch.as_tensor(index), self.images.device)
        x = self.images[index]
        if device is not None and x.device.type == "cpu":
            x = to_device(x, device)  # uint8 crosses to the device: a quarter of the bytes of float
        x = x.to(dtype) / 255.0 if x.dtype == torch.uint8 else x.to(dtype)
        f = self.factors[index.to(self.factors.device)]
        if device is not None:
            x, f = x.to(device), to_device(f, device)
        return x, f


class GroundTruthData(Data):
    """A simulator with discrete generative factors, enumerated in C order (last factor fastest)."""

    def __len__(self) -> int:
        return math.prod(self.factor_sizes)

    # -- factor bookkeeping ---------------------------------------------------------------
    def _strides(self, device=None) -> torch.Tensor:
        sizes = torch.tensor(self.factor_sizes, dtype=torch.long, device=device)
        strides = torch.ones_like(sizes)
        strides[:-1] = torch.flip(torch.cumprod(torch.flip(sizes[1:], [0]), 0), [0])
        return strides

    def check_factors(self, factors: torch.Tensor) -> torch.Tensor:
        """``factors`` as a LongTensor, or :class:`DataError` naming the first bad value.

        The range check reads the values on the host (:func:`host_values`): call it where factors
        are made, before they move to a device; :meth:`batch` never calls it on the device.
        """
        factors = torch.as_tensor(factors)
        if factors.ndim != 2 or factors.shape[1] != len(self.factor_sizes):
            raise DataError(f"factors must be shaped (n, {len(self.factor_sizes)}) for "
                            f"{self.factor_names}, got {tuple(factors.shape)}")
        if factors.is_floating_point():
            raise DataError(f"factors must be integers, got dtype {factors.dtype}")
        values = host_values(factors)
        bad = (values < 0) | (values >= np.asarray(self.factor_sizes))
        if bad.any():
            row, col = np.argwhere(bad)[0]  # row-major: the first bad value, as before
            raise DataError(f"factor {self.factor_names[col]!r} = {int(values[row, col])} is out of "
                            f"range [0, {self.factor_sizes[col]})")
        return factors.long()

    def index_of(self, factors: torch.Tensor) -> torch.Tensor:
        """Flat index of each factor row (C order, last factor fastest, as dSprites' file)."""
        factors = self.check_factors(factors)
        return (factors * self._strides(factors.device)).sum(-1)

    def factors_of(self, index: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`index_of`."""
        index = torch.as_tensor(index, dtype=torch.long)
        check_indices(index, len(self))
        sizes = torch.tensor(self.factor_sizes, dtype=torch.long, device=index.device)
        return (index[..., None] // self._strides(index.device)) % sizes

    def sample_factors(self, n: int, generator: torch.Generator | None = None,
                       device=None) -> torch.Tensor:
        """``n`` factor rows drawn uniformly and independently; LongTensor ``(n, K)``."""
        if n < 0:
            raise DataError(f"n must be >= 0, got {n}")
        cols = [torch.randint(0, s, (n,), generator=generator) for s in self.factor_sizes]
        out = torch.stack(cols, dim=1) if cols else torch.zeros(n, 0, dtype=torch.long)
        return out.to(device) if device is not None else out

    def images(self, factors: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        """The observations of ``factors`` (LongTensor ``(n, K)``), checked first (DataError if bad)."""
        return self.render(self.check_factors(factors), dtype=dtype)

    def render(self, factors: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        """The observations of ``factors`` already known to be valid, on their device, unchecked.

        What :meth:`batch` calls: its factors come from in-range indices. A simulator defines
        ``render``; one that defines only :meth:`images` is rendered (and checked) by it.
        """
        if type(self).images is GroundTruthData.images:
            raise NotImplementedError(f"{type(self).__name__} must define render (or images)")
        return self.images(factors, dtype=dtype)

    def batch(self, index, device=None, dtype=torch.float32):
        factors = self.factors_of(torch.as_tensor(index).cpu())  # made and checked on the host
        if device is not None:
            factors = to_device(factors, device)
        return self.render(factors, dtype=dtype), factors
