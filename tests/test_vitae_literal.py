"""The VITAE stability study's literal arm (issue 24): supplement eqs. (1)-(2) as written, from a
default-initialised last layer, against our identity start."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from inference.errors import ConfigError
from inference.vitae_pair import VITAE_PARAMS, vitae_pair
from ppl_models.spatial import make_transformer


def test_literal_eq1_is_the_matrix_itself():
    # supplement eq. (1): T(x) = [γ11 γ12 γ13; γ21 γ22 γ14] (x, y, 1)ᵀ, no identity offset
    t = make_transformer("affine_literal")
    theta = torch.tensor([[0.5, -0.2, 0.1, 0.3, 0.9, -0.4]], dtype=torch.float64)
    p = torch.tensor([[[0.25, -0.5], [1.0, 1.0]]], dtype=torch.float64)
    m = theta.reshape(2, 3).numpy()
    expected = p[0].numpy() @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(t.points(theta, p)[0].numpy(), expected, rtol=1e-12)
    # θ = 0 (a zero last layer) is the degenerate map: every point goes to the origin
    assert torch.count_nonzero(t.points(torch.zeros(1, 6, dtype=torch.float64), p)) == 0
    np.testing.assert_allclose(t.points(t.identity(1).double(), p).numpy(), p.numpy())


def test_literal_eq2_uses_the_raw_scale():
    # supplement eq. (2): A = R(α)·[[1, m], [0, 1]]·diag(s_x, s_y), b = (t_x, t_y), s raw
    t = make_transformer("affine_decomp_literal")
    a, m, sx, sy, tx, ty = 0.3, -0.7, 0.4, 1.8, 0.1, -0.2
    theta = torch.tensor([[a, m, sx, sy, tx, ty]], dtype=torch.float64)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    A = rot @ np.array([[1, m], [0, 1]]) @ np.diag([sx, sy])
    np.testing.assert_allclose(t.matrix(theta)[0].numpy(), np.c_[A, [tx, ty]], rtol=1e-12)
    inv = t.inverse_matrix(theta)[0].numpy()
    np.testing.assert_allclose(inv[:, :2] @ A, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(inv[:, :2] @ [tx, ty] + inv[:, 2], 0, atol=1e-12)
    assert torch.count_nonzero(t.matrix(torch.zeros(1, 6, dtype=torch.float64))) == 0  # s = 0: A = 0
    np.testing.assert_allclose(t.matrix(t.identity(1).double())[0].numpy(), np.eye(2, 3), atol=1e-15)


def _start_dets(transformer: str, persp_init: str, n: int = 256):
    torch.manual_seed(0)
    config = {**VITAE_PARAMS, "transformer": transformer, "persp_init": persp_init, "likelihood": "bernoulli",
              "net": "auto"}
    model, _ = vitae_pair(config, (1, 28, 28), 1000, conditional=True)
    with torch.no_grad():
        theta = model.persp_decoder(torch.randn(n, int(config["persp_dim"])))
        return torch.linalg.det(model.transformer.matrix(theta)[..., :2])


@pytest.mark.parametrize("name", ["affine", "affine_decomp", "affine_diffeo", "affine_literal",
                                  "affine_decomp_literal"])
def test_identity_start_is_the_identity_for_every_parametrisation(name):
    np.testing.assert_allclose(_start_dets(name, "identity").numpy(), 1.0, atol=1e-6)


def test_read_literally_eqs_1_2_start_near_degenerate_and_eq_3_near_the_identity():
    # the asymmetry the supplement's §3 study meets: default init gives θ ≈ 0
    for name in ("affine_literal", "affine_decomp_literal"):
        assert _start_dets(name, "default").abs().max() < 0.25, name
    det3 = _start_dets("affine_diffeo", "default")  # det expm(L) = exp(tr L) > 0, ≈ 1
    assert det3.min() > 0.5 and det3.max() < 2.0


def test_bad_persp_init_is_named():
    config = {**VITAE_PARAMS, "persp_init": "zeros", "likelihood": "bernoulli", "net": "auto"}
    with pytest.raises(ConfigError, match="persp_init must be one of identity, default, got 'zeros'"):
        vitae_pair(config, (1, 28, 28), 10, conditional=True)
