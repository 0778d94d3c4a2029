"""Steps per second of each regularised ELBO against the plain VAE ELBO: conv64 pair, batch 64, dSprites.

    nice -n 10 .venv/bin/python benchmarks/penalty_overhead.py [--steps 20] [--rounds 3] [--device cpu]

Each ELBO gets a fresh copy of the same pair; rounds are interleaved (every ELBO once per round) so
load on the machine hits all alike; the median step time per ELBO is reported. Last line:
``max_overhead=<worst time ratio to the plain ELBO over all but FactorVAE>``.
"""

import copy
import statistics
import time

import pyro
import torch

import ppl_data
from inference.cli import OneLineParser, default_device, positive_int, torch_device
from inference import build, resolve_config
from inference.elbo import TermsELBO
from inference.elbos import BetaELBO, BetaTCELBO, CapacityELBO, DIPELBO, FactorELBO, InfoELBO


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(model, guide, loss, batches, device):
    params = list(model.parameters()) + list(guide.parameters())
    opt = torch.optim.Adam(params, lr=1e-4)
    sync(device)
    t0 = time.perf_counter()
    for x, index in batches:
        opt.zero_grad(set_to_none=True)
        loss.loss_and_grads(model, guide, x, index)
        opt.step()
    sync(device)
    return (time.perf_counter() - t0) / len(batches)


def main(argv=None):
    p = OneLineParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=positive_int, default=20)
    p.add_argument("--rounds", type=positive_int, default=3)
    p.add_argument("--device", type=torch_device, default=default_device())
    args = p.parse_args(argv)
    device = torch.device(args.device)
    data = ppl_data.DSprites()
    config = resolve_config("vae", {"net": "conv64"})
    pyro.set_rng_seed(0)
    model, guide, _ = build(config, data.data_shape, len(data))
    model.to(device)
    guide.to(device)
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(args.steps):
        index = torch.randint(len(data), (64,), generator=g)
        x, _ = data.batch(index, device=device)
        batches.append((x, index.to(device)))
    losses = {"elbo": TermsELBO(), "beta": BetaELBO(), "capacity": CapacityELBO(),
              "betatc_mss": BetaTCELBO(), "betatc_mws": BetaTCELBO(estimator="mws"),
              "dip1": DIPELBO("i"), "dip2": DIPELBO("ii"), "info": InfoELBO(),
              "factor": FactorELBO(latent_dim=config["latent_dim"]).to(device)}
    pairs = {k: (copy.deepcopy(model), copy.deepcopy(guide)) for k in losses}
    for k, loss in losses.items():  # warm-up: first-call costs (validation, lazy allocations)
        time_steps(*pairs[k], loss, batches[:2], device)
    times = {k: [] for k in losses}
    for _ in range(args.rounds):
        for k, loss in losses.items():
            times[k].append(time_steps(*pairs[k], loss, batches, device))
    base = statistics.median(times["elbo"])
    print(f"device={device} batch=64 net=conv64 steps={args.steps} rounds={args.rounds}")
    print(f"{'elbo':12s} {'steps/s':>8s} {'ratio':>6s}")
    worst = 0.0
    for k in losses:
        t = statistics.median(times[k])
        ratio = t / base
        if k != "factor":
            worst = max(worst, ratio)
        print(f"{k:12s} {1 / t:8.2f} {ratio:6.3f}")
    print(f"factor_overhead={statistics.median(times['factor']) / base:.3f}")
    print(f"max_overhead={worst:.3f}")


if __name__ == "__main__":
    main()
