"""Steps per second of our Pyro SVI step against a plain PyTorch step, same nets, same loss.

    .venv/bin/python benchmarks/train_speed.py [--model vae|betatc] [--device cpu|cuda]
        [--batch-size 64] [--steps 40] [--rounds 5] [--markdown FILE]

(a) ``inference.fit`` — exactly what ``scripts/train.py`` runs, its fast path included (the
    default): the conv64 pair, Adam, procedural dSprites batches, one ``fit`` call per round.
    ``--model vae``: ``TermsELBO`` with β = 4 as a scale on z in model and guide.
    ``--model betatc``: the peer benchmark's model, β-TCVAE with MWS, β = 6 (``train.py --model
    betatc --estimator mws --beta 6``).
(a') the same with ``fit(..., fast=False)``: the eager step.
(b) the same encoder/decoder modules, the same batches and the same loss written directly
    (reparametrised z, Bernoulli log-likelihood, analytic KL, β or the MWS decomposition), Adam:
    the plain PyTorch step a user would write.
All are timed in rotating interleaved rounds in one process; the median round is reported.
Last lines: ``plain_over_ours=<plain s/step / ours>`` (the figure of ``peer_speed.py`` against
plain PyTorch) and ``ratio_pyro_over_plain=<ours / plain>`` (target ≤ 1.10).
"""

from __future__ import annotations

import statistics
import time

import torch
from torch.nn import functional as F

import ppl_data
from inference.cli import OneLineParser, default_device, positive_int, torch_device
from inference import build, fit, resolve_config
from peer_speed import plain_loss  # benchmarks/ is on sys.path when run as a script

VAE_BETA = 4.0
BETATC = {"beta": 6.0, "estimator": "mws"}


def plain_steps(model_name, encoder, decoder, optimizer, data, steps, generator, device, n_items, batch):
    for _ in range(steps):
        index = torch.randint(n_items, (batch,), generator=generator)
        x, _ = data.batch(index, device=device)
        optimizer.zero_grad(set_to_none=True)
        loc, scale = encoder(x)
        z = loc + scale * torch.randn_like(loc)
        logits = decoder(z)
        if model_name == "betatc":
            loss = n_items * plain_loss(x, logits, z, loc, scale, n_items)
        else:
            recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
            kl = 0.5 * (scale ** 2 + loc ** 2 - 1 - 2 * torch.log(scale)).sum(1)
            loss = (n_items / batch) * (recon + VAE_BETA * kl).sum()
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None):
    p = OneLineParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=("vae", "betatc"), default="vae")
    p.add_argument("--device", type=torch_device, default=default_device())
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--steps", type=positive_int, default=40)
    p.add_argument("--rounds", type=positive_int, default=5)
    p.add_argument("--markdown", help="also append the rows to this markdown file")
    args = p.parse_args(argv)
    device, batch = torch.device(args.device), args.batch_size
    data = ppl_data.load("dsprites")
    config = resolve_config(args.model, BETATC if args.model == "betatc" else {"beta": VAE_BETA})
    torch.manual_seed(0)
    model, guide, elbo = build(config, data.data_shape, len(data))
    encoder, decoder = guide.encoder, model.decoder  # (b) trains the very same modules
    plain_opt = torch.optim.Adam(list(encoder.parameters()) + list(decoder.parameters()), lr=1e-4)
    gen = torch.Generator().manual_seed(0)

    def pyro_round(steps, fast=True):
        fit(model, guide, elbo, data, steps=steps, batch_size=batch, device=device, progress=False,
            log_every=10, checkpoint_every=10 ** 9, fast=fast)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def plain_round(steps):
        plain_steps(args.model, encoder, decoder, plain_opt, data, steps, gen, device, len(data), batch)

    variants = {"pyro SVI (inference.fit)": pyro_round,
                "pyro SVI, eager (fit fast=False)": lambda s: pyro_round(s, fast=False),
                "plain PyTorch": plain_round}
    for run in variants.values():  # warm-up: allocator, first-step validation
        run(5)
        model.to(device), guide.to(device)
    times = {name: [] for name in variants}
    names = list(variants)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t = time.perf_counter()
            variants[name](args.steps)
            times[name].append((time.perf_counter() - t) / args.steps)
    median = {name: statistics.median(t) for name, t in times.items()}
    tp, tq = median["pyro SVI (inference.fit)"], median["plain PyTorch"]
    what = "β-TCVAE (MWS, β = 6)" if args.model == "betatc" else f"VAE (β = {VAE_BETA:g})"
    print(f"conv64 {what}, batch {batch}, 64x64 dSprites, device {device}, {torch.get_num_threads()} "
          f"threads, {args.rounds} rounds x {args.steps} steps (median round)")
    print("| step | ms/step | steps/s | images/s |")
    print("|---|---|---|---|")
    for name, t in median.items():
        print(f"| {name} | {1000 * t:.2f} | {1 / t:.1f} | {batch / t:.0f} |")
    if args.markdown:
        from markdown_table import append_rows
        append_rows(args.markdown, [(f"train_speed, conv64 {what}", name, batch, batch / t, t,
                                     f"{t / tq:.2f}× plain's time") for name, t in median.items()])
    print(f"plain_over_ours={tq / tp:.3f}")
    print(f"ratio_pyro_over_plain={tp / tq:.3f}")


if __name__ == "__main__":
    main()
