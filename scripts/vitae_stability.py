"""VITAE supplement §3, Fig. 1: C-VITAE's ELBO reached against the learning rate, per transformer.

    python scripts/vitae_stability.py --quick [--out runs/vitae_stability]       # dSprites, CPU
    python scripts/vitae_stability.py --data-root DIR [--device cuda]            # MNIST, paper

For each transformer parametrisation and each learning rate λ ∈ {1e-4, 1e-3, 1e-2, 1e-1} (the
supplement's grid) a C-VITAE is trained from the same seed; the test ELBO it reaches is tabulated
and plotted (``stability.png``: ELBO vs λ on a log axis, one line per transformer; a run that
produced NaN/inf is marked diverged and left out of the line, as in the paper's figure).
The paper's claim: the diffeomorphic affine parametrisation reaches a tighter bound and tolerates
higher learning rates. The study is ``inference.papers.vitae.run_stability_study``.

``affine_decomp`` is eq. (2) as written, the scale s raw: A = R·Shear·diag(s) turns singular at
s = 0 (and reflects below), one of the ways it can diverge here. ``--transformers`` also takes
``affine_decomp_pos`` (ours: s = exp(θ_s), never singular) to compare against, and ``cpab``.
A run whose A had no inverse (LAPACK refused) counts as diverged, like one with a non-finite loss.
"""

from __future__ import annotations

import sys

from inference.cli import (add_seed_and_device, comma_list, data_experiment_parser, number_list,
                           positive_float, positive_int, run_main)
from inference.papers.vitae import LEARNING_RATES, PAPER_TRANSFORMERS, run_stability_study
from ppl_models.spatial import TRANSFORMERS


def make_parser():
    p = data_experiment_parser("vitae_stability.py", __doc__.split("\n\n")[0], "runs/vitae_stability", "short CPU run on dSprites")
    p.add_argument("--transformers", type=comma_list(TRANSFORMERS), default=",".join(PAPER_TRANSFORMERS),
                   help=f"comma-separated subset of {', '.join(TRANSFORMERS)}")
    p.add_argument("--lrs", type=number_list(positive_float), default=",".join(str(x) for x in LEARNING_RATES),
                   help="comma-separated learning rates")
    p.add_argument("--n-train", type=positive_int, help="dSprites training items rendered (quick: 20000)")
    p.add_argument("--n-eval", type=positive_int, help="test items evaluated (quick: 2000)")
    return add_seed_and_device(p)


def main(argv=None):
    run_stability_study(**vars(make_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(run_main(main))
