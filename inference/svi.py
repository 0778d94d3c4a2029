"""The SVI runner: fit a model/guide pair with an ELBO, with checkpoints, warm-up and exact resume.

``fit`` trains with ``torch.optim.Adam`` on the parameters of the model and guide modules (a pair
is an ``nn.Module``, so ``state_dict()`` saves everything and no global parameter store can alias
two models built in one process). Each step draws the batch's dataset indices from the run's own
generator and passes them to the data plate (``subsample=index``), so a run is a function of its
seed and resumes bit-for-bit.

Run directory::

    config.json     what was trained (written once, steps updated on resume)
    checkpoint.pt   params, optimiser state, ELBO state, step, every RNG state (atomic)
    metrics.jsonl   a line every ``log_every`` steps and at the last: step, loss, named terms
    summary.json    final terms, steps, wall time, steps per second
"""

from __future__ import annotations

import inspect
import json
import math
import time
from pathlib import Path
from typing import NamedTuple

import pyro
import torch
from torch import nn
from tqdm.auto import tqdm

from ppl_data import Data

from .checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from .errors import CheckpointError, ConfigError, NonFiniteLossError
from .handlers import scale_latent

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
CONFIG = "config.json"
SUMMARY = "summary.json"
ADAM_BETAS = (0.9, 0.999)  # Kingma & Ba (2014) defaults, used by every paper here


class FitResult(NamedTuple):
    step: int
    terms: dict
    out_dir: Path | None
    train_seconds: float


def warmup_weight(step: int, warmup_steps: int, start: float) -> float:
    """KL weight for the step about to run: linear from ``start`` to 1 over ``warmup_steps`` steps.

    VITAE supplement §2 (after Sønderby et al. 2016): w = min(t / warmup, 1); Pyro refuses a
    scale of 0, so the ramp starts at ``start`` > 0.
    """
    if warmup_steps <= 0 or step >= warmup_steps:
        return 1.0
    return start + (1.0 - start) * step / warmup_steps


def pair_module(model, guide) -> nn.ModuleDict:
    """Model and guide under one module, so their parameters have stable names ``model.*`` / ``guide.*``."""
    for name, part in (("model", model), ("guide", guide)):
        if not isinstance(part, nn.Module):
            raise ConfigError(f"the {name} must be a torch.nn.Module (so its parameters can be "
                              f"checkpointed), got {type(part).__name__}")
    return nn.ModuleDict({"model": model, "guide": guide})


def _takes_index(fn) -> bool:
    try:
        inspect.signature(fn).bind(None, None)
        return True
    except TypeError:
        return False


def _rng_state(generator: torch.Generator, device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state(), "data": generator.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, generator: torch.Generator, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["data"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop log lines written after ``step`` by a run that was killed before its next checkpoint."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    atomic_write_text(path, "".join(line + "\n" for line in keep))


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def fit(model, guide, loss, data: Data, *, steps: int, out_dir=None, batch_size: int = 64,
        lr: float = 1e-4, warmup_steps: int = 0, warmup_start: float = 0.01, seed: int = 0,
        resume: bool = False, log_every: int = 10, checkpoint_every: int = 500, device=None,
        config: dict | None = None, progress: bool | None = None) -> FitResult:
    """Fit ``model``/``guide`` to ``data`` by minimising ``loss`` (an ELBO of :mod:`inference.elbo`).

    :param steps: total number of optimiser steps (a resumed run continues up to it).
    :param lr: Adam's learning rate (1e-4 in the dpVAE and VITAE supplements).
    :param warmup_steps: steps over which the latent sites' weight rises from ``warmup_start`` to 1.
    :param out_dir: run directory; ``None`` trains without writing anything.
    :param resume: continue from ``out_dir/checkpoint.pt``.
    :param progress: show a tqdm bar (``None``: only on a terminal).
    """
    for name, value, low in (("steps", steps, 0), ("batch_size", batch_size, 1),
                             ("log_every", log_every, 1), ("checkpoint_every", checkpoint_every, 1),
                             ("warmup_steps", warmup_steps, 0)):
        if not isinstance(value, int) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"lr must be a positive number, got {lr!r}")
    if not 0 < warmup_start <= 1:
        raise ConfigError(f"warmup_start must be in (0, 1], got {warmup_start!r}")
    if len(data) < 1:
        raise ConfigError("the dataset is empty")
    device = torch.device(device) if device is not None else default_device()
    pair = pair_module(model, guide)
    out = Path(out_dir) if out_dir is not None else None

    # Everything is read and checked before anything in the run directory is written.
    state = None
    if resume:
        if out is None:
            raise ConfigError("resume needs a run directory")
        state = load_checkpoint(out / CHECKPOINT, map_location="cpu")
        try:
            pair.load_state_dict(state["params"])
        except RuntimeError as err:
            first = str(err).strip().splitlines()
            raise CheckpointError(f"{out / CHECKPOINT} does not match this model "
                                  f"({first[1].strip() if len(first) > 1 else first[0]})") from None
    elif out is not None and out.exists() and any(out.iterdir()):
        raise ConfigError(f"run directory {out} already exists and is not empty "
                          "(use --resume to continue it, or another --out)")

    pair.to(device)
    if hasattr(loss, "to"):
        loss.to(device)
    optimizer = torch.optim.Adam(pair.parameters(), lr=lr, betas=ADAM_BETAS)
    generator = torch.Generator()
    start, train_seconds = 0, 0.0
    if state is not None:
        try:
            optimizer.load_state_dict(state["optimizer"])
            loss.load_state_dict(state.get("loss_state", {}))
            _set_rng_state(state["rng"], generator, device)
        except (ValueError, KeyError, RuntimeError, TypeError) as err:
            raise CheckpointError(f"{out / CHECKPOINT}: cannot restore training state ({err})") from None
        start = state["step"]
        train_seconds = float(state.get("train_seconds", 0.0))
    else:
        torch.manual_seed(seed)
        generator.manual_seed(seed)

    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        run_config = dict(config or {})
        run_config.update(steps=steps, batch_size=batch_size, lr=lr, warmup_steps=warmup_steps,
                          warmup_start=warmup_start, seed=seed, log_every=log_every,
                          checkpoint_every=checkpoint_every)
        if resume and (out / CONFIG).exists():
            saved = json.loads((out / CONFIG).read_text())
            saved["steps"] = steps
            run_config = saved
        atomic_write_text(out / CONFIG, json.dumps(run_config, indent=2, sort_keys=True) + "\n")
        _truncate_metrics(out / METRICS, start)

    takes_index = _takes_index(model) and _takes_index(guide)
    n_items = len(data)

    def checkpoint(step: int) -> None:
        if out is None:
            return
        save_checkpoint(out / CHECKPOINT, {
            "step": step,
            "params": {k: v.detach().cpu() for k, v in pair.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "loss_state": loss.state_dict(),
            "rng": _rng_state(generator, device),
            "train_seconds": train_seconds + (time.perf_counter() - t0),
            "config": {"steps": steps, "seed": seed},
        })

    names: list[str] | None = None
    acc = count = first_bad = bad_value = None
    last_terms: dict = {}
    metrics_file = open(out / METRICS, "a") if out is not None else None
    bar = tqdm(total=steps, initial=start, disable=(not progress) if progress is not None else None,
               dynamic_ncols=True, leave=False)
    t0 = time.perf_counter()
    try:
        for step in range(start, steps):
            index = torch.randint(n_items, (batch_size,), generator=generator)
            x, _ = data.batch(index, device=device)
            args = (x, index.to(device)) if takes_index else (x,)
            weight = warmup_weight(step, warmup_steps, warmup_start)
            m, g = (model, guide) if weight == 1.0 else (scale_latent(model, weight),
                                                         scale_latent(guide, weight))
            optimizer.zero_grad(set_to_none=True)
            # Pyro's argument checks run on the first step of a process only: they catch a
            # mis-shaped model at once and cost nothing afterwards.
            with pyro.validation_enabled(step == start):
                surrogate = loss.differentiable_loss(m, g, *args)
                surrogate.backward()
                optimizer.step()
                loss.after_step(m, g, *args)

            terms = loss.terms or {"loss": surrogate.detach()}
            if names is None:
                names = list(terms)
                acc = torch.zeros(len(names), device=device)
                count = 0
                first_bad = torch.full((len(names),), -1, dtype=torch.long, device=device)
                bad_value = torch.zeros(len(names), device=device)
            values = torch.stack([terms[k].to(device, torch.float32) for k in names])
            newly_bad = ~torch.isfinite(values) & (first_bad < 0)
            first_bad = torch.where(newly_bad, torch.full_like(first_bad, step + 1), first_bad)
            bad_value = torch.where(newly_bad, values, bad_value)
            acc += values
            count += 1

            done = step + 1
            is_log = done % log_every == 0 or done == steps
            is_ckpt = done % checkpoint_every == 0 or done == steps
            if is_log or is_ckpt:
                # The one host synchronisation: window means and the first non-finite step, if any.
                row = torch.cat([acc / count, first_bad.float(), bad_value]).tolist()
                k = len(names)
                means, bad_steps, bad_vals = row[:k], row[k:2 * k], row[2 * k:]
                bad = [(int(s), names[i], bad_vals[i]) for i, s in enumerate(bad_steps) if s >= 0]
                if bad:
                    s, term, value = min(bad)
                    raise NonFiniteLossError(term, s, value)
                last_terms = dict(zip(names, means))
                if is_log and metrics_file is not None:
                    metrics_file.write(json.dumps({"step": done, **last_terms, "kl_weight": weight}) + "\n")
                    metrics_file.flush()
                bar.set_postfix(loss=f"{last_terms.get('loss', float('nan')):.4g}", refresh=False)
                acc.zero_()
                count = 0
                if is_ckpt:
                    checkpoint(done)
            bar.update(1)
    finally:
        bar.close()
        if metrics_file is not None:
            metrics_file.close()
    train_seconds += time.perf_counter() - t0
    final_step = max(start, steps)
    if out is not None:
        ran = final_step - start
        atomic_write_text(out / SUMMARY, json.dumps({
            "step": final_step, "terms": last_terms, "train_seconds": train_seconds,
            "steps_per_second_last_session": ran / max(time.perf_counter() - t0, 1e-9),
        }, indent=2) + "\n")
    return FitResult(final_step, last_terms, out, train_seconds)
