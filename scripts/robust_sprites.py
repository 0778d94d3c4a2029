"""Esser et al. (2019) §4.1 / Table 1 on procedural sprites: ablations a-e and a β-VAE, equal budget.

    python scripts/robust_sprites.py --quick --out runs/robust_sprites      # ~15 CPU-minutes (one thread)
    python scripts/robust_sprites.py --out runs/robust_sprites_gpu --device cuda   # paper-like, GPU

Each variant trains on pairs (x1, x2) of training characters; then on 8,000 triplets of held-out
characters (the paper's count) it measures the transfer error MSE(D(E_π(x3), E_α(x1)), x2) with x2
rendered exactly, the reconstruction MSE on held-out pairs, and the final I_T, I_T′ (on held-out
pairs), γ and λ; as diagnostics of the degenerate solution, the reconstruction MSE with α swapped
between pairs (equal to the plain one when the decoder ignores α) and the I_T of a fresh classifier
fitted to the final codes (``inference.papers.robust.fitted_mi``). Writes ``results.md`` (markdown
table), ``results.json``, ``transfer_box.png`` (box plot of the per-triplet transfer error, with the
copy-x3 baseline), ``trajectories.png`` (I_T, I_T′, γ, λ per step), ``transfer_<variant>.png`` and
``transfer_truth.png`` (rows: pose targets x3, columns: appearance targets x1; first row/column are
the targets). The experiment is ``inference.papers.robust.run_robust_ablation``.
"""

from __future__ import annotations

from inference.cli import (OneLineParser, comma_list, non_negative_int, positive_float, positive_int, random_seed,
                           run_main, torch_device)
from inference.papers.robust import EPSILON, ORDER, QUICK, TRIPLETS, run_robust_ablation


def make_parser() -> OneLineParser:
    p = OneLineParser(prog="robust_sprites.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/robust_sprites", help="output folder (one run folder per variant)")
    p.add_argument("--quick", action="store_true", help=f"CPU settings {QUICK}")
    p.add_argument("--variants", type=comma_list(ORDER), default=",".join(ORDER),
                   help=f"comma list of {', '.join(ORDER)}")
    p.add_argument("--steps", type=positive_int)
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--lr", type=positive_float)
    p.add_argument("--warmup-steps", type=non_negative_int)
    p.add_argument("--resolution", type=int, choices=(32, 64))
    p.add_argument("--net", choices=("mlp", "conv32", "conv64"))
    p.add_argument("--l-gamma", type=positive_float, help="γ's learning rate l_γ of eq. (18)/(24)")
    p.add_argument("--epsilon", type=positive_float, help=f"ε of constraint (14) (default {EPSILON}, Table 1)")
    p.add_argument("--triplets", type=positive_int, default=TRIPLETS, help=f"evaluation triplets (paper: {TRIPLETS})")
    p.add_argument("--eval-pairs", type=positive_int, help="held-out pairs for recon and I_T (default 2000)")
    p.add_argument("--fresh-pairs", type=positive_int, help="training pairs of the fresh classifier (default 10000)")
    p.add_argument("--fresh-steps", type=positive_int, help="steps of the fresh classifier (default 1000)")
    p.add_argument("--seed", type=random_seed, default=0)
    p.add_argument("--log-every", type=positive_int, default=25)
    p.add_argument("--device", type=torch_device, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--resume", action="store_true", help="continue the runs in --out")
    return p


def main(argv=None):
    run_robust_ablation(**vars(make_parser().parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(run_main(main, resume_flag="--resume"))
