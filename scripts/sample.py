"""Decode samples from a trained run's prior; with --lp-gen, the low-posterior samples of dpVAE.

    python scripts/sample.py RUN_DIR [--lp-gen] [--num 64] [--fraction 0.02] [--pool 5000]

Writes ``samples.png`` (or ``lp_samples.png``) into the run directory and prints the mean
aggregate-posterior log density of the decoded codes (inference.runs.sample_run).
"""

from __future__ import annotations

import sys

from inference.cli import OneLineParser, fraction, positive_int, random_seed, run_main
from inference.runs import sample_run


def make_parser() -> OneLineParser:
    p = OneLineParser(prog="sample.py", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir")
    p.add_argument("--lp-gen", action="store_true", help="keep the prior draws q(z) finds least likely")
    p.add_argument("--num", type=positive_int, default=64, help="samples to decode")
    p.add_argument("--fraction", type=fraction, default=None,
                   help="LP-Gen: share of the pool kept (default: num / pool)")
    p.add_argument("--pool", type=positive_int, default=5000, help="LP-Gen: prior draws to score")
    p.add_argument("--num-data", type=positive_int, default=10_000, help="items forming q(z)")
    p.add_argument("--seed", type=random_seed, default=0)
    return p


def main(argv=None):
    args = make_parser().parse_args(argv)
    out = sample_run(args.run_dir, lp_gen=args.lp_gen, num=args.num, fraction=args.fraction, pool=args.pool,
                     num_data=args.num_data, seed=args.seed)
    if args.lp_gen:
        print(f"LP-Gen: kept {out['kept']} of {args.pool} prior draws; mean log q(z) {out['mean_log_q']:.2f} "
              f"(rest: {out['rest_log_q']:.2f})")
    else:
        print(f"prior samples: mean log q(z) {out['mean_log_q']:.2f}")
    print(f"wrote {out['path']}" + (" (vector data)" if out["path"].suffix == ".pt" else ""))


if __name__ == "__main__":
    sys.exit(run_main(main))
