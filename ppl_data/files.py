"""The field's benchmark datasets, read from the official files the user already has.

Nothing is downloaded: each loader takes ``root``, the file itself or a folder holding it under
its official name (directly, or in disentanglement_lib's sub-folder: ``dsprites/``, ``3dshapes/``,
``mpi3d_toy/`` ..., so ``$DISENTANGLEMENT_LIB_DATA`` works as it is).

============================  ==================================================  =======================
loader                        file and layout                                     factors (C order)
============================  ==================================================  =======================
``dsprites_file``             ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``:  shape 3, scale 6,
                              ``imgs`` (737280, 64, 64) uint8 in {0, 1},          orientation 40,
                              ``latents_classes`` / ``latents_values`` (N, 6)     pos_x 32, pos_y 32
``color_dsprites``,           the same file (and, for scream, the user's          as dSprites
``noisy_dsprites``,           ``scream.jpg``), with disentanglement_lib's
``scream_dsprites``           random colour / noise / Scream background
``shapes3d``                  ``3dshapes.h5``: ``images`` (480000, 64, 64, 3)     floor_hue 10, wall_hue 10,
                              uint8, ``labels`` (480000, 6) float                 object_hue 10, scale 8,
                                                                                  shape 4, orientation 15
``mpi3d`` (``_toy``,          ``mpi3d_toy.npz`` / ``mpi3d_realistic.npz`` /        object_color 6,
``_realistic``, ``_real``)    ``mpi3d_real.npz``: ``images`` (1036800, 64, 64, 3)  object_shape 6, object_size 2,
                              uint8                                               camera_height 3,
                                                                                  background_color 3,
                                                                                  horizontal_axis 40,
                                                                                  vertical_axis 40
============================  ==================================================  =======================

Item ``i`` of a file is the factor combination whose C-order index (last factor fastest) is ``i``,
as disentanglement_lib reads them. dSprites drops the file's constant colour factor, as
disentanglement_lib does (``latent_factor_indices = [1, 2, 3, 4, 5]``). The loader checks the order
wherever the file states it: dSprites' ``latents_classes`` and Shapes3D's ``labels`` must enumerate
the grid in that order (MPI3D's file carries no labels; its order is the one its authors document).

The pixels are memory-mapped (:mod:`ppl_data.mapped`: compressed arrays are converted once into an
uncompressed ``.npy`` cache, beside the file or in ``cache_dir`` / ``$PPL_DATA_CACHE``). Each loader
checks the official grid by default; ``factor_sizes=`` accepts a reduced grid of the same factors
(a subset the user cut, or a test's small file) when the file is consistent with it.

**Derived dSprites** (disentanglement_lib's ``dsprites.py``, a "probabilistic decoder": each call
draws new randomness for the images it returns). With ``b`` the binary image repeated over 3 channels:

* colour: ``b · c``, one colour ``c ~ U[0.5, 1)³`` per image;
* noisy: ``min(b + ε, 1)``, ``ε ~ U[0, 1)`` per pixel and channel;
* scream: ``s = (P + u) / 2`` with ``P`` a 64×64 patch of the Scream image (PIL ``thumbnail`` to fit
  350×274) at a uniform offset (rows in ``[0, H − 64)``, columns in ``[0, W − 64)``, numpy's
  exclusive ``randint``) and ``u ~ U[0, 1)³`` per image; the pixels where ``b = 1`` become ``1 − s``.

disentanglement_lib draws from the ``random_state`` (a ``np.random.RandomState``) its caller passes,
one item at a time in a Python loop for the scream. Here the draws come from a ``torch.Generator``:
``generator=`` of the call, else the dataset's own (``seed=``), else torch's global generator (which
:func:`inference.svi.fit` seeds and checkpoints, so exact resume holds); they are drawn for the whole
batch at once (:meth:`DerivedDSprites.draw`) and applied by one vectorised :meth:`DerivedDSprites.render`.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import numpy as np
import torch

from .base import DataError, GroundTruthData
from .mapped import open_archive

DSPRITES_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
SHAPES3D_FILE = "3dshapes.h5"
MPI3D_VARIANTS = ("toy", "realistic", "real")
SCREAM_FILE = "scream.jpg"
#: disentanglement_lib's ScreamDSprites: ``scream.thumbnail((350, 274, 3))``.
SCREAM_THUMBNAIL = (350, 274)

DSPRITES_FACTORS = {"shape": 3, "scale": 6, "orientation": 40, "pos_x": 32, "pos_y": 32}
SHAPES3D_FACTORS = {"floor_hue": 10, "wall_hue": 10, "object_hue": 10, "scale": 8, "shape": 4,
                    "orientation": 15}
MPI3D_FACTORS = {"object_color": 6, "object_shape": 6, "object_size": 2, "camera_height": 3,
                 "background_color": 3, "horizontal_axis": 40, "vertical_axis": 40}

#: The arrays that identify each file, to name the dataset a wrong file belongs to.
_SIGNATURES = (({"imgs", "latents_classes"}, "dSprites (--data dsprites_file)"),
               ({"images", "labels"}, "Shapes3D (--data shapes3d)"),
               ({"images"}, "MPI3D (--data mpi3d)"))


# -- finding and checking the file ------------------------------------------------------------
def find_file(root, names: tuple[str, ...], subdirs: tuple[str, ...], what: str) -> Path:
    """``root`` itself when a file, else the first of ``names`` in ``root`` or its ``subdirs``."""
    if root is None:
        raise DataError(f"{what} is read from its official file: give root= (--data-root) the file "
                        f"or the folder holding {names[0]}")
    path = Path(root).expanduser()
    if not path.exists():
        raise DataError(f"{what}: {path} does not exist")
    if path.is_file():
        return path
    for name in names:
        for sub in ("", *subdirs):
            candidate = path / sub / name
            if candidate.is_dir():
                raise DataError(f"{candidate}: is a directory, expected the {what} file")
            if candidate.exists():
                return candidate
    raise DataError(f"{what}: no file {' or '.join(names)} in the folder {path}")


def _wrong_file(path: Path, keys, expected: str) -> str:
    found = set(keys)
    for signature, name in _SIGNATURES:
        if signature <= found and name.split()[0] != expected.split()[0]:
            return f"; it looks like the {name} file"
    return ""


def _check_array(archive, key: str, shape: tuple, dtype_kind: str, what: str) -> None:
    """``archive[key]`` exists, is shaped ``shape`` (None: any size) and of ``dtype_kind``."""
    if key not in archive.keys:
        raise DataError(f"{archive.path}: no array {key!r} (it holds {', '.join(archive.keys) or 'none'})"
                        + _wrong_file(archive.path, archive.keys, what))
    got, _, dtype = archive.header(key)
    if len(got) != len(shape) or any(s is not None and g != s for g, s in zip(got, shape)):
        want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise DataError(f"{archive.path}: {key!r} is shaped {got}, expected {want} for {what}")
    kinds = {"u1": dtype == np.uint8, "i": dtype.kind in "iu", "f": dtype.kind == "f"}
    if not kinds[dtype_kind]:
        want = {"u1": "uint8", "i": "integers", "f": "floats"}[dtype_kind]
        raise DataError(f"{archive.path}: {key!r} has dtype {dtype}, expected {want} for {what}")


def _grid(factor_sizes, official: dict, what: str) -> tuple[int, ...]:
    if factor_sizes is None:
        return tuple(official.values())
    sizes = tuple(int(s) for s in factor_sizes)
    if len(sizes) != len(official) or any(s < 1 for s in sizes):
        raise DataError(f"{what}: factor_sizes must be {len(official)} positive sizes for "
                        f"{tuple(official)}, got {tuple(factor_sizes)}")
    return sizes


def _check_items(path: Path, key: str, n: int, sizes: tuple, what: str) -> None:
    if n != math.prod(sizes):
        raise DataError(f"{path}: {key!r} holds {n} items, expected {math.prod(sizes)} = "
                        f"{'·'.join(map(str, sizes))} for {what} (truncated or another dataset's file?)")


def _check_enumeration(path: Path, key: str, classes: np.ndarray, sizes: tuple, names, what: str):
    """``classes`` (N, K) must be the C-order enumeration of the grid ``sizes``."""
    n = len(classes)
    item = np.arange(n, dtype=np.int64)
    stride = n
    for k, size in enumerate(sizes):
        stride //= size
        expected = (item // stride) % size
        bad = np.flatnonzero(classes[:, k] != expected)
        if len(bad):
            i = int(bad[0])
            raise DataError(f"{path}: {key!r} row {i} gives {names[k]} = {classes[i, k]}, expected "
                            f"{expected[i]} (the items are not the {what} grid in C order)")


def _ranks(values: np.ndarray) -> np.ndarray:
    """Each column's values replaced by their rank among the column's distinct values."""
    rounded = np.round(values.astype(np.float64), 6)
    return np.stack([np.unique(c, return_inverse=True)[1].reshape(-1) for c in rounded.T], 1)


# -- the datasets -------------------------------------------------------------------------------
class MappedGroundTruth(GroundTruthData):
    """A factor grid whose item ``i`` (C order) is image ``i`` of a memory-mapped array.

    ``images(factors)`` returns ``(n, C, 64, 64)`` floats in [0, 1] on the factors' device; the
    pixels are read on the host from the map (only the items asked for) and moved as bytes.
    """

    #: pixel value of white in the file (dSprites stores {0, 1}, the others 0..255).
    white = 255.0

    def __init__(self, path: Path, open_pixels, factor_names, factor_sizes):
        self.path = Path(path)
        self._open_pixels = open_pixels  # a picklable callable: reopened, not copied, in a new process
        self.pixels = open_pixels()
        self.factor_names = tuple(factor_names)
        self.factor_sizes = tuple(factor_sizes)
        channels = 1 if self.pixels.ndim == 3 else self.pixels.shape[3]
        self.data_shape = (channels, *self.pixels.shape[1:3])

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("pixels")
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.pixels = self._open_pixels()

    def read(self, index) -> torch.Tensor:
        """uint8 ``(n, C, H, W)`` of the items ``index`` (host), straight from the map."""
        index = np.asarray(torch.as_tensor(index).cpu(), dtype=np.int64)
        raw = torch.from_numpy(np.ascontiguousarray(self.pixels[index]))
        return raw.unsqueeze(1) if raw.ndim == 3 else raw.permute(0, 3, 1, 2)

    def images(self, factors: torch.Tensor, dtype=torch.float32, generator=None) -> torch.Tensor:
        factors = self.check_factors(factors)
        raw = self.read(self.index_of(factors.cpu()))
        return raw.to(factors.device).to(dtype) / self.white

    def batch(self, index, device=None, dtype=torch.float32, generator=None):
        factors = self.factors_of(torch.as_tensor(index).cpu())
        if device is not None:
            factors = factors.to(device)
        return self.images(factors, dtype=dtype, generator=generator), factors


def _open_member(path: Path, key: str, cache_dir):
    with open_archive(path) as archive:
        return archive.mapped(key, cache_dir)


def _open_checked(path: Path, what: str):
    try:
        return open_archive(path, what)
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected the {what} file") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read the {what} file ({err.strerror or err})") from None


class DSpritesFile(MappedGroundTruth):
    """dSprites from ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``; binary ``(1, 64, 64)`` images."""

    white = 1.0

    def __init__(self, root=None, cache_dir=None, factor_sizes=None):
        what = "dSprites"
        path = find_file(root, (DSPRITES_FILE,), ("dsprites",), what)
        sizes = _grid(factor_sizes, DSPRITES_FACTORS, what)
        with _open_checked(path, what) as archive:
            _check_array(archive, "imgs", (None, 64, 64), "u1", what)
            _check_array(archive, "latents_classes", (None, 6), "i", what)
            _check_array(archive, "latents_values", (None, 6), "f", what)
            n = archive.header("imgs")[0][0]
            _check_items(path, "imgs", n, sizes, what)
            classes = archive.read("latents_classes")
            if len(classes) != n or archive.header("latents_values")[0][0] != n:
                raise DataError(f"{path}: 'imgs' has {n} items but 'latents_classes' / 'latents_values' "
                                f"have {len(classes)} / {archive.header('latents_values')[0][0]}")
            if (classes[:, 0] != 0).any():
                raise DataError(f"{path}: 'latents_classes' column 0 (colour) must be 0 everywhere")
            _check_enumeration(path, "latents_classes", classes[:, 1:], sizes, tuple(DSPRITES_FACTORS), what)
        super().__init__(path, partial(_open_member, path, "imgs", cache_dir), DSPRITES_FACTORS, sizes)


class DerivedDSprites(DSpritesFile):
    """dSprites with disentanglement_lib's random appearance: ``(3, 64, 64)`` images, new draws per call."""

    def __init__(self, root=None, cache_dir=None, factor_sizes=None, seed: int | None = None):
        super().__init__(root, cache_dir, factor_sizes)
        self.data_shape = (3, *self.data_shape[1:])
        self.generator = None if seed is None else torch.Generator().manual_seed(int(seed))

    def __getstate__(self):
        state = super().__getstate__()
        if self.generator is not None:
            state["generator"] = self.generator.get_state()
        return state

    def __setstate__(self, state):
        gen = state.get("generator")
        if gen is not None:
            state["generator"] = torch.Generator()
            state["generator"].set_state(gen)
        super().__setstate__(state)

    def draw(self, n: int, generator=None) -> dict[str, torch.Tensor]:
        """The randomness of ``n`` images (host tensors), from ``generator`` (see the module)."""
        raise NotImplementedError

    def render(self, binary: torch.Tensor, draws: dict) -> torch.Tensor:
        """Images ``(n, 3, H, W)`` from binary ``(n, 1, H, W)`` images and their ``draws``."""
        raise NotImplementedError

    def images(self, factors, dtype=torch.float32, generator=None):
        binary = super().images(factors, dtype=dtype)
        gen = generator if generator is not None else self.generator
        draws = {k: v.to(binary.device) for k, v in self.draw(len(binary), gen).items()}
        return self.render(binary, draws).to(dtype)


class ColorDSprites(DerivedDSprites):
    """disentanglement_lib's ColorDSprites: the sprite in a colour ``c ~ U[0.5, 1)³`` per image."""

    def draw(self, n, generator=None):
        return {"colour": 0.5 + 0.5 * torch.rand(n, 3, generator=generator)}

    def render(self, binary, draws):
        return binary * draws["colour"].to(binary.dtype)[:, :, None, None]


class NoisyDSprites(DerivedDSprites):
    """disentanglement_lib's NoisyDSprites: ``min(b + ε, 1)``, uniform noise per pixel and channel."""

    def draw(self, n, generator=None):
        return {"noise": torch.rand(n, 3, *self.data_shape[1:], generator=generator)}

    def render(self, binary, draws):
        return torch.clamp(binary + draws["noise"].to(binary.dtype), max=1.0)


def read_scream(path) -> torch.Tensor:
    """The Scream image as disentanglement_lib prepares it: thumbnail in 350×274, ``(H, W, 3)`` in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"Scream image not found: {path}")
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            img.thumbnail(SCREAM_THUMBNAIL)
            arr = np.asarray(img, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"{path}: not a readable image ({err})") from None
    if arr.shape[0] <= 64 or arr.shape[1] <= 64:
        raise DataError(f"{path}: the Scream image must exceed 64 pixels a side after its "
                        f"thumbnail to {SCREAM_THUMBNAIL}, got {arr.shape[1]}×{arr.shape[0]}")
    return torch.from_numpy(arr)


class ScreamDSprites(DerivedDSprites):
    """disentanglement_lib's ScreamDSprites: a random Scream patch, inverted where the sprite is."""

    def __init__(self, root=None, scream=None, cache_dir=None, factor_sizes=None, seed=None):
        super().__init__(root, cache_dir, factor_sizes, seed)
        if scream is None:  # beside the dSprites file, or disentanglement_lib's scream/scream.jpg
            folder = self.path.parent
            options = [folder / SCREAM_FILE, folder / "scream" / SCREAM_FILE,
                       folder.parent / "scream" / SCREAM_FILE]
            scream = next((p for p in options if p.is_file()), None)
            if scream is None:
                raise DataError(f"scream_dsprites needs the Scream image: give scream= or put "
                                f"{SCREAM_FILE} beside {self.path.name} (or in scream/)")
        self.scream = read_scream(scream)

    def draw(self, n, generator=None):
        h, w = self.scream.shape[:2]
        return {"row": torch.randint(0, h - 64, (n,), generator=generator),
                "col": torch.randint(0, w - 64, (n,), generator=generator),
                "offset": torch.rand(n, 3, generator=generator)}

    def render(self, binary, draws):
        scream = self.scream.to(binary.device, binary.dtype)
        span = torch.arange(64, device=binary.device)
        rows = (draws["row"][:, None] + span)[:, :, None]  # (n, 64, 1)
        cols = (draws["col"][:, None] + span)[:, None, :]  # (n, 1, 64)
        patch = scream[rows, cols].permute(0, 3, 1, 2)  # (n, 3, 64, 64)
        background = (patch + draws["offset"].to(binary.dtype)[:, :, None, None]) / 2
        return torch.where(binary == 1, 1 - background, background)


class Shapes3DFile(MappedGroundTruth):
    """Shapes3D (Kim & Mnih 2018) from ``3dshapes.h5``; ``(3, 64, 64)`` images."""

    def __init__(self, root=None, cache_dir=None, factor_sizes=None):
        what = "Shapes3D"
        path = find_file(root, (SHAPES3D_FILE,), ("3dshapes",), what)
        sizes = _grid(factor_sizes, SHAPES3D_FACTORS, what)
        with _open_checked(path, what) as archive:
            _check_array(archive, "images", (None, 64, 64, 3), "u1", what)
            _check_array(archive, "labels", (None, 6), "f", what)
            n = archive.header("images")[0][0]
            _check_items(path, "images", n, sizes, what)
            labels = archive.read("labels")
            if len(labels) != n:
                raise DataError(f"{path}: 'images' has {n} items but 'labels' has {len(labels)}")
            ranks = _ranks(labels)
            for k, name in enumerate(SHAPES3D_FACTORS):
                if ranks[:, k].max() + 1 != sizes[k]:
                    raise DataError(f"{path}: 'labels' column {k} ({name}) takes {ranks[:, k].max() + 1} "
                                    f"values, expected {sizes[k]}")
            _check_enumeration(path, "labels", ranks, sizes, tuple(SHAPES3D_FACTORS), what)
        super().__init__(path, partial(_open_member, path, "images", cache_dir), SHAPES3D_FACTORS, sizes)


class MPI3DFile(MappedGroundTruth):
    """MPI3D (Gondal et al. 2019) toy / realistic / real from ``mpi3d_<variant>.npz``; ``(3, 64, 64)``."""

    def __init__(self, root=None, variant: str | None = None, cache_dir=None, factor_sizes=None):
        if variant is not None and variant not in MPI3D_VARIANTS:
            raise DataError(f"MPI3D variant must be one of {MPI3D_VARIANTS}, got {variant!r}")
        variants = (variant,) if variant else MPI3D_VARIANTS
        names = tuple(f"mpi3d_{v}.npz" for v in variants)
        what = f"MPI3D {variant}" if variant else "MPI3D"
        if root is not None and Path(root).expanduser().is_dir() and variant is None:
            present = [n for n in names if (Path(root).expanduser() / n).exists()
                       or (Path(root).expanduser() / n[:-4] / n).exists()]
            if len(present) > 1:
                raise DataError(f"{root} holds several MPI3D files ({', '.join(present)}); choose one "
                                "with --data mpi3d_toy, mpi3d_realistic or mpi3d_real")
        path = find_file(root, names, tuple(n[:-4] for n in names), what)
        self.variant = variant or next((v for v in MPI3D_VARIANTS if path.name == f"mpi3d_{v}.npz"), None)
        sizes = _grid(factor_sizes, MPI3D_FACTORS, what)
        with _open_checked(path, what) as archive:
            _check_array(archive, "images", (None, 64, 64, 3), "u1", what)
            if "labels" in archive.keys or "imgs" in archive.keys:
                raise DataError(f"{path}: not an MPI3D file" + _wrong_file(path, archive.keys, "MPI3D"))
            _check_items(path, "images", archive.header("images")[0][0], sizes, what)
        super().__init__(path, partial(_open_member, path, "images", cache_dir), MPI3D_FACTORS, sizes)


# -- loaders for ppl_data.load --------------------------------------------------------------------
def _loader(cls, **fixed):
    def load(root=None, **kwargs):
        return cls(root=root, **fixed, **kwargs)
    load.__name__ = load.__qualname__ = cls.__name__
    load.__doc__ = cls.__doc__
    return load


#: ``ppl_data.load`` names of the datasets read from official files (all take ``root``).
LOADERS = {"dsprites_file": _loader(DSpritesFile), "color_dsprites": _loader(ColorDSprites),
           "noisy_dsprites": _loader(NoisyDSprites), "scream_dsprites": _loader(ScreamDSprites),
           "shapes3d": _loader(Shapes3DFile), "mpi3d": _loader(MPI3DFile),
           **{f"mpi3d_{v}": _loader(MPI3DFile, variant=v) for v in MPI3D_VARIANTS}}
FILE_DATASETS = tuple(LOADERS)

__all__ = ["DSPRITES_FILE", "SHAPES3D_FILE", "SCREAM_FILE", "DSPRITES_FACTORS", "SHAPES3D_FACTORS",
           "MPI3D_FACTORS", "MappedGroundTruth", "DSpritesFile", "DerivedDSprites", "ColorDSprites",
           "NoisyDSprites", "ScreamDSprites", "Shapes3DFile", "MPI3DFile", "read_scream", "find_file",
           "LOADERS", "FILE_DATASETS"]
