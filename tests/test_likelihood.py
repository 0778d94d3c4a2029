"""The IWAE estimate of log p(x) against the closed-form marginal of a linear-Gaussian model.

z ~ N(0, I_d), x | z ~ N(W z + b, σ² I_p)  =>  x ~ N(b, W Wᵀ + σ² I_p)  (Bishop, PRML eq. 12.35).
The exact posterior is N(M⁻¹ Wᵀ (x − b) / σ², M⁻¹), M = I + Wᵀ W / σ²  (PRML eq. 12.42).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from inference.likelihood import log_likelihood
from ppl_data import TensorData

D, P, SIGMA = 2, 3, 0.5


class LinearGaussian(nn.Module):
    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.w = torch.randn(P, D, generator=gen, dtype=torch.float64)
        self.b = torch.randn(P, generator=gen, dtype=torch.float64)

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(D, dtype=x.dtype), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.w.T + self.b, SIGMA).to_event(1), obs=x)

    def marginal(self, x):
        cov = self.w @ self.w.T + SIGMA ** 2 * torch.eye(P, dtype=x.dtype)
        return dist.MultivariateNormal(self.b, cov).log_prob(x)


class PosteriorGuide(nn.Module):
    """The exact posterior, optionally shifted and widened to make it an imperfect proposal."""

    def __init__(self, model, shift=0.0, widen=1.0):
        super().__init__()
        self.model, self.shift, self.widen = model, shift, widen

    def forward(self, x):
        w = self.model.w
        m = torch.eye(D, dtype=x.dtype) + w.T @ w / SIGMA ** 2
        cov = torch.linalg.inv(m) * self.widen ** 2
        loc = (x - self.model.b) @ w @ torch.linalg.inv(m).T / SIGMA ** 2 + self.shift
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(loc, cov))


def data(n=20):
    model = LinearGaussian()
    x = model.b + torch.randn(n, P, generator=torch.Generator().manual_seed(1),
                                                 dtype=torch.float64) * 2
    return model, x


def test_exact_posterior_gives_the_exact_marginal_for_any_sample_size():
    model, x = data()
    est = log_likelihood(model, PosteriorGuide(model), x, num_samples=3, batch_size=8)
    torch.testing.assert_close(est.double(), model.marginal(x), atol=1e-4, rtol=0)


def test_imperfect_proposal_converges_from_below():
    model, x = data()
    guide = PosteriorGuide(model, shift=0.1, widen=1.2)
    exact = model.marginal(x)
    pyro.set_rng_seed(0)
    one = log_likelihood(model, guide, x, num_samples=1)  # the ELBO's single-sample estimate
    many = log_likelihood(model, guide, x, num_samples=4000, batch_size=10, particle_batch=500)
    torch.testing.assert_close(many.double(), exact, atol=0.05, rtol=0)
    assert abs((many.double() - exact).mean()) < 0.01
    assert one.mean() < exact.mean() - 0.05  # Jensen gap of the 1-sample bound


def test_accepts_a_dataset_and_rejects_global_sites():
    model, x = data(6)
    est = log_likelihood(model, PosteriorGuide(model), TensorData(x), num_samples=2, batch_size=4)
    torch.testing.assert_close(est.double(), model.marginal(x), atol=1e-4, rtol=0)

    def global_guide(x):
        pyro.sample("z", dist.Normal(torch.zeros(D, dtype=x.dtype), 1.0).to_event(1))

    with pytest.raises(ValueError, match="one value per item"):
        log_likelihood(model, global_guide, x, num_samples=2)
