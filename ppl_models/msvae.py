"""MS-VAE's generative story: C → Y, (Y, Z) → X, with Z entering the second decoder through AdaIN.

Nazari et al., *Multi-Stage Modelling* (``papers/msvae-multi-stage-modelling.txt``), §3 and Fig. 2c::

    c ~ p(c)                       the stage-one prior (a disentangling VAE of the ELBO family)
    y = E[p_θ(y | c)]              the stage-one decoder's mean: deterministic given c (site "y")
    z ~ p(z)                       independent of c
    x ~ p_Θ(x | y, z)              the stage-two decoder G_Θ(y, z); z enters only via AdaIN (§3.2)

so c and z are independent a priori and x depends on c only through y. Stage one is any
``VAEModel``-like module (``prior``, ``decoder``, ``likelihood``); it is frozen (no gradient reaches
it) unless ``end_to_end``.

Ablations (Appendix L) are switches of this one model, not copies:

* ``condition="code"``: G reads the first-stage code itself instead of Y (MSVAE-C-IN with
  ``inject="adain"``, MSVAE-C with ``inject="concat"``);
* ``inject="concat"``: the second latent is concatenated with G's input instead of AdaIN;
* ``end_to_end=True``: both stages learn together (§L.1);
* ``order="zc"``: the first stage learns Z (a plain VAE) and the second learns C (MSVAE-ZC, §L.3):
  the site names swap, so "z" → Y and (Y, c) → X.
"""

from __future__ import annotations

import pyro
import torch
from torch import nn

from .adain import AdaIN
from .likelihoods import BernoulliLikelihood
from .plates import data_plate
from .priors import StandardNormalPrior
from .registration import pyro_module

CONDITIONS = ("y", "code")
INJECTIONS = ("adain", "concat")
ORDERS = ("cz", "zc")


class ResidualAdaINBlock(nn.Module):
    """h + conv(relu(AdaIN(conv(relu(AdaIN(h, s)), s)))): the style enters only the branch."""

    def __init__(self, channels: int, style_dim: int):
        super().__init__()
        self.norm1, self.norm2 = AdaIN(channels, style_dim), AdaIN(channels, style_dim)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, h, s=None):
        r = self.conv1(torch.relu(self.norm1(h, s)))
        return h + self.conv2(torch.relu(self.norm2(r, s)))


class ConditionalDecoder(nn.Module):
    """G_Θ(u, s) -> logits (B, C, H, W): ``u`` is Y (an image) or a code, ``s`` the second latent.

    Y → conv 3×3 (``hidden``) → conv 4×4 stride 2 (2·``hidden``) → ``blocks`` residual AdaIN blocks
    at half resolution → transposed conv back to full resolution → conv 3×3 to C channels. A code
    input enters through a linear layer onto the half-resolution grid instead of the two first
    convolutions. With ``inject="concat"`` the second latent is concatenated with the input (as
    constant channels for Y) and the AdaIN layers have learned constant scale and shift.
    ``second_dim=0`` makes a decoder without a second latent (the big β-TCVAE's refiner).
    """

    def __init__(self, data_shape, second_dim: int, condition: str = "y", inject: str = "adain",
                 code_dim: int = 0, hidden: int = 16, blocks: int = 2):
        super().__init__()
        if condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")
        if inject not in INJECTIONS:
            raise ValueError(f"inject must be one of {INJECTIONS}, got {inject!r}")
        channels, height, width = data_shape
        if height % 2 or width % 2:
            raise ValueError(f"image sides must be even, got data shape {tuple(data_shape)}")
        self.data_shape, self.condition, self.inject = tuple(data_shape), condition, inject
        self.second_dim = second_dim
        extra = second_dim if inject == "concat" else 0
        style = second_dim if inject == "adain" else 0
        wide = 2 * hidden
        self.grid = (wide, height // 2, width // 2)
        if condition == "y":
            self.stem = nn.Sequential(nn.Conv2d(channels + extra, hidden, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(hidden, wide, 4, 2, 1))
        else:
            if code_dim < 1:
                raise ValueError(f"a code-conditioned decoder needs code_dim >= 1, got {code_dim}")
            self.stem = nn.Sequential(nn.Linear(code_dim + extra, wide * height * width // 4),
                                      nn.Unflatten(-1, self.grid))
        self.blocks = nn.ModuleList(ResidualAdaINBlock(wide, style) for _ in range(blocks))
        self.head = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(wide, hidden, 4, 2, 1), nn.ReLU(),
                                  nn.Conv2d(hidden, channels, 3, padding=1))

    def forward(self, u: torch.Tensor, s: torch.Tensor | None = None) -> torch.Tensor:
        if self.inject == "concat" and self.second_dim > 0:
            if self.condition == "y":
                s_map = s[:, :, None, None].expand(-1, -1, *u.shape[-2:])
                u = torch.cat([u, s_map], dim=1)
            else:
                u = torch.cat([u, s], dim=-1)
        h = self.stem(u)
        style = s if self.inject == "adain" else None
        for block in self.blocks:
            h = block(h, style)
        return self.head(h)


class RefinedDecoder(nn.Module):
    """code -> G(mean of (``decoder``(code) + ``dense``(code))): a one-latent decoder as large as MS-VAE's two.

    The big β-TCVAE's decoder (Appendix H): ``refiner`` is a Z-less G as wide as MS-VAE's, and
    ``dense`` (optional) a one-hidden-layer dense path to the full-resolution logits whose width
    makes up the rest of MS-VAE's parameter count — capacity at the pixels, at dense-layer cost.
    """

    def __init__(self, decoder: nn.Module, refiner: ConditionalDecoder, mean=torch.sigmoid,
                 dense: nn.Module | None = None):
        super().__init__()
        self.decoder, self.refiner, self.mean, self.dense = decoder, refiner, mean, dense

    def forward(self, code):
        logits = self.decoder(code)
        if self.dense is not None:
            logits = logits + self.dense(code)
        return self.refiner(self.mean(logits))


class MSVAEModel(nn.Module):
    """Pyro model ``model(x, index=None)``: sites ``c``, ``y`` (deterministic), ``z``, observed ``x``.

    :param stage_one: the trained first-stage model (``prior``, ``decoder``, ``likelihood``).
    :param decoder: G_Θ, a :class:`ConditionalDecoder`.
    :param second_dim: dimension of the second latent (Z, or C when ``order="zc"``).
    """

    def __init__(self, stage_one: nn.Module, decoder: ConditionalDecoder, second_dim: int,
                 dataset_size: int | None = None, likelihood=None, prior: nn.Module | None = None,
                 order: str = "cz", condition: str = "y", end_to_end: bool = False):
        super().__init__()
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
        if condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")
        if condition != decoder.condition:
            raise ValueError(f"the decoder reads {decoder.condition!r} but the model conditions on {condition!r}")
        self.stage_one, self.decoder = stage_one, decoder
        self.second_dim, self.dataset_size = second_dim, dataset_size
        self.likelihood = likelihood or BernoulliLikelihood()
        self.prior = prior if prior is not None else StandardNormalPrior(second_dim)
        self.order, self.condition, self.end_to_end = order, condition, bool(end_to_end)
        self.first_site, self.second_site = ("c", "z") if order == "cz" else ("z", "c")

    def first_stage_mean(self, code: torch.Tensor) -> torch.Tensor:
        """Y = E[p_θ(y | code)]; computed without gradient unless training end to end."""
        with torch.set_grad_enabled(self.end_to_end and torch.is_grad_enabled()):
            return self.stage_one.likelihood.mean(self.stage_one.decoder(code))

    def logits(self, code, y, second):
        return self.decoder(y if self.condition == "y" else code, second)

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None):
        pyro_module(self)
        event_dim = x.ndim - 1
        batch = x.shape[0]
        with data_plate(x, index, self.dataset_size):
            code = pyro.sample(self.first_site, self.stage_one.prior(batch))
            y = pyro.deterministic("y", self.first_stage_mean(code), event_dim=event_dim)
            second = pyro.sample(self.second_site, self.prior(batch))
            pyro.sample("x", self.likelihood(self.logits(code, y, second), event_dim), obs=x)
        return code, second

    @torch.no_grad()
    def generate(self, code: torch.Tensor, second: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Y, mean of p(x | y, second)) for given first-stage codes and second latents."""
        y = self.first_stage_mean(code)
        return y, self.likelihood.mean(self.logits(code, y, second))

    @torch.no_grad()
    def sample_prior(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.stage_one.prior(n).sample(), self.prior(n).sample()
