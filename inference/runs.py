"""Runs: train a catalog model into a run directory (:func:`train_run`) and load one back (:func:`load_run`).

``train_run(settings, out_dir)`` is what ``scripts/train.py`` does after parsing its command line,
and what every sweep trial calls: the settings are the script's flags as a dict (``--lambda-od``
is ``lambda_od``), checked here by the same parsers the command line uses (:data:`SETTINGS`, plus
one setting per hyperparameter of the catalog's models), so a notebook, a sweep and the script
refuse the same bad values with the same messages. A run directory holds ``config.json``,
``checkpoint.pt``, ``metrics.jsonl``, ``summary.json`` (:func:`inference.svi.fit`) and, for image
data, ``reconstructions.png`` and ``samples.png``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable, NamedTuple

import pyro
import torch

import ppl_data

from . import runlock
from .catalog import MODELS, build, resolve_config
from .checkpoint import atomic_write_bytes, load_checkpoint
from .cli import (check_batch_size, check_output_dir, default_device, finite_float, non_negative_int,
                  positive_float, positive_int, random_seed, torch_device)
from .errors import CheckpointError, ConfigError
from .lp_gen import aggregate_log_density, encode_posterior, low_posterior_samples
from .pairs import COMMON_DEFAULTS
from .pictures import prior_samples, reconstructions, save_grid
from .svi import CHECKPOINT, CONFIG, METRICS, FitResult, fit, pair_module


#: The procedural image datasets that draw at any ``resolution``.
RESIZABLE = ("dsprites", "sprites", "textured_shapes")


class Setting(NamedTuple):
    """A training setting: ``parse`` reads its text (an argparse ``type``; ``bool``: a switch)."""

    parse: Callable
    default: object
    help: str = ""


#: The settings of a run besides the models' hyperparameters, with their defaults.
SETTINGS: dict[str, Setting] = {
    "model": Setting(str, None, "a model of inference.catalog.MODELS (default vae)"),
    "data": Setting(str, None, "a dataset of ppl_data (default dsprites)"),
    "data_root": Setting(str, None, "folder (or file) for --data mnist / image_folder and the official "
                         "files: dsprites_file, shapes3d, mpi3d ... (README, Data)"),
    "resolution": Setting(positive_int, None, "image side of the procedural image datasets "
                          f"({', '.join(RESIZABLE)}; default 64)"),
    "steps": Setting(non_negative_int, None, "total optimiser steps"),
    "batch_size": Setting(positive_int, 64),
    "lr": Setting(positive_float, 1e-4, "Adam learning rate (papers: 1e-4)"),
    "warmup_steps": Setting(non_negative_int, 0,
                            "KL warm-up: the latent weight rises linearly to 1 over this many steps"),
    "seed": Setting(random_seed, 0),
    "device": Setting(torch_device, None, "cpu, cuda or cuda:N (default: cuda when available)"),
    "log_every": Setting(positive_int, 10),
    "checkpoint_every": Setting(positive_int, 500),
    "no_pictures": Setting(bool, False, "skip the pictures after training"),
    "tensorboard": Setting(str, None, "also log to TensorBoard in this folder (pip install "
                           "pyro-disentangle[tensorboard]); a resumed run keeps its folder"),
    "tensorboard_images": Setting(non_negative_int, 0, "with --tensorboard: reconstructions and a "
                                  "traversal grid every N steps (a multiple of --log-every; 0: none)"),
}
_PARSE_BY_TYPE = {float: finite_float, int: non_negative_int, str: str}


def hyperparameter_settings() -> dict[str, Setting]:
    """Every hyperparameter any catalog model has (the common ones first), parsed by its default's type."""
    kinds = {name: type(default) for name, default in COMMON_DEFAULTS.items()}
    for spec in MODELS.values():
        for name, default in spec.params.items():
            kinds.setdefault(name, type(default))
    return {name: Setting(_PARSE_BY_TYPE.get(kind, str), None) for name, kind in kinds.items()}


def all_settings() -> dict[str, Setting]:
    """:data:`SETTINGS` and :func:`hyperparameter_settings`: every key :func:`train_run` accepts."""
    return {**SETTINGS, **hyperparameter_settings()}


def check_settings(settings: dict) -> dict:
    """``settings`` read as the command line reads them; ConfigError naming the first bad one.

    Each value is parsed from its text by the setting's parser (``lr: 1e-4`` and ``--lr 1e-4`` give
    the same number); ``None`` means "not given"; switches take booleans.
    """
    known = all_settings()
    out = {}
    for name, value in settings.items():
        if name not in known:
            raise ConfigError(f"unknown setting {name!r}; expected one of {', '.join(sorted(known))}")
        parse = known[name].parse
        if value is None:
            out[name] = None
        elif parse is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"setting {name}: expected true or false, got {value!r}")
            out[name] = value
        else:
            try:
                out[name] = parse(str(value))
            except (argparse.ArgumentTypeError, ValueError) as err:
                raise ConfigError(f"setting {name}: {err}") from None
    return out


def _given(settings: dict, name: str):
    value = settings.get(name)
    return SETTINGS[name].default if value is None else value


def load_data(name: str, root: str | None, resolution: int | None = None):
    kwargs = {"root": root} if root is not None else {}
    rooted = ("mnist", "image_folder", "smallnorb", "cars3d", *ppl_data.FILE_DATASETS)
    if root is not None and name not in rooted:
        raise ConfigError(f"--data-root is only for {', '.join(rooted)}, not {name!r}")
    if resolution is not None:
        if name not in RESIZABLE:
            raise ConfigError(f"--resolution {resolution} is only for {', '.join(RESIZABLE)}, not {name!r}")
        if resolution < 8:
            raise ConfigError(f"--resolution must be >= 8 pixels, got {resolution}")
        kwargs["resolution"] = resolution
    return ppl_data.load(name, **kwargs)


def run_config(settings: dict, out_dir, resume: bool) -> dict:
    """The config of the run: resolved from the settings, or (``resume``) the saved one, checked
    against every setting given."""
    out = Path(out_dir)
    hyper = {k: settings.get(k) for k in hyperparameter_settings()}
    if resume:
        check_output_dir(out_dir, continuing=True)
        if not (out / CONFIG).is_file():
            raise ConfigError(f"--resume: {out} is not a run directory (no {CONFIG})")
        saved = json.loads((out / CONFIG).read_text())
        given = {"model": settings.get("model"), "data": settings.get("data"),
                 "data_root": settings.get("data_root"), "resolution": settings.get("resolution"), **hyper}
        for key, value in given.items():
            if value is not None and saved.get(key) != value:
                raise ConfigError(f"--resume: {key} = {value!r} differs from the run's {saved.get(key)!r}")
        return saved
    check_output_dir(out_dir, how="--resume to continue it")
    config = resolve_config(settings.get("model") or "vae", hyper)
    config.update(data=settings.get("data") or "dsprites", data_root=settings.get("data_root"),
                  resolution=settings.get("resolution"))
    return config


class _ReportingData:
    """The dataset as :func:`~inference.svi.fit` sees it, handing each new line of ``metrics.jsonl``
    to ``on_log(step, terms)`` before the next batch is drawn: every log step is reported during
    training, in the training thread, while the batches (and so the numbers) are the dataset's own."""

    def __init__(self, data, path: Path, on_log):
        self._data, self._path, self._on_log = data, path, on_log
        self._offset = None

    def __len__(self):
        return len(self._data)

    def __getattr__(self, name):
        return getattr(self._data, name)

    def batch(self, *args, **kwargs):
        self.poll()
        return self._data.batch(*args, **kwargs)

    def poll(self) -> None:
        size = self._path.stat().st_size if self._path.is_file() else 0
        if self._offset is None:  # the first batch: fit has cut the file to the step it resumes from
            self._offset = size
            return
        if size <= self._offset:
            return
        with open(self._path, "rb") as fh:
            fh.seek(self._offset)
            chunk = fh.read(size - self._offset)
        chunk = chunk[:chunk.rfind(b"\n") + 1]
        self._offset += len(chunk)
        for line in chunk.splitlines():
            row = json.loads(line)
            self._on_log(int(row.pop("step")), row)


def tensorboard_dir(settings: dict, config: dict, resume: bool):
    """The run's TensorBoard folder: the ``tensorboard`` setting, else (``resume``) the folder the
    run logged to before (``config.json``'s ``tensorboard``), else None."""
    given = settings.get("tensorboard")
    if given is not None:
        return given
    return config.get("tensorboard") if resume else None


def train_run(settings: dict, out_dir, resume: bool = False, progress: bool | None = None,
              on_log: Callable[[int, dict], None] | None = None) -> FitResult:
    """Train the catalog model ``settings`` name into ``out_dir`` (or continue it, ``resume``).

    :param settings: :data:`SETTINGS` and hyperparameters by name (``steps`` is required); with
        ``resume``, the run's saved config wins and a given setting that differs is an error.
    :param on_log: called as ``on_log(step, terms)`` at every log step (``log_every``) with the
        window means ``metrics.jsonl`` records, e.g. to report them to Ray Tune.
    Everything is checked before anything in ``out_dir`` is written.
    """
    settings = check_settings(settings)
    if settings.get("steps") is None:
        raise ConfigError("steps is required (the total number of optimiser steps)")
    runlock.check_free(out_dir)  # a folder in use is refused with its writer's pid, not "not empty"
    config = run_config(settings, out_dir, resume)
    device = torch.device(_given(settings, "device") or default_device())
    data = load_data(config["data"], config.get("data_root"), config.get("resolution"))
    config.update(data_shape=list(data.data_shape), dataset_size=len(data))

    def setting(name):  # a resumed run keeps its own optimisation settings
        return config.get(name, _given(settings, name)) if resume else _given(settings, name)

    batch_size, seed = setting("batch_size"), setting("seed")
    check_batch_size(batch_size, len(data), config["data"])
    pyro.set_rng_seed(seed)  # network initialisation
    model, guide, loss = build(config, data.data_shape, len(data))
    fed = data if on_log is None else _ReportingData(data, Path(out_dir) / METRICS, on_log)
    result = fit(model, guide, loss, fed, steps=settings["steps"], out_dir=out_dir, batch_size=batch_size,
                 lr=setting("lr"), warmup_steps=setting("warmup_steps"), seed=seed, resume=resume,
                 log_every=_given(settings, "log_every"),
                 checkpoint_every=_given(settings, "checkpoint_every"), device=device, config=config,
                 progress=progress, log_dir=tensorboard_dir(settings, config, resume),
                 image_every=_given(settings, "tensorboard_images"))
    if on_log is not None and fed._offset is not None:
        fed.poll()  # the last log step
    if not _given(settings, "no_pictures") and len(data.data_shape) == 3:
        model.eval()
        guide.eval()
        x, _ = data.batch(torch.randperm(len(data), generator=torch.Generator().manual_seed(1))[:8],
                          device=device)
        save_grid(reconstructions(model, guide, x), Path(out_dir) / "reconstructions.png", nrow=8)
        save_grid(prior_samples(model, 64), Path(out_dir) / "samples.png", nrow=8)
    return result


def read_run_config(run_dir) -> dict:
    """The ``config.json`` of a run directory; ConfigError if the folder, the file or its JSON is wrong."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {run_dir} " + ("is not a directory" if run_dir.exists()
                                                          else "does not exist"))
    if not (run_dir / CONFIG).is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no {CONFIG})")
    try:
        return json.loads((run_dir / CONFIG).read_text())
    except ValueError as err:
        raise ConfigError(f"{run_dir / CONFIG} is not valid JSON ({err})") from None


class Run(NamedTuple):
    model: object
    guide: object
    loss: object
    config: dict
    step: int


def load_run(run_dir, device="cpu") -> Run:
    """Model, guide, ELBO and config of a run directory, with the checkpoint's parameters loaded."""
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    state = load_checkpoint(run_dir / CHECKPOINT, map_location="cpu")
    missing = [k for k in ("model", "data_shape", "dataset_size")
               if not isinstance(config, dict) or k not in config]
    if missing:
        raise ConfigError(f"{run_dir / CONFIG} is not a run's config (no {', '.join(missing)})")
    model, guide, loss = build(config, config["data_shape"], config["dataset_size"])
    pair = pair_module(model, guide)
    try:
        pair.load_state_dict(state["params"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        reason = first[1].strip() if len(first) > 1 else first[0]
        raise CheckpointError(f"{run_dir / CHECKPOINT} does not match {run_dir / CONFIG} "
                              f"({reason[:160]})") from None
    loss.load_state_dict(state.get("loss_state", {}))
    pair.to(device).eval()
    if hasattr(loss, "to"):
        loss.to(device)
    return Run(model, guide, loss, config, state["step"])


def sample_run(run_dir, *, lp_gen: bool = False, num: int = 64, fraction: float | None = None,
               pool: int = 5000, num_data: int = 10_000, seed: int = 0) -> dict:
    """Decode ``num`` prior samples of a run (``lp_gen``: dpVAE's low-posterior samples, the ``fraction``
    of ``pool`` prior draws the aggregate posterior q(z) of ``num_data`` items finds least likely) and
    write them into the run directory: ``samples.png`` / ``lp_samples.png`` (``.pt`` for vectors).

    Returns ``{"path", "mean_log_q"}`` (the decoded codes' mean log q(z)), with LP-Gen also
    ``"kept"`` and ``"rest_log_q"`` (the mean log q(z) of the draws left out).
    """
    run_dir = Path(run_dir)
    read_run_config(run_dir)
    keep = fraction if fraction is not None else num / pool
    if lp_gen and not 0 < keep < 1:
        raise ConfigError(f"--num {num} of --pool {pool} keeps a fraction of {keep:g}; "
                          "it must be in (0, 1) (a larger --pool, or --fraction)")
    run = load_run(run_dir)
    data = load_data(run.config["data"], run.config.get("data_root"), run.config.get("resolution"))
    if lp_gen:
        res = low_posterior_samples(run.model, run.guide, data, num_samples=pool, fraction=keep,
                                    num_data=num_data, seed=seed)
        z, log_q = res.z[:num], res.log_q[:num]
        out = {"kept": len(res.z), "rest_log_q": float(res.log_q_rest.mean())}
    else:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            z = run.model.sample_prior(num)
        loc, scale = encode_posterior(run.guide, data, num_data, seed=seed)
        log_q, out = aggregate_log_density(z, loc, scale), {}
    images = run.model.decode(z)
    path = run_dir / ("lp_samples.png" if lp_gen else "samples.png")
    if images.ndim == 4:
        save_grid(images, path, nrow=8)
    else:
        path = path.with_suffix(".pt")
        atomic_write_bytes(path, lambda fh: torch.save(images, fh))
    return {"path": path, "mean_log_q": float(log_q.mean()), **out}


__all__ = ["SETTINGS", "Setting", "hyperparameter_settings", "all_settings", "check_settings",
           "run_config", "load_data", "train_run", "read_run_config", "Run", "load_run", "sample_run"]
