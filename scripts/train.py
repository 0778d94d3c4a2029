"""Train a model with SVI and write a run directory.

    python scripts/train.py --model vae --data dsprites --steps 2000 --out runs/x [--beta 4]
        [--batch-size 64] [--seed 0] [--device cpu|cuda] [--resume]
        [--tensorboard DIR [--tensorboard-images N]]

--tensorboard DIR logs the terms, the KL weight, the objective's state and (every N steps)
pictures to TensorBoard (pip install pyro-disentangle[tensorboard]); scripts/evaluate.py later
adds the run's metrics. Watch with `tensorboard --logdir` on DIR's parent folder: runs side by
side, and the hparams table shows each run's config with its evaluation metrics.

Every setting is one of inference.runs' (the flags of the catalog's hyperparameters included);
the run itself is inference.runs.train_run. Any bad input prints one line on stderr naming the bad
value and exits 2.
"""

from __future__ import annotations

import json
import sys

import ppl_data
from inference.catalog import MODELS
from inference.cli import OneLineParser, run_main
from inference.runs import all_settings, train_run

HELP = {"model": f"one of: {', '.join(sorted(MODELS))} (default vae)",
        "data": f"one of: {', '.join(ppl_data.available())} (default dsprites)"}


def make_parser() -> OneLineParser:
    p = OneLineParser(prog="train.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="run directory to create (or continue with --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    for name, setting in all_settings().items():
        flag = "--" + name.replace("_", "-")
        text = HELP.get(name, setting.help)
        if setting.parse is bool:
            p.add_argument(flag, action="store_true", dest=name, help=text or None)
        else:  # None: not given (train_run applies the defaults, or a resumed run's own settings)
            default = f" (default {setting.default})" if setting.default is not None else ""
            p.add_argument(flag, type=setting.parse, dest=name, required=name == "steps",
                           help=(text + default).strip() or None)
    return p


def main(argv=None) -> None:
    args = vars(make_parser().parse_args(argv))
    out, resume = args.pop("out"), args.pop("resume")
    result = train_run(args, out, resume=resume)
    config = json.loads((result.out_dir / "config.json").read_text())
    terms = ", ".join(f"{k}={v:.4g}" for k, v in result.terms.items())
    print(f"trained {config['model']} on {config['data']} to step {result.step} "
          f"in {result.train_seconds:.1f}s: {terms} -> {out}")


if __name__ == "__main__":
    sys.exit(run_main(main, resume_flag="--resume"))
