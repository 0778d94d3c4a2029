"""VITAE experiment: U-VITAE vs C-VITAE vs a VAE of the same latent size, and the swap test.

    python scripts/vitae_mnist.py --quick [--out runs/vitae_mnist]          # procedural dSprites
    python scripts/vitae_mnist.py --data-root DIR [--device cuda]           # MNIST, paper settings

Without ``--data-root`` the data are procedural dSprites, whose pose factors (pos_x, pos_y, scale,
orientation) are perspective and whose shape is appearance; VITAE then gets ``SHAPES_VITAE``,
the paper's own ``MNIST_VITAE`` (2 + 2 latents, the full frame as canonical image), as MNIST does. Writes ``results.json`` (with the per-dimension MI matrix), ``table.md``,
``swap_*.png`` and each model's reconstructions under ``--out``: see
``inference.papers.vitae.run_vitae_experiment``, which does the work.

Paper settings (supplement §2): Adam lr 1e-4, batch 512, 2000 MNIST epochs, KL warm-up over half of
them, MLPs of Table 1 (LeakyReLU 0.1), d = 4 for the VAE and 2 + 2 for VITAE.
"""

from __future__ import annotations

import sys

from inference.cli import (add_seed_and_device, data_experiment_parser, fraction_or_one, positive_float,
                           positive_int, run_main)
from inference.papers.vitae import MNIST_VITAE, SHAPES_VITAE, run_vitae_experiment
from ppl_models.spatial import TRANSFORMERS


def make_parser():
    p = data_experiment_parser("vitae_mnist.py", __doc__.split("\n\n")[0], "runs/vitae_mnist", "short CPU run on dSprites (~10 min)")
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--lr", type=positive_float)
    p.add_argument("--persp-dim", type=positive_int,
                   help=f"MNIST: {MNIST_VITAE['persp_dim']} (supplement Table 1); shapes: {SHAPES_VITAE['persp_dim']}")
    p.add_argument("--app-dim", type=positive_int,
                   help=f"MNIST: {MNIST_VITAE['app_dim']} (supplement Table 1); shapes: {SHAPES_VITAE['app_dim']}")
    p.add_argument("--canonical-fraction", type=fraction_or_one,
                   help=f"side of the appearance frame / image side; MNIST: 1, shapes: "
                        f"{SHAPES_VITAE['canonical_fraction']}")
    p.add_argument("--app-width", type=positive_int,
                   help=f"appearance nets' width multiplier; MNIST: 1, shapes: {SHAPES_VITAE['app_width']}")
    p.add_argument("--transformer", default="affine_diffeo", choices=tuple(TRANSFORMERS))
    p.add_argument("--n-train", type=positive_int, help="dSprites training items rendered (quick: 40000)")
    p.add_argument("--n-eval", type=positive_int, help="test items evaluated (quick: 3000)")
    return add_seed_and_device(p)


def main(argv=None):
    run_vitae_experiment(**vars(make_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(run_main(main))
