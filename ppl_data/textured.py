"""Coloured, finely textured shapes on a patterned background, and loaders for SmallNORB and Cars3D.

**Textured shapes** stand in for Cars3D / SmallNORB in the MS-VAE experiments (Nazari et al.,
``papers/msvae-multi-stage-modelling.txt`` §4): a few *coarse* factors that a disentangled VAE
with a small latent captures — ``shape`` (square, disc, triangle), ``colour`` (4 hues), ``scale``,
``orientation``, ``pos_x``, ``pos_y`` — and *fine* factors that such a model reconstructs only as
a blur, which the residual latent Z of MS-VAE must carry: the ``texture`` drawn on the shape
(stripes or checks), its ``frequency`` (5, 7 or 10 cycles per image width) and ``phase``, and the
orientation of a low-contrast ``background`` grating. The texture is drawn in the shape's own
coordinates, so it turns with the shape. 3·4·4·6·6·6·2·3·4·4 = 995,328 items, ``(3, R, R)`` images
in [0, 1], rendered on the device of the factors (one broadcast per pixel grid, no per-item loop).

**SmallNORB** (LeCun et al. 2004) and **Cars3D** (Reed et al. 2015) are read from a local folder
the user names, in the files their authors distribute, with disentanglement_lib's factors:

* ``smallnorb(root)``: the ``smallnorb-5x…-{training,testing}-{dat,cat,info}.mat`` binary
  matrices (magic 0x1E3D4C55 for bytes, 0x1E3D4C54 for int32; little-endian ``ndim`` and
  ``max(ndim, 3)`` dimensions); the left camera image; factors category (5), instance (10),
  elevation (9), azimuth (18: the file's 0, 2, …, 34 halved) and lighting (6).
* ``cars3d(root)``: every ``*.mat`` file (MATLAB, array ``im`` shaped (H, W, 3, 24, 4) =
  azimuth × elevation views of one car); factors elevation (4), azimuth (24), object (file order).

Both are resized to ``size`` (64 by default, as disentanglement_lib) and returned as
:class:`~ppl_data.base.TensorData`.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from .base import DataError, GroundTruthData, TensorData, to_device

SHAPES = ("square", "disc", "triangle")
COLOURS = ((0.90, 0.25, 0.20), (0.25, 0.75, 0.30), (0.25, 0.45, 0.95), (0.95, 0.80, 0.20))
TEXTURES = ("stripes", "checks")
FREQUENCIES = (5.0, 7.0, 10.0)  # texture cycles per image width
BACKGROUND_FREQUENCY = 6.0  # background grating cycles per image width
BASE_HALF_SIZE = 0.25  # half-size of a shape at scale 1, in image widths
POSITION_SPAN = 0.4  # centres move over [0.3, 0.7] of the image


class TexturedShapes(GroundTruthData):
    """Procedural textured shapes; ``images(factors)`` renders ``(n, 3, R, R)`` on the factors' device."""

    factor_names = ("shape", "colour", "scale", "orientation", "pos_x", "pos_y",
                    "texture", "frequency", "phase", "background")
    factor_sizes = (3, 4, 4, 6, 6, 6, 2, 3, 4, 4)
    #: factors a small disentangled latent can capture; the rest is fine detail.
    coarse_factors = ("shape", "colour", "scale", "orientation", "pos_x", "pos_y")

    def __init__(self, resolution: int = 64):
        if not isinstance(resolution, int) or resolution < 16:
            raise DataError(f"resolution must be an integer >= 16 pixels, got {resolution!r}")
        self.resolution = resolution
        self.data_shape = (3, resolution, resolution)

    def values(self, factors: torch.Tensor) -> dict[str, torch.Tensor]:
        """Physical value of each factor of each row (lengths in image widths, angles in radians)."""
        dev = factors.device
        f = dict(zip(self.factor_names, factors.unbind(1)))
        lin = lambda lo, hi, name: torch.linspace(  # noqa: E731
            lo, hi, self.factor_sizes[self.factor_names.index(name)], device=dev)[f[name]]
        steps = lambda name, period: f[name] * (period / self.factor_sizes[self.factor_names.index(name)])  # noqa: E731
        return {"half": BASE_HALF_SIZE * lin(0.6, 1.0, "scale"),
                "theta": steps("orientation", math.pi / 2),
                "cx": lin(0.5 - POSITION_SPAN / 2, 0.5 + POSITION_SPAN / 2, "pos_x"),
                "cy": lin(0.5 - POSITION_SPAN / 2, 0.5 + POSITION_SPAN / 2, "pos_y"),
                "freq": to_device(torch.tensor(FREQUENCIES), dev)[f["frequency"]],
                "phase": steps("phase", 2 * math.pi),
                "bg_angle": steps("background", math.pi)}

    def render(self, factors: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        """Render valid ``factors`` (LongTensor ``(n, 10)``) as ``(n, 3, R, R)`` images in [0, 1].

        ``images`` checks the factors first; ``batch`` renders the factors it made on the host.
        """
        dev, res = factors.device, self.resolution
        v = {k: t[:, None, None] for k, t in self.values(factors).items()}
        grid = (torch.arange(res, device=dev, dtype=torch.float32) + 0.5) / res
        du = grid[None, None, :] - v["cx"]  # (n, 1, R): columns, image widths from the centre
        dv = grid[None, :, None] - v["cy"]  # (n, R, 1): rows
        cos, sin = torch.cos(v["theta"]), torch.sin(v["theta"])
        p = cos * du + sin * dv  # shape coordinates (rotating the shape by θ), (n, R, R)
        q = -sin * du + cos * dv
        a, b = p / v["half"], q / v["half"]
        shape = factors[:, 0, None, None]
        triangle = (b <= 0.6) & (b - math.sqrt(3) * a >= -1.2) & (b + math.sqrt(3) * a >= -1.2)
        inside = torch.where(shape == 0, torch.maximum(a.abs(), b.abs()) <= 0.85,
                             torch.where(shape == 1, a.square() + b.square() <= 1.0, triangle))
        wave_p = torch.sin(2 * math.pi * v["freq"] * p + v["phase"])
        wave_q = torch.sin(2 * math.pi * v["freq"] * q + v["phase"])
        checks = factors[:, 6, None, None] == 1
        dark = torch.where(checks, wave_p * wave_q < 0, wave_p < 0)
        shade = torch.where(dark, 0.45, 1.0)
        colour = to_device(torch.tensor(COLOURS), dev)[factors[:, 1]][:, :, None, None]
        bg_dir = torch.cos(v["bg_angle"]) * du + torch.sin(v["bg_angle"]) * dv
        background = 0.3 + 0.12 * torch.sin(2 * math.pi * BACKGROUND_FREQUENCY * bg_dir)
        out = torch.where(inside[:, None], colour * shade[:, None], background[:, None])
        return out.to(dtype)


# -- real data from local folders ------------------------------------------------------------
NORB_MAGIC = {0x1E3D4C55: np.uint8, 0x1E3D4C54: np.int32}
NORB_SPLITS = {"train": "smallnorb-5x46789x9x18x6x2x96x96-training",
               "test": "smallnorb-5x01235x9x18x6x2x96x96-testing"}


def read_norb_matrix(path: str | Path) -> np.ndarray:
    """One SmallNORB binary matrix file (bytes or int32), shaped as its header says."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"SmallNORB file not found: {path}")
    raw = path.read_bytes()
    if len(raw) < 8:
        raise DataError(f"{path}: too short for a SmallNORB header")
    magic, ndim = struct.unpack("<ii", raw[:8])
    magic &= 0xFFFFFFFF
    if magic not in NORB_MAGIC:
        raise DataError(f"{path}: unknown SmallNORB magic number 0x{magic:08X}")
    header = 8 + 4 * max(ndim, 3)
    shape = struct.unpack(f"<{ndim}i", raw[8:8 + 4 * ndim])
    dtype = np.dtype(NORB_MAGIC[magic]).newbyteorder("<")
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: expected {expected} data bytes for shape {shape}, found {len(raw) - header}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` -> uint8 ``(N, C, size, size)`` (antialiased bilinear)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True,
                        align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def smallnorb(root: str | Path, split: str = "train", size: int = 64) -> TensorData:
    """SmallNORB from a local folder: left camera, factors (category, instance, elevation, azimuth, lighting)."""
    folder = Path(root)
    if not folder.is_dir():
        raise DataError(f"SmallNORB folder not found: {folder}")
    splits = {"train": ("train",), "test": ("test",), "all": ("train", "test")}.get(split)
    if splits is None:
        raise DataError(f"split must be 'train', 'test' or 'all', got {split!r}")
    xs, fs = [], []
    for s in splits:
        stem = folder / NORB_SPLITS[s]
        dat = read_norb_matrix(f"{stem}-dat.mat")
        cat = read_norb_matrix(f"{stem}-cat.mat").reshape(-1)
        info = read_norb_matrix(f"{stem}-info.mat")
        if dat.ndim != 4 or dat.shape[1] != 2 or info.shape != (len(dat), 4) or len(cat) != len(dat):
            raise DataError(f"{stem}-*.mat: shapes dat {dat.shape}, cat {cat.shape}, info {info.shape} "
                            "do not match (expected (N, 2, H, W), (N,), (N, 4))")
        xs.append(torch.from_numpy(dat[:, :1].copy()))
        # info columns: instance, elevation, azimuth (0, 2, ..., 34), lighting.
        fs.append(np.stack([cat, info[:, 0], info[:, 1], info[:, 2] // 2, info[:, 3]], 1))
    x = _resize(torch.cat(xs), size)
    factors = torch.from_numpy(np.concatenate(fs).astype(np.int64))
    return TensorData(x, factors, factor_names=("category", "instance", "elevation", "azimuth", "lighting"),
                      factor_sizes=(5, 10, 9, 18, 6), name="smallnorb")


def cars3d(root: str | Path, size: int = 64) -> TensorData:
    """Cars3D from a local folder of ``*.mat`` files; factors (elevation, azimuth, object)."""
    from scipy.io import loadmat

    folder = Path(root)
    if not folder.is_dir():
        raise DataError(f"Cars3D folder not found: {folder}")
    files = sorted(folder.glob("*.mat"))
    if not files:
        raise DataError(f"Cars3D folder {folder} holds no .mat files")
    xs = []
    for path in files:  # one file per car, read once at load time
        try:
            im = loadmat(path)["im"]
        except (KeyError, ValueError, OSError) as err:
            raise DataError(f"{path}: not a Cars3D file with an 'im' array ({err})") from None
        if im.ndim != 5 or im.shape[2:] != (3, 24, 4):
            raise DataError(f"{path}: 'im' must be shaped (H, W, 3, 24, 4), got {im.shape}")
        # (H, W, 3, azimuth, elevation) -> (azimuth, elevation, 3, H, W): item a·4 + e.
        xs.append(torch.from_numpy(np.ascontiguousarray(im.transpose(3, 4, 2, 0, 1))).reshape(96, 3, *im.shape[:2]))
    x = _resize(torch.cat(xs).to(torch.uint8), size)
    item = torch.arange(len(x))
    factors = torch.stack([item % 4, (item // 4) % 24, item // 96], 1)
    return TensorData(x, factors, factor_names=("elevation", "azimuth", "object"),
                      factor_sizes=(4, 24, len(files)), name="cars3d")
