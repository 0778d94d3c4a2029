"""The catalog of trainable objectives, by name: build a model, guide and ELBO from a config dict.

Every objective is a :class:`~inference.pairs.ModelSpec`: a name, a builder and its hyperparameters
with their defaults (from the papers). ``MODELS`` is built here, explicitly, from the baseline
objectives below and the VITAE pair's ``SPECS`` (:mod:`inference.vitae_pair`); nothing registers
itself on import. The catalog is generic machinery: it never imports ``inference.papers`` (the paper
modules import it), a rule ``tests/test_layering.py`` checks. ``scripts/train.py`` offers a flag for each
hyperparameter; a run's config records them, so :func:`inference.runs.load_run` rebuilds the pair.
A user adds an objective of their own with :func:`register_model`.

Hyperparameter names are shared across models where they mean the same paper symbol (``beta``,
``gamma``, ``alpha``); defaults are the dpVAE supplement's Table 1 and DIP-VAE's §3.
"""

from __future__ import annotations

from .elbo import TermsELBO
from .elbos import BetaELBO, BetaTCELBO, CapacityELBO, DIPELBO, FactorELBO, InfoELBO
from .errors import ConfigError
from .pairs import COMMON_DEFAULTS, ModelSpec, vae_pair
from .vitae_pair import SPECS as VITAE_SPECS


def _build_vae(config, data_shape, dataset_size):
    model, guide = vae_pair(config, data_shape, dataset_size)
    beta = float(config["beta"])
    if not beta > 0:
        raise ConfigError(f"beta must be > 0, got {beta}")
    return model, guide, TermsELBO(kl_scale=beta)


def _vae_objective(make_elbo):
    """A builder: the VAE pair with the ELBO ``make_elbo(config)`` (its ValueError as a ConfigError)."""
    def build(config, data_shape, dataset_size):
        model, guide = vae_pair(config, data_shape, dataset_size)
        try:
            loss = make_elbo(config)
        except ValueError as err:
            raise ConfigError(f"model {config['model']!r}: {err}") from None
        return model, guide, loss
    return build


#: The regularised ELBOs of :mod:`inference.elbos` on the VAE pair.
BASELINE_SPECS = [
    ModelSpec("beta", _vae_objective(lambda c: BetaELBO(beta=c["beta"])),
              {"beta": 4.0},  # dpVAE supplement Table 1 (β-VAE-H)
              "β-VAE (Higgins et al. 2017): β as poutine scale on z in model and guide"),
    ModelSpec("capacity", _vae_objective(lambda c: CapacityELBO(gamma=c["gamma"], c_max=c["c_max"],
                                                                c_stop=c["c_stop"])),
              {"gamma": 15.0, "c_max": 25.0, "c_stop": 100_000},  # dpVAE supplement Table 1 (β-VAE-B)
              "β-VAE-B (Burgess et al. 2018): γ|KL − C|, C rising to c_max nats by step c_stop"),
    ModelSpec("betatc", _vae_objective(lambda c: BetaTCELBO(alpha=c["alpha"], beta=c["beta"],
                                                            gamma=c["gamma"], estimator=c["estimator"])),
              {"alpha": 1.0, "beta": 4.0, "gamma": 15.0,  # dpVAE supplement Table 1 (β-TC-VAE)
               "estimator": "mss"},                        # Chen et al. 2018 recommend MSS
              "β-TCVAE (Chen et al. 2018): α·MI + β·TC + γ·dim-KL, estimator mss or mws"),
    ModelSpec("factor", _vae_objective(lambda c: FactorELBO(gamma=c["gamma"], latent_dim=int(c["latent_dim"]),
                                                            kind=c.get("discriminator", "dpvae"))),
              # γ: dpVAE supplement Table 1; discriminator: "dpvae" (its §3, 5×1000, half batches) or "dl"
              # (disentanglement_lib's fc_discriminator and step: 6×1000, TF init, the whole batch)
              {"gamma": 1000.0, "discriminator": "dpvae"},
              "FactorVAE (Kim & Mnih 2018): γ·TC by a 5×1000 (or disentanglement_lib's 6×1000) discriminator trained alongside"),
    ModelSpec("dip1", _vae_objective(lambda c: DIPELBO("i", c["lambda_od"], c["lambda_d"],
                                                       momentum=c["dip_momentum"])),
              {"lambda_od": 10.0, "lambda_d": 100.0,  # DIP-VAE: λ_d = 10·λ_od for DIP-I
               "dip_momentum": 0.0},                  # running covariance (DIP §3) off by default
              "DIP-VAE-I (Kumar et al. 2018, eq. 6): covariance of the encoder means to I"),
    ModelSpec("dip2", _vae_objective(lambda c: DIPELBO("ii", c["lambda_od"], c["lambda_d"],
                                                       momentum=c["dip_momentum"])),
              {"lambda_od": 10.0, "lambda_d": 10.0,  # DIP-VAE-II: λ_d = λ_od
               "dip_momentum": 0.0},
              "DIP-VAE-II: Cov(μ) + mean diag(σ²) (the aggregate posterior's covariance) to I"),
    ModelSpec("info", _vae_objective(lambda c: InfoELBO(alpha=c["alpha"], lambda_=c["lambda_mmd"])),
              {"alpha": 0.0, "lambda_mmd": 1000.0},  # dpVAE supplement Table 1 (InfoVAE α, λ)
              "InfoVAE (Zhao et al. 2019): (1−α)·KL + (α+λ−1)·MMD(q(z), p(z)); --lambda-mmd is λ"),
]

#: Every trainable objective by name: the plain VAE, the papers' objectives, the baselines.
MODELS: dict[str, ModelSpec] = {
    spec.name: spec for spec in [
        ModelSpec("vae", _build_vae, {"beta": 1.0},
                  "VAE; with --beta, β-VAE (β as poutine scale on z in model and guide)"),
        *VITAE_SPECS,
        *BASELINE_SPECS,
    ]
}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add (or replace) a user's objective in :data:`MODELS`; returns ``spec``."""
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"register_model takes a ModelSpec, got {type(spec).__name__}")
    MODELS[spec.name] = spec
    return spec


def resolve_config(model: str, overrides: dict | None = None) -> dict:
    """Defaults of ``model`` (common settings plus its hyperparameters) updated by ``overrides``.

    An override that the model does not use is an error, so a typo'd flag never goes unnoticed.
    """
    if model not in MODELS:
        raise ConfigError(f"unknown model {model!r}; known: {', '.join(sorted(MODELS))}")
    spec = MODELS[model]
    config = {"model": model, **COMMON_DEFAULTS, **spec.params}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in config:
            raise ConfigError(f"model {model!r} has no setting {key!r}; its settings: "
                              f"{', '.join(sorted(k for k in config if k != 'model'))}")
        config[key] = value
    return config


def build(config: dict, data_shape, dataset_size: int):
    """``(model, guide, loss)`` for a resolved config."""
    spec = MODELS.get(config.get("model"))
    if spec is None:
        raise ConfigError(f"unknown model {config.get('model')!r}; known: {', '.join(sorted(MODELS))}")
    return spec.build(config, tuple(data_shape), int(dataset_size))


__all__ = ["MODELS", "BASELINE_SPECS", "ModelSpec", "register_model", "resolve_config", "build"]
