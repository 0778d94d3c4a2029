"""MS-GAN (appendix E) against MS-VAE on the same frozen β-TCVAE stage one: FID, L1/L2 and M1–M4.

    python scripts/msgan.py --quick [--out runs/msgan]     # textured shapes at 32×32, minutes on a CPU
    python scripts/msgan.py --device cuda                   # the paper's sizes (64×64, long runs)

Models, table columns and settings: ``inference.papers.msgan`` (:func:`run_experiment`). Writes
``results.json``, ``table.md`` and ``samples.png`` (rows: data, Y, MS-VAE reconstruction, MS-GAN
reconstruction, MS-GAN with z from the prior) under ``--out``.
"""

from __future__ import annotations

import sys

from inference.cli import add_overrides, experiment_parser, experiment_settings, overrides_of, run_main
from inference.papers.msgan import PAPER, QUICK, run_experiment


#: settings a run may override, with what each is
OVERRIDES = {"gan_steps": "MS-GAN's steps", "steps1": "stage-one steps", "steps2": "MS-VAE's stage-two steps",
             "n_eval": "the number of evaluation items"}


def parse(argv):
    p = experiment_parser(__doc__.splitlines()[0], "runs/msgan")
    add_overrides(p, OVERRIDES)
    return p.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    settings, out = experiment_settings(args, QUICK, PAPER, overrides_of(args, OVERRIDES))
    run_experiment(settings, out, seed=args.seed, device=args.device, command=" ".join(sys.argv))


if __name__ == "__main__":
    sys.exit(run_main(main))
