"""Spatial transformers (VITAE supplement eqs. 1-3, CPAB): identity, inverses, expm, closed forms."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ppl_models.spatial import (CPAB_BACKEND, AffineTransformer, DiffeomorphicAffineTransformer,
                                base_points, make_transformer)

AFFINE = ["affine", "affine_decomp", "affine_decomp_pos", "affine_diffeo"]
ROOT = Path(__file__).resolve().parents[1]


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


def eq2_matrix(alpha, m, sx, sy):
    """R(α)·Shear(m)·diag(s_x, s_y) from the three explicit 2×2 factors, in float64."""
    rot = torch.tensor([[math.cos(alpha), -math.sin(alpha)], [math.sin(alpha), math.cos(alpha)]],
                       dtype=torch.float64)
    shear = torch.tensor([[1.0, m], [0.0, 1.0]], dtype=torch.float64)
    return rot @ shear @ torch.diag(torch.tensor([sx, sy], dtype=torch.float64))


# Scales (s_x, s_y): an ordinary one, a singular one (s_x = 0) and a reflecting one (s_x < 0).
SCALES = [(1.5, 0.8), (0.0, 0.8), (-0.5, 1.2)]


@pytest.mark.parametrize("sx, sy", SCALES)
def test_decomposed_affine_matches_product_of_factors(sx, sy):
    # Supplement eq. (2): A = R(α)·[[1, m], [0, 1]]·diag(s_x, s_y), b = t, with s raw (θ_s = s − 1).
    alpha, m, tx, ty = 0.7, 0.3, 0.2, -0.1
    theta = torch.tensor([[alpha, m, sx - 1, sy - 1, tx, ty]], dtype=torch.float64)
    got = make_transformer("affine_decomp").matrix(theta)[0]
    assert torch.allclose(got[:, :2], eq2_matrix(alpha, m, sx, sy))
    assert torch.allclose(got[:, 2], torch.tensor([tx, ty], dtype=torch.float64))
    det = float(torch.linalg.det(got[:, :2]))
    assert det == pytest.approx(sx * sy, abs=1e-12)  # det R = det Shear = 1
    if sx <= 0:
        assert det <= 1e-12  # singular (s_x = 0) or a reflection (s_x < 0): eq. (2) allows both


@pytest.mark.parametrize("sx, sy", SCALES)
def test_positive_scale_decomposed_affine_is_eq2_with_exp_scale(sx, sy):
    # Eq. (2) with s = exp(θ_s) (ours, "affine_decomp_pos"): the same θ never gives det A ≤ 0.
    alpha, m, tx, ty = 0.7, 0.3, 0.2, -0.1
    theta = torch.tensor([[alpha, m, sx - 1, sy - 1, tx, ty]], dtype=torch.float64)
    got = make_transformer("affine_decomp_pos").matrix(theta)[0]
    assert torch.allclose(got[:, :2], eq2_matrix(alpha, m, math.exp(sx - 1), math.exp(sy - 1)))
    assert torch.allclose(got[:, 2], torch.tensor([tx, ty], dtype=torch.float64))
    det = float(torch.linalg.det(got[:, :2]))
    assert det == pytest.approx(math.exp(sx + sy - 2)) and det > 0


@pytest.mark.parametrize("sx, sy", SCALES)
def test_decomposed_affine_closed_form_inverse(sx, sy):
    # Eq. (2) inverted: [A⁻¹ | −A⁻¹ t] against LAPACK's inverse of the product; inf/NaN when singular.
    alpha, m, tx, ty = -0.4, 0.5, 0.3, 0.1
    theta = torch.tensor([[alpha, m, sx - 1, sy - 1, tx, ty]], dtype=torch.float64)
    got = make_transformer("affine_decomp").inverse_matrix(theta)[0]
    if sx * sy == 0:
        assert not torch.isfinite(got).all()  # a diverged run, not a LinAlgError
        return
    a_inv = torch.linalg.inv(eq2_matrix(alpha, m, sx, sy))
    assert torch.allclose(got[:, :2], a_inv)
    assert torch.allclose(got[:, 2], -a_inv @ torch.tensor([tx, ty], dtype=torch.float64))


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


# The CPAB gradient (at θ = 0 and against float64 central differences) and the basis: see
# tests/test_cpab_portable.py.


def test_cpab_uses_the_pinned_pure_pytorch_integrator_even_where_libcpab_compiled(cpab, monkeypatch):
    # Freifeld et al. 2015 integrator: libcpab's pure-PyTorch one, whatever its dispatcher would pick.
    import libcpab.transformer as lt

    assert cpab.backend == CPAB_BACKEND == "pytorch"
    assert cpab._integrate is lt.CPAB_transformer_slow
    theta = small_theta(cpab, n=2, scale=0.5)
    p = base_points((6, 6)).expand(2, -1, -1)
    before = cpab.points(theta, p)
    calls = []

    class Compiled:  # stands in for a successfully built C++/CUDA extension
        def forward(self, *args):
            calls.append(args)
            raise AssertionError("compiled CPAB integrator called")

        backward = forward

    for flag, ext in (("_cpu_succes", "cpab_cpu"), ("_gpu_succes", "cpab_gpu")):
        monkeypatch.setattr(lt, flag, True)
        monkeypatch.setattr(lt, ext, Compiled())
    monkeypatch.setattr(cpab._params, "use_slow", False)  # the dispatcher would go compiled now
    theta = theta.clone().requires_grad_(True)
    after = cpab.points(theta, p)
    after.sum().backward()
    assert not calls and torch.equal(before, after.detach()) and torch.isfinite(theta.grad).all()


def test_cpab_import_builds_nothing_and_keeps_no_cuda_message_off_stderr(tmp_path):
    # Supplement §2 CPAB on a CPU run: no JIT build of libcpab, no "No CUDA runtime" on stderr.
    pytest.importorskip("libcpab")
    env = {**os.environ, "CUDA_HOME": str(tmp_path), "CUDA_VISIBLE_DEVICES": "",
           "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    run = lambda code: subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,  # noqa: E731
                                      capture_output=True, text=True, timeout=300)
    # Control: in this environment torch's cpp_extension does log the message on import.
    control = run("import torch.utils.cpp_extension")
    assert "No CUDA runtime is found" in control.stderr
    ours = run("import torch\n"
               "from ppl_models.spatial import make_transformer\n"
               "t = make_transformer('cpab')\n"
               "print(t.warp(torch.rand(1, 1, 8, 8), 0.1 * torch.ones(1, t.dim)).abs().sum() > 0)\n"
               "import libcpab.transformer as lt\n"
               "print(lt._cpu_succes, lt._gpu_succes)\n")
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout.split() == ["tensor(True)", "False", "False"]
    assert "No CUDA runtime" not in ours.stderr and "cpab" not in ours.stderr.lower()
    assert not (tmp_path / "ext").exists()  # torch never set up a build directory
