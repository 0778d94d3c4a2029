"""dSprites rendered procedurally: the same factor grid as Matthey et al. (2017), no download.

Factors (dSprites order): shape (square, ellipse, heart), scale (6 values in [0.5, 1]),
orientation (40 values in [0, 2π)), pos_x and pos_y (32 values each). 3·6·40·32·32 = 737,280
items, 64×64 binary images. Our shapes are drawn from closed-form implicit curves, so the pixels
differ from the original file; the factor structure and index order are the same.

Rendering is vectorised: a pixel's shape-local coordinates are an affine function of its row
and column, so each coordinate is one broadcast sum of a per-row and a per-column vector, and
the membership test is a few elementwise operations on ``(n, 64, 64)``.
"""

from __future__ import annotations

import math

import torch

from .base import DataError, GroundTruthData

SHAPES = ("square", "ellipse", "heart")

#: Half-size of a shape at scale 1, in units of the image width.
BASE_HALF_SIZE = 0.12
#: Items drawn at once: a chunk's temporaries (~2 MB each at 64×64) stay in a CPU's cache.
CHUNK = 1024
#: Centres move over [0.5 - POSITION_SPAN/2, 0.5 + POSITION_SPAN/2] of the image.
POSITION_SPAN = 0.6
#: The fraction of pixels on over uniformly drawn factors at 64×64 (tests/test_dsprites.py renders it):
#: our shapes are smaller than the dSprites file's, whose mean pixel is 0.0425 (DSPRITES_FILE_MEAN_PIXEL).
MEAN_PIXEL_64 = 0.0258
#: The mean pixel of deepmind's dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz, as disent's dataset class
#: records it (``DSpritesData`` normalisation, 0.042494...): the file is not downloaded here.
DSPRITES_FILE_MEAN_PIXEL = 0.0425


class DSprites(GroundTruthData):
    """Procedural dSprites: ``images(factors)`` renders on the device of ``factors``."""

    factor_names = ("shape", "scale", "orientation", "pos_x", "pos_y")
    factor_sizes = (3, 6, 40, 32, 32)

    def __init__(self, resolution: int = 64):
        if resolution < 8:
            raise DataError(f"resolution must be >= 8 pixels, got {resolution}")
        self.resolution = resolution
        self.data_shape = (1, resolution, resolution)

    # factor index -> physical value
    def scale_values(self, device=None):
        return torch.linspace(0.5, 1.0, self.factor_sizes[1], device=device)

    def orientation_values(self, device=None):
        return torch.arange(self.factor_sizes[2], device=device) * (2 * math.pi / self.factor_sizes[2])

    def position_values(self, device=None):
        return torch.linspace(0.0, 1.0, self.factor_sizes[3], device=device)

    def render(self, factors: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        """Render valid ``factors`` (LongTensor ``(n, 5)``) as ``(n, 1, R, R)`` images in {0, 1}.

        ``images`` checks the factors first; ``batch`` renders the factors it made on the host.
        """
        n, res = factors.shape[0], self.resolution
        out = torch.zeros(n, res * res, dtype=dtype, device=factors.device)
        for start in range(0, n, CHUNK):  # chunks of items (one for a training batch), never items
            self._draw(factors[start:start + CHUNK], out[start:start + CHUNK])
        return out.view(n, 1, res, res)

    def _draw(self, factors: torch.Tensor, out: torch.Tensor) -> None:
        """Draw the shapes of ``factors`` (n, 5) into the blank flat images ``out`` (n, R·R)."""
        device = factors.device
        res = self.resolution
        shape = factors[:, 0]
        half = BASE_HALF_SIZE * self.scale_values(device)[factors[:, 1]]
        theta = self.orientation_values(device)[factors[:, 2]]
        pos = self.position_values(device)
        cx = 0.5 + (pos[factors[:, 3]] - 0.5) * POSITION_SPAN
        cy = 0.5 + (pos[factors[:, 4]] - 0.5) * POSITION_SPAN
        # Shapes fit in a disc of radius sqrt(2)·half ≤ 0.17 of the width, so each one is drawn in
        # a (W, W) window around its centre and pasted into the canvas: ~7× fewer pixels to test.
        win = min(res, 2 * math.ceil(math.sqrt(2) * BASE_HALF_SIZE * res + 1))
        offs = torch.arange(win, device=device)
        left = (torch.floor(cx * res).long() - win // 2).clamp(0, res - win)
        top = (torch.floor(cy * res).long() - win // 2).clamp(0, res - win)
        cols = left[:, None] + offs  # (n, W) pixel columns of the window
        rows = top[:, None] + offs
        # Offsets of window columns / rows from the centre, in shape units: (n, W).
        du = ((cols + 0.5) / res - cx[:, None]) / half[:, None]
        dv = ((rows + 0.5) / res - cy[:, None]) / half[:, None]
        cos, sin = torch.cos(theta)[:, None], torch.sin(theta)[:, None]
        # Rotating the shape by θ = rotating the pixel grid by −θ:
        #   p = cosθ·du + sinθ·dv,   q = −sinθ·du + cosθ·dv   (rows index v, columns index u).
        pu_col, pu_row = cos * du, sin * dv
        qu_col, qu_row = -sin * du, cos * dv

        p = pu_col[:, None, :] + pu_row[:, :, None]  # (n, W, W)
        q = qu_col[:, None, :] + qu_row[:, :, None]
        # Every item is tested against every shape and its own is kept: three fixed-shape tests and
        # two selects, no per-shape gather, whose size (nonzero) the host would have to wait for.
        shape = shape[:, None, None]
        square, ellipse, heart = _inside_shapes(p, q)
        window = torch.where(shape == 1, ellipse, heart, out=heart)
        window = torch.where(shape == 0, square, window, out=window)
        # Paste each window at its place in its image: one flat index per window pixel.
        flat = (rows[:, :, None] * res + cols[:, None, :]).flatten(1)
        out.scatter_(1, flat, window.flatten(1).to(out.dtype))


def _inside_shapes(p: torch.Tensor, q: torch.Tensor):
    """Membership of shape-local points (p right, q down) in each unit-size shape, in ``SHAPES`` order.

    Returns three boolean tensors shaped as ``p``. Overwrites ``p`` and ``q`` and works in two more
    buffers of their size: every point is tested against all three shapes (so that no shape's
    points are gathered), and the fewer full-size temporaries, the less memory traffic.
    """
    y = q.mul(-1.15).add_(0.1)  # heart coordinates: y points up; the only use of q's sign
    p.abs_(), q.abs_()
    work = torch.maximum(p, q)
    square = work <= 1.0  # |p| ≤ 1 and |q| ≤ 1
    # Ellipse p² + 4q² ≤ 1.2²: semi-axes 1.2 and 0.6, elongated so that rotation is visible.
    ellipse = torch.square(p, out=work).add_(q.square_(), alpha=4.0) <= 1.44
    # Heart: (x² + y² − 1)³ − x² y³ ≤ 0 with x = 1.15 p, the figure scaled to unit size.
    x2 = p.mul_(1.15).square_()
    y2 = torch.square(y, out=q)
    body = torch.add(x2, y2, out=work).sub_(1.0).pow_(3)
    heart = body <= x2.mul_(y2.mul_(y))
    return square, ellipse, heart
