"""MS-VAE on the damped pendulum (appendix C): three stages, then corr(Z, M) and traversals.

    python scripts/msvae_pendulum.py --quick [--out runs/msvae_pendulum]   # a few minutes on a shared CPU
    python scripts/msvae_pendulum.py --device cuda                        # longer settings for a GPU

Stages, measures and settings: ``inference.papers.pendulum`` (:func:`run_experiment`). Writes
``results.json``, ``z_vs_mass.png`` (fig. 16) and ``traversals.png`` (fig. 15) under ``--out``.
"""

from __future__ import annotations

import sys

from inference.cli import experiment_parser, experiment_settings, positive_int, run_main
from inference.papers.pendulum import PAPER, QUICK, run_experiment


def parse(argv):
    p = experiment_parser(__doc__.splitlines()[0], "runs/msvae_pendulum")
    p.add_argument("--steps", type=positive_int, help="override the steps of each stage")
    p.add_argument("--grid", type=positive_int, help="override the simulator grid's points per parameter")
    return p.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    settings, out = experiment_settings(args, QUICK, PAPER, {"steps": args.steps, "grid": args.grid})
    run_experiment(settings, out, seed=args.seed, device=args.device, command=" ".join(sys.argv))


if __name__ == "__main__":
    sys.exit(run_main(main))
