"""Training MS-GAN (appendix E): the density-ratio objective of eq. (3) with separate G and D optimisers.

Nazari et al. (``papers/msvae-multi-stage-modelling.txt``), eq. (3) and §E.1–E.2: adding and
subtracting log p(x | y) in eq. 2 turns stage two's term into E_q[log p_Θ(x | z, y) / p(x | y)],
a log density ratio estimated with a binary discriminator (Sugiyama et al. 2012):

* D_ω(x, y) is trained by logistic regression, real pairs (x, y) against generated pairs
  (G(y, z), y). At its optimum the logit is log p(x | y)p(y) / p_Θ(x | y)p(y) (§E.2)
  — :func:`discriminator_loss`, tested against a closed-form Gaussian ratio.
* G_Θ minimises E_{p_Θ(x|y)p(y)}[−D_ω] (eq. 4), the ratio estimate of KL(p_Θ ‖ p), which is the
  likelihood-free part of eq. 3 — :func:`generator_loss`.
* A deterministic G has no tractable p_Θ(x | z, y), so the posterior q(z | x, y) that eq. 3's
  KL[q ‖ p(z)] term (and the M1–M4 measures) need is fitted on the generator's own pairs:
  maximum likelihood of z under q(z | G(y, z) − y) (the encoder reads the residual, as in MS-VAE;
  a "reconstructor" in the manner of Srivastava et al. 2017). Its gradient also reaches G
  (``info_weight``), which keeps G from ignoring z (an InfoGAN-style term; ours).

Stage one is frozen; each step draws c ~ q(c | x) from its encoder and forms y = E[p(y | c)].
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from ppl_models.msgan import MSGANModel, PairDiscriminator

from .errors import ConfigError

DCGAN_LR, DCGAN_BETAS = 2e-4, (0.5, 0.999)  # Radford et al. 2015 §4 (the architecture appendix F names)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Logistic loss −E_real log σ(D) − E_fake log(1 − σ(D)); its minimiser is D = log p_real / p_fake."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """E_{p_Θ}[−D_ω] (appendix E eq. 4): the density-ratio estimate of KL(p_Θ(x|y)p(y) ‖ p(x|y)p(y))."""
    return (-fake_logits).mean()


def latent_nll(loc: torch.Tensor, scale: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """−E log q(z | ·) for the generator's own z (mean over the batch)."""
    return -dist.Normal(loc, scale).to_event(1).log_prob(z).mean()


class MSGANPosterior(nn.Module):
    """q(c | x) from the frozen stage one and q(z | x − y); the interface of ``guides.msvae.MSVAEGuide``."""

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


class MSGANTrainer:
    """One MS-GAN step = :meth:`discriminator_step` then :meth:`generator_step`, each with its own Adam.

    The discriminator's optimiser holds D's parameters only; the generator's holds G's and the
    z-encoder's. Stage one is in neither.
    """

    def __init__(self, model: MSGANModel, discriminator: PairDiscriminator, posterior: MSGANPosterior,
                 lr: float = DCGAN_LR, betas=DCGAN_BETAS, info_weight: float = 1.0):
        if not lr > 0 or info_weight < 0:
            raise ConfigError(f"lr must be > 0 and info_weight >= 0, got {lr!r}, {info_weight!r}")
        self.model, self.discriminator, self.posterior = model, discriminator, posterior
        self.info_weight = float(info_weight)
        self.d_opt = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=betas)
        self.g_opt = torch.optim.Adam([*model.generator.parameters(), *posterior.encoder.parameters()],
                                      lr=lr, betas=betas)

    def conditioning(self, x: torch.Tensor) -> torch.Tensor:
        """y = E[p(y | c)], c ~ q(c | x) from the frozen stage one (no gradient)."""
        with torch.no_grad():
            loc, scale = self.posterior.first_posterior(x)
            return self.model.first_stage_mean(loc + scale * torch.randn_like(loc))

    def discriminator_step(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            fake = self.model.image(y, z)
        loss = discriminator_loss(self.discriminator(x, y), self.discriminator(fake, y))
        self.d_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.d_opt.step()
        return loss.detach()

    def generator_step(self, y: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
        fake = self.model.image(y, z)
        adv = generator_loss(self.discriminator(fake, y))
        info = latent_nll(*self.posterior.encoder(fake - y), z)
        self.g_opt.zero_grad(set_to_none=True)
        (adv + self.info_weight * info).backward()
        self.g_opt.step()
        self.discriminator.zero_grad(set_to_none=True)  # G's backward reached D's parameters; drop it
        return {"g_adv": adv.detach(), "z_nll": info.detach()}

    def step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """One alternating update on a batch ``x``; detached losses (no host sync)."""
        y = self.conditioning(x)
        z = self.model.prior(x.shape[0]).sample()
        d = self.discriminator_step(x, y, z)
        return {"d_loss": d, **self.generator_step(y, z)}


def train(trainer: MSGANTrainer, data, steps: int, batch_size: int = 64, seed: int = 0, device="cpu",
          log_every: int = 100) -> list[dict[str, float]]:
    """``steps`` MS-GAN steps on random batches of ``data``; window means every ``log_every`` steps."""
    if steps < 1 or batch_size < 1:
        raise ConfigError(f"steps and batch_size must be >= 1, got {steps}, {batch_size}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    log, acc = [], None
    for step in range(1, steps + 1):
        x, _ = data.batch(torch.randint(len(data), (batch_size,), generator=gen), device=device)
        terms = trainer.step(x)
        vec = torch.stack(list(terms.values()))
        acc = vec if acc is None else acc + vec
        if step % log_every == 0 or step == steps:
            n = log_every if step % log_every == 0 else step % log_every
            log.append({"step": step, **dict(zip(terms, (acc / n).tolist()))})
            acc = None
    return log
