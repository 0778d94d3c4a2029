"""MS-GAN (MS-VAE appendix E): the density-ratio objective of eq. (3) with separate G and D optimisers,
and the experiment that sets it against MS-VAE on the same frozen stage one.

Nazari et al. (``papers/msvae-multi-stage-modelling.txt``), eq. (3) and §E.1–E.2: adding and
subtracting log p(x | y) in eq. 2 turns stage two's term into E_q[log p_Θ(x | z, y) / p(x | y)],
a log density ratio estimated with a binary discriminator (Sugiyama et al. 2012):

* D_ω(x, y) is trained by logistic regression, real pairs (x, y) against generated pairs
  (G(y, z), y): :func:`inference.penalties.density_ratio_loss`. At its optimum the logit is
  log p(x | y)p(y) / p_Θ(x | y)p(y) (§E.2) — tested against a closed-form Gaussian ratio.
* G_Θ minimises E_{p_Θ(x|y)p(y)}[−D_ω] (eq. 4), the ratio estimate of KL(p_Θ ‖ p), which is the
  likelihood-free part of eq. 3 — :func:`generator_loss`.
* A deterministic G has no tractable p_Θ(x | z, y), so the posterior q(z | x, y) that eq. 3's
  KL[q ‖ p(z)] term (and the M1–M4 measures) need (:class:`guides.msgan.MSGANPosterior`) is fitted on
  the generator's own pairs: maximum likelihood of z under q(z | G(y, z) − y) (the encoder reads the
  residual, as in MS-VAE; a "reconstructor" in the manner of Srivastava et al. 2017). Its gradient
  also reaches G (``info_weight``), which keeps G from ignoring z (an InfoGAN-style term; ours).

Stage one is frozen; each step draws c ~ q(c | x) from its encoder and forms y = E[p(y | c)].

The experiment (:func:`run_experiment`, ``scripts/msgan.py``): stage one is the β-TCVAE of
:mod:`inference.papers.msvae` (C = 10, β = 4); stage two is trained twice on it, MS-VAE (term (b) of
eq. 2) and MS-GAN (Z through AdaIN, a z-encoder on the generator's pairs). Table columns (§4,
Appendices G, J): ``fid_recon`` (reconstructions of held-out items vs the items), ``fid_sample``
(G(y, z) with y from held-out items and z from the prior vs the items), L1, L2 of reconstructions,
M1–M4. FID uses our offline feature net (``inference.fid``), not Inception.
"""

from __future__ import annotations

import time
from pathlib import Path

import pyro.distributions as dist
import torch

from guides.msgan import MSGANPosterior
from guides.nets import make_encoder
from ppl_data import TexturedShapes
from ppl_models.msgan import MSGANModel, PairDiscriminator
from ppl_models.msvae import ConditionalDecoder

from ..errors import ConfigError
from ..metrics.reconstruction import image_errors
from ..penalties import density_ratio_loss
from ..pictures import save_grid
from ..posterior import encode_batched
from .msvae import (C_DIM, STAGE_ONE, Z_DIM, EvalSet, fit_stage, msvae_pair, reconstruct, second_stage_loss,
                    stage_one_member, table_md, timed, write_results)

DCGAN_LR, DCGAN_BETAS = 2e-4, (0.5, 0.999)  # Radford et al. 2015 §4 (the architecture appendix F names)


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """E_{p_Θ}[−D_ω] (appendix E eq. 4): the density-ratio estimate of KL(p_Θ(x|y)p(y) ‖ p(x|y)p(y))."""
    return (-fake_logits).mean()


def latent_nll(loc: torch.Tensor, scale: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """−E log q(z | ·) for the generator's own z (mean over the batch)."""
    return -dist.Normal(loc, scale).to_event(1).log_prob(z).mean()


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
        loss = density_ratio_loss(self.discriminator(x, y), self.discriminator(fake, y))
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


# -- the experiment -----------------------------------------------------------------------------------
QUICK = dict(resolution=32, batch_size=32, lr=1e-3, steps1=300, steps2=200, gan_steps=3000, gan_lr=2e-4,
             hidden=8, blocks=1, disc_hidden=16, n_eval=1000)
# Paper: batch 64, Adam 1e-4, 300k steps per stage (as inference.papers.msvae.PAPER); GAN: DCGAN's Adam
# 2e-4, β1 = 0.5.
PAPER = dict(resolution=64, batch_size=64, lr=1e-4, steps1=300_000, steps2=300_000, gan_steps=300_000,
             gan_lr=2e-4, hidden=32, blocks=2, disc_hidden=64, n_eval=10_000)
TABLE_COLUMNS = ("train_s", "fid_recon", "fid_sample", "l1", "l2", "M1", "M2", "M3", "M4")


def generated(model, c_loc: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Stage two's images G(y(c), z) for codes ``c_loc`` and second latents ``z``, in chunks."""
    return encode_batched(lambda c, zz: model.generate(c, zz)[1], (c_loc, z))


def run_experiment(settings: dict, out, *, seed: int = 0, device="cpu", command: str = "") -> dict:
    """Stage one, then MS-VAE and MS-GAN on it, under ``settings`` (:data:`QUICK`, :data:`PAPER`);
    writes ``results.json``, ``table.md`` and ``samples.png`` (rows: data, Y, MS-VAE reconstruction,
    MS-GAN reconstruction, MS-GAN with z from the prior) under ``out``.

    Returns ``{"settings", "wall_seconds", "command", "rows": {model: {column: value}}, "gan_log"}``.
    """
    s, out, t0, dev = dict(settings), Path(out), time.perf_counter(), torch.device(device)
    out.mkdir(parents=True, exist_ok=True)
    data = TexturedShapes(s["resolution"])
    shape, n = data.data_shape, len(data)
    ev = EvalSet(data, s["n_eval"], seed, dev)
    seconds = {}

    def train_timed(name, fn):
        result = timed(seconds, name, fn)
        seconds[name] = round(seconds[name], 1)
        print(f"{name}: {seconds[name]} s", flush=True)
        return result

    torch.manual_seed(seed)
    m1, g1, loss1, _ = stage_one_member(STAGE_ONE, C_DIM, shape, n)
    train_timed("betatc", lambda: fit_stage(m1, g1, loss1, data, s["steps1"], s, seed, dev))
    vae, vae_g = msvae_pair(m1, g1, "msvae", Z_DIM, shape, n, s["hidden"], s["blocks"])
    train_timed("msvae", lambda: fit_stage(vae, vae_g, second_stage_loss("msvae"), data, s["steps2"], s, seed, dev))
    gan = MSGANModel(m1, ConditionalDecoder(shape, Z_DIM, "y", "adain", hidden=s["hidden"], blocks=s["blocks"]),
                     Z_DIM).to(dev)
    disc = PairDiscriminator(shape, s["disc_hidden"]).to(dev)
    gan_post = MSGANPosterior(g1, make_encoder("auto", shape, Z_DIM), gan).to(dev)
    trainer = MSGANTrainer(gan, disc, gan_post, lr=s["gan_lr"])
    log = train_timed("msgan", lambda: train(trainer, data, s["gan_steps"], s["batch_size"], seed, dev,
                                             log_every=max(s["gan_steps"] // 10, 1)))

    z_prior = torch.randn(len(ev.x_eval), Z_DIM, generator=torch.Generator().manual_seed(seed + 2)).to(dev)
    c_loc = encode_batched(lambda x: g1.posterior(x)["z"][0], ev.x_eval)
    rows = {}

    def row(name, recon, sample, pair=None):
        r = {"train_s": seconds[name], "fid_recon": ev.fid(recon), "fid_sample": ev.fid(sample),
             **image_errors(ev.x_eval, recon)}
        if pair is not None:
            r.update(ev.conditioning(*pair, seed + 3))
        rows[name] = r
        print(name, {k: round(v, 4) for k, v in r.items()}, flush=True)

    base = encode_batched(m1.decode, c_loc)
    row("betatc", base, base)
    vae_rec = encode_batched(lambda x: reconstruct(vae, vae_g, x)[1], ev.x_eval)
    row("msvae", vae_rec, generated(vae, c_loc, z_prior), (vae, vae_g))
    gan_rec = encode_batched(lambda x: reconstruct(gan, gan_post, x)[1], ev.x_eval)
    gan_smp = generated(gan, c_loc, z_prior)
    row("msgan", gan_rec, gan_smp, (gan, gan_post))
    save_grid(torch.cat([ev.x_eval[:8], base[:8], vae_rec[:8], gan_rec[:8], gan_smp[:8]]).cpu(),
              out / "samples.png", nrow=8)
    wall = time.perf_counter() - t0
    results = {"settings": s, "wall_seconds": round(wall, 1), "command": command, "rows": rows, "gan_log": log}
    write_results(out, results, table_md(rows, TABLE_COLUMNS, s, wall))
    return results


__all__ = ["DCGAN_LR", "DCGAN_BETAS", "generator_loss", "latent_nll", "MSGANTrainer", "train", "generated",
           "run_experiment", "QUICK", "PAPER", "TABLE_COLUMNS"]
