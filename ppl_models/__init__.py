"""Generative stories: Pyro models, priors, likelihoods and decoder networks."""

from .likelihoods import BernoulliLikelihood, GaussianLikelihood, make_likelihood
from .nets import Conv64Decoder, MLPDecoder, make_decoder
from .plates import DATA_PLATE, data_plate
from .priors import StandardNormalPrior
from .vae import VAEModel

__all__ = ["BernoulliLikelihood", "GaussianLikelihood", "make_likelihood", "Conv64Decoder",
           "MLPDecoder", "make_decoder", "DATA_PLATE", "data_plate", "StandardNormalPrior", "VAEModel"]
