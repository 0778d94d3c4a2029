"""Data with known generative factors, and loaders for local real data. Depends on nothing else here."""

from __future__ import annotations

from .base import Data, DataError, GroundTruthData, Subset, TensorData
from .dsprites import DSprites
from .folders import image_folder, mnist, read_idx
from .toy import digits, two_moons

_LOADERS = {
    "dsprites": DSprites,
    "two_moons": two_moons,
    "digits": digits,
    "mnist": mnist,
    "image_folder": image_folder,
}


def available() -> tuple[str, ...]:
    """Names :func:`load` knows."""
    return tuple(sorted(_LOADERS))


def register(name: str, loader) -> None:
    """Make ``load(name, **kw)`` call ``loader(**kw)``."""
    _LOADERS[name] = loader


def load(name: str, **kwargs) -> Data:
    """The dataset called ``name``; keyword arguments go to its loader (e.g. ``root=`` for folders)."""
    try:
        loader = _LOADERS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(available())}") from None
    try:
        return loader(**kwargs)
    except TypeError as err:
        raise DataError(f"dataset {name!r}: bad arguments {sorted(kwargs)}: {err}") from None


__all__ = ["Data", "DataError", "GroundTruthData", "Subset", "TensorData", "DSprites", "digits",
           "two_moons", "mnist", "image_folder", "read_idx", "load", "available", "register"]

from .sprites import SpritePairs, Sprites  # noqa: E402  (issue 10: sprite pairs/triplets)
register("sprites", Sprites)
from .textured import TexturedShapes, cars3d, smallnorb  # noqa: E402  (issue 8: MS-VAE data)
register("textured_shapes", TexturedShapes); register("smallnorb", smallnorb); register("cars3d", cars3d)  # noqa: E702
from .pendulum import PendulumPairs; register("pendulum", PendulumPairs)  # noqa: E402,E702  (issue 9: MS-VAE appendix C)
from .files import FILE_DATASETS, LOADERS as _FILE_LOADERS  # noqa: E402  (issue 26: the field's official files)
for _name, _loader in _FILE_LOADERS.items():
    register(_name, _loader)
