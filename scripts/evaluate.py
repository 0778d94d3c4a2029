"""Evaluate a trained run: disentanglement metrics, log-likelihood, FID/KID, pictures, ArviZ export.

    python scripts/evaluate.py RUN_DIR [--full] [--device cpu|cuda] [--seed 0] [--no-fid]

Writes into RUN_DIR: report.json, report.md, reconstructions.png, traversals.png,
prior_samples.png, mi_heatmap.png and posterior.nc. Default sample sizes keep an evaluation of a
dSprites run within about 5 minutes on a laptop CPU; ``--full`` uses disentanglement_lib's sizes
(much longer). Metrics a dataset cannot support (no factors, no simulator to intervene on) are
skipped with a line saying why. Any bad input prints one line and exits 2.
"""

from __future__ import annotations

import warnings

warnings.filterwarnings("ignore")  # import-time chatter from dependencies is not the user's problem

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from inference.checkpoint import atomic_write_text  # noqa: E402
from inference.cli import OneLineParser, random_seed, run_main, torch_device  # noqa: E402
from inference.evaluation import SIZES, Evaluation, check_run_dir, load_data, markdown  # noqa: E402,F401


def make_parser() -> OneLineParser:
    p = OneLineParser(prog="evaluate.py", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="a run directory written by scripts/train.py")
    p.add_argument("--full", action="store_true", help="disentanglement_lib's sample sizes (slow)")
    p.add_argument("--device", type=torch_device, default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--seed", type=random_seed, default=0)
    p.add_argument("--no-fid", action="store_true", help="skip FID/KID (trains a feature net once)")
    return p


def main(argv=None) -> None:
    args = make_parser().parse_args(argv)
    run_dir = Path(args.run_dir)
    check_run_dir(run_dir)
    t_all = time.perf_counter()
    ev = Evaluation(run_dir, args.full, args.device, args.seed)
    sections = [("training", ev.training), ("pictures", ev.pictures),
                ("reconstruction", ev.reconstruction), ("factor metrics", ev.factor_metrics),
                ("log-likelihood", ev.likelihood), ("fid", lambda: ev.fid(not args.no_fid)),
                ("posterior export", ev.posterior)]
    for name, section in tqdm(sections, desc="evaluate", unit="section"):
        t0 = time.perf_counter()
        with torch.no_grad() if name != "fid" else torch.enable_grad():
            section()
        ev.report["seconds"][name] = time.perf_counter() - t0
    ev.report["seconds"]["total"] = time.perf_counter() - t_all
    atomic_write_text(run_dir / "report.json", json.dumps(ev.report, indent=2))
    atomic_write_text(run_dir / "report.md", markdown(ev.report))
    m = ev.report["metrics"]
    headline = ", ".join(f"{k}={v:.3f}" for k, v in (
        ("mig", m.get("mig", {}).get("value")),
        ("factor_vae", m.get("factor_vae", {}).get("eval_accuracy")),
        ("dci_d", m.get("dci", {}).get("disentanglement"))) if v is not None)
    print(f"evaluated {run_dir} in {ev.report['seconds']['total']:.0f}s"
          + (f": {headline}" if headline else "") + f" -> {run_dir / 'report.md'}")


if __name__ == "__main__":
    sys.exit(run_main(main))
