"""Fitting and checking: ELBOs and penalties, the SVI runner, metrics, posterior export, pictures."""

from .build import MODELS, ModelSpec, Run, build, load_run, register_model, resolve_config
from .checkpoint import load_checkpoint, save_checkpoint
from .elbo import PlateInfo, TermsELBO, plate_info
from .errors import CheckpointError, ConfigError, NonFiniteLossError
from .handlers import LatentScaleMessenger, scale_latent
from .svi import FitResult, fit, warmup_weight

__all__ = ["MODELS", "ModelSpec", "Run", "build", "load_run", "register_model", "resolve_config",
           "load_checkpoint", "save_checkpoint", "PlateInfo", "TermsELBO", "plate_info",
           "CheckpointError", "ConfigError", "NonFiniteLossError", "LatentScaleMessenger",
           "scale_latent", "FitResult", "fit", "warmup_weight"]
