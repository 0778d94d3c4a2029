"""Train a model with SVI and write a run directory.

    python scripts/train.py --model vae --data dsprites --steps 2000 --out runs/x [--beta 4]
        [--batch-size 64] [--seed 0] [--device cpu|cuda] [--resume]

Any bad input prints one line on stderr naming the bad value and exits 2.
"""

from __future__ import annotations

import warnings

warnings.filterwarnings("ignore")  # import-time chatter from dependencies is not the user's problem

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pyro  # noqa: E402
import torch  # noqa: E402

import ppl_data  # noqa: E402
from inference import MODELS, build, fit, resolve_config  # noqa: E402
from inference.build import COMMON_DEFAULTS  # noqa: E402
from inference.cli import (OneLineParser, check_batch_size, check_output_dir, default_device,  # noqa: E402
                           finite_float, non_negative_int, positive_float, positive_int, random_seed,
                           run_main, torch_device)
from inference.errors import ConfigError  # noqa: E402
from inference.pictures import prior_samples, reconstructions, save_grid  # noqa: E402
from inference.svi import CONFIG  # noqa: E402

RUN_SETTINGS = ("model", "data", "data_root")


def hyperparameter_flags() -> dict[str, type]:
    """Every hyperparameter any registered model has, with the type of its default."""
    flags: dict[str, type] = {name: type(default) for name, default in COMMON_DEFAULTS.items()}
    for spec in MODELS.values():
        for name, default in spec.params.items():
            flags.setdefault(name, type(default))
    return flags


def make_parser() -> OneLineParser:
    p = OneLineParser(prog="train.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help=f"one of: {', '.join(sorted(MODELS))} (default vae)")
    p.add_argument("--data", help=f"one of: {', '.join(ppl_data.available())} (default dsprites)")
    p.add_argument("--data-root", help="folder for --data mnist / image_folder")
    p.add_argument("--steps", type=non_negative_int, required=True, help="total optimiser steps")
    p.add_argument("--out", required=True, help="run directory to create (or continue with --resume)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=positive_float, default=1e-4, help="Adam learning rate (papers: 1e-4)")
    p.add_argument("--warmup-steps", type=non_negative_int, default=0,
                   help="KL warm-up: the latent weight rises linearly to 1 over this many steps")
    p.add_argument("--seed", type=random_seed, default=0)
    p.add_argument("--device", type=torch_device, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--log-every", type=positive_int, default=10)
    p.add_argument("--checkpoint-every", type=positive_int, default=500)
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--no-pictures", action="store_true", help="skip the pictures after training")
    for name, kind in hyperparameter_flags().items():
        flag = "--" + name.replace("_", "-")
        if kind is float:
            p.add_argument(flag, type=finite_float, default=None, dest=name)
        elif kind is int:
            p.add_argument(flag, type=non_negative_int, default=None, dest=name)
        else:
            p.add_argument(flag, type=str, default=None, dest=name)
    return p


def choose_device(name: str | None) -> torch.device:
    """``--device`` (already checked by its argparse type), or the machine's default."""
    return torch.device(name if name is not None else default_device())


def load_data(name: str, root: str | None):
    kwargs = {"root": root} if root is not None else {}
    if root is not None and name not in ("mnist", "image_folder"):
        raise ConfigError(f"--data-root is only for mnist and image_folder, not {name!r}")
    return ppl_data.load(name, **kwargs)


def config_from_args(args) -> dict:
    out = Path(args.out)
    hyper = {k: getattr(args, k) for k in hyperparameter_flags()}
    if args.resume:
        check_output_dir(args.out, continuing=True)
        if not (out / CONFIG).is_file():
            raise ConfigError(f"--resume: {out} is not a run directory (no {CONFIG})")
        saved = json.loads((out / CONFIG).read_text())
        given = {"model": args.model, "data": args.data, "data_root": args.data_root, **hyper}
        for key, value in given.items():
            if value is not None and saved.get(key) != value:
                raise ConfigError(f"--resume: {key} = {value!r} differs from the run's {saved.get(key)!r}")
        return saved
    check_output_dir(args.out, how="--resume to continue it")
    config = resolve_config(args.model or "vae", hyper)
    config.update(data=args.data or "dsprites", data_root=args.data_root)
    return config


def main(argv=None) -> None:
    args = make_parser().parse_args(argv)
    config = config_from_args(args)
    device = choose_device(args.device)
    data = load_data(config["data"], config.get("data_root"))
    config.update(data_shape=list(data.data_shape), dataset_size=len(data))
    batch_size = config.get("batch_size", args.batch_size) if args.resume else args.batch_size
    check_batch_size(batch_size, len(data), config["data"])
    seed = config.get("seed", args.seed) if args.resume else args.seed
    pyro.set_rng_seed(seed)  # network initialisation
    model, guide, loss = build(config, data.data_shape, len(data))
    result = fit(model, guide, loss, data, steps=args.steps, out_dir=args.out, batch_size=batch_size,
                 lr=config.get("lr", args.lr) if args.resume else args.lr,
                 warmup_steps=config.get("warmup_steps", args.warmup_steps) if args.resume
                 else args.warmup_steps,
                 seed=seed, resume=args.resume, log_every=args.log_every,
                 checkpoint_every=args.checkpoint_every, device=device, config=config)
    if not args.no_pictures and len(data.data_shape) == 3:
        model.eval()
        guide.eval()
        x, _ = data.batch(torch.randperm(len(data), generator=torch.Generator().manual_seed(1))[:8],
                          device=device)
        save_grid(reconstructions(model, guide, x), Path(args.out) / "reconstructions.png", nrow=8)
        save_grid(prior_samples(model, 64), Path(args.out) / "samples.png", nrow=8)
    terms = ", ".join(f"{k}={v:.4g}" for k, v in result.terms.items())
    print(f"trained {config['model']} on {config['data']} to step {result.step} "
          f"in {result.train_seconds:.1f}s: {terms} -> {args.out}")


if __name__ == "__main__":
    sys.exit(run_main(main))
