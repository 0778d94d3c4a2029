"""MS-VAE experiment: β-TCVAE alone vs MS-VAE and its ablations vs a β-TCVAE as large as MS-VAE.

    python scripts/msvae_experiment.py --quick [--out runs/msvae]     # ~20 min on a shared 2-core CPU
    python scripts/msvae_experiment.py --device cuda                  # the paper's settings

Models, data, table columns and settings: ``inference.papers.msvae`` (:func:`run_experiment`).
Writes ``results.json``, ``table.md``, ``reconstructions.png``, ``traversals.png``,
``z_perturbation.png`` under ``--out``.
"""

from __future__ import annotations

import sys

from inference.cli import add_overrides, comma_list, experiment_parser, experiment_settings, overrides_of, run_main
from inference.papers.msvae import EXPERIMENT_MODELS, PAPER, QUICK, run_experiment


#: settings a run may override, with what each is
OVERRIDES = {"steps1": "stage-one steps", "steps2": "stage-two steps", "n_eval": "the number of evaluation items",
             "n_probe": "the downstream MLPs' training items", "mlp_iter": "the downstream MLPs' training epochs"}


def parse(argv):
    p = experiment_parser(__doc__.splitlines()[0], "runs/msvae")
    p.add_argument("--models", type=comma_list(EXPERIMENT_MODELS), default=",".join(EXPERIMENT_MODELS),
                   help="comma-separated subset of " + ",".join(EXPERIMENT_MODELS))
    add_overrides(p, OVERRIDES)
    return p.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    settings, out = experiment_settings(args, QUICK, PAPER, overrides_of(args, OVERRIDES))
    run_experiment(settings, out, models=args.models, seed=args.seed, device=args.device,
                   command=" ".join(sys.argv))


if __name__ == "__main__":
    sys.exit(run_main(main))
