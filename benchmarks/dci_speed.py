"""Seconds taken by DCI at disentanglement_lib's sizes (10,000 train / 5,000 test codes, 10 code
dims, 5 dSprites-sized factors 3, 6, 40, 32, 32) with each importance model, and their D / C / I.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dci_speed.py [--train 10000] [--test 5000] \
        [--models gbt forest] [--n-jobs -1] [--codes entangled|disentangled]

The codes are synthetic (benchmarks/metrics_speed.py's noisy linear map of the factors, or a noisy
axis-aligned one), so only the metric's own work is timed. The per-factor classifiers run on
``--n-jobs`` joblib workers (-1: all cores). The last line is ``dci_gbt_seconds=<s>`` (target
≤ 60 s on a 2-core CPU).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from metrics_speed import LinearShapes, representation  # noqa: E402

from inference.cli import OneLineParser, positive_int  # noqa: E402
from inference import metrics as M  # noqa: E402


def disentangled(d: int = 10, seed: int = 0):
    """Factor k on code dim k (scaled to unit range), the rest noise."""
    gen = torch.Generator().manual_seed(seed)
    sizes = torch.tensor(LinearShapes.factor_sizes, dtype=torch.float32)
    mix = torch.cat([torch.diag(1 / sizes), torch.zeros(5, d - 5)], 1)
    return lambda x: x @ mix + 0.05 * torch.randn(x.shape[0], d, generator=gen)


def main(argv=None):
    p = OneLineParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", type=positive_int, default=10_000)
    p.add_argument("--test", type=positive_int, default=5_000)
    p.add_argument("--models", nargs="+", default=["gbt", "forest"])
    p.add_argument("--n-jobs", type=int, default=-1)
    p.add_argument("--codes", choices=("entangled", "disentangled"), default="entangled")
    args = p.parse_args(argv)
    data = LinearShapes()
    rep = representation() if args.codes == "entangled" else disentangled()
    codes, factors = M.sample_codes(data, rep, args.train, torch.Generator().manual_seed(1))
    test = M.sample_codes(data, rep, args.test, torch.Generator().manual_seed(2))
    print(f"{args.codes} codes {codes.shape}, factor sizes {data.factor_sizes}, "
          f"n_jobs {args.n_jobs} on {os.cpu_count()} cores")
    seconds = {}
    for model in args.models:
        t0 = time.perf_counter()
        v = M.dci(codes, factors, *test, model=model, n_jobs=args.n_jobs)
        seconds[model] = time.perf_counter() - t0
        print(f"DCI ({model}), {args.train} train / {args.test} test: {seconds[model]:.1f} s "
              f"(D {v['disentanglement']:.3f}, C {v['completeness']:.3f}, "
              f"I train {v['informativeness_train']:.3f}, test {v['informativeness_test']:.3f})",
              flush=True)
    if "gbt" in seconds:
        print(f"dci_gbt_seconds={seconds['gbt']:.1f}")


if __name__ == "__main__":
    main()
