"""Steps per second of our Pyro SVI step against a plain PyTorch step, same nets, same loss.

    .venv/bin/python benchmarks/train_speed.py [--device cpu|cuda] [--steps 40] [--rounds 5]

(a) ``inference.fit`` — exactly what ``scripts/train.py`` runs: the conv64 VAE model/guide pair,
    ``TermsELBO`` (β = 4 as a scale on z in model and guide), Adam, procedural dSprites batches.
(b) the same encoder/decoder modules, the same batches and the same loss written directly:
    reparametrised z, Bernoulli log-likelihood, analytic KL, β, Adam.
Both are timed in alternating rounds in one process; the median round is reported.
Last line: ``ratio_pyro_over_plain=<seconds per Pyro step / seconds per plain step>`` (target ≤ 1.10).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.nn import functional as F

import ppl_data
from inference import build, fit, resolve_config

BATCH, BETA = 64, 4.0


def plain_steps(encoder, decoder, optimizer, data, steps, generator, device, n_items):
    for _ in range(steps):
        index = torch.randint(n_items, (BATCH,), generator=generator)
        x, _ = data.batch(index, device=device)
        optimizer.zero_grad(set_to_none=True)
        loc, scale = encoder(x)
        z = loc + scale * torch.randn_like(loc)
        logits = decoder(z)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        kl = 0.5 * (scale ** 2 + loc ** 2 - 1 - 2 * torch.log(scale)).sum(1)
        loss = (n_items / BATCH) * (recon + BETA * kl).sum()
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    device = torch.device(args.device)
    data = ppl_data.load("dsprites")
    config = resolve_config("vae", {"beta": BETA})
    torch.manual_seed(0)
    model, guide, elbo = build(config, data.data_shape, len(data))
    encoder, decoder = guide.encoder, model.decoder  # (b) trains the very same modules
    plain_opt = torch.optim.Adam(list(encoder.parameters()) + list(decoder.parameters()), lr=1e-4)
    gen = torch.Generator().manual_seed(0)

    def pyro_round(steps):
        fit(model, guide, elbo, data, steps=steps, batch_size=BATCH, device=device, progress=False,
            log_every=10, checkpoint_every=10 ** 9)
        if device.type == "cuda":
            torch.cuda.synchronize()

    pyro_round(5)  # warm-up: allocator, first-step validation
    model.to(device), guide.to(device)
    plain_steps(encoder, decoder, plain_opt, data, 5, gen, device, len(data))
    pyro_times, plain_times = [], []
    for _ in range(args.rounds):
        t = time.perf_counter()
        pyro_round(args.steps)
        pyro_times.append((time.perf_counter() - t) / args.steps)
        t = time.perf_counter()
        plain_steps(encoder, decoder, plain_opt, data, args.steps, gen, device, len(data))
        plain_times.append((time.perf_counter() - t) / args.steps)
    tp, tq = statistics.median(pyro_times), statistics.median(plain_times)
    print(f"conv64 VAE, batch {BATCH}, 64x64 dSprites, device {device}, {torch.get_num_threads()} threads, "
          f"{args.rounds} rounds x {args.steps} steps (median round)")
    print(f"| step | ms/step | steps/s | images/s |")
    print(f"|---|---|---|---|")
    for name, t in (("pyro SVI (inference.fit)", tp), ("plain PyTorch", tq)):
        print(f"| {name} | {1000 * t:.2f} | {1 / t:.1f} | {BATCH / t:.0f} |")
    print(f"ratio_pyro_over_plain={tp / tq:.3f}")


if __name__ == "__main__":
    main()
