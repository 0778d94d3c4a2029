"""The VITAE model/guide pair (Detlefsen & Hauberg 2019) and its two objectives, ``vitae_u`` and ``vitae_c``.

A builder of pairs, like :func:`inference.pairs.vae_pair`: it assembles the story
(:mod:`ppl_models.vitae`) and its guides (:mod:`guides.vitae`) from a config, so it sits below the
catalog, which lists :data:`SPECS`. The paper's evaluation protocol and experiments are in
:mod:`inference.papers.vitae`, which imports these names (and the catalog); nothing here imports a
paper module.

Networks follow the VITAE supplement §2, Table 1 (MLPs, LeakyReLU 0.1, d = 2 per latent group for
MNIST). The likelihood is Bernoulli by default (MNIST, §2); with ``likelihood="gaussian"`` its
variance is fixed to σ²_decoder = 0.1 (§2, SMPL), i.e. ``obs_scale`` = √0.1.
"""

from __future__ import annotations

import math

from guides.vitae import CVITAEGuide, UVITAEGuide, VITAEEncoder
from ppl_models.likelihoods import make_likelihood
from ppl_models.nets import MLPDecoder
from ppl_models.spatial import TRANSFORMERS, make_transformer
from ppl_models.vitae import VITAEModel, canonical_shape, perspective_decoder

from .elbo import TermsELBO
from .errors import ConfigError
from .pairs import ModelSpec

# Supplement §2: VITAE nets have about half the VAE's neurons, appearance a bit more than perspective.
APP_ENCODER, APP_DECODER = (80, 40), (40, 40)
PERSP_ENCODER, PERSP_DECODER = (48, 24), (24, 24)

VITAE_PARAMS = {
    "persp_dim": 2,  # supplement Table 1: d = 2 for VITAE models (MNIST)
    "app_dim": 2,  # supplement Table 1
    "transformer": "affine_diffeo",  # supplement §3: the most stable parametrisation
    "cpab_tessellation": "2,4",  # supplement §2 (SMPL): [2, 4], zero boundary -> dim θ = 30
    "beta": 1.0,
    # Gaussian likelihood's standard deviation: supplement §2 fixes σ²_decoder = 0.1 (SMPL), so √0.1.
    # (Used with likelihood="gaussian"; the default, as for MNIST in Table 1, is Bernoulli.)
    "obs_scale": math.sqrt(0.1),
    # Side of the appearance decoder's canonical frame as a fraction of the image's (1 = the whole
    # frame, the paper). Below 1 the canonical image is drawn at the centre and zero-padded, so the
    # appearance path cannot place a small sprite anywhere: position must come from T_θ (ours).
    "canonical_fraction": 1.0,
    # Width multiplier of the appearance encoder/decoder hidden layers (1 = the supplement's sizes).
    "app_width": 1,
    # How the perspective decoder's last layer starts: "identity" (ours: weight 0, bias the
    # transformer's identity θ, so every parametrisation starts at T = id) or "default" (PyTorch's
    # default initialisation: the supplement's eqs. (1)-(3) read literally, θ ≈ small random values).
    "persp_init": "identity",
}
PERSP_INITS = ("identity", "default")


def _tessellation(text: str):
    try:
        cells = tuple(int(t) for t in str(text).split(","))
    except ValueError:
        cells = ()
    if len(cells) != 2 or min(cells) < 1:
        raise ConfigError(f"cpab_tessellation must be two positive integers like '2,4', got {text!r}")
    return cells


def vitae_pair(config: dict, data_shape, dataset_size: int, conditional: bool):
    """``(VITAEModel, UVITAEGuide or CVITAEGuide)`` for a config with the keys of ``VITAE_PARAMS``."""
    if len(data_shape) != 3:
        raise ConfigError(f"VITAE warps images: data must be (C, H, W), got shape {tuple(data_shape)}")
    if config.get("net", "auto") not in ("auto", "mlp"):
        raise ConfigError(f"VITAE uses the supplement's MLP nets; net must be 'auto' or 'mlp', "
                          f"got {config['net']!r}")
    dp, da = int(config["persp_dim"]), int(config["app_dim"])
    for name, value in (("persp_dim", dp), ("app_dim", da)):
        if value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")
    name = config["transformer"]
    if name not in TRANSFORMERS:
        raise ConfigError(f"unknown transformer {name!r}; expected one of {', '.join(TRANSFORMERS)}")
    kwargs = {"tessellation": _tessellation(config["cpab_tessellation"])} if name == "cpab" else {}
    try:
        transformer = make_transformer(name, **kwargs)
        likelihood = make_likelihood(config["likelihood"], config["obs_scale"])
    except (ValueError, ImportError) as err:
        raise ConfigError(str(err)) from None
    try:
        canonical = canonical_shape(data_shape, float(config["canonical_fraction"]))
    except (TypeError, ValueError):
        raise ConfigError(f"canonical_fraction must be a number in (0, 1], got "
                          f"{config['canonical_fraction']!r}") from None
    width = int(config["app_width"])
    if width < 1:
        raise ConfigError(f"app_width must be an integer >= 1, got {config['app_width']!r}")
    app_decoder = MLPDecoder(da, canonical, tuple(width * h for h in APP_DECODER))
    if config["persp_init"] not in PERSP_INITS:
        raise ConfigError(f"persp_init must be one of {', '.join(PERSP_INITS)}, got {config['persp_init']!r}")
    start = transformer.identity(1)[0] if config["persp_init"] == "identity" else None
    persp_dec = perspective_decoder(dp, transformer.dim, PERSP_DECODER, start=start)
    model = VITAEModel(app_decoder, persp_dec, transformer, dp, da, dataset_size, likelihood,
                       canvas=tuple(data_shape[1:]))
    persp_enc = VITAEEncoder(data_shape, dp, PERSP_ENCODER)
    app_enc = VITAEEncoder(data_shape, da, tuple(width * h for h in APP_ENCODER))
    if conditional:
        guide = CVITAEGuide(persp_enc, app_enc, persp_dec, transformer, dataset_size)
    else:
        guide = UVITAEGuide(persp_enc, app_enc, dataset_size)
    return model, guide


def _builder(conditional: bool):
    def build(config, data_shape, dataset_size):
        model, guide = vitae_pair(config, data_shape, dataset_size, conditional)
        beta = float(config["beta"])
        if not (beta > 0 and math.isfinite(beta)):
            raise ConfigError(f"beta must be > 0, got {beta}")
        return model, guide, TermsELBO(kl_scale=beta)
    return build


#: The two objectives, collected by :mod:`inference.catalog`.
SPECS = [
    ModelSpec("vitae_u", _builder(False), dict(VITAE_PARAMS),
              "U-VITAE: z_persp, z_app with independent encoders; --transformer "
              f"{'|'.join(TRANSFORMERS)}"),
    ModelSpec("vitae_c", _builder(True), dict(VITAE_PARAMS),
              "C-VITAE: z_app's encoder sees x warped back by T⁻¹(z_persp)"),
]


__all__ = ["VITAE_PARAMS", "SPECS", "vitae_pair", "APP_ENCODER", "APP_DECODER", "PERSP_ENCODER", "PERSP_DECODER"]
