"""dpVAE's two-moons toy: a β-VAE with and without the decoupled prior, side by side.

    python scripts/dpvae_two_moons.py --out runs/dpvae_two_moons [--quick]

Two-moons data in a 2-D latent space (dpVAE supplement §3: encoder 100-50, decoder mirrored,
2-D latent). For each prior it trains the same β-VAE, then measures how close decoded samples
fall to the data: plain prior samples and LP-Gen samples (the prior draws the aggregate
posterior finds least likely). Writes ``two_moons.png`` (rows: standard-Normal prior, decoupled
prior; columns: latent space with prior draws, decoded prior samples, decoded LP-Gen samples)
and ``results.md`` / ``results.json`` with the numbers behind it. The experiment is
``inference.papers.dpvae.run_two_moons``.
"""

from __future__ import annotations

import sys

from inference.cli import (OneLineParser, add_seed_and_device, default_device, positive_float, positive_int, run_main)
from inference.papers.dpvae import run_two_moons


def make_parser() -> OneLineParser:
    p = OneLineParser(prog="dpvae_two_moons.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--quick", action="store_true", help="CPU setting (minutes), else the paper's")
    p.add_argument("--steps", type=positive_int)
    p.add_argument("--obs-scale", type=positive_float, default=0.03, help="std of the Gaussian likelihood")
    return add_seed_and_device(p, default_device())


def main(argv=None):
    run_two_moons(**vars(make_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(run_main(main))
