"""What every objective's builder shares: the spec of a trainable objective and the VAE pair.

A leaf of ``inference``: it imports the networks and stories, never the catalog, so that paper
modules (``inference.papers.*``) can define their objectives' builders with it and the catalog can
import them without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from guides.nets import make_encoder
from guides.vae import VAEGuide
from ppl_models.likelihoods import make_likelihood
from ppl_models.nets import make_decoder
from ppl_models.priors import make_prior
from ppl_models.vae import VAEModel

from .errors import ConfigError

#: Settings every model shares, with defaults.
COMMON_DEFAULTS = {
    "latent_dim": 10,  # Burgess et al. 2018 / disentanglement_lib conv64 latent size
    "net": "auto",
    "likelihood": "bernoulli",
    "obs_scale": 0.1,
    "prior": "normal",  # "flow": dpVAE's decoupled prior
    "flow_layers": 6,  # dpVAE authors' code: 6 coupling blocks (supplement fig. 2 lost its numbers)
    "flow_hidden": 64,  # ... s and t with two hidden tanh layers of 64 units
}


@dataclass(frozen=True)
class ModelSpec:
    """A trainable objective: ``build(config, data_shape, dataset_size) -> (model, guide, loss)``."""

    name: str
    build: Callable
    params: dict = field(default_factory=dict)
    help: str = ""


def make_latent_prior(config: dict, latent_dim: int):
    """The prior a config asks for (``prior``, ``flow_layers``, ``flow_hidden``); ValueError if bad."""
    return make_prior(config.get("prior", "normal"), latent_dim, int(config.get("flow_layers", 6)),
                      int(config.get("flow_hidden", 64)))


def vae_pair(config: dict, data_shape, dataset_size: int):
    """The VAE model/guide pair every single-latent objective shares."""
    d = int(config["latent_dim"])
    if d < 1:
        raise ConfigError(f"latent_dim must be >= 1, got {d}")
    try:
        decoder = make_decoder(config["net"], d, data_shape)
        encoder = make_encoder(config["net"], data_shape, d)
        likelihood = make_likelihood(config["likelihood"], config["obs_scale"])
        prior = make_latent_prior(config, d)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    model = VAEModel(decoder, d, dataset_size=dataset_size, likelihood=likelihood, prior=prior)
    guide = VAEGuide(encoder, dataset_size=dataset_size)
    return model, guide
