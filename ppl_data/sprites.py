"""Procedural sprite characters for pose/appearance disentangling (stand-in for the sprites of Reed et al. 2015).

A character is drawn from two factor groups:

* appearance (who): ``body_shape`` (ellipse, box, diamond torso), ``body_colour`` (6 hues),
  ``limb_colour`` (4 colours of head, arms and legs), ``pattern`` (plain, stripes, checks — drawn in
  body coordinates, so it moves with the pose);
* pose (how): ``pos_x``, ``pos_y``, ``scale``, ``orientation`` (a similarity transform of the whole
  figure) and the articulated parts ``arm_left``, ``arm_right`` (angles at the shoulders) and
  ``legs`` (spread at the hips), so pose is more than an affine warp of one template.

216 characters × 54,000 poses. ``pairs`` gives (x1, x2) of one character in two different poses
(the training data of Esser et al. 2019, §3.1); ``triplets`` gives (x1, x2, x3) with x3 another
character in another pose and x2 the *exactly rendered* ground truth: x1's appearance in x3's pose
(their §4.1 evaluation). Characters are split into train and test (every 8th character is held
out) so the evaluation triplets use characters never seen in training, as the paper's test split.

Rendering is vectorised over items and pixels on the device of the factors: every part of the
figure is a closed-form membership test on the body coordinates of each pixel.

References
[1] Esser, Haux, Ommer. Unsupervised Robust Disentangling of Latent Characteristics for Image
    Synthesis. ICCV 2019. arXiv:1910.10223
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .base import Data, DataError, GroundTruthData, check_indices, to_device

APPEARANCE = ("body_shape", "body_colour", "limb_colour", "pattern")
POSE = ("pos_x", "pos_y", "scale", "orientation", "arm_left", "arm_right", "legs")
SPLITS = ("train", "test", "all")
TEST_EVERY = 8  # character a is held out for testing when a % TEST_EVERY == TEST_EVERY // 2

BODY_COLOURS = ((0.90, 0.20, 0.20), (0.95, 0.65, 0.15), (0.85, 0.85, 0.20),
                (0.25, 0.75, 0.30), (0.20, 0.45, 0.90), (0.65, 0.30, 0.85))
LIMB_COLOURS = ((0.98, 0.85, 0.70), (0.55, 0.35, 0.20), (0.85, 0.85, 0.85), (0.30, 0.85, 0.85))
UNIT = 0.1  # one body unit at scale 1, in image widths (the figure is ~4.5 units tall)


class Pairs(NamedTuple):
    x1: torch.Tensor
    x2: torch.Tensor
    factors1: torch.Tensor
    factors2: torch.Tensor


class Triplets(NamedTuple):
    """x2 is the ground truth: appearance of x1 in the pose of x3."""

    x1: torch.Tensor
    x2: torch.Tensor
    x3: torch.Tensor
    factors1: torch.Tensor
    factors2: torch.Tensor
    factors3: torch.Tensor


class Sprites(GroundTruthData):
    """Sprite characters; ``images(factors)`` renders ``(n, 3, R, R)`` in [0, 1] on the factors' device."""

    factor_names = APPEARANCE + POSE
    factor_sizes = (3, 6, 4, 3, 6, 6, 3, 5, 5, 5, 4)

    def __init__(self, resolution: int = 64):
        if not isinstance(resolution, int) or resolution < 16:
            raise DataError(f"resolution must be an integer >= 16 pixels, got {resolution!r}")
        self.resolution = resolution
        self.data_shape = (3, resolution, resolution)
        self.n_app = len(APPEARANCE)

    # -- factor groups ----------------------------------------------------------------------
    @property
    def appearance_sizes(self) -> tuple[int, ...]:
        return self.factor_sizes[: self.n_app]

    @property
    def pose_sizes(self) -> tuple[int, ...]:
        return self.factor_sizes[self.n_app:]

    def characters(self, split: str = "train") -> torch.Tensor:
        """Flat appearance indices (C order over the appearance factors) of ``split``."""
        if split not in SPLITS:
            raise DataError(f"split must be one of {SPLITS}, got {split!r}")
        a = torch.arange(math.prod(self.appearance_sizes))
        test = a % TEST_EVERY == TEST_EVERY // 2
        return a if split == "all" else a[test] if split == "test" else a[~test]

    def _unflatten(self, flat: torch.Tensor, sizes) -> torch.Tensor:
        cols = []
        for s in reversed(sizes):
            cols.append(flat % s)
            flat = flat // s
        return torch.stack(cols[::-1], dim=-1)

    def _random_appearance(self, n, generator, split):
        chars = self.characters(split)
        pick = torch.randint(len(chars), (n,), generator=generator)
        return self._unflatten(chars[pick], self.appearance_sizes), chars[pick]

    def _random_pose(self, n, generator):
        return torch.stack([torch.randint(s, (n,), generator=generator) for s in self.pose_sizes], 1)

    def _other_pose(self, pose, generator):
        """A random pose that differs from ``pose`` in every row (resampled rows are nudged if equal)."""
        other = self._random_pose(len(pose), generator)
        same = (other == pose).all(1)
        k = self.factor_names.index("arm_left") - self.n_app
        other[:, k] = torch.where(same, (other[:, k] + 1) % self.pose_sizes[k], other[:, k])
        return other

    def pairs(self, n: int, generator: torch.Generator | None = None, split: str = "train",
              device=None) -> Pairs:
        """``n`` pairs (x1, x2): the same character in two different poses (Esser et al. §3.1)."""
        if not isinstance(n, int) or n < 0:
            raise DataError(f"n must be an integer >= 0, got {n!r}")
        app, _ = self._random_appearance(n, generator, split)
        pose1 = self._random_pose(n, generator)
        pose2 = self._other_pose(pose1, generator)
        f1, f2 = torch.cat([app, pose1], 1), torch.cat([app, pose2], 1)  # in range by construction
        f1, f2 = to_device(f1, device), to_device(f2, device)
        return Pairs(self.render(f1), self.render(f2), f1, f2)

    def triplets(self, n: int, generator: torch.Generator | None = None, split: str = "test",
                 device=None) -> Triplets:
        """``n`` triplets: x1 = (A, P1), x3 = (B, P3) with B ≠ A and P3 ≠ P1, ground truth x2 = (A, P3)."""
        if not isinstance(n, int) or n < 0:
            raise DataError(f"n must be an integer >= 0, got {n!r}")
        chars = self.characters(split)
        if len(chars) < 2:
            raise DataError(f"split {split!r} has fewer than two characters")
        i = torch.randint(len(chars), (n,), generator=generator)
        j = (i + torch.randint(1, len(chars), (n,), generator=generator)) % len(chars)  # j ≠ i
        app1 = self._unflatten(chars[i], self.appearance_sizes)
        app3 = self._unflatten(chars[j], self.appearance_sizes)
        pose1 = self._random_pose(n, generator)
        pose3 = self._other_pose(pose1, generator)
        f1, f2, f3 = (to_device(torch.cat(p, 1), device)  # in range by construction
                      for p in ((app1, pose1), (app1, pose3), (app3, pose3)))
        return Triplets(self.render(f1), self.render(f2), self.render(f3), f1, f2, f3)

    # -- rendering ----------------------------------------------------------------------------
    def pose_values(self, factors: torch.Tensor) -> dict[str, torch.Tensor]:
        """Physical pose of each row: centre, scale, angles in radians."""
        dev = factors.device
        f = dict(zip(self.factor_names, factors.unbind(1)))
        lin = lambda lo, hi, name: torch.linspace(lo, hi, self.factor_sizes[self.factor_names.index(name)],
                                                   device=dev)[f[name]]
        return {"cx": lin(0.35, 0.65, "pos_x"), "cy": lin(0.38, 0.6, "pos_y"),
                "scale": lin(0.8, 1.2, "scale"), "theta": lin(-0.7, 0.7, "orientation"),
                "arm_left": lin(-0.5, 2.2, "arm_left"), "arm_right": lin(-0.5, 2.2, "arm_right"),
                "legs": lin(0.0, 0.8, "legs")}

    def render(self, factors: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        """Render valid ``factors`` (LongTensor ``(n, 11)``) as ``(n, 3, R, R)`` images in [0, 1].

        ``images`` checks the factors first; ``batch``, ``pairs`` and ``triplets`` make them valid.
        """
        dev, res = factors.device, self.resolution
        v = self.pose_values(factors)
        grid = (torch.arange(res, device=dev, dtype=torch.float32) + 0.5) / res
        unit = (UNIT * v["scale"])[:, None, None]
        du = (grid[None, None, :] - v["cx"][:, None, None]) / unit  # (n, 1, R) columns
        dv = (grid[None, :, None] - v["cy"][:, None, None]) / unit  # (n, R, 1) rows
        cos, sin = torch.cos(v["theta"])[:, None, None], torch.sin(v["theta"])[:, None, None]
        p = cos * du + sin * dv  # body coordinates: p to the figure's right, q down; (n, R, R)
        q = -sin * du + cos * dv

        shape = factors[:, 0][:, None, None]
        torso = torch.where(shape == 0, (p / 0.7).square() + q.square() <= 1.0,
                            torch.where(shape == 1, (p.abs() <= 0.65) & (q.abs() <= 0.95),
                                        p.abs() / 0.85 + q.abs() / 1.05 <= 1.0))
        head = p.square() + (q + 1.55).square() <= 0.5 ** 2
        limbs = torch.zeros_like(head)
        # Arms hang from the shoulders at angle φ from straight down (φ > 0 lifts them outwards).
        for side, name in ((-1.0, "arm_left"), (1.0, "arm_right")):
            phi = v[name][:, None, None]
            limbs |= _capsule(p, q, side * 0.6, -0.7, side * torch.sin(phi), torch.cos(phi), 1.3, 0.2)
        for side in (-1.0, 1.0):
            psi = v["legs"][:, None, None]
            limbs |= _capsule(p, q, side * 0.35, 0.85, side * torch.sin(psi), torch.cos(psi), 1.3, 0.22)

        body = to_device(torch.tensor(BODY_COLOURS), dev)[factors[:, 1]][:, :, None, None]
        limb = to_device(torch.tensor(LIMB_COLOURS), dev)[factors[:, 2]][:, :, None, None]
        pattern = factors[:, 3][:, None, None]
        stripes = torch.sin(q * (2.5 * math.pi)) > 0
        checks = (torch.floor(p * 2.5) + torch.floor(q * 2.5)) % 2 == 0
        shade = torch.where((pattern == 1) & stripes | (pattern == 2) & checks, 0.5, 1.0)
        out = torch.zeros(factors.shape[0], 3, res, res, device=dev)
        out = torch.where((limbs | head)[:, None], limb, out)
        out = torch.where(torso[:, None], body * shade[:, None], out)
        return out.to(dtype)


def _capsule(p, q, x0, y0, dx, dy, length, radius):
    """Points within ``radius`` of the segment from (x0, y0) along unit (dx, dy) for ``length``."""
    rx, ry = p - x0, q - y0
    t = (rx * dx + ry * dy).clamp(0.0, length)
    return (rx - t * dx).square() + (ry - t * dy).square() <= radius ** 2


class SpritePairs(Data):
    """Pairs of one character in two poses as a :class:`Data`, so ``inference.fit`` can train on them.

    Item ``i`` is a fixed pair (a function of ``i`` alone, so runs resume exactly): x1 is
    character ``characters[i // P]`` in pose ``i % P``, x2 the same character in a second pose
    scrambled from ``i`` (never equal to the first). ``batch`` returns ``x`` shaped ``(B, 2, 3, R, R)``
    (x1, x2 stacked) and the factors of both, ``(B, 2·11)``.
    """

    def __init__(self, sprites: Sprites | None = None, split: str = "train"):
        self.sprites = sprites or Sprites()
        self.chars = self.sprites.characters(split)
        self.n_pose = math.prod(self.sprites.pose_sizes)
        self.data_shape = (2, *self.sprites.data_shape)
        self.factor_names = tuple(f"{n}_{k}" for k in (1, 2) for n in self.sprites.factor_names)
        self.factor_sizes = self.sprites.factor_sizes * 2

    def __len__(self) -> int:
        return len(self.chars) * self.n_pose

    def batch(self, index, device=None, dtype=torch.float32):
        index = torch.as_tensor(index, dtype=torch.long).cpu()
        check_indices(index, len(self))  # on the host, before anything moves
        s = self.sprites
        app = s._unflatten(self.chars[index // self.n_pose], s.appearance_sizes)
        p1 = index % self.n_pose
        p2 = (p1 + 1 + (index * 2654435761) % (self.n_pose - 1)) % self.n_pose  # ≠ p1
        f1 = torch.cat([app, s._unflatten(p1, s.pose_sizes)], 1)
        f2 = torch.cat([app, s._unflatten(p2, s.pose_sizes)], 1)
        f1, f2 = to_device(f1, device), to_device(f2, device)
        x = torch.stack([s.render(f1, dtype), s.render(f2, dtype)], 1)
        return x, torch.cat([f1, f2], 1)
