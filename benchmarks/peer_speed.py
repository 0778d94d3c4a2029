"""Training step speed against the peers on one model: conv64 β-TCVAE (MWS, β = 6), batch 64, 64×64 binary images.

    .venv/bin/python benchmarks/peer_speed.py [--device cpu|cuda] [--steps 20] [--rounds 5]
        [--ours both|fast|eager] [--allocator both|shipped|same] [--markdown FILE]

The peers come with the optional ``bench`` extra (``pip install -c constraints.txt -e ".[bench]"``);
a peer that is not installed is skipped with a line saying so. Every variant starts from the same
weights of the same conv64 encoder and decoder (``guides.nets.Conv64Encoder``,
``ppl_models.nets.Conv64Decoder``, wrapped in each peer's network interface), draws the same random
binary 64×64 batches (same dataset, same index generator seed per round) and steps Adam (lr 1e-4):

* ``plain PyTorch``: the β-TCVAE objective written directly (reparametrised z, Bernoulli
  log-likelihood, analytic KL, MWS decomposition), default ``torch.optim.Adam``.
* ``pythae BetaTCVAE``: ``model({"data": x}, dataset_size=N).loss`` with α = 1, β = 6, γ = 15,
  MWS (``use_mss=False``), BCE reconstruction; backward; Adam.
* ``disent BetaTcVae``: the framework's ``training_step`` (β = 6, BCE, ``mean_sum`` reduction:
  disent's β-TCVAE has no α or γ); backward; the framework's own Adam.
* ``ours``: exactly what ``scripts/train.py --model betatc --estimator mws --beta 6`` runs:
  ``inference.fit`` on ``build(...)`` of that config (its fast path, the default), one ``fit`` call
  of ``--steps`` steps per round, so each round also pays ``fit``'s set-up and its checked first
  step. No run directory is written (``train.py`` also writes a metrics line every 10 steps).
* ``ours, eager``: the same with ``fit(..., fast=False)``: the step before the fast path.

Each variant runs in its own process (``--worker``), started and warmed up one at a time; then the
rounds are interleaved across the processes, with the order rotated each round, so load on the
machine falls on all alike, and the median round is reported. Two allocator settings
(``--allocator``, both by default, one table each):

* ``same``: every process gets the allocator setting of ``fit``'s fast path
  (:func:`inference.svi.keep_freed_memory`), so what differs is the step itself;
* ``shipped``: each library as it ships: ours sets it (``fit``'s fast path), the peers and
  ``fit(fast=False)`` run with glibc's defaults, which hand an activation's pages back to the kernel
  after every step (the peers, as their users run them).

The peers are timed on their loss and update only (no Lightning trainer, no pythae trainer), the
most favourable way to run them. Peak RSS is each process's high-water mark over its rounds (reset
before each round through ``/proc/self/clear_refs``; the process's libraries are in it). Before
timing, the losses are compared at the same z, in this process, as far as each peer's definition
allows. Last lines: ``fastest_peer_over_ours_same_allocator=`` (with both tables) and
``fastest_peer_over_ours=<fastest peer's s/step / ours>`` of the last table (``shipped`` by default).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
from torch.nn import functional as F

from inference.cli import OneLineParser, default_device, positive_int, torch_device
from inference import build, fit, resolve_config
from inference.handlers import local_params
from inference.svi import keep_freed_memory
from ppl_data.base import TensorData

BATCH, BETA, LR = 64, 6.0, 1e-4
ALPHA, GAMMA = 1.0, 15.0  # what train.py's betatc model defaults to (dpVAE supplement Table 1)
DATASET_SIZE = 8192
_LOG_2PI = math.log(2 * math.pi)


# -- the plain PyTorch step ---------------------------------------------------------------------
def gaussian_log_density(z, loc, scale):
    return -0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * _LOG_2PI


def plain_loss(x, logits, z, loc, scale, n):
    """Per-data-point β-TCVAE loss: recon + KL + (α−1)·MI + (β−1)·TC + (γ−1)·dim-KL, MWS estimates."""
    m = z.shape[0]
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    kl = 0.5 * (scale ** 2 + loc ** 2 - 1 - 2 * scale.log()).sum(1)
    pair = gaussian_log_density(z[:, None], loc[None], scale[None])  # (M, M, D)
    log_norm = math.log(n * m)
    log_qz = torch.logsumexp(pair.sum(-1), 1) - log_norm
    log_qz_dims = (torch.logsumexp(pair, 1) - log_norm).sum(-1)
    log_qz_x = gaussian_log_density(z, loc, scale).sum(-1)
    log_pz = (-0.5 * z ** 2 - 0.5 * _LOG_2PI).sum(-1)
    mi, tc, dim_kl = (log_qz_x - log_qz).mean(), (log_qz - log_qz_dims).mean(), (log_qz_dims - log_pz).mean()
    return (recon + kl).mean() + (ALPHA - 1) * mi + (BETA - 1) * tc + (GAMMA - 1) * dim_kl


class Plain:
    name = "plain PyTorch"

    def __init__(self, encoder, decoder, n):
        self.encoder, self.decoder, self.n = encoder, decoder, n
        self.optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=LR)

    def loss_at(self, x, z, loc, scale):
        return plain_loss(x, self.decoder(z), z, loc, scale, self.n)

    def step(self, x):
        self.optimizer.zero_grad(set_to_none=True)
        loc, scale = self.encoder(x)
        z = loc + scale * torch.randn_like(loc)
        loss = self.n * plain_loss(x, self.decoder(z), z, loc, scale, self.n)
        loss.backward()
        self.optimizer.step()


# -- pythae ---------------------------------------------------------------------------------------
class Pythae:
    name = "pythae BetaTCVAE"

    def __init__(self, encoder, decoder, n):
        from pythae.models import BetaTCVAE, BetaTCVAEConfig
        from pythae.models.base.base_utils import ModelOutput
        from pythae.models.nn import BaseDecoder, BaseEncoder

        class Encoder(BaseEncoder):
            def __init__(self, net):
                super().__init__()
                self.net = net

            def forward(self, x):
                loc, scale = self.net(x)
                return ModelOutput(embedding=loc, log_covariance=2 * scale.log())

        class Decoder(BaseDecoder):
            def __init__(self, net):
                super().__init__()
                self.net = net

            def forward(self, z):  # pythae's BCE takes probabilities
                return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))

        config = BetaTCVAEConfig(input_dim=(1, 64, 64), latent_dim=encoder.head.linear.out_features // 2,
                                 reconstruction_loss="bce", alpha=ALPHA, beta=BETA, gamma=GAMMA,
                                 use_mss=False)
        self.model = BetaTCVAE(config, encoder=Encoder(encoder), decoder=Decoder(decoder))
        self.decoder, self.n = decoder, n
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=LR)

    def loss_at(self, x, z, loc, scale):
        recon = torch.sigmoid(self.decoder(z))
        return self.model.loss_function(recon, x, loc, 2 * scale.log(), z, self.n)[0]

    def step(self, x):
        self.optimizer.zero_grad(set_to_none=True)
        self.model({"data": x}, dataset_size=self.n).loss.backward()
        self.optimizer.step()


# -- disent ---------------------------------------------------------------------------------------
class Disent:
    name = "disent BetaTcVae"

    def __init__(self, encoder, decoder, n):
        from disent.frameworks.vae import BetaTcVae
        from disent.model import AutoEncoder, DisentDecoder, DisentEncoder

        latent = encoder.head.linear.out_features // 2

        class Encoder(DisentEncoder):
            def __init__(self, net):
                super().__init__(x_shape=(1, 64, 64), z_size=latent, z_multiplier=2)
                self.net = net

            def encode(self, x):  # disent's Gaussian encoder emits (mean, log variance)
                loc, scale = self.net(x)
                return torch.cat([loc, 2 * scale.log()], -1)

        class Decoder(DisentDecoder):
            def __init__(self, net):
                super().__init__(x_shape=(1, 64, 64), z_size=latent)
                self.net = net

            def decode(self, z):
                return self.net(z)

        cfg = BetaTcVae.cfg(beta=BETA, recon_loss="bce", loss_reduction="mean_sum", optimizer="adam",
                            optimizer_kwargs={"lr": LR})
        self.framework = BetaTcVae(model=AutoEncoder(Encoder(encoder), Decoder(decoder)), cfg=cfg)
        self.decoder = decoder
        self.optimizer = self.framework.configure_optimizers()
        self.batch_idx = 0

    def parts_at(self, x, z):
        """disent's recon, KL and TC at z (its β-TCVAE adds β·KL + (β−1)·TC to the recon)."""
        posterior, prior = self.framework.encode_dists(x)
        recon, _ = self.framework.compute_ave_recon_loss((self.decoder(z),), (x,))
        _, logs = self.framework.compute_ave_reg_loss((posterior,), (prior,), (z,))
        return recon, logs["kl_loss"], logs["tc_loss"]

    def step(self, x):
        self.optimizer.zero_grad(set_to_none=True)
        self.framework.training_step({"x_targ": (x,)}, self.batch_idx).backward()
        self.optimizer.step()
        self.batch_idx += 1


# -- ours -----------------------------------------------------------------------------------------
def our_config():
    """What ``scripts/train.py --model betatc --estimator mws --beta 6`` resolves to."""
    return resolve_config("betatc", {"beta": BETA, "estimator": "mws"})


class Ours:
    def __init__(self, data, fast=True):
        self.name = "ours: inference.fit" + ("" if fast else ", eager (fast=False)")
        self.data, self.fast = data, fast
        self.model, self.guide, self.loss = build(our_config(), data.data_shape, len(data))

    def run(self, steps, seed, device):
        fit(self.model, self.guide, self.loss, self.data, steps=steps, batch_size=BATCH, seed=seed,
            device=device, progress=False, checkpoint_every=10 ** 9, fast=self.fast)


def peer_steps(peer, data, steps, seed, device):
    """``steps`` steps of a peer on the batches ``fit(seed=seed)`` would draw."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    for _ in range(steps):
        index = torch.randint(len(data), (BATCH,), generator=generator)
        x, _ = data.batch(index, device=device)
        peer.step(x)


# -- the loss check -------------------------------------------------------------------------------
def compare_losses(ours, peers, data, device):
    """Each definition's loss at our guide's z on one batch; prints what agrees and by how much."""
    index = torch.arange(BATCH)
    x, _ = data.batch(index, device=device)
    with torch.no_grad():
        _, traces = ours.loss._evaluate(local_params(ours.model), local_params(ours.guide),
                                        (x, index.to(device)), {})
        terms = {k: float(v) for k, v in ours.loss.terms.items()}
        z = traces[0][1].nodes["z"]["value"]
        loc, scale = ours.guide.encoder(x)
        n, d = len(data), z.shape[1]
        kl_mc = float((gaussian_log_density(z, loc, scale).sum(1) + 0.5 * (z ** 2).sum(1)
                       + 0.5 * d * _LOG_2PI).mean())
        print(f"loss check at our guide's z (one batch, N = {n}): ours {terms['loss']:.4f} per data point "
              f"(recon {terms['recon']:.4f}, kl {terms['kl']:.4f}, tc {terms['tc']:.4f})")
        for peer in peers:
            if isinstance(peer, Plain):
                value = float(peer.loss_at(x, z, loc, scale))
                print(f"  {peer.name}: {value:.4f}, same objective: |diff| = {abs(value - terms['loss']):.2e}")
            elif isinstance(peer, Pythae):
                value = float(peer.loss_at(x, z, loc, scale))
                # pythae's MI + TC + dim-KL is the Monte Carlo KL; ours keeps the analytic KL there
                expected = terms["loss"] - terms["kl"] + kl_mc
                print(f"  {peer.name}: {value:.4f}; ours with pythae's Monte Carlo KL for the analytic "
                      f"one: {expected:.4f}, |diff| = {abs(value - expected):.2e} (pythae's BCE on "
                      f"sigmoid outputs)")
            elif isinstance(peer, Disent):
                recon, kl, tc = (float(t) for t in peer.parts_at(x, z))
                # our logged tc is the MWS TC less (D−1)·log N; disent's has no log(N·M) terms
                tc_ours = terms["tc"] - (d - 1) * math.log(BATCH)
                total = recon + BETA * kl + (BETA - 1) * tc
                rebuilt = terms["recon"] + BETA * terms["kl"] + (BETA - 1) * tc_ours
                print(f"  {peer.name}: recon {recon:.4f} (|diff| {abs(recon - terms['recon']):.2e}), "
                      f"kl {kl:.4f} (|diff| {abs(kl - terms['kl']):.2e}), tc {tc:.4f} vs ours less "
                      f"(D−1)·log M {tc_ours:.4f} (|diff| {abs(tc - tc_ours):.2e}); its loss "
                      f"recon + β·KL + (β−1)·TC = {total:.4f}, from our terms {rebuilt:.4f} "
                      f"(disent's β-TCVAE weights the whole KL by β, ours by 1 plus γ−1 on dim-KL)")


# -- timing ---------------------------------------------------------------------------------------
def reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def dataset() -> TensorData:
    images = (torch.rand(DATASET_SIZE, 1, 64, 64, generator=torch.Generator().manual_seed(0)) < 0.5)
    return TensorData(images.to(torch.uint8) * 255, name="random binary 64x64")


#: The variants, in table order: name -> how to build it from our seed-0 pair (every variant starts
#: from the same encoder and decoder weights).
VARIANTS = ("ours", "ours, eager", "plain", "pythae", "disent")
PEERS = {"plain": Plain, "pythae": Pythae, "disent": Disent}


def make_variant(key, data, device):
    """The variant ``key`` on ``device``, all from the weights of ``torch.manual_seed(0)``'s pair."""
    torch.manual_seed(0)
    ours = Ours(data, fast=key != "ours, eager")
    ours.model.to(device), ours.guide.to(device)
    if key in ("ours", "ours, eager"):
        return ours
    return PEERS[key](copy.deepcopy(ours.guide.encoder), copy.deepcopy(ours.model.decoder), len(data))


def run_once(variant, data, steps, seed, device):
    if isinstance(variant, Ours):
        variant.run(steps, seed, device)
    else:
        peer_steps(variant, data, steps, seed, device)


def worker(args) -> int:
    """One variant in its own process: warm up, then time a round for every line read from stdin."""
    warnings.filterwarnings("ignore")  # Lightning's "self.log() without a trainer", numba notices
    device, data = torch.device(args.device), dataset()
    try:
        variant = make_variant(args.worker, data, device)
    except ImportError as err:
        print(json.dumps({"skipped": f"not installed ({err.name}); pip install -c constraints.txt -e '.[bench]'"}),
              flush=True)
        return 0
    if args.allocator == "same" and device.type == "cpu":
        keep_freed_memory()  # what fit's fast path sets in its own process, given to every variant
    run_once(variant, data, args.steps, 10_000, device)  # warm-up: allocator, first-step checks, lazy imports
    sync(device)
    print(json.dumps({"name": variant.name, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        reset_peak_rss()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t = time.perf_counter()
        run_once(variant, data, args.steps, int(line), device)
        sync(device)
        print(json.dumps({"s": (time.perf_counter() - t) / args.steps, "rss": peak_rss_mib(),
                          "gpu": torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else 0.0}),
              flush=True)
    return 0


def time_variants(keys, args, allocator):
    """Median s/step, peak RSS and GPU memory of each variant, each in its own process, in
    interleaved rounds (order rotated each round). Variants that cannot run are reported and left out."""
    procs, names = {}, {}
    for key in keys:  # started one at a time, so no warm-up overlaps another's
        proc = subprocess.Popen([sys.executable, __file__, "--worker", key, "--device", args.device,
                                 "--steps", str(args.steps), "--allocator", allocator],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        hello = json.loads(proc.stdout.readline() or '{"skipped": "the worker died (its stderr is above)"}')
        if "skipped" in hello:
            print(f"{key}: skipped, {hello['skipped']}")
            proc.wait()
            continue
        procs[key], names[key] = proc, hello["name"]
    times = {k: [] for k in procs}
    rss = {k: 0.0 for k in procs}
    gpu = {k: 0.0 for k in procs}
    order = list(procs)
    for r in range(args.rounds):
        for key in order[r % len(order):] + order[:r % len(order)]:
            procs[key].stdin.write(f"{r}\n")
            reply = json.loads(procs[key].stdout.readline())
            times[key].append(reply["s"])
            rss[key], gpu[key] = max(rss[key], reply["rss"]), max(gpu[key], reply["gpu"])
    for proc in procs.values():
        proc.stdin.close()
        proc.wait()
    return {k: (names[k], statistics.median(times[k]), rss[k], gpu[k]) for k in procs}


ALLOCATOR_TEXT = {
    "shipped": "each variant in its own process as its library ships it (ours: fit's fast path, which keeps "
               "glibc's freed memory; the peers and fit(fast=False): glibc's defaults)",
    "same": "each variant in its own process, every one with the allocator setting of fit's fast path "
            "(inference.svi.keep_freed_memory): the difference left is the step itself",
}


def report(results, args, device, allocator):
    """The table and ``fastest peer's s/step / ours``; None if ours or every peer is missing."""
    ours_t = results["ours"][1] if "ours" in results else math.nan
    cuda = device.type == "cuda"
    lines = [f"conv64 β-TCVAE (MWS, β = {BETA:g}), batch {BATCH}, random binary 64x64, device {device}, "
             f"{torch.get_num_threads()} threads, torch {torch.__version__}; {args.rounds} interleaved "
             f"rounds x {args.steps} steps, median round; allocator: {ALLOCATOR_TEXT[allocator]}",
             "",
             "| variant | s/step | images/s | peak RSS MiB | " + ("peak GPU MiB | " if cuda else "")
             + "s/step over ours |",
             "|---|---|---|---|" + ("---|" if cuda else "") + "---|"]
    for name, t, rss, gpu in results.values():
        lines.append(f"| {name} | {t:.4f} | {BATCH / t:.0f} | {rss:.0f} | "
                     + (f"{gpu:.0f} | " if cuda else "") + f"{t / ours_t:.2f} |")
    print("\n".join(lines))
    peers = [results[k][1] for k in PEERS if k in results]
    ratio = min(peers) / ours_t if peers and "ours" in results else None
    if args.markdown:
        from markdown_table import append_rows  # benchmarks/ is on sys.path when run as a script
        append_rows(args.markdown, [
            (f"peer_speed, conv64 β-TCVAE, allocator {allocator}", name, BATCH, BATCH / t, t,
             f"{t / ours_t:.2f}× ours' time; peak RSS {rss:.0f} MiB" + (f", GPU {gpu:.0f} MiB" if cuda else "")
             + (f"; fastest_peer_over_ours={ratio:.3f}" if key == "ours" and ratio else ""))
            for key, (name, t, rss, gpu) in results.items()])
    return ratio


def main(argv=None):
    p = OneLineParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", type=torch_device, default=default_device())
    p.add_argument("--steps", type=positive_int, default=20, help="steps per variant per round")
    p.add_argument("--rounds", type=positive_int, default=5)
    p.add_argument("--ours", choices=("both", "fast", "eager"), default="both",
                   help="which of our steps to time: fit's fast path, fit(fast=False), or both")
    p.add_argument("--allocator", choices=("shipped", "same", "both"), default="both",
                   help="the variants' allocator: as each library ships it, fit's setting for all, or both tables")
    p.add_argument("--markdown", help="also append the table to this markdown file")
    p.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)  # internal: one variant's process
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    device = torch.device(args.device)
    warnings.filterwarnings("ignore")

    data = dataset()
    ours = make_variant("ours", data, device)
    peers = []
    for key in PEERS:
        try:
            peers.append(make_variant(key, data, device))
        except ImportError:
            pass  # said once the workers start
    compare_losses(ours, peers, data, device)
    del ours, peers

    keys = [k for k in VARIANTS if not (k == "ours, eager" and args.ours == "fast")
            and not (k == "ours" and args.ours == "eager")]
    # ours must be timed for a ratio; --ours eager times the eager step as "ours"
    modes = ("same", "shipped") if args.allocator == "both" else (args.allocator,)
    ratios = {}
    for allocator in modes:
        results = time_variants(keys, args, allocator)
        if args.ours == "eager" and "ours, eager" in results:
            results = {"ours": results.pop("ours, eager"), **results}
        ratios[allocator] = report(results, args, device, allocator)
        print()
    if any(r is None for r in ratios.values()):
        print("no peer ran, or ours did not", file=sys.stderr)
        return 1
    if "same" in ratios and len(ratios) > 1:
        print(f"fastest_peer_over_ours_same_allocator={ratios['same']:.3f}")
    print(f"fastest_peer_over_ours={ratios[modes[-1]]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
