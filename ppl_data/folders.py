"""Loaders for real data the user already has on disk: MNIST IDX files and image folders.

Nothing is downloaded: each loader reads a folder the user names and says which file is missing.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from .base import DataError, TensorData

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped), the format MNIST ships in."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise DataError(f"{path}: unknown IDX element type 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = struct.unpack(">" + "I" * ndim, raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: expected {expected} data bytes for shape {shape}, "
                        f"found {len(raw) - header}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"MNIST folder {folder} has no file {stem} (or {stem}.gz)")


def mnist(root: str | Path, split: str = "train") -> TensorData:
    """MNIST (or Fashion-MNIST) from a local folder of IDX files; images (N, 1, 28, 28)."""
    folder = Path(root)
    if not folder.is_dir():
        raise DataError(f"MNIST folder not found: {folder}")
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    images = read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or len(images) != len(labels):
        raise DataError(f"{folder}: images {images.shape} and labels {labels.shape} do not match")
    x = torch.from_numpy(images.astype(np.uint8)).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return TensorData(x, y, factor_names=("digit",), factor_sizes=(10,), name="mnist")


def image_folder(root: str | Path, size: int = 64, grayscale: bool = False,
                 limit: int | None = None) -> TensorData:
    """Every image under ``root`` (CelebA-style folder), centre-cropped and resized to ``size``."""
    from PIL import Image

    folder = Path(root)
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"image folder {folder} holds no {'/'.join(IMAGE_SUFFIXES)} files")
    if limit is not None:
        files = files[:limit]
    mode = "L" if grayscale else "RGB"
    arrays = []
    for path in files:  # decoding is per file by nature; done once at load time
        with Image.open(path) as img:
            img = img.convert(mode)
            w, h = img.size
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
        arrays.append(arr[..., None] if arr.ndim == 2 else arr)
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return TensorData(x, None, name=f"image_folder:{folder}")
