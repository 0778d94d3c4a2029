"""MS-VAE's guide, D-separated like its model: q(c | x) from stage one, q(z | x, y) from the residual x − y.

Nazari et al. (``papers/msvae-multi-stage-modelling.txt``) §3.2: "The encoder network R_θZ learns
the posterior distribution over Z as a function of the residual of X and Y", with Y the stage-one
decoder's mean of the sampled c (Appendix I: c ~ q_φ(c | x), y = E[p_θ(y | c)]), computed with
stage one frozen. With ``order="zc"`` the site names swap as in the model.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from ppl_models.msvae import MSVAEModel
from ppl_models.plates import data_plate
from ppl_models.registration import pyro_module


class MSVAEGuide(nn.Module):
    """Pyro guide ``guide(x, index=None)`` matching :class:`ppl_models.msvae.MSVAEModel`.

    :param stage_one_guide: the first stage's guide; its ``encoder`` maps x to (loc, scale).
    :param encoder: R, mapping the residual x − y to (loc, scale) of the second latent.
    :param model: the matching model (site names, Y, end-to-end switch); not registered as a submodule.
    """

    def __init__(self, stage_one_guide: nn.Module, encoder: nn.Module, model: MSVAEModel,
                 dataset_size: int | None = None):
        super().__init__()
        self.stage_one, self.encoder = stage_one_guide, encoder
        self.dataset_size = dataset_size
        self.__dict__["model"] = model  # shared with the model; keeps its parameters out of ours

    def first_posterior(self, x):
        with torch.set_grad_enabled(self.model.end_to_end and torch.is_grad_enabled()):
            return self.stage_one.encoder(x)

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None):
        pyro_module(self)
        with data_plate(x, index, self.dataset_size):
            loc, scale = self.first_posterior(x)
            code = pyro.sample(self.model.first_site, dist.Normal(loc, scale).to_event(1))
            y = self.model.first_stage_mean(code)
            loc2, scale2 = self.encoder(x - y)
            second = pyro.sample(self.model.second_site, dist.Normal(loc2, scale2).to_event(1))
        return code, second

    @torch.no_grad()
    def posterior(self, x: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{first: (loc, scale), second: (loc, scale)}``; the second read at Y of the first's mean."""
        loc, scale = self.first_posterior(x)
        y = self.model.first_stage_mean(loc)
        return {self.model.first_site: (loc, scale), self.model.second_site: self.encoder(x - y)}
