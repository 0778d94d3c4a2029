"""MS-GAN (appendix E) against MS-VAE on the same frozen β-TCVAE stage one: FID, L1/L2 and M1–M4.

    python scripts/msgan.py --quick [--out runs/msgan]     # textured shapes at 32×32, minutes on a CPU
    python scripts/msgan.py --device cuda                   # the paper's sizes (64×64, long runs)

Models, table columns and settings: ``inference.papers.msgan`` (:func:`run_experiment`). Writes
``results.json``, ``table.md`` and ``samples.png`` (rows: data, Y, MS-VAE reconstruction, MS-GAN
reconstruction, MS-GAN with z from the prior) under ``--out``.
"""

from __future__ import annotations

import sys

from inference.cli import experiment_parser, experiment_settings, positive_int, run_main
from inference.papers.msgan import PAPER, QUICK, run_experiment


def parse(argv):
    p = experiment_parser(__doc__.splitlines()[0], "runs/msgan")
    p.add_argument("--gan-steps", type=positive_int, help="override MS-GAN's steps")
    p.add_argument("--steps1", type=positive_int, help="override stage-one steps")
    p.add_argument("--steps2", type=positive_int, help="override MS-VAE's stage-two steps")
    p.add_argument("--n-eval", type=positive_int, help="override the number of evaluation items")
    return p.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    overrides = {"gan_steps": args.gan_steps, "steps1": args.steps1, "steps2": args.steps2, "n_eval": args.n_eval}
    settings, out = experiment_settings(args, QUICK, PAPER, overrides)
    run_experiment(settings, out, seed=args.seed, device=args.device, command=" ".join(sys.argv))


if __name__ == "__main__":
    sys.exit(run_main(main))
