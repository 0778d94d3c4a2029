"""What each part of ``fit``'s fast path buys, on the peer benchmark's model (conv64 β-TCVAE, MWS, β = 6).

    .venv/bin/python benchmarks/fast_path_parts.py [--steps 20] [--rounds 7] [--compile]

One process, interleaved rounds with the order rotated, median round; the plain PyTorch step of
``peer_speed.py`` runs in every phase as the control for load on the machine.

* Phase 1, the allocator untouched: ``fit`` with ``fast=False``, with ``channels_last`` only, with
  ``fused_adam`` only and with both; and the plain step with both (same nets), whose gap to ours
  is what tracing with Pyro still costs per step.
* Phase 2, after ``keep_freed_memory()`` (process-wide, so it cannot be interleaved with phase 1):
  ``fit`` eager and fully fast, the plain step, and with ``--compile`` ``fit`` with its encoder and
  decoder under ``torch.compile`` (``Module.compile()``), whose first call's extra time is the
  compile time (inductor's on-disk cache makes later processes faster; its folder is printed).
"""

from __future__ import annotations

import copy
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_speed import BATCH, DATASET_SIZE, Ours, Plain, peer_steps  # noqa: E402

from inference.cli import OneLineParser, positive_int  # noqa: E402
from inference.svi import keep_freed_memory, to_channels_last  # noqa: E402
from ppl_data.base import TensorData  # noqa: E402


class PlainFast(Plain):
    """The plain step with the fast path's layout and optimiser."""

    name = "plain PyTorch, channels_last + fused Adam"

    def __init__(self, encoder, decoder, n):
        to_channels_last(encoder)  # the fast path's layout, single-channel weights included
        to_channels_last(decoder)
        super().__init__(encoder, decoder, n)
        self.optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=1e-4,
                                          fused=True)


class OursParts(Ours):
    def __init__(self, data, parts, label, compiled=False):
        super().__init__(data)
        self.fast, self.name = parts, label
        if compiled:
            self.guide.encoder.compile()
            self.model.decoder.compile()


def run_phase(title, variants, data, args, device):
    def once(v, seed):
        if isinstance(v, Ours):
            v.run(args.steps, seed, device)
        else:
            peer_steps(v, data, args.steps, seed, device)

    first = {}
    for v in variants:
        t = time.perf_counter()
        once(v, 10_000)
        first[v.name] = time.perf_counter() - t
    times = {v.name: [] for v in variants}
    for r in range(args.rounds):
        for v in variants[r % len(variants):] + variants[:r % len(variants)]:
            t = time.perf_counter()
            once(v, r)
            times[v.name].append((time.perf_counter() - t) / args.steps)
    median = {k: statistics.median(t) for k, t in times.items()}
    control = median[Plain.name]
    print(f"\n{title}\n\n| variant | ms/step | over plain | first call s |\n|---|---|---|---|")
    for v in variants:
        print(f"| {v.name} | {1000 * median[v.name]:.1f} | {median[v.name] / control:.3f} | "
              f"{first[v.name]:.1f} |")
    return median, first


def main(argv=None):
    p = OneLineParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=positive_int, default=20)
    p.add_argument("--rounds", type=positive_int, default=7)
    p.add_argument("--compile", action="store_true", help="also time fit with torch.compile'd nets")
    args = p.parse_args(argv)
    device = torch.device("cpu")
    warnings.filterwarnings("ignore")
    images = (torch.rand(DATASET_SIZE, 1, 64, 64, generator=torch.Generator().manual_seed(0)) < 0.5)
    data = TensorData(images.to(torch.uint8) * 255, name="random binary 64x64")
    torch.manual_seed(0)
    base = OursParts(data, False, "fit, eager (fast=False)")

    def ours(parts, label, compiled=False):
        v = OursParts(data, parts, label, compiled)
        v.model.load_state_dict(base.model.state_dict())
        v.guide.load_state_dict(base.guide.state_dict())
        return v

    def nets():
        return copy.deepcopy(base.guide.encoder), copy.deepcopy(base.model.decoder)

    print(f"conv64 β-TCVAE, batch {BATCH}, {torch.get_num_threads()} threads, {args.rounds} rounds x "
          f"{args.steps} steps, median round")
    phase1 = [base, ours({"channels_last"}, "fit, channels_last"), ours({"fused_adam"}, "fit, fused Adam"),
              ours({"channels_last", "fused_adam"}, "fit, channels_last + fused Adam"),
              Plain(*nets(), len(data)), PlainFast(*nets(), len(data))]
    run_phase("Phase 1: allocator untouched", phase1, data, args, device)

    keep_freed_memory()
    phase2 = [ours(False, "fit, eager (fast=False)"), ours(True, "fit, fast (all parts)"),
              Plain(*nets(), len(data))]
    if args.compile:
        print("inductor cache:", os.environ.get("TORCHINDUCTOR_CACHE_DIR", "default (/tmp/torchinductor_$USER)"))
        phase2.append(ours(True, "fit, fast + torch.compile'd nets", compiled=True))
    median, first = run_phase("Phase 2: keep_freed_memory() in force", phase2, data, args, device)
    if args.compile:
        extra = first["fit, fast + torch.compile'd nets"] - first["fit, fast (all parts)"]
        print(f"\ncompile time (first call over an uncompiled first call): {extra:.1f} s")


if __name__ == "__main__":
    main()
