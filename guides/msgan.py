"""MS-GAN's posterior (MS-VAE appendix E): q(c | x) from the frozen stage one and q(z | x − y).

Nazari et al. (``papers/msvae-multi-stage-modelling.txt``), eq. 3 keeps a KL[q(z | x, y) ‖ p(z)]
term; a deterministic G has no tractable p_Θ(x | z, y), so q is fitted on the generator's own pairs
by :class:`inference.papers.msgan.MSGANTrainer`. Like MS-VAE's R, the encoder reads the residual
x − y, with y the stage-one decoder mean of the stage-one posterior mean.
"""

from __future__ import annotations

import torch
from torch import nn

from ppl_models.msgan import MSGANModel


class MSGANPosterior(nn.Module):
    """q(c | x) from the frozen stage one and q(z | x − y); the interface of ``guides.msvae.MSVAEGuide``.

    :param stage_one_guide: the first stage's guide; its ``encoder`` maps x to (loc, scale).
    :param encoder: maps the residual x − y to (loc, scale) of z.
    :param model: the matching :class:`~ppl_models.msgan.MSGANModel`; not registered as a submodule.
    """

    def __init__(self, stage_one_guide: nn.Module, encoder: nn.Module, model: MSGANModel):
        super().__init__()
        self.stage_one, self.encoder = stage_one_guide, encoder
        self.__dict__["model"] = model

    def first_posterior(self, x):
        with torch.no_grad():
            return self.stage_one.encoder(x)

    @torch.no_grad()
    def posterior(self, x):
        loc, scale = self.first_posterior(x)
        y = self.model.first_stage_mean(loc)
        return {"c": (loc, scale), "z": self.encoder(x - y)}


__all__ = ["MSGANPosterior"]
