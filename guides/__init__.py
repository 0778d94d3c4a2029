"""Amortized guides, one per generative story, and their encoder networks."""

from .nets import Conv64DLEncoder, Conv64Encoder, MLPEncoder, make_encoder
from .vae import VAEGuide

__all__ = ["Conv64DLEncoder", "Conv64Encoder", "MLPEncoder", "make_encoder", "VAEGuide"]
