"""ArviZ export: draws have the guide's / prior's moments, the layout ArviZ expects, and survive netCDF."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
import torch

from inference import build, resolve_config
from inference.metrics.reconstruction import image_errors
from inference.posterior import encode, encode_batched, to_inferencedata
from ppl_data import TensorData


@pytest.fixture
def pair():
    torch.manual_seed(0)
    config = resolve_config("vae", {"latent_dim": 3, "net": "mlp"})
    model, guide, _ = build(config, (1, 8, 8), 40)
    x = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    return model.eval(), guide.eval(), x


def test_encode_concatenates_guide_posterior_over_batches(pair):
    _, guide, x = pair
    enc = encode(guide, TensorData(x), batch_size=7)
    loc, scale = guide.posterior(x)["z"]
    torch.testing.assert_close(enc["z"][0], loc)
    torch.testing.assert_close(enc["z"][1], scale)


def test_inferencedata_layout_moments_and_netcdf_roundtrip(pair, tmp_path):
    model, guide, x = pair
    idata = to_inferencedata(model, guide, x[:5], num_draws=4000, seed=3)
    z = idata.posterior["z"]
    assert z.dims == ("chain", "draw", "obs", "z_dim") and z.shape == (1, 4000, 5, 3)
    loc, scale = guide.posterior(x[:5])["z"]
    # posterior draws have the guide's mean and scale (4000 draws: s.e. of the mean ≈ scale/63)
    np.testing.assert_allclose(z.mean(("chain", "draw")), loc, atol=float(4 * scale.max() / 63))
    np.testing.assert_allclose(z.std(("chain", "draw")), scale, rtol=0.08)
    # the prior group is N(0, I) draws, not the guide's
    p = idata.prior["z"].values
    assert abs(p.mean()) < 0.03 and abs(p.std() - 1) < 0.02
    np.testing.assert_array_equal(idata.observed_data["x"].values, x[:5].numpy())

    path = tmp_path / "posterior.nc"
    idata.to_netcdf(str(path))
    back = az.from_netcdf(str(path))
    np.testing.assert_array_equal(back.posterior["z"].values, z.values)
    summary = az.summary(back, var_names=["z"], kind="stats")
    assert len(summary) == 5 * 3
    np.testing.assert_allclose(summary["mean"].values, loc.numpy().ravel(), atol=0.05)


def test_dataset_subset_is_seeded_and_plot_posterior_runs(pair):
    import matplotlib
    matplotlib.use("Agg")
    model, guide, x = pair
    a = to_inferencedata(model, guide, TensorData(x), num_draws=10, num_obs=6, seed=1)
    b = to_inferencedata(model, guide, TensorData(x), num_draws=10, num_obs=6, seed=1)
    np.testing.assert_array_equal(a.observed_data["x"].values, b.observed_data["x"].values)
    np.testing.assert_array_equal(a.posterior["z"].values, b.posterior["z"].values)
    axes = az.plot_posterior(a, var_names=["z"], coords={"obs": [0]})
    assert np.asarray(axes).size == 3


def test_traversals_sweep_one_dimension_per_row(pair):
    from inference.pictures import traversals
    model, guide, x = pair
    grid = traversals(model, guide, x[3:4], steps=5)
    loc = guide.posterior(x[3:4])["z"][0][0]
    values = torch.linspace(-3, 3, 5)
    for d in range(3):  # brute force: decode each swept code on its own
        for j, v in enumerate(values):
            z = loc.clone()
            z[d] = v
            torch.testing.assert_close(grid[d * 5 + j], model.decode(z[None])[0])


def test_encode_batched_concatenates_tensors_tuples_dicts_and_pairs():
    x = torch.arange(10.0).reshape(10, 1)
    assert torch.equal(encode_batched(lambda c: c * 2, x, batch_size=3), x * 2)
    a, b = encode_batched(lambda c: (c, c.sum(1)), x, batch_size=4)
    assert torch.equal(a, x) and torch.equal(b, x[:, 0])
    d = encode_batched(lambda c: {"s": (c.numpy(), c + 1)}, x, batch_size=6)
    assert np.array_equal(d["s"][0], x.numpy()) and torch.equal(d["s"][1], x + 1)
    assert torch.equal(encode_batched(lambda u, v: u - v, (x, x + 1), batch_size=4), -torch.ones(10, 1))
    w = torch.ones(3, requires_grad=True)
    assert not encode_batched(lambda c: c * w, torch.ones(5, 3), 2).requires_grad  # under no_grad


def test_image_errors_by_hand():
    x = torch.tensor([[0.0, 1.0], [0.5, 0.5]])
    recon = torch.tensor([[0.5, 1.0], [0.0, 1.0]])
    errors = image_errors(x, recon)
    assert errors["l1"] == pytest.approx((0.5 + 0 + 0.5 + 0.5) / 4)
    assert errors["l2"] == pytest.approx((0.25 + 0 + 0.25 + 0.25) / 4)
    with pytest.raises(ValueError, match="one shape"):
        image_errors(x, torch.zeros(3))
