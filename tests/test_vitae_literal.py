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


# -- the swap test's diagnostics (issue 24) -------------------------------------------------------------
def test_normalised_mi_of_the_shape_itself_is_one_and_of_noise_about_zero():
    from inference.papers.vitae import normalised_mi

    gen = np.random.default_rng(0)
    shape = gen.integers(0, 3, 3000)
    code = np.c_[shape + 0.0, gen.normal(size=3000)]  # dim 0 is the shape, dim 1 noise
    nmi = normalised_mi(code, shape)
    # I(c; s) / H(s), plug-in: a code equal to the shape carries all of H(s), noise none of it
    assert nmi[0] == pytest.approx(1.0, abs=1e-12)
    # plug-in bias of noise: ≈ (20 − 1)(3 − 1) / (2N) nats over H(s) = log 3
    assert 0 <= nmi[1] < 0.02


def test_the_confusion_matrix_of_a_perfect_reader_is_diagonal():
    from inference.papers.vitae import confusion, reading

    true = torch.tensor([0, 1, 2, 2, 1, 0, 0])
    assert confusion(true, true, 3) == [[3, 0, 0], [0, 2, 0], [0, 0, 2]]
    read = torch.tensor([0, 2, 2, 0, 1, 0, 1])  # rows: true, columns: read, counted by hand
    assert confusion(true, read, 3) == [[2, 1, 0], [0, 1, 1], [1, 0, 1]]
    r = reading(read, true, 3)
    assert r["accuracy"] == pytest.approx(4 / 7) and r["confusion"] == confusion(true, read, 3)


# -- the stability study: the trained rule and the arms ---------------------------------------------------
def test_a_run_trained_when_finite_and_no_worse_than_the_smallest_learning_rate():
    from inference.papers.vitae import largest_trained_lr, mark_trained

    # supplement §3, Fig. 1: "missing values indicate that the network diverged"; the λ = 1e-4 run is the
    # reference ("to make sure all transformer types would converge"); a collapsed run may end finite
    rows = mark_trained([{"lr": 1e-4, "elbo": -60.0}, {"lr": 1e-3, "elbo": -40.0},
                         {"lr": 1e-2, "elbo": -300.0}, {"lr": 1e-1, "elbo": None}])
    assert [r["trained"] for r in rows] == [True, True, False, False]
    assert largest_trained_lr(rows) == 1e-3
    dead = mark_trained([{"lr": 1e-4, "elbo": None}, {"lr": 1e-3, "elbo": float("nan")}])
    assert [r["trained"] for r in dead] == [False, False] and largest_trained_lr(dead) == pytest.approx(1e-5)
    lone = mark_trained([{"lr": 1e-4, "elbo": None}, {"lr": 1e-2, "elbo": -500.0}])  # no reference: finite is enough
    assert [r["trained"] for r in lone] == [False, True]


def test_both_stability_arms_are_wired_with_their_start(tmp_path, monkeypatch):
    from inference.errors import NonFiniteLossError
    from inference.papers import vitae
    from inference.reproduce.experiments import VITAE_ARM_ROWS, _run_vitae, _vitae_rows

    given = []

    def fake_train(run_dir, key, overrides, *args, **kwargs):
        given.append((key, dict(overrides)))
        raise NonFiniteLossError("loss", 7, float("nan"))

    monkeypatch.setattr(vitae, "train_model", fake_train)
    def prepare(out, root, s):
        out.mkdir(parents=True)
        return out, None, None, None

    monkeypatch.setattr(vitae, "_prepare", prepare)
    monkeypatch.setattr(vitae, "plot_stability", lambda results, path: None)
    rows = _vitae_rows("tiny")
    seen = {}
    for arm, row in VITAE_ARM_ROWS.items():
        given.clear()
        numbers = _run_vitae(row, rows[row], 0, tmp_path / arm, "tiny")
        seen[arm] = numbers
        transformers, init = vitae.STABILITY_ARMS[arm]
        assert numbers["persp_init"] == init and numbers["transformers"] == list(transformers)
        assert {o["persp_init"] for _, o in given} == {init} and {k for k, _ in given} == {"vitae_c"}
        assert [o["transformer"] for _, o in given] == [t for t in transformers for _ in vitae.LEARNING_RATES]
        assert numbers[f"{transformers[0]}/lr=0.1/diverged_at"] == 7
        assert numbers[f"{transformers[0]}/lr=0.1/trained"] is False
    assert seen["literal"]["transformers"] == ["affine_literal", "affine_decomp_literal", "affine_diffeo"]
    assert seen["literal"]["persp_init"] == "default" and seen["identity"]["persp_init"] == "identity"
