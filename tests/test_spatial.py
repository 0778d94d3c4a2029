"""Spatial transformers (VITAE supplement eqs. 1-3, CPAB): identity, inverses, expm, closed forms."""

import math

import pytest
import torch

from ppl_models.spatial import (AffineTransformer, DecomposedAffineTransformer,
                                DiffeomorphicAffineTransformer, base_points, make_transformer)

AFFINE = ["affine", "affine_decomp", "affine_diffeo"]


def blob(n=2, size=96):
    """Smooth images (Gaussian blobs near the centre): bilinear resampling of them is accurate."""
    p = base_points((size, size))[0]
    centres = torch.tensor([[0.1, -0.05], [-0.1, 0.08]])[:n]
    d2 = ((p[None] - centres[:, None]) ** 2).sum(-1)
    return torch.exp(-d2 / (2 * 0.15 ** 2)).reshape(n, 1, size, size)


def small_theta(t, n=2, scale=0.15, seed=0):
    return scale * torch.randn(n, t.dim, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def cpab():
    pytest.importorskip("libcpab")
    return make_transformer("cpab", tessellation=(2, 4), steps=50)


@pytest.mark.parametrize("name", AFFINE)
def test_identity_theta_leaves_image_unchanged(name):
    t = make_transformer(name)
    x = torch.rand(3, 2, 10, 14)
    assert torch.allclose(t.warp(x, t.identity(3)), x, atol=1e-5)


def test_cpab_zero_velocity_is_identity(cpab):
    assert cpab.dim == 30  # supplement §2: [2, 4] tessellation, zero boundary -> dim θ = 30
    x = torch.rand(2, 1, 12, 12)
    assert torch.allclose(cpab.warp(x, cpab.identity(2)), x, atol=1e-5)


@pytest.mark.parametrize("name", AFFINE)
def test_inverse_after_forward_is_identity_on_points(name):
    t = make_transformer(name)
    theta = small_theta(t, n=4, scale=0.3)
    p = base_points((7, 9)).expand(4, -1, -1)
    assert torch.allclose(t.inverse_points(theta, t.points(theta, p)), p, atol=1e-5)
    assert torch.allclose(t.points(theta, t.inverse_points(theta, p)), p, atol=1e-5)


def test_cpab_inverse_after_forward_is_identity_on_points(cpab):
    theta = small_theta(cpab, n=2, scale=0.5)
    p = base_points((9, 9)).expand(2, -1, -1)
    moved = cpab.points(theta, p)
    assert (moved - p).abs().max() > 0.02  # the transform does move points
    # T_{−θ} ∘ T_θ = id up to the integrator's step error (cell lookup once per step).
    assert torch.allclose(cpab.inverse_points(theta, moved), p, atol=5e-3)


@pytest.mark.parametrize("name", AFFINE)
def test_warp_back_restores_image(name):
    t = make_transformer(name)
    x = blob()
    theta = small_theta(t, scale=0.1)
    back = t.warp(t.warp(x, theta), theta, inverse=True)
    assert (back - x).abs().max() < 0.012  # two bilinear resamplings of a smooth image
    assert (t.warp(x, theta) - x).abs().max() > 0.1


def test_affine_matrix_is_identity_plus_theta():
    # Supplement eq. (1): T(p) = [γ11 γ12 γ13; γ21 γ22 γ14] (p, 1); here γ = [I | 0] + θ.
    theta = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])
    p = torch.tensor([[[2.0, -1.0]]])
    expected = torch.tensor([[[1.1 * 2 - 0.2 + 0.3, 0.4 * 2 - 1.5 + 0.6]]])
    assert torch.allclose(AffineTransformer().points(theta, p), expected)


def test_decomposed_affine_matches_product_of_factors():
    # Supplement eq. (2): A = R(α)·[[1, m], [0, 1]]·diag(s_x, s_y), b = t, built here as a product.
    alpha, m, sx, sy, tx, ty = 0.7, 0.3, 1.5, 0.8, 0.2, -0.1
    theta = torch.tensor([[alpha, m, math.log(sx), math.log(sy), tx, ty]], dtype=torch.float64)
    rot = torch.tensor([[math.cos(alpha), -math.sin(alpha)], [math.sin(alpha), math.cos(alpha)]],
                       dtype=torch.float64)
    a = rot @ torch.tensor([[1.0, m], [0.0, 1.0]], dtype=torch.float64) @ torch.diag(
        torch.tensor([sx, sy], dtype=torch.float64))
    got = DecomposedAffineTransformer().matrix(theta)[0]
    assert torch.allclose(got[:, :2], a)
    assert torch.allclose(got[:, 2], torch.tensor([tx, ty], dtype=torch.float64))


def taylor_expm(a: torch.Tensor, terms: int = 40) -> torch.Tensor:
    """exp(A) = Σ A^k / k!, in float64 with scaling and squaring (an independent computation)."""
    a = a.double()
    s = max(0, int(math.ceil(math.log2(max(float(a.abs().sum()), 1.0)))) + 2)
    b = a / 2 ** s
    out, term = torch.eye(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64)
    for k in range(1, terms):
        term = term @ b / k
        out = out + term
    for _ in range(s):
        out = out @ out
    return out


def test_diffeomorphic_matrix_matches_float64_taylor_series():
    # Supplement eq. (3): [A | b] = top rows of expm([[θ1 θ2 θ3], [θ4 θ5 θ6], [0 0 0]]).
    t = DiffeomorphicAffineTransformer()
    theta = torch.randn(5, 6, generator=torch.Generator().manual_seed(1))
    got, got_inv = t.matrix(theta), t.inverse_matrix(theta)
    for i in range(5):
        lie = torch.cat([theta[i].reshape(2, 3), torch.zeros(1, 3)]).double()
        assert torch.allclose(got[i].double(), taylor_expm(lie)[:2], rtol=1e-5, atol=1e-5)
        assert torch.allclose(got_inv[i].double(), taylor_expm(-lie)[:2], rtol=1e-5, atol=1e-5)
        # expm(−L) is the matrix inverse of expm(L).
        full = torch.cat([got[i], torch.tensor([[0.0, 0.0, 1.0]])]).double()
        assert torch.allclose(torch.linalg.inv(full)[:2], got_inv[i].double(), atol=1e-5)


def test_transformer_rejects_wrong_theta_size():
    with pytest.raises(ValueError, match="6 entries"):
        AffineTransformer()(torch.zeros(2, 5), (4, 4))
    with pytest.raises(ValueError, match="unknown transformer 'rigid'"):
        make_transformer("rigid")


def test_cpab_gradient_is_finite_at_zero_velocity_and_matches_finite_differences(cpab):
    # Perspective decoders start at θ = 0, where libcpab's squaring count has a 0/0 gradient (NaN).
    x = blob(n=1, size=32)  # smooth, so that bilinear sampling has no kinks to speak of
    theta = torch.zeros(1, cpab.dim, requires_grad=True)
    cpab.warp(x, theta).square().sum().backward()
    assert torch.isfinite(theta.grad).all() and theta.grad.abs().sum() > 0
    # Away from 0 (where training goes after the first step): directional derivative against a
    # central difference. (At θ ≈ 0 itself libcpab's integrator gradient is finite but inexact.)
    t0 = 0.3 * torch.randn(1, cpab.dim, generator=torch.Generator().manual_seed(5))
    theta = t0.clone().requires_grad_(True)
    cpab.warp(x, theta).square().sum().backward()
    v = torch.randn(1, cpab.dim, generator=torch.Generator().manual_seed(1))
    h = 1e-2
    with torch.no_grad():
        fd = (cpab.warp(x, t0 + h * v).square().sum() - cpab.warp(x, t0 - h * v).square().sum()) / (2 * h)
    assert float((theta.grad * v).sum()) == pytest.approx(float(fd), rel=0.03)
