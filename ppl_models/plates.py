"""The data plate every model and guide here puts its per-item sites in."""

from __future__ import annotations

import pyro

DATA_PLATE = "data"


def data_plate(x, index=None, dataset_size: int | None = None):
    """``pyro.plate("data", N, subsample=index)`` for a minibatch ``x`` of a dataset of ``N`` items.

    With ``index`` (the batch's dataset indices, chosen by the data loader) the plate carries the
    dataset size, so sites are scaled by N/B and penalties that need N read it from the plate.
    Without it the batch is treated as the whole dataset. ``subsample`` is always explicit: a plate
    that draws its own indices would use the global RNG behind the loader's back.
    """
    batch = x.shape[0]
    if index is None:
        return pyro.plate(DATA_PLATE, batch, dim=-1)
    if index.shape != (batch,):
        raise ValueError(f"index must be shaped ({batch},) to match the batch, got {tuple(index.shape)}")
    size = batch if dataset_size is None else int(dataset_size)
    return pyro.plate(DATA_PLATE, size, subsample=index, dim=-1)
