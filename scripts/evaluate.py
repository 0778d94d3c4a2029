"""Evaluate a trained run: disentanglement metrics, log-likelihood, FID/KID, pictures, ArviZ export.

    python scripts/evaluate.py RUN_DIR [--full] [--device cpu|cuda] [--seed 0] [--no-fid]
        [--dci-importance gbt|forest] [--beta-vae-classifier logistic|svm]

Writes into RUN_DIR: report.json, report.md, curves.png (the training curves of metrics.jsonl),
reconstructions.png, traversals.png, prior_samples.png, mi_heatmap.png and posterior.nc. A run
trained with --tensorboard DIR also gets the metrics in TensorBoard, as DIR/evaluation beside the
run's hparams. Default sample sizes keep an evaluation of a
dSprites run within about 5 minutes on a laptop CPU; ``--full`` uses disentanglement_lib's sizes
(much longer). Metrics a dataset cannot support (no factors, no simulator to intervene on) are
skipped with a line saying why. The evaluation is inference.report.evaluate_run, as in a sweep.
Any bad input prints one line and exits 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

from inference.cli import OneLineParser, random_seed, run_main, torch_device
from inference.metrics import BETA_VAE_CLASSIFIERS, DCI_IMPORTANCE_MODELS
from inference.report import evaluate_run, headline


def make_parser() -> OneLineParser:
    p = OneLineParser(prog="evaluate.py", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="a run directory written by scripts/train.py")
    p.add_argument("--full", action="store_true", help="disentanglement_lib's sample sizes (slow)")
    p.add_argument("--device", type=torch_device, default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--seed", type=random_seed, default=0)
    p.add_argument("--no-fid", action="store_true", help="skip FID/KID (trains a feature net once)")
    p.add_argument("--dci-importance", choices=DCI_IMPORTANCE_MODELS, default="gbt",
                   help="DCI's importance model: gbt (disentanglement_lib's) or forest (faster)")
    p.add_argument("--beta-vae-classifier", choices=BETA_VAE_CLASSIFIERS, default="logistic",
                   help="β-VAE metric's classifier: logistic (disentanglement_lib's) or svm (DIP-VAE §3)")
    return p


def main(argv=None) -> None:
    args = make_parser().parse_args(argv)
    run_dir = Path(args.run_dir)
    report = evaluate_run(run_dir, full=args.full, device=args.device, seed=args.seed,
                          fid=not args.no_fid, dci_importance=args.dci_importance,
                          beta_vae_classifier=args.beta_vae_classifier, progress=True)
    line = headline(report)
    print(f"evaluated {run_dir} in {report['seconds']['total']:.0f}s" + (f": {line}" if line else "")
          + f" -> {run_dir / 'report.md'}")


if __name__ == "__main__":
    sys.exit(run_main(main))
