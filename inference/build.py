"""Build a model, guide and ELBO from a plain config dict, and reload finished runs.

Every trainable objective is a :class:`ModelSpec` in ``MODELS``: a name, a builder and its
hyperparameters with their defaults (from the papers). ``scripts/train.py`` offers a flag for
each hyperparameter; a config records them, so ``load_run`` rebuilds the same pair.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from .checkpoint import load_checkpoint
from .elbo import TermsELBO
from .errors import CheckpointError, ConfigError
from .pairs import COMMON_DEFAULTS, ModelSpec, make_latent_prior, vae_pair  # noqa: F401
from .svi import CHECKPOINT, CONFIG, pair_module

MODELS: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    MODELS[spec.name] = spec
    return spec


def _build_vae(config, data_shape, dataset_size):
    model, guide = vae_pair(config, data_shape, dataset_size)
    beta = float(config["beta"])
    if not beta > 0:
        raise ConfigError(f"beta must be > 0, got {beta}")
    return model, guide, TermsELBO(kl_scale=beta)


register_model(ModelSpec("vae", _build_vae, {"beta": 1.0},
                         "VAE; with --beta, β-VAE (β as poutine scale on z in model and guide)"))


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


class Run(NamedTuple):
    model: object
    guide: object
    loss: object
    config: dict
    step: int


def load_run(run_dir, device="cpu") -> Run:
    """Model, guide, ELBO and config of a run directory, with the checkpoint's parameters loaded."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no {CONFIG})")
    try:
        config = json.loads((run_dir / CONFIG).read_text())
    except ValueError as err:
        raise ConfigError(f"{run_dir / CONFIG} is not valid JSON ({err})") from None
    state = load_checkpoint(run_dir / CHECKPOINT, map_location="cpu")
    missing = [k for k in ("model", "data_shape", "dataset_size")
               if not isinstance(config, dict) or k not in config]
    if missing:
        raise ConfigError(f"{run_dir / CONFIG} is not a run's config (no {', '.join(missing)})")
    model, guide, loss = build(config, config["data_shape"], config["dataset_size"])
    pair = pair_module(model, guide)
    try:
        pair.load_state_dict(state["params"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        reason = first[1].strip() if len(first) > 1 else first[0]
        raise CheckpointError(f"{run_dir / CHECKPOINT} does not match {run_dir / CONFIG} "
                              f"({reason[:160]})") from None
    loss.load_state_dict(state.get("loss_state", {}))
    pair.to(device).eval()
    if hasattr(loss, "to"):
        loss.to(device)
    return Run(model, guide, loss, config, state["step"])

# Objectives defined in their own modules register themselves on import.
from . import vitae  # noqa: E402,F401  (vitae_u, vitae_c)
from . import elbo_models  # noqa: E402,F401  (beta, capacity, betatc, factor, dip1, dip2, info)
