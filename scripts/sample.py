"""Decode samples from a trained run's prior; with --lp-gen, the low-posterior samples of dpVAE.

    python scripts/sample.py RUN_DIR [--lp-gen] [--num 64] [--fraction 0.02] [--pool 5000]

Writes ``samples.png`` (or ``lp_samples.png``) into the run directory and prints the mean
aggregate-posterior log density of the decoded codes.
"""

from __future__ import annotations

import warnings

warnings.filterwarnings("ignore")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

import ppl_data  # noqa: E402
from inference import load_run  # noqa: E402
from inference.cli import OneLineParser, fraction, positive_int, random_seed, run_main  # noqa: E402
from inference.errors import ConfigError  # noqa: E402
from inference.lpgen import aggregate_log_density, encode_posterior, low_posterior_samples  # noqa: E402
from inference.pictures import save_grid  # noqa: E402


def main(argv=None):
    p = OneLineParser(prog="sample.py", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir")
    p.add_argument("--lp-gen", action="store_true", help="keep the prior draws q(z) finds least likely")
    p.add_argument("--num", type=positive_int, default=64, help="samples to decode")
    p.add_argument("--fraction", type=fraction, default=None,
                   help="LP-Gen: share of the pool kept (default: num / pool)")
    p.add_argument("--pool", type=positive_int, default=5000, help="LP-Gen: prior draws to score")
    p.add_argument("--num-data", type=positive_int, default=10_000, help="items forming q(z)")
    p.add_argument("--seed", type=random_seed, default=0)
    args = p.parse_args(argv)
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {run_dir} " + ("is not a directory" if run_dir.exists()
                                                          else "does not exist"))
    keep = args.fraction if args.fraction is not None else args.num / args.pool
    if args.lp_gen and not 0 < keep < 1:
        raise ConfigError(f"--num {args.num} of --pool {args.pool} keeps a fraction of {keep:g}; "
                          "it must be in (0, 1) (a larger --pool, or --fraction)")
    run = load_run(run_dir)
    config = run.config
    data = ppl_data.load(config["data"], **({"root": config["data_root"]} if config.get("data_root") else {}))
    if args.lp_gen:
        res = low_posterior_samples(run.model, run.guide, data, num_samples=args.pool, fraction=keep,
                                    num_data=args.num_data, seed=args.seed)
        z, log_q = res.z[: args.num], res.log_q[: args.num]
        name = "lp_samples.png"
        print(f"LP-Gen: kept {len(res.z)} of {args.pool} prior draws; mean log q(z) {float(log_q.mean()):.2f} "
              f"(rest: {float(res.log_q_rest.mean()):.2f})")
    else:
        with torch.random.fork_rng():
            torch.manual_seed(args.seed)
            z = run.model.sample_prior(args.num)
        loc, scale = encode_posterior(run.guide, data, args.num_data, seed=args.seed)
        print(f"prior samples: mean log q(z) {float(aggregate_log_density(z, loc, scale).mean()):.2f}")
        name = "samples.png"
    images = run.model.decode(z)
    if images.ndim == 4:
        save_grid(images, run_dir / name, nrow=8)
        print(f"wrote {run_dir / name}")
    else:
        torch.save(images, run_dir / name.replace(".png", ".pt"))
        print(f"wrote {run_dir / name.replace('.png', '.pt')} (vector data)")


if __name__ == "__main__":
    sys.exit(run_main(main))
