"""MS-FLOW (appendix D): a 10-component Gaussian mixture for C → Y, a conditional coupling flow for (Y, Z) → X.

    python scripts/msflow.py --quick [--out runs/msflow]         # 8×8 digits, a few minutes on a CPU
    python scripts/msflow.py --data-root DIR --device cuda        # MNIST IDX files in DIR, longer

What it reports and how: ``inference.papers.msflow`` (:func:`run_experiment`). Writes ``results.json``,
``curves.png`` (fig. 20), ``means.png`` (fig. 18) and ``samples.png`` (fig. 19) under ``--out``.
"""

from __future__ import annotations

import sys

from inference.cli import existing_dir, experiment_parser, experiment_settings, positive_int, run_main
from inference.papers.msflow import PAPER, QUICK, load_data, run_experiment


def parse(argv):
    p = experiment_parser(__doc__.splitlines()[0], "runs/msflow")
    p.add_argument("--data-root", type=existing_dir,
                   help="folder with MNIST IDX files (default: scikit-learn's 8×8 digits)")
    p.add_argument("--steps", type=positive_int, help="override the flow's training steps")
    p.add_argument("--eval-every", type=positive_int, help="override the steps between validations")
    return p.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    source = load_data(args.data_root)  # a bad folder is refused before --out is created
    settings, out = experiment_settings(args, QUICK, PAPER, {"steps": args.steps, "eval_every": args.eval_every})
    run_experiment(source, settings, out, seed=args.seed, device=args.device, command=" ".join(sys.argv))


if __name__ == "__main__":
    sys.exit(run_main(main))
