"""``scripts/train.py --model beta|capacity|betatc|factor|dip1|dip2|info``: the regularised ELBOs on the VAE pair.

Hyperparameter names are shared across models where they mean the same paper symbol (``beta``,
``gamma``, ``alpha``); defaults are the dpVAE supplement's Table 1 and DIP-VAE's §3.
"""

from __future__ import annotations

from .build import ModelSpec, register_model, vae_pair
from .elbos import BetaELBO, BetaTCELBO, CapacityELBO, DIPELBO, FactorELBO, InfoELBO
from .errors import ConfigError


def _builder(make_elbo):
    def build(config, data_shape, dataset_size):
        model, guide = vae_pair(config, data_shape, dataset_size)
        try:
            loss = make_elbo(config)
        except ValueError as err:
            raise ConfigError(f"model {config['model']!r}: {err}") from None
        return model, guide, loss
    return build


def _register(name, make_elbo, params, help_text):
    register_model(ModelSpec(name, _builder(make_elbo), params, help_text))


_register("beta", lambda c: BetaELBO(beta=c["beta"]),
          {"beta": 4.0},  # dpVAE supplement Table 1 (β-VAE-H)
          "β-VAE (Higgins et al. 2017): β as poutine scale on z in model and guide")
_register("capacity", lambda c: CapacityELBO(gamma=c["gamma"], c_max=c["c_max"], c_stop=c["c_stop"]),
          {"gamma": 15.0, "c_max": 25.0, "c_stop": 100_000},  # dpVAE supplement Table 1 (β-VAE-B)
          "β-VAE-B (Burgess et al. 2018): γ|KL − C|, C rising to c_max nats by step c_stop")
_register("betatc", lambda c: BetaTCELBO(alpha=c["alpha"], beta=c["beta"], gamma=c["gamma"],
                                         estimator=c["estimator"]),
          {"alpha": 1.0, "beta": 4.0, "gamma": 15.0,  # dpVAE supplement Table 1 (β-TC-VAE)
           "estimator": "mss"},                        # Chen et al. 2018 recommend MSS
          "β-TCVAE (Chen et al. 2018): α·MI + β·TC + γ·dim-KL, estimator mss or mws")
_register("factor", lambda c: FactorELBO(gamma=c["gamma"], latent_dim=int(c["latent_dim"])),
          {"gamma": 1000.0},  # dpVAE supplement Table 1 (FactorVAE)
          "FactorVAE (Kim & Mnih 2018): γ·TC by a 5×1000 discriminator trained alongside")
_register("dip1", lambda c: DIPELBO("i", c["lambda_od"], c["lambda_d"], momentum=c["dip_momentum"]),
          {"lambda_od": 10.0, "lambda_d": 100.0,  # DIP-VAE: λ_d = 10·λ_od for DIP-I
           "dip_momentum": 0.0},                  # running covariance (DIP §3) off by default
          "DIP-VAE-I (Kumar et al. 2018, eq. 6): covariance of the encoder means to I")
_register("dip2", lambda c: DIPELBO("ii", c["lambda_od"], c["lambda_d"], momentum=c["dip_momentum"]),
          {"lambda_od": 10.0, "lambda_d": 10.0,  # DIP-VAE-II: λ_d = λ_od
           "dip_momentum": 0.0},
          "DIP-VAE-II: Cov(μ) + mean diag(σ²) (the aggregate posterior's covariance) to I")
_register("info", lambda c: InfoELBO(alpha=c["alpha"], lambda_=c["lambda_mmd"]),
          {"alpha": 0.0, "lambda_mmd": 1000.0},  # dpVAE supplement Table 1 (InfoVAE α, λ)
          "InfoVAE (Zhao et al. 2019): (1−α)·KL + (α+λ−1)·MMD(q(z), p(z)); --lambda-mmd is λ")
