"""Spatial transformers T_θ for the VITAE decoder (and the C-VITAE guide): θ -> sampling grid.

Every transformer maps a batch of parameters θ ``(B, dim)`` to points: ``points(θ, p)`` gives
T_θ(p) for points ``p`` ``(B or 1, P, 2)`` in the normalised image frame [-1, 1]² of
``torch.nn.functional.grid_sample`` (x right, y down, ``align_corners=False``), and
``inverse_points(θ, p)`` gives T_θ⁻¹(p). ``forward(θ, size)`` is the sampling grid ``(B, H, W, 2)``
of T_θ over an H×W image, ``inverse(θ, size)`` that of T_θ⁻¹, and ``warp(images, θ)`` samples the
images on the grid (bilinear, zeros outside): ``warp(x, θ)(p) = x(T_θ(p))``, so
``warp(warp(x, θ), θ, inverse=True) = x`` up to interpolation and what left the frame.

θ = 0 is the identity for every transformer, so a perspective decoder whose last layer starts at
zero starts at the identity transform.

* :class:`AffineTransformer` — VITAE supplement eq. (1): [A | b] = [I | 0] + θ (6 free parameters).
* :class:`DecomposedAffineTransformer` — supplement eq. (2): A = R(α)·Shear(m)·diag(s_x, s_y), b = t,
  with s = exp(θ_s) so that the scale stays positive (our choice; eq. (2) leaves it free).
* :class:`DiffeomorphicAffineTransformer` — supplement eq. (3): [A | b] = first two rows of
  expm([[θ₁ θ₂ θ₃], [θ₄ θ₅ θ₆], [0 0 0]]); invertible by construction, T⁻¹ = expm(−L).
* :class:`CPABTransformer` — continuous piecewise-affine velocity fields (Freifeld et al. 2015)
  integrated by ``libcpab`` (supplement §2: tessellation [2, 4] or [4, 4], zero boundary, no volume
  preservation: dim θ = 30 or 62); T⁻¹ is the flow of −v, i.e. θ -> −θ.

References
[1] Detlefsen, Skafte & Hauberg. Explicit Disentanglement of Appearance and Perspective in
    Generative Models. NeurIPS 2019, supplement §2-3. arXiv:1906.11881
[2] Freifeld et al. Highly-expressive spaces of well-behaved transformations: keeping it simple.
    ICCV 2015.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import torch
from torch import nn
from torch.nn import functional as F


def base_points(size, device=None, dtype=torch.float32) -> torch.Tensor:
    """Pixel centres of an H×W image in grid_sample's frame, ``(1, H·W, 2)`` as (x, y)."""
    h, w = int(size[0]), int(size[1])
    eye = torch.eye(2, 3, device=device, dtype=dtype)[None]
    return F.affine_grid(eye, (1, 1, h, w), align_corners=False).reshape(1, h * w, 2)


class SpatialTransformer(nn.Module):
    """Interface: ``dim``, ``points``, ``inverse_points``; grids and warps follow from them."""

    dim: int = 0

    def points(self, theta: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def inverse_points(self, theta: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def identity(self, n: int, device=None) -> torch.Tensor:
        """θ of the identity transform for ``n`` items."""
        return torch.zeros(n, self.dim, device=device)

    def _grid(self, theta, size, inverse: bool):
        if theta.shape[-1] != self.dim:
            raise ValueError(f"{type(self).__name__} takes θ with {self.dim} entries, got shape "
                             f"{tuple(theta.shape)}")
        flat = theta.reshape(-1, self.dim)
        p = base_points(size, theta.device, theta.dtype)
        out = (self.inverse_points if inverse else self.points)(flat, p)
        return out.reshape(*theta.shape[:-1], int(size[0]), int(size[1]), 2)

    def forward(self, theta: torch.Tensor, size) -> torch.Tensor:
        """Sampling grid ``(..., H, W, 2)`` of T_θ: where each output pixel reads the input."""
        return self._grid(theta, size, inverse=False)

    def inverse(self, theta: torch.Tensor, size) -> torch.Tensor:
        """Sampling grid of T_θ⁻¹."""
        return self._grid(theta, size, inverse=True)

    def warp(self, images: torch.Tensor, theta: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        """``images`` ``(..., C, H, W)`` resampled on the grid of T_θ (or T_θ⁻¹), zeros outside."""
        size = images.shape[-2:]
        grid = self._grid(theta, size, inverse)
        flat = images.reshape(-1, *images.shape[-3:])
        out = F.grid_sample(flat, grid.reshape(-1, *grid.shape[-3:]), mode="bilinear",
                            padding_mode="zeros", align_corners=False)
        return out.reshape(images.shape)


class _AffineFamily(SpatialTransformer):
    """Transformers given by a matrix [A | b] ``(B, 2, 3)``; T(p) = A p + b."""

    dim = 6

    def matrix(self, theta: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def inverse_matrix(self, theta: torch.Tensor) -> torch.Tensor:
        """[A⁻¹ | −A⁻¹ b]."""
        m = self.matrix(theta)
        a_inv = torch.linalg.inv(m[..., :2])
        return torch.cat([a_inv, -a_inv @ m[..., 2:]], dim=-1)

    @staticmethod
    def _affine(m, p):
        return p @ m[..., :2].transpose(-1, -2) + m[..., None, :, 2]

    def points(self, theta, p):
        return self._affine(self.matrix(theta), p)

    def inverse_points(self, theta, p):
        return self._affine(self.inverse_matrix(theta), p)


class AffineTransformer(_AffineFamily):
    """Supplement eq. (1): [A | b] = [I | 0] + θ reshaped to 2×3 (θ = 0 is the identity)."""

    def matrix(self, theta):
        eye = torch.eye(2, 3, device=theta.device, dtype=theta.dtype)
        return eye + theta.reshape(*theta.shape[:-1], 2, 3)


class DecomposedAffineTransformer(_AffineFamily):
    """Supplement eq. (2): A = R(α)·[[1, m], [0, 1]]·diag(s_x, s_y), b = (t_x, t_y).

    θ = (α, m, log s_x, log s_y, t_x, t_y); the log-scales keep A invertible.
    """

    def matrix(self, theta):
        alpha, shear, log_sx, log_sy, tx, ty = theta.unbind(-1)
        cos, sin = torch.cos(alpha), torch.sin(alpha)
        sx, sy = torch.exp(log_sx), torch.exp(log_sy)
        # R·Shear·Scale multiplied out: [[c, -s], [s, c]]·[[sx, m·sy], [0, sy]].
        a11, a12 = cos * sx, (cos * shear - sin) * sy
        a21, a22 = sin * sx, (sin * shear + cos) * sy
        return torch.stack([torch.stack([a11, a12, tx], -1), torch.stack([a21, a22, ty], -1)], -2)


class DiffeomorphicAffineTransformer(_AffineFamily):
    """Supplement eq. (3): [A | b] = top rows of expm(L), L = [[θ₁, θ₂, θ₃], [θ₄, θ₅, θ₆], [0, 0, 0]]."""

    @staticmethod
    def lie_algebra(theta):
        top = theta.reshape(*theta.shape[:-1], 2, 3)
        return torch.cat([top, torch.zeros_like(top[..., :1, :])], dim=-2)

    def matrix(self, theta):
        return torch.linalg.matrix_exp(self.lie_algebra(theta))[..., :2, :]

    def inverse_matrix(self, theta):
        # expm(L)⁻¹ = expm(−L): no matrix inverse needed.
        return torch.linalg.matrix_exp(-self.lie_algebra(theta))[..., :2, :]


def _import_libcpab():
    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            from libcpab import Cpab  # prints and tries a JIT build on import
    except ImportError as err:
        raise ImportError("CPABTransformer needs the 'libcpab' package (pure-PyTorch CPAB): "
                          "pip install libcpab") from err
    finally:
        log.setLevel(level)
    return Cpab


class CPABTransformer(SpatialTransformer):
    """CPAB diffeomorphism on the unit square, integrated by libcpab's pure-PyTorch solver.

    :param tessellation: cells per axis; the supplement uses [2, 4] (dim θ = 30) and [4, 4] (62).
    :param steps: integration steps of libcpab's solver (its default, 50).

    Zero boundary and no volume preservation, as in the supplement §2. θ = 0 is the zero velocity
    field, the identity; T_θ⁻¹ = T_{−θ} (the flow of −v undoes the flow of v).
    """

    def __init__(self, tessellation=(2, 4), steps: int = 50):
        super().__init__()
        tess = [int(t) for t in tessellation]
        if len(tess) != 2 or min(tess) < 1:
            raise ValueError(f"CPAB tessellation must be two positive cell counts, got {tessellation!r}")
        Cpab = _import_libcpab()
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            self._cpab = Cpab(tess, device="cpu", zero_boundary=True, volume_perservation=False)
        # The fast path needs C sources the wheel does not ship; the pure-PyTorch one is used.
        self._cpab.set_solver_params(nstepsolver=int(steps), use_slow=True)
        self.tessellation = tuple(tess)
        self.dim = int(self._cpab.get_theta_dim())

    def points(self, theta, p):
        # libcpab's expm counts squarings from each cell's Frobenius norm: at exactly zero velocity
        # (θ = 0, where the perspective decoders start) its gradient is 0/0 = NaN and training dies
        # after one step. Zero entries are nudged to 1e-7 (the identity to float precision).
        theta = theta + 1e-7 * (theta == 0)  # additive: the gradient still flows to θ
        # libcpab works on [0, 1]² with points shaped (ndim, n) or (B, ndim, n).
        unit = ((p + 1) / 2).transpose(-1, -2)
        if unit.shape[0] == 1:
            unit = unit[0]
        out = self._cpab.transform_grid(unit.to(torch.float32), theta.to(torch.float32))
        return (out.transpose(-1, -2) * 2 - 1).to(theta.dtype)

    def inverse_points(self, theta, p):
        return self.points(-theta, p)


TRANSFORMERS = {
    "affine": AffineTransformer,
    "affine_decomp": DecomposedAffineTransformer,
    "affine_diffeo": DiffeomorphicAffineTransformer,
    "cpab": CPABTransformer,
}


def make_transformer(name: str, **kwargs) -> SpatialTransformer:
    """``name`` is one of ``TRANSFORMERS``: affine, affine_decomp, affine_diffeo, cpab."""
    if name not in TRANSFORMERS:
        raise ValueError(f"unknown transformer {name!r}; expected one of {', '.join(TRANSFORMERS)}")
    return TRANSFORMERS[name](**kwargs)
