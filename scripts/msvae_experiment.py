"""MS-VAE experiment: β-TCVAE alone vs MS-VAE and its ablations vs a β-TCVAE as large as MS-VAE.

    python scripts/msvae_experiment.py --quick [--out runs/msvae]     # ~20 min on a shared 2-core CPU
    python scripts/msvae_experiment.py --device cuda                  # the paper's settings

Models, data, table columns and settings: ``inference.papers.msvae`` (:func:`run_experiment`).
Writes ``results.json``, ``table.md``, ``reconstructions.png``, ``traversals.png``,
``z_perturbation.png`` under ``--out``.
"""

from __future__ import annotations

import sys

from inference.cli import comma_list, experiment_parser, experiment_settings, positive_int, run_main
from inference.papers.msvae import EXPERIMENT_MODELS, PAPER, QUICK, run_experiment


def parse(argv):
    p = experiment_parser(__doc__.splitlines()[0], "runs/msvae")
    p.add_argument("--models", type=comma_list(EXPERIMENT_MODELS), default=",".join(EXPERIMENT_MODELS),
                   help="comma-separated subset of " + ",".join(EXPERIMENT_MODELS))
    p.add_argument("--steps1", type=positive_int, help="override stage-one steps")
    p.add_argument("--steps2", type=positive_int, help="override stage-two steps")
    p.add_argument("--n-eval", type=positive_int, help="override the number of evaluation items")
    p.add_argument("--n-probe", type=positive_int, help="override the downstream MLPs' training items")
    p.add_argument("--mlp-iter", type=positive_int, help="override the downstream MLPs' training epochs")
    return p.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    overrides = {"steps1": args.steps1, "steps2": args.steps2, "n_eval": args.n_eval, "n_probe": args.n_probe,
                 "mlp_iter": args.mlp_iter}
    settings, out = experiment_settings(args, QUICK, PAPER, overrides)
    run_experiment(settings, out, models=args.models, seed=args.seed, device=args.device,
                   command=" ".join(sys.argv))


if __name__ == "__main__":
    sys.exit(run_main(main))
