"""The VAE's ELBO against closed forms and against Pyro's own estimator."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO
from torch import nn

from guides.vae import VAEGuide
from inference.elbo import TermsELBO
from inference.handlers import scale_latent
from ppl_models.likelihoods import GaussianLikelihood
from ppl_models.vae import VAEModel

D, d, SIGMA = 5, 3, 0.7


class LinearEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.loc = nn.Linear(D, d)
        self.raw = nn.Linear(D, d)

    def forward(self, x):
        return self.loc(x), nn.functional.softplus(self.raw(x)) + 0.1


def linear_gaussian_pair(dataset_size=None, prior=None):
    torch.manual_seed(1)
    decoder = nn.Linear(d, D)
    model = VAEModel(decoder, d, dataset_size=dataset_size, likelihood=GaussianLikelihood(SIGMA), prior=prior)
    guide = VAEGuide(LinearEncoder(), dataset_size=dataset_size)
    return model, guide


def closed_form_elbo(model, guide, x):
    """Per-item ELBO of the linear-Gaussian VAE: E_q log N(x; Wz+b, σ²I) − KL(N(m, s²) || N(0, I))."""
    W, b = model.decoder.weight, model.decoder.bias
    m, s = guide.encoder(x)
    mean = m @ W.T + b
    var_term = (W ** 2 @ (s ** 2).T).T  # diag(W diag(s²) Wᵀ), per item
    exp_loglik = (-0.5 * math.log(2 * math.pi * SIGMA ** 2) * D
                  - ((x - mean) ** 2 + var_term).sum(-1) / (2 * SIGMA ** 2))
    kl = 0.5 * (s ** 2 + m ** 2 - 1 - torch.log(s ** 2)).sum(-1)
    return exp_loglik, kl


def test_terms_match_closed_form_linear_gaussian():
    model, guide = linear_gaussian_pair()
    x = torch.randn(4, D)
    elbo = TermsELBO(num_particles=20000, vectorize_particles=True)
    with torch.no_grad():
        loss = elbo.differentiable_loss(model, guide, x)
        exp_loglik, kl = closed_form_elbo(model, guide, x)
    # Per-item terms are batch means; the KL is exact, the likelihood a 20k-sample average.
    assert torch.allclose(elbo.terms["kl"], kl.mean(), atol=1e-5)
    assert torch.allclose(elbo.terms["recon"], -exp_loglik.mean(), rtol=2e-3)
    # The loss is Pyro's: summed over the batch (the plate has no subsampling here).
    assert torch.allclose(loss, -(exp_loglik - kl).sum(), rtol=2e-3)


def test_same_value_as_pyro_trace_mean_field():
    model, guide = linear_gaussian_pair()
    x = torch.randn(6, D)
    pyro.set_rng_seed(5)
    ours = TermsELBO().loss(model, guide, x)
    pyro.set_rng_seed(5)
    theirs = TraceMeanField_ELBO().loss(model, guide, x)
    assert ours == pytest.approx(theirs, rel=1e-6)


def test_kl_scale_weights_only_the_kl():
    model, guide = linear_gaussian_pair()
    x = torch.randn(6, D)
    pyro.set_rng_seed(5)
    plain = TermsELBO()
    l1 = plain.differentiable_loss(model, guide, x)
    pyro.set_rng_seed(5)
    beta = TermsELBO(kl_scale=4.0)
    l4 = beta.differentiable_loss(model, guide, x)
    with torch.no_grad():
        _, kl = closed_form_elbo(model, guide, x)
    assert torch.allclose(l4 - l1, 3.0 * kl.sum(), rtol=1e-5)
    assert torch.allclose(beta.terms["loss"], beta.terms["recon"] + 4.0 * beta.terms["kl"], rtol=1e-6)
    # Pyro reads the KL's scale from the guide site: scaling the model alone changes nothing.
    pyro.set_rng_seed(5)
    model_only = TraceMeanField_ELBO().loss(scale_latent(model, 4.0), guide, x)
    assert model_only == pytest.approx(float(l1.detach()), rel=1e-6)


def test_data_plate_scales_by_dataset_size():
    x = torch.randn(8, D)
    index = torch.arange(8) * 3
    model, guide = linear_gaussian_pair(dataset_size=1000)
    pyro.set_rng_seed(2)
    elbo = TermsELBO()
    full = elbo.differentiable_loss(model, guide, x, index)
    per_item = dict(elbo.terms)
    model1, guide1 = linear_gaussian_pair()
    pyro.set_rng_seed(2)
    batch_only = TermsELBO().differentiable_loss(model1, guide1, x)
    assert torch.allclose(full, batch_only * 1000 / 8, rtol=1e-5)
    assert torch.allclose(per_item["loss"], batch_only / 8, rtol=1e-5)


def test_monte_carlo_kl_fallback_is_taken_and_unbiased():
    """A prior with no registered KL makes the ELBO use log q − log p; its mean is the analytic KL."""

    class TransformedNormalPrior(nn.Module):
        def forward(self, batch_size):
            base = dist.Normal(torch.zeros(batch_size, d), torch.ones(batch_size, d))
            same = dist.TransformedDistribution(base, [dist.transforms.AffineTransform(0.0, 1.0)])
            return same.to_event(1)

    model, guide = linear_gaussian_pair(prior=TransformedNormalPrior())
    x = torch.randn(4, D)
    elbo = TermsELBO(num_particles=20000, vectorize_particles=True)
    with torch.no_grad():
        elbo.differentiable_loss(model, guide, x)
        _, kl = closed_form_elbo(model, guide, x)
    assert elbo.analytic_kl == {"z": False}
    assert torch.allclose(elbo.terms["kl"], kl.mean(), rtol=0.02)
    standard, _ = linear_gaussian_pair()
    analytic = TermsELBO()
    analytic.differentiable_loss(standard, guide, x)
    assert analytic.analytic_kl == {"z": True}


def test_gradient_flows_to_encoder_and_decoder():
    model, guide = linear_gaussian_pair()
    x = torch.randn(6, D)
    TermsELBO().differentiable_loss(model, guide, x).backward()
    for module in (model.decoder, guide.encoder):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_bad_kl_scale_refused():
    with pytest.raises(ValueError, match="kl_scale.*0"):
        TermsELBO(kl_scale=0)
    with pytest.raises(ValueError, match="positive"):
        scale_latent(lambda: None, scale=0.0)
