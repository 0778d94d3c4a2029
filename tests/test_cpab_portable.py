"""Portable CPAB (issue 27): a deterministic basis of the velocity fields, kept in the model's state,
and the integrator's gradient against a float64 closed form.

CPAB (Freifeld et al. 2015, §3): in cell c the velocity is v(u) = A_c (u, 1) on [0, 1]², the A_c are
a = B θ with B a basis of null(L) (L: continuity and zero boundary), and a point that stays in cell c
for the whole unit of time moves to T_θ(u) = expm([[A_c], [0 0 0]]) (u, 1).
"""

import math
import random
from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn

from ppl_models import spatial
from ppl_models.cpab_basis import (basis_digest, exact_null_space, orthonormalise, rational_matrix,
                                   rref, velocity_basis)
from ppl_models.spatial import base_points, cpab_constraints, cpab_velocity_basis, make_transformer

pytest.importorskip("libcpab")

# sha256 of the float64 bytes of the deterministic basis, for the supplement's two tessellations (§2).
DIGEST = {(2, 4): "4c666754810ce149dec6976e7fbaf7c5945407a84aa50ae449c29a409955c503",
          (4, 4): "4b4cb26547255a4ec0e1fd4e40968f14e702b54050cfc07120aa499ac134bca5"}
DIM = {(2, 4): 30, (4, 4): 62}  # supplement §2: dim θ = 30 for [2, 4], 62 for [4, 4]


@pytest.fixture(scope="module")
def cpab():
    return make_transformer("cpab", tessellation=(2, 4), steps=50)


def libcpab_reference(tess):
    """libcpab's own constraint matrix and SVD basis (its ``Cpab``, as models used it before)."""
    Cpab, _, _ = spatial._import_libcpab()
    params = Cpab(list(tess), device="cpu", zero_boundary=True, volume_perservation=False).params
    return np.asarray(params.constrain_mat), torch.from_numpy(np.asarray(params.basis, dtype=np.float64))


# ---------------------------------------------------------------- the basis


def test_tent_field_is_the_hand_computed_null_vector():
    # 1-D, two cells on [0, 1]: v = a_c x + b_c. Rows: v(0) = 0, v(1) = 0, continuity at 1/2.
    # By hand: b1 = 0, b2 = −a2, a1/2 = a2/2 + b2 -> (a1, b1, a2, b2) ∝ (1, 0, −1, 1), the tent v.
    rows = rational_matrix([[0, 1, 0, 0], [0, 0, 1, 1], [0.5, 1, -0.5, -1]], max_denominator=2)
    assert rref(rows) == [(0, {0: 1, 3: -1}), (1, {1: 1}), (2, {2: 1, 3: 1})]
    assert exact_null_space(rows, 4) == [[Fraction(1), Fraction(0), Fraction(-1), Fraction(1)]]
    basis = velocity_basis([[0, 1, 0, 0], [0, 0, 1, 1], [0.5, 1, -0.5, -1]], max_denominator=2)
    expected = torch.tensor([[1.0], [0.0], [-1.0], [1.0]], dtype=torch.float64) / math.sqrt(3.0)
    assert torch.equal(basis, expected)


def test_rational_matrix_refuses_entries_that_are_not_tessellation_coordinates():
    assert rational_matrix([[1 / 3, 0.0, -5 / 6]], max_denominator=6) == [{0: Fraction(1, 3),
                                                                          2: Fraction(-5, 6)}]
    with pytest.raises(ValueError, match=r"L\[0, 1\] = 0.1234"):
        rational_matrix([[0.5, 0.1234]], max_denominator=8)


@pytest.mark.parametrize("tess", [(2, 4), (4, 4)])
def test_exact_null_space_satisfies_every_constraint_exactly(tess):
    # L a = 0 in rational arithmetic (Freifeld et al. §3), and dim null(L) = D − rank L = dim θ.
    constraints = cpab_constraints(tess)
    rows = rational_matrix(constraints, max_denominator=2 * max(tess))
    null = exact_null_space(rows, constraints.shape[1])
    assert len(null) == DIM[tess] == constraints.shape[1] - len(rref(rows))
    for vec in null:
        assert all(sum((q * vec[c] for c, q in row.items()), Fraction(0)) == 0 for row in rows)


@pytest.mark.parametrize("tess", [(2, 4), (4, 4)])
def test_basis_is_orthonormal_and_spans_libcpabs_null_space(tess):
    constraints, svd_basis = libcpab_reference(tess)
    # We reuse libcpab's constraint matrix itself, entry for entry, and replace only its SVD.
    assert np.array_equal(cpab_constraints(tess), constraints)
    basis = cpab_velocity_basis(tess)
    assert basis.shape == svd_basis.shape == (6 * 4 * tess[0] * tess[1], DIM[tess])
    eye = torch.eye(DIM[tess], dtype=torch.float64)
    assert (basis.T @ basis - eye).abs().max() < 1e-12
    assert np.abs(constraints @ basis.numpy()).max() < 1e-12
    # The same space: each basis projects onto the other without loss (P_S B = B, P_B S = S).
    assert (svd_basis @ (svd_basis.T @ basis) - basis).abs().max() < 1e-10
    assert (basis @ (basis.T @ svd_basis) - svd_basis).abs().max() < 1e-10


@pytest.mark.parametrize("tess", [(2, 4), (4, 4)])
def test_basis_has_the_same_bits_on_every_machine(tess):
    # Exact elimination + fsum Gram–Schmidt: nothing in it depends on LAPACK or SIMD kernels.
    assert basis_digest(cpab_velocity_basis(tess)) == DIGEST[tess]


def test_basis_does_not_depend_on_the_order_of_the_constraints():
    # The RREF of L is unique for its row space, so any order of libcpab's rows gives the same bits.
    constraints = cpab_constraints((2, 4))
    order = list(range(len(constraints)))
    random.Random(0).shuffle(order)
    shuffled = velocity_basis(constraints[order], max_denominator=8)
    assert torch.equal(shuffled, velocity_basis(constraints, max_denominator=8))


def test_building_the_transformer_takes_no_svd_and_writes_no_basis_file(monkeypatch):
    import libcpab.tesselation as lt

    def refuse(*args, **kwargs):
        raise AssertionError("libcpab's SVD / basis file used")

    monkeypatch.setattr(lt.la, "svd", refuse)
    monkeypatch.setattr(lt.Tesselation, "__init__", refuse)
    spatial._cached_velocity_basis.cache_clear()
    try:
        t = make_transformer("cpab", tessellation=(2, 4))
    finally:
        spatial._cached_velocity_basis.cache_clear()
    assert t.dim == 30 and t.basis_digest() == DIGEST[(2, 4)]


def test_orthonormalise_is_gram_schmidt_in_the_given_order():
    # q1 = v1/|v1|; q2 = (v2 − (q1·v2) q1)/|·| — by hand for v1 = (3, 4), v2 = (1, 0).
    q = orthonormalise([[3.0, 4.0], [1.0, 0.0]])
    assert q[0] == [0.6, 0.8]
    assert q[1] == pytest.approx([0.8, -0.6], abs=1e-15)
    with pytest.raises(ValueError, match="dependent"):
        orthonormalise([[1.0, 2.0], [2.0, 4.0]])


# ---------------------------------------------------------------- the basis in the model's state


def test_basis_is_a_buffer_in_the_state_dict(cpab):
    state = nn.ModuleDict({"transformer": cpab}).state_dict()
    assert torch.equal(state["transformer.basis"], cpab.basis)
    assert cpab.basis.dtype == torch.float64 and not cpab.basis.requires_grad


def test_vitae_cpab_model_carries_the_basis_in_its_checkpoint_state():
    # The catalog's VITAE pair (supplement §2: [2, 4]) saves the basis with its weights.
    from inference import build, resolve_config

    model, _, _ = build(resolve_config("vitae_u", {"transformer": "cpab"}), (1, 16, 16), 10)
    assert basis_digest(model.state_dict()["transformer.basis"]) == DIGEST[(2, 4)]


def rotation(dim, seed=0):
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed),
                                       dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def test_loaded_basis_wins_over_a_rotated_basis_built_at_load(tmp_path, monkeypatch):
    # "Another machine": its freshly built basis is B·Q, the same space rotated. The checkpoint's B wins.
    trained = nn.ModuleDict({"transformer": make_transformer("cpab", tessellation=(2, 4))})
    theta = 0.5 * torch.randn(2, 30, generator=torch.Generator().manual_seed(0))
    p = base_points((7, 7)).expand(2, -1, -1)
    expected = trained["transformer"].points(theta, p)
    torch.save(trained.state_dict(), tmp_path / "checkpoint.pt")

    original = cpab_velocity_basis((2, 4))
    monkeypatch.setattr(spatial, "cpab_velocity_basis", lambda tess: original @ rotation(30))
    elsewhere = nn.ModuleDict({"transformer": make_transformer("cpab", tessellation=(2, 4))})
    # Control: before loading, the rotated basis does warp the same θ differently.
    assert (elsewhere["transformer"].points(theta, p) - expected).abs().max() > 1e-2
    elsewhere.load_state_dict(torch.load(tmp_path / "checkpoint.pt", weights_only=True))
    assert torch.equal(elsewhere["transformer"].basis, original)
    assert torch.equal(elsewhere["transformer"].points(theta, p), expected)


def test_checkpoint_without_basis_loads_libcpabs_basis_with_a_warning(cpab):
    # Saved before issue 27: the model then used libcpab's SVD basis, so that is the one to restore.
    fresh = nn.ModuleDict({"transformer": make_transformer("cpab", tessellation=(2, 4))})
    state = {k: v for k, v in fresh.state_dict().items() if not k.endswith("basis")}
    with pytest.warns(UserWarning, match="no CPAB basis 'transformer.basis'.*libcpab's SVD basis"):
        fresh.load_state_dict(state)
    assert torch.equal(fresh["transformer"].basis, spatial.libcpab_svd_basis((2, 4)))


def test_checkpoint_basis_outside_the_velocity_space_is_refused(cpab):
    # A column with L b ≠ 0 is a discontinuous or boundary-moving field: not a CPA velocity field.
    fresh = nn.ModuleDict({"transformer": make_transformer("cpab", tessellation=(2, 4))})
    bad = torch.randn(192, 30, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with pytest.raises(ValueError, match=r"transformer.basis: .* not a basis of continuous zero-boundary"):
        fresh.load_state_dict({"transformer.basis": bad})


# ---------------------------------------------------------------- the gradient, against float64


def triangles(nx, ny):
    """The tessellation's cells as triangles (centre, corner, corner), in libcpab's cell order:
    rows of squares top to bottom, squares left to right, then top, right, bottom, left triangle."""
    out = []
    for i in range(ny):
        for j in range(nx):
            x0, x1, y0, y1 = j / nx, (j + 1) / nx, i / ny, (i + 1) / ny
            c, ul, ur, ll, lr = ((x0 + x1) / 2, (y0 + y1) / 2), (x0, y0), (x1, y0), (x0, y1), (x1, y1)
            out += [(c, ul, ur), (c, ur, lr), (c, lr, ll), (c, ll, ul)]
    return torch.tensor(out, dtype=torch.float64)


def cell_flow(basis, theta, u):
    """expm([[A_c(θ)], [0 0 0]]) (u_c, 1) for the point u_c of every cell c, float64 (closed form).

    θ may carry batch dimensions ``(..., dim)``; the result is ``(..., nC, 2)``. The flow up to time s
    is that of sθ (A is linear in θ).
    """
    a = (theta @ basis.T).reshape(*theta.shape[:-1], -1, 2, 3)
    e = torch.linalg.matrix_exp(torch.cat([a, torch.zeros_like(a[..., :1, :])], dim=-2))
    return (e[..., :2, :2] @ u[..., None])[..., 0] + e[..., :2, 2]


def barycentric(tri, u):
    edges = torch.stack([tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]], dim=-1)
    lam = torch.linalg.solve(edges, (u - tri[:, 0])[..., None])[..., 0]
    return torch.cat([1 - lam.sum(-1, keepdim=True), lam], dim=-1)


# A fixed θ (no draw): 0.3·sin(1.7 k). Its trajectories from the cells' centroids stay inside their cells.
def fixed_theta(dim):
    return 0.3 * torch.sin(1.7 * torch.arange(1, dim + 1, dtype=torch.float64))


def test_cpab_gradient_is_finite_and_exact_at_zero_velocity(cpab):
    # Perspective decoders start at θ = 0, where libcpab's squaring count has a 0/0 gradient (NaN).
    x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    theta = torch.zeros(1, cpab.dim, requires_grad=True)
    cpab.warp(x, theta).square().sum().backward()
    assert torch.isfinite(theta.grad).all() and theta.grad.abs().sum() > 0
    # d/dθ_k expm(A(θ)) (u, 1) at θ = 0 is A(e_k) (u, 1); in the [-1, 1] frame twice that.
    tri = triangles(*cpab.tessellation)
    u = tri.mean(1)
    jac = torch.autograd.functional.jacobian(
        lambda th: cpab.points(th[None], (2 * u - 1)[None].float())[0], torch.zeros(cpab.dim))
    a = cpab.basis.T.reshape(cpab.dim, -1, 2, 3)  # A_c(e_k), (dim, nC, 2, 3)
    exact = 2 * ((a[..., :2] @ u[:, :, None])[..., 0] + a[..., 2])  # (dim, nC, 2)
    assert (jac.double().permute(2, 0, 1) - exact).abs().max() < 1e-5


def test_cpab_jacobian_matches_float64_central_differences_in_every_direction(cpab):
    # Every coordinate direction of θ and a ladder of steps: the central difference of the float64
    # closed form (a point that never leaves its cell) against libcpab's autograd Jacobian.
    tri = triangles(*cpab.tessellation)
    u, theta = tri.mean(1), fixed_theta(cpab.dim)
    steps = [1e-2, 1e-3, 1e-4]
    eye = torch.eye(cpab.dim, dtype=torch.float64)
    # Precondition: no trajectory crosses a cell boundary, at θ nor at any θ ± h e_k (largest h),
    # checked at 51 times s ∈ [0, 1].
    thetas = torch.cat([theta[None], theta + steps[0] * eye, theta - steps[0] * eye])
    times = torch.linspace(0, 1, 51, dtype=torch.float64)[:, None, None]
    assert barycentric(tri, cell_flow(cpab.basis, times * thetas, u)).min() > 0.02
    points = (2 * u - 1)[None].float()
    out = cpab.points(theta[None].float(), points)[0].double()
    assert (out - (2 * cell_flow(cpab.basis, theta, u) - 1)).abs().max() < 1e-4  # forward agrees
    jac = torch.autograd.functional.jacobian(lambda th: cpab.points(th[None], points)[0],
                                             theta.float()).double()  # (nC, 2, dim)
    assert jac.abs().max() > 0.1
    for h in steps:
        fd = torch.stack([(cell_flow(cpab.basis, theta + h * e, u) - cell_flow(cpab.basis, theta - h * e, u)) / h
                          for e in eye], dim=-1)  # 2·Δu / (2h)
        assert (jac - fd).abs().max() < 2e-5, h
