"""Spatial transformers T_θ for the VITAE decoder (and the C-VITAE guide): θ -> sampling grid.

Every transformer maps a batch of parameters θ ``(B, dim)`` to points: ``points(θ, p)`` gives
T_θ(p) for points ``p`` ``(B or 1, P, 2)`` in the normalised image frame [-1, 1]² of
``torch.nn.functional.grid_sample`` (x right, y down, ``align_corners=False``), and
``inverse_points(θ, p)`` gives T_θ⁻¹(p). ``forward(θ, size)`` is the sampling grid ``(B, H, W, 2)``
of T_θ over an H×W image, ``inverse(θ, size)`` that of T_θ⁻¹, and ``warp(images, θ)`` samples the
images on the grid (bilinear, zeros outside): ``warp(x, θ)(p) = x(T_θ(p))``, so
``warp(warp(x, θ), θ, inverse=True) = x`` up to interpolation and what left the frame.

θ = 0 is the identity for every transformer but the two literal ones, so a perspective decoder whose
last layer starts at zero starts at the identity transform; ``identity(n)`` gives each one's identity θ.

* :class:`AffineTransformer` — VITAE supplement eq. (1): [A | b] = [I | 0] + θ (6 free parameters).
* :class:`DecomposedAffineTransformer` (``"affine_decomp"``) — supplement eq. (2):
  A = R(α)·Shear(m)·diag(s_x, s_y), b = t, with the scale s itself as a free parameter
  (s = 1 + θ_s, so that θ = 0 is the identity): det A = s_x·s_y, so A turns singular at s = 0 and
  reflects for s < 0, as eq. (2) allows. This is the parametrisation the stability study
  (``scripts/vitae_stability.py``, supplement §3, Fig. 1) compares.
* :class:`PositiveDecomposedAffineTransformer` (``"affine_decomp_pos"``) — eq. (2) with
  s = exp(θ_s) (ours, not the paper's): det A > 0, so A can never be singular or reflect.
* :class:`LiteralAffineTransformer` (``"affine_literal"``) and :class:`LiteralDecomposedAffineTransformer`
  (``"affine_decomp_literal"``) — eqs. (1) and (2) read literally, with no shift: θ = 0 is the
  degenerate A = 0, where a default-initialised last layer starts (the stability study's literal arm).
* :class:`DiffeomorphicAffineTransformer` — supplement eq. (3): [A | b] = first two rows of
  expm([[θ₁ θ₂ θ₃], [θ₄ θ₅ θ₆], [0 0 0]]); invertible by construction, T⁻¹ = expm(−L).
* :class:`CPABTransformer` — continuous piecewise-affine velocity fields (Freifeld et al. 2015)
  integrated by ``libcpab`` (supplement §2: tessellation [2, 4] or [4, 4], zero boundary, no volume
  preservation: dim θ = 30 or 62); T⁻¹ is the flow of −v, i.e. θ -> −θ. Always libcpab's
  pure-PyTorch integrator (``CPAB_BACKEND``), whatever libcpab could compile: see
  :func:`_import_libcpab`. Its basis of velocity fields is built deterministically
  (:mod:`ppl_models.cpab_basis`, not libcpab's SVD) and kept in the module's state (buffer ``basis``),
  so a checkpoint warps the same on every machine.

References
[1] Detlefsen, Skafte & Hauberg. Explicit Disentanglement of Appearance and Perspective in
    Generative Models. NeurIPS 2019, supplement §2-3. arXiv:1906.11881
[2] Freifeld et al. Highly-expressive spaces of well-behaved transformations: keeping it simple.
    ICCV 2015.
"""

from __future__ import annotations

import functools
import logging
import types
import warnings

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ppl_models.cpab_basis import basis_digest, velocity_basis


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

    θ = (α, m, s_x − 1, s_y − 1, t_x, t_y): the scale enters raw, as in eq. (2) (shifted by one
    only so that θ = 0 is the identity). det A = s_x·s_y: A is singular at s_x·s_y = 0 and a
    reflection below it, which is what the supplement's §3 stability study puts to the test. Its
    inverse is taken in closed form, diag(1/s)·Shear(−m)·R(−α), so a singular A gives inf/NaN
    (a diverged run) rather than a linear-algebra error.

    :param positive_scale: s = exp(θ_s) instead (our variant, ``"affine_decomp_pos"``): det A > 0.
    """

    def __init__(self, positive_scale: bool = False):
        super().__init__()
        self.positive_scale = bool(positive_scale)

    def factors(self, theta):
        """(α, m, s_x, s_y, t_x, t_y) of θ."""
        alpha, shear, theta_sx, theta_sy, tx, ty = theta.unbind(-1)
        if self.positive_scale:
            sx, sy = torch.exp(theta_sx), torch.exp(theta_sy)
        else:
            sx, sy = 1 + theta_sx, 1 + theta_sy
        return alpha, shear, sx, sy, tx, ty

    def matrix(self, theta):
        alpha, shear, sx, sy, tx, ty = self.factors(theta)
        cos, sin = torch.cos(alpha), torch.sin(alpha)
        # R·Shear·Scale multiplied out: [[c, -s], [s, c]]·[[sx, m·sy], [0, sy]].
        a11, a12 = cos * sx, (cos * shear - sin) * sy
        a21, a22 = sin * sx, (sin * shear + cos) * sy
        return torch.stack([torch.stack([a11, a12, tx], -1), torch.stack([a21, a22, ty], -1)], -2)

    def inverse_matrix(self, theta):
        alpha, shear, sx, sy, tx, ty = self.factors(theta)
        cos, sin = torch.cos(alpha), torch.sin(alpha)
        # A⁻¹ = diag(1/sx, 1/sy)·[[1, -m], [0, 1]]·[[c, s], [-s, c]], b⁻¹ = −A⁻¹ t.
        b11, b12 = (cos + shear * sin) / sx, (sin - shear * cos) / sx
        b21, b22 = -sin / sy, cos / sy
        c1, c2 = -(b11 * tx + b12 * ty), -(b21 * tx + b22 * ty)
        return torch.stack([torch.stack([b11, b12, c1], -1), torch.stack([b21, b22, c2], -1)], -2)


class PositiveDecomposedAffineTransformer(DecomposedAffineTransformer):
    """Eq. (2) with a positive scale s = exp(θ_s) (ours): A is never singular nor a reflection."""

    def __init__(self):
        super().__init__(positive_scale=True)


class LiteralAffineTransformer(_AffineFamily):
    """Supplement eq. (1) read literally: [A | b] = θ reshaped to 2×3, with no identity offset.

    The stability study's *literal* arm (issue 24): a perspective decoder whose default-initialised
    last layer outputs θ ≈ 0 starts near the degenerate map A ≈ 0, where eq. (3) starts at the
    identity. ``identity(n)`` is θ = [I | 0] flattened.
    """

    def matrix(self, theta):
        return theta.reshape(*theta.shape[:-1], 2, 3)

    def identity(self, n: int, device=None) -> torch.Tensor:
        return torch.eye(2, 3, device=device).reshape(1, 6).expand(n, 6).clone()


class LiteralDecomposedAffineTransformer(DecomposedAffineTransformer):
    """Supplement eq. (2) read literally: θ = (α, m, s_x, s_y, t_x, t_y), the scales raw (no shift by
    one), so θ ≈ 0 from a default-initialised last layer gives s ≈ 0: A ≈ 0, near singular (the
    stability study's literal arm, issue 24). ``identity(n)`` is θ = (0, 0, 1, 1, 0, 0)."""

    def factors(self, theta):
        alpha, shear, sx, sy, tx, ty = theta.unbind(-1)
        return alpha, shear, sx, sy, tx, ty

    def identity(self, n: int, device=None) -> torch.Tensor:
        return torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0, 0.0], device=device).expand(n, 6).clone()


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


#: The libcpab integrator every :class:`CPABTransformer` uses: its pure-PyTorch one ("slow").
CPAB_BACKEND = "pytorch"

_NO_CUDA_RUNTIME = "No CUDA runtime is found"


class _DropNoCudaRuntime(logging.Filter):
    """Drops torch.utils.cpp_extension's "No CUDA runtime is found" record (and only that one)."""

    def filter(self, record):
        return not str(record.msg).startswith(_NO_CUDA_RUNTIME)


def _refuse_jit_build(name, *args, **kwargs):
    raise RuntimeError(f"libcpab's JIT build of {name!r} is skipped: {CPAB_BACKEND} backend pinned")


def _import_libcpab():
    """libcpab's ``Cpab``, its pure-PyTorch integrator and its 2-D tessellation class, imported
    without libcpab's JIT build.

    How libcpab picks a backend: on import, ``libcpab.transformer`` calls
    ``torch.utils.cpp_extension.load`` on its C++/CUDA sources and sets ``_cpu_succes`` /
    ``_gpu_succes``; ``CPAB_transformer`` then dispatches to the compiled integrator (analytic
    gradient from the C code) when the build succeeded and ``params.use_slow`` is False, else to
    ``CPAB_transformer_slow`` (pure PyTorch, autograd gradient). The two give different gradients
    near zero velocity, so the result would depend on whether a compiler was found. We pin the
    pure-PyTorch one: while libcpab is first imported, ``load`` is replaced by a stub that refuses
    (so nothing is compiled, and the build's messages never appear), and
    :class:`CPABTransformer` calls ``CPAB_transformer_slow`` directly (so the pin holds even where
    libcpab was imported, and compiled, before us). Importing ``torch.utils.cpp_extension`` logs
    "No CUDA runtime is found" on a machine with a CUDA toolkit and no GPU; that one record is
    filtered out, everything else it logs goes through.
    """
    log = logging.getLogger("torch.utils.cpp_extension")
    drop = _DropNoCudaRuntime()
    log.addFilter(drop)
    try:
        import torch.utils.cpp_extension as cpp_extension

        real_load = cpp_extension.load
        cpp_extension.load = _refuse_jit_build
        try:
            from libcpab import Cpab
            from libcpab import transformer as cpab_transformer
            from libcpab.tesselation import Tesselation2D
        finally:
            cpp_extension.load = real_load
    except ImportError as err:
        raise ImportError("CPABTransformer needs the 'libcpab' package (pure-PyTorch CPAB): "
                          "pip install libcpab") from err
    finally:
        log.removeFilter(drop)
    return Cpab, cpab_transformer.CPAB_transformer_slow, Tesselation2D


def cpab_constraints(tessellation) -> np.ndarray:
    """libcpab's constraint matrix L ``(m, 6·nC)`` on [0, 1]²: continuity rows, then zero-boundary rows.

    Built by libcpab's own ``Tesselation2D`` methods, but without its ``__init__``, which would also
    take an SVD and read or write a basis file inside the installed package (Freifeld et al. 2015,
    §3: L vec(A) = 0).
    """
    _, _, Tesselation2D = _import_libcpab()
    nx, ny = (int(n) for n in tessellation)
    tess = Tesselation2D.__new__(Tesselation2D)
    tess.nc, tess.domain_min, tess.domain_max = [nx, ny], [0, 0], [1, 1]
    tess.zero_boundary, tess.volume_perservation = True, False
    tess.n_params, tess.nC, tess.ndim = 6, 4 * nx * ny, 2  # as Tesselation2D.__init__ sets them
    tess.find_verts()
    tess.find_shared_verts()
    return np.concatenate([tess.create_continuity_constrains(), tess.create_zero_boundary_constrains()])


@functools.lru_cache(maxsize=None)
def _cached_velocity_basis(tessellation) -> torch.Tensor:
    # Vertex coordinates are k/n and (2k+1)/(2n): denominators up to 2·max(n).
    return velocity_basis(cpab_constraints(tessellation), max_denominator=2 * max(tessellation))


def cpab_velocity_basis(tessellation) -> torch.Tensor:
    """The deterministic orthonormal basis B ``(6·nC, dim θ)`` (float64) of zero-boundary CPA fields."""
    return _cached_velocity_basis(tuple(int(n) for n in tessellation)).clone()


def libcpab_svd_basis(tessellation) -> torch.Tensor:
    """libcpab's own basis (an SVD null space, or its cached basis file): what models built before the
    basis was part of their state used. Its rotation depends on the machine that computed it."""
    Cpab, _, _ = _import_libcpab()
    cpab = Cpab([int(n) for n in tessellation], device="cpu", zero_boundary=True, volume_perservation=False)
    return torch.from_numpy(np.asarray(cpab.params.basis, dtype=np.float64)).clone()


class CPABTransformer(SpatialTransformer):
    """CPAB diffeomorphism on the unit square, integrated by libcpab's pure-PyTorch solver.

    :param tessellation: cells per axis; the supplement uses [2, 4] (dim θ = 30) and [4, 4] (62).
    :param steps: integration steps of libcpab's solver (its default, 50).

    Zero boundary and no volume preservation, as in the supplement §2. θ = 0 is the zero velocity
    field, the identity; T_θ⁻¹ = T_{−θ} (the flow of −v undoes the flow of v). The integrator is
    always libcpab's pure-PyTorch one (``backend`` = :data:`CPAB_BACKEND`), never its compiled
    extension, so results and gradients do not depend on the machine (see :func:`_import_libcpab`).

    The cells' affine maps are a = B θ (Freifeld et al. 2015, §3), with B the buffer ``basis``
    ``(6·nC, dim θ)``, float64: built by :func:`cpab_velocity_basis` (exact, the same bits on every
    machine) and saved with the model, so a checkpoint warps with the basis it was trained with, whatever
    this machine would build. A checkpoint without it (saved before the basis was part of the state)
    loads with libcpab's SVD basis of this machine and a warning; a basis whose columns leave the space
    of continuous zero-boundary fields is refused.
    """

    backend = CPAB_BACKEND

    def __init__(self, tessellation=(2, 4), steps: int = 50):
        super().__init__()
        tess = [int(t) for t in tessellation]
        if len(tess) != 2 or min(tess) < 1:
            raise ValueError(f"CPAB tessellation must be two positive cell counts, got {tessellation!r}")
        _, self._integrate, _ = _import_libcpab()
        self.tessellation = tuple(tess)
        self.register_buffer("basis", cpab_velocity_basis(self.tessellation))
        self.dim = int(self.basis.shape[1])
        # The fields of libcpab's ``params`` that its pure-PyTorch integrator reads (basis: per call).
        # use_slow also pins libcpab's own dispatcher, should anything hand these params to it.
        self._params = types.SimpleNamespace(
            nc=list(tess), ndim=2, Ashape=[2, 3], nC=4 * tess[0] * tess[1], nstepsolver=int(steps),
            use_slow=True, numeric_grad=False, zero_boundary=True, volume_perservation=False, basis=None)

    def basis_digest(self) -> str:
        """sha256 of the basis's float64 bytes (the same on every machine for a freshly built model)."""
        return basis_digest(self.basis)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        key = prefix + "basis"
        if key not in state_dict:
            warnings.warn(f"checkpoint has no CPAB basis {key!r} (saved before the basis was part of the "
                          "model's state): using libcpab's SVD basis as this machine computes it; the "
                          "warp matches training only where that basis is the one training used (same "
                          "machine or libcpab basis file). Save the model again to keep it.",
                          UserWarning, stacklevel=2)
            state_dict[key] = libcpab_svd_basis(self.tessellation)
        else:
            self._check_basis(state_dict[key], key)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def _check_basis(self, basis, key):
        # Every column must be a continuous zero-boundary field: L b = 0 (Freifeld et al. 2015, §3).
        if tuple(basis.shape) != tuple(self.basis.shape):
            return  # load_state_dict reports the size mismatch itself
        constraints = torch.from_numpy(cpab_constraints(self.tessellation))
        residual = float((constraints @ basis.detach().to("cpu", torch.float64)).abs().max())
        if not residual <= 1e-5:
            raise ValueError(f"{key}: the checkpoint's CPAB basis is not a basis of continuous "
                             f"zero-boundary velocity fields on the {self.tessellation} tessellation "
                             f"(max |L B| = {residual:.3g}, expected ~0)")

    def points(self, theta, p):
        # libcpab's expm counts squarings from each cell's Frobenius norm: at exactly zero velocity
        # (θ = 0, where the perspective decoders start) its gradient is 0/0 = NaN and training dies
        # after one step. Zero entries are nudged to 1e-7 (the identity to float precision).
        theta = theta + 1e-7 * (theta == 0)  # additive: the gradient still flows to θ
        # libcpab works on [0, 1]² with points shaped (ndim, n) or (B, ndim, n).
        unit = ((p + 1) / 2).transpose(-1, -2)
        if unit.shape[0] == 1:
            unit = unit[0]
        elif unit.shape[0] != theta.shape[0]:
            raise ValueError(f"points for {unit.shape[0]} items, θ for {theta.shape[0]}")
        # Our basis, on θ's device; libcpab copies it with torch.tensor (a device copy, no host trip).
        params = types.SimpleNamespace(**{**vars(self._params), "basis": self.basis.to(theta.device)})
        # The pure-PyTorch integrator, called directly: libcpab's dispatcher is not consulted.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="To copy construct from a tensor", category=UserWarning)
            out = self._integrate(unit.to(torch.float32), theta.to(torch.float32), params)
        return (out.transpose(-1, -2) * 2 - 1).to(theta.dtype)

    def inverse_points(self, theta, p):
        return self.points(-theta, p)


TRANSFORMERS = {
    "affine": AffineTransformer,
    "affine_decomp": DecomposedAffineTransformer,
    "affine_decomp_pos": PositiveDecomposedAffineTransformer,
    "affine_literal": LiteralAffineTransformer,  # eq. (1) literally: θ ≈ 0 is A ≈ 0 (issue 24)
    "affine_decomp_literal": LiteralDecomposedAffineTransformer,  # eq. (2) literally: raw s (issue 24)
    "affine_diffeo": DiffeomorphicAffineTransformer,
    "cpab": CPABTransformer,
}


def make_transformer(name: str, **kwargs) -> SpatialTransformer:
    """``name`` is one of ``TRANSFORMERS`` (affine, affine_decomp, affine_decomp_pos, affine_diffeo, cpab)."""
    if name not in TRANSFORMERS:
        raise ValueError(f"unknown transformer {name!r}; expected one of {', '.join(TRANSFORMERS)}")
    return TRANSFORMERS[name](**kwargs)
