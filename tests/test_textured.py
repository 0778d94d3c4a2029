"""Textured shapes against a per-pixel scalar renderer; SmallNORB and Cars3D readers on files written here."""

import math
import struct

import numpy as np
import pytest
import torch

import ppl_data
from ppl_data import DataError
from ppl_data.textured import (BACKGROUND_FREQUENCY, BASE_HALF_SIZE, COLOURS, FREQUENCIES, NORB_SPLITS,
                               POSITION_SPAN, TexturedShapes, cars3d, read_norb_matrix, smallnorb)


def scalar_pixel(f, row, col, res):
    """One pixel of factor row ``f``, from the module docstring's description, with plain floats."""
    shape, colour, scale, orient, px, py, texture, freq, phase, bg = (int(v) for v in f)
    lin = lambda lo, hi, n, i: lo + (hi - lo) * i / (n - 1)  # noqa: E731
    half = BASE_HALF_SIZE * lin(0.6, 1.0, 4, scale)
    theta = orient * (math.pi / 2) / 6
    cx = lin(0.5 - POSITION_SPAN / 2, 0.5 + POSITION_SPAN / 2, 6, px)
    cy = lin(0.5 - POSITION_SPAN / 2, 0.5 + POSITION_SPAN / 2, 6, py)
    u, v = (col + 0.5) / res - cx, (row + 0.5) / res - cy
    p = math.cos(theta) * u + math.sin(theta) * v
    q = -math.sin(theta) * u + math.cos(theta) * v
    a, b = p / half, q / half
    if shape == 0:
        inside = max(abs(a), abs(b)) <= 0.85
    elif shape == 1:
        inside = a * a + b * b <= 1.0
    else:  # triangle pointing up: three half-planes
        inside = b <= 0.6 and b - math.sqrt(3) * a >= -1.2 and b + math.sqrt(3) * a >= -1.2
    if not inside:
        ang = bg * math.pi / 4
        g = 0.3 + 0.12 * math.sin(2 * math.pi * BACKGROUND_FREQUENCY * (math.cos(ang) * u + math.sin(ang) * v))
        return (g, g, g)
    w = 2 * math.pi * FREQUENCIES[freq]
    sp, sq = math.sin(w * p + phase * math.pi / 2), math.sin(w * q + phase * math.pi / 2)
    dark = sp * sq < 0 if texture == 1 else sp < 0
    return tuple(c * (0.45 if dark else 1.0) for c in COLOURS[colour])


def test_images_match_a_per_pixel_scalar_renderer():
    data = TexturedShapes(16)
    factors = data.sample_factors(6, torch.Generator().manual_seed(3))
    factors[:3, 0] = torch.arange(3)  # every shape
    images = data.images(factors)
    expected = torch.tensor([[[scalar_pixel(f, r, c, 16) for c in range(16)] for r in range(16)]
                             for f in factors.tolist()]).permute(0, 3, 1, 2)
    # Pixels exactly on a shape or stripe boundary may fall either way in float32 vs float64.
    mismatch = (images - expected).abs().amax(1) > 1e-4
    assert mismatch.float().mean() < 0.01
    assert images.shape == (6, 3, 16, 16) and images.min() >= 0 and images.max() <= 1


def test_fine_factors_change_only_their_region():
    data = TexturedShapes(32)
    f = torch.tensor([[1, 2, 3, 0, 2, 3, 0, 1, 0, 0]])
    base = data.images(f)[0]
    inside = (base - data.images(torch.tensor([[1, 2, 3, 0, 2, 3, 0, 1, 0, 2]]))[0]).abs().sum(0) == 0
    phase = data.images(torch.tensor([[1, 2, 3, 0, 2, 3, 0, 1, 2, 0]]))[0]
    changed = (phase - base).abs().sum(0) > 0
    assert changed.any() and not (changed & ~inside).any()  # phase moves stripes inside the shape only
    assert inside.float().mean() < 0.5  # the background changed outside


def test_factor_grid_and_registry():
    data = ppl_data.load("textured_shapes", resolution=16)
    assert len(data) == math.prod(data.factor_sizes) == 995_328
    idx = torch.tensor([0, 1, 12345, len(data) - 1])
    assert torch.equal(data.index_of(data.factors_of(idx)), idx)
    x, f = data.batch(idx)
    assert torch.equal(x, data.images(f))
    with pytest.raises(DataError, match="resolution"):
        TexturedShapes(8)


def write_norb(path, array, magic):
    dims = list(array.shape) + [1] * max(0, 3 - array.ndim)
    header = struct.pack("<ii", magic, array.ndim) + struct.pack(f"<{len(dims)}i", *dims)
    path.write_bytes(header + array.astype("<u1" if magic == 0x1E3D4C55 else "<i4").tobytes())


def test_smallnorb_reads_the_distributed_format(tmp_path):
    n = 3
    dat = np.zeros((n, 2, 8, 8), np.uint8)
    dat[:, 0] = (np.arange(n) * 50 + 10)[:, None, None]  # left camera: a constant per item
    dat[:, 1] = 255
    stem = tmp_path / NORB_SPLITS["train"]
    write_norb(tmp_path / f"{stem.name}-dat.mat", dat, 0x1E3D4C55)
    write_norb(tmp_path / f"{stem.name}-cat.mat", np.array([4, 0, 2]), 0x1E3D4C54)
    write_norb(tmp_path / f"{stem.name}-info.mat", np.array([[9, 8, 34, 5], [0, 0, 0, 0], [4, 3, 10, 2]]),
               0x1E3D4C54)
    assert read_norb_matrix(tmp_path / f"{stem.name}-cat.mat").tolist() == [4, 0, 2]
    data = ppl_data.load("smallnorb", root=tmp_path, size=4)
    x, f = data.all()
    assert x.shape == (3, 1, 4, 4)
    assert torch.allclose(x[:, 0, 0, 0], torch.tensor([10, 60, 110]) / 255.0)
    assert f.tolist() == [[4, 9, 8, 17, 5], [0, 0, 0, 0, 0], [2, 4, 3, 5, 2]]  # azimuth halved
    with pytest.raises(DataError, match="testing-dat.mat"):
        smallnorb(tmp_path, split="test")
    (tmp_path / f"{stem.name}-cat.mat").write_bytes(b"\x00" * 24)
    with pytest.raises(DataError, match="magic"):
        smallnorb(tmp_path)


def test_cars3d_reads_mat_files(tmp_path):
    from scipy.io import savemat

    for obj in range(2):
        im = np.zeros((8, 8, 3, 24, 4), np.uint8)
        im[:, :, 0] = (np.arange(24)[:, None] * 4 + np.arange(4)[None, :]) + 100 * obj  # a·4 + e
        savemat(tmp_path / f"car{obj:03d}.mat", {"im": im})
    data = cars3d(tmp_path, size=8)
    x, f = data.all()
    assert x.shape == (192, 3, 8, 8) and data.factor_sizes == (4, 24, 2)
    red = (x[:, 0, 0, 0] * 255).round().long()
    assert torch.equal(red, f[:, 1] * 4 + f[:, 0] + 100 * f[:, 2])
    with pytest.raises(DataError, match="no .mat"):
        cars3d(_empty(tmp_path))


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d
