"""LP-Gen: the aggregate-posterior density and the low-density selection."""

import torch

import ppl_data
from inference import build, resolve_config
from inference.lpgen import aggregate_log_density, low_posterior_samples


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
