"""dpVAE: LP-Gen (the aggregate-posterior density and the low-density selection) and the two
experiment scripts at a tiny budget (their logic is inference.papers.dpvae)."""

import json
import math
import runpy
from pathlib import Path

import torch

import ppl_data
from inference import build, resolve_config
from inference.papers import dpvae as D
from inference.papers.dpvae import aggregate_log_density, encode_posterior, low_posterior_samples

ROOT = Path(__file__).resolve().parents[1]


def test_aggregate_density_matches_brute_force_mixture():
    torch.manual_seed(0)
    loc, scale = torch.randn(7, 3), torch.rand(7, 3) + 0.3
    z = torch.randn(11, 3) * 2
    fast = aggregate_log_density(z, loc, scale, chunk=4)
    brute = torch.empty(11, dtype=torch.float64)
    for i in range(11):
        comps = [torch.distributions.Normal(loc[n].double(), scale[n].double()).log_prob(z[i].double()).sum()
                 for n in range(7)]
        brute[i] = torch.log(torch.stack(comps).exp().sum() / 7)
    assert torch.allclose(fast, brute, atol=1e-9)


def test_aggregate_density_far_from_data_is_finite_and_low():
    loc, scale = torch.zeros(5, 2), torch.full((5, 2), 0.1)
    lq = aggregate_log_density(torch.tensor([[0.0, 0.0], [30.0, 30.0]]), loc, scale)
    assert torch.isfinite(lq).all() and lq[1] < lq[0] - 1000


def test_selected_codes_have_the_lowest_density():
    data = ppl_data.load("digits")
    config = resolve_config("vae", {"latent_dim": 2, "prior": "flow", "flow_hidden": 8})
    torch.manual_seed(0)
    model, guide, _ = build(config, data.data_shape, len(data))
    res = low_posterior_samples(model, guide, data, num_samples=400, fraction=0.05, num_data=300)
    assert res.z.shape == (20, 2) and res.z_rest.shape == (380, 2)
    assert res.log_q.max() <= res.log_q_rest.min()
    assert torch.all(res.log_q[1:] >= res.log_q[:-1])
    # Seeded: the same call gives the same codes, and the global RNG did not move.
    state = torch.get_rng_state()
    again = low_posterior_samples(model, guide, data, num_samples=400, fraction=0.05, num_data=300)
    assert torch.equal(again.z, res.z) and torch.equal(torch.get_rng_state(), state)


def test_encode_posterior_of_a_seeded_subset_in_chunks():
    data = ppl_data.load("digits")
    torch.manual_seed(0)
    model, guide, _ = build(resolve_config("vae", {"latent_dim": 2, "net": "mlp"}), data.data_shape, len(data))
    loc, scale = encode_posterior(guide, data, num_items=70, batch_size=32, seed=5)
    index = torch.randperm(len(data), generator=torch.Generator().manual_seed(5))[:70]
    want_loc, want_scale = guide.posterior(data.batch(index)[0])["z"]
    assert loc.shape == (70, 2) and torch.allclose(loc, want_loc, atol=1e-6)
    assert torch.allclose(scale, want_scale, atol=1e-6)


def script_main(name):
    """``main`` of ``scripts/<name>.py``: the entry point itself (its logic is inference.papers.dpvae)."""
    return runpy.run_path(str(ROOT / "scripts" / f"{name}.py"))["main"]


def test_two_moons_script_compares_both_priors(tmp_path, monkeypatch):
    monkeypatch.setitem(D.TWO_MOONS_QUICK, "points", 600)  # a tenth of the data: LP-Gen scores 5000 × 600
    out = tmp_path / "moons"
    script_main("dpvae_two_moons")(["--quick", "--steps", "3", "--device", "cpu", "--out", str(out)])
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["β-VAE", "β-dpVAE"]
    for r in rows:
        assert all(math.isfinite(r[k]) for k in ("recon_mse", "prior_mean_nn_distance", "lpgen_mean_nn_distance"))
        assert 0 <= r["prior_on_manifold"] <= 1 and 0 <= r["lpgen_on_manifold"] <= 1
    md = (out / "results.md").read_text()
    assert "| model | recon MSE | prior: mean NN dist |" in md and "| β-dpVAE |" in md
    assert (out / "two_moons.png").is_file() and (out / "flow" / "checkpoint.pt").is_file()


def test_compare_script_scores_each_elbo_with_both_priors_and_resumes(tmp_path, monkeypatch):
    from inference import fid

    # An untrained FID feature net in the test's private cache (FID computed, the net not trained),
    # and the quick setting's evaluation sizes cut down for a test.
    path = fid.cache_dir() / f"feature_net-v{fid.FEATURE_NET_VERSION}-{fid.FEATURE_STEPS}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(fid.FeatureNet().state_dict(), path)
    for key, value in dict(mig_codes=200, fv_train=10, fv_eval=5, fid_images=40, lp_pool=80, lp_data=100).items():
        monkeypatch.setitem(D.COMPARE_QUICK, key, value)
    out = tmp_path / "compare"
    argv = ["--quick", "--steps", "1", "--models", "beta", "--device", "cpu", "--out", str(out)]
    script_main("dpvae_compare")(argv)
    rows = json.loads((out / "compare.json").read_text())["rows"]
    assert [r["run"] for r in rows] == ["beta-normal", "beta-flow"]
    for r in rows:
        assert all(math.isfinite(r[k]) for k in ("mig", "factor_vae", "recon_l2", "fid_prior", "fid_lpgen"))
        assert (out / r["run"] / "lp_samples.png").is_file()
    md = (out / "compare.md").read_text()
    assert "| ELBO | prior | MIG | FactorVAE |" in md and "| beta | " in md and "ΔFID LP-Gen" in md
    # --resume keeps the finished rows as they are (nothing retrained, nothing rescored).
    monkeypatch.setattr(D, "fit", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    script_main("dpvae_compare")([*argv, "--resume"])
    assert json.loads((out / "compare.json").read_text())["rows"] == rows
