"""Fitting and checking: ELBOs and penalties, the SVI runner, the model catalog, runs, metrics,
posterior export, pictures, the evaluation report and sweeps (``inference.papers``: one module per paper)."""

from .catalog import MODELS, ModelSpec, build, register_model, resolve_config
from .checkpoint import load_checkpoint, save_checkpoint
from .elbo import PlateInfo, TermsELBO, plate_info
from .errors import CheckpointError, ConfigError, NonFiniteLossError
from .handlers import LatentScaleMessenger, scale_latent
from .runs import Run, load_run, train_run
from .svi import FitResult, fit, warmup_weight

__all__ = ["MODELS", "ModelSpec", "Run", "build", "load_run", "register_model", "resolve_config",
           "load_checkpoint", "save_checkpoint", "PlateInfo", "TermsELBO", "plate_info",
           "CheckpointError", "ConfigError", "NonFiniteLossError", "LatentScaleMessenger",
           "scale_latent", "FitResult", "fit", "warmup_weight", "train_run"]
