"""The SVI runner: fit a model/guide pair with an ELBO, with checkpoints, warm-up and exact resume.

``fit`` makes exactly the step ``pyro.infer.SVI.step`` makes — ``loss.loss_and_grads(model, guide,
...)``, which also runs a stateful ELBO's per-step update, then an optimiser step on the parameters
the traces registered — with ``torch.optim.Adam`` on the parameters of the model and guide modules
(a pair is an ``nn.Module``, so ``state_dict()`` saves everything). The ``param`` sites are answered
by the modules' own parameters (:func:`~inference.handlers.local_params`): the global parameter store
is never touched, so two models built in one process cannot alias each other. Each step draws the batch's dataset indices from the run's own
generator and passes them to the data plate (``subsample=index``), so a run is a function of its
seed and resumes bit-for-bit.

The fast path (``fast=True``, the default, so ``scripts/train.py`` runs it) changes how the step is
computed, never what: a fast step and an eager step give the same loss and gradients to float
tolerance (``tests/test_fast_path.py``), and a fast run resumes bit-for-bit like an eager one. Its
parts (:data:`FAST_PARTS`; ``fast=`` also takes a subset, to measure each):

* ``channels_last``: conv weights (every 4-D parameter) in channels-last memory format for the run,
  so oneDNN (cuDNN on a GPU) runs the convolutions without reordering them on every call; the
  modules get their layout back when ``fit`` returns. A convolution follows its weight's layout, so
  the batch is left as the data gives it; the weights' strides are set explicitly, single-channel
  ones included (:func:`to_channels_last`), so every activation and its gradient share one layout.
* ``fused_adam``: Adam's fused kernel (one pass over all parameters instead of a Python loop of small
  ops per parameter), where the parameters' device and dtype allow it.
* ``allocator``: on a CPU run, glibc's malloc keeps freed activation memory for the next step instead
  of returning it to the system (:func:`keep_freed_memory`; process-wide, once per process).

Pyro's argument checks and the registration check run on a session's first step only, on either
path. ``benchmarks/peer_speed.py`` measures the step against pythae, disent and plain PyTorch.

Run directory::

    config.json     what was trained (written once, steps updated on resume)
    checkpoint.pt   params, optimiser state, ELBO state, step, every RNG state (atomic)
    metrics.jsonl   a line every ``log_every`` steps and at the last: step, loss, named terms
    summary.json    final terms, steps, wall time, steps per second
    .lock           held (``fcntl.flock``) while a process writes the folder (:mod:`inference.runlock`)

One writer per run folder: ``fit`` holds the folder's lock from its first write to its return, so
a second process on the same folder is refused with the holder's pid. SIGTERM or SIGINT during a
run (:mod:`inference.preemption`) finishes the current step, writes the checkpoint and the metrics
row, and raises :class:`~inference.preemption.Preempted`; resuming from that checkpoint continues
bit-for-bit. A write that fails (full disk, read-only or removed folder) raises
:class:`~inference.errors.WriteError` naming the file; the last checkpoint stays as it was.
"""

from __future__ import annotations

import ctypes
import inspect
import json
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import NamedTuple

import pyro
import torch
from pyro import poutine
from torch import nn
from tqdm.auto import tqdm

from ppl_data import Data
from ppl_data.base import to_device

from . import preemption, runlock
from .checkpoint import atomic_write_text, load_checkpoint, save_checkpoint, writing
from .errors import CheckpointError, ConfigError, NonFiniteLossError, RunInUseError
from .handlers import local_params, scale_latent
from .preemption import Preempted

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
CONFIG = "config.json"
SUMMARY = "summary.json"
ADAM_BETAS = (0.9, 0.999)  # Kingma & Ba (2014) defaults, used by every paper here
#: the parts of the fast path; ``fit(fast=True)`` uses all of them
FAST_PARTS = frozenset({"channels_last", "fused_adam", "allocator"})


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


def check_registered(pair: nn.Module, param_trace) -> None:
    """Raise unless ``param_trace`` (a ``param_only`` trace of a step) holds every trainable parameter.

    ``fit`` optimises ``pair.parameters()``; ``pyro.infer.SVI`` optimises the ``param`` sites of the
    step. A network that the program does not register would train under one and not the other.
    """
    seen = {id(site["value"]) for site in param_trace.nodes.values()}
    missing = [n for n, p in pair.named_parameters() if p.requires_grad and id(p) not in seen]
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise ConfigError(f"parameters {shown} are not registered with Pyro in the model or guide, so "
                          f"pyro.infer.SVI would not train them: call pyro.module(name, net) for every "
                          f"network (ppl_models.registration.pyro_module(self) in an nn.Module program)")


def fast_parts(fast) -> frozenset:
    """``fit``'s ``fast`` argument as a set of :data:`FAST_PARTS` (True: all, False: none)."""
    if fast is True:
        return FAST_PARTS
    if fast is False or fast is None:
        return frozenset()
    if isinstance(fast, str):
        fast = (fast,)
    try:
        parts = frozenset(fast)
    except TypeError:
        raise ConfigError(f"fast must be True, False or a subset of {sorted(FAST_PARTS)}, "
                          f"got {fast!r}") from None
    unknown = sorted(parts - FAST_PARTS)
    if unknown:
        raise ConfigError(f"unknown fast-path part(s) {', '.join(map(repr, unknown))}; expected True, "
                          f"False or a subset of {sorted(FAST_PARTS)}")
    return parts


_MALLOC_TUNED = False
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>
MALLOC_MMAP_THRESHOLD = 64 << 20  # blocks below this come from the reusable heap
MALLOC_TRIM_THRESHOLD = 256 << 20  # free memory kept at the top of the heap


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks for reuse rather than return them to the system.

    A conv64 training step allocates and frees some 40 MB of activations. By default glibc gives
    the top of the heap back to the kernel as soon as it is freed, and the next step faults every
    page in again: about 3,000 page faults and 6 ms of kernel time per step on this 2-core CPU
    (10,000 on one thread). With blocks under 64 MiB served from the heap and up to 256 MiB of free
    heap kept, a step reuses its pages. Process-wide and permanent (it is an allocator setting);
    applied once; Linux with glibc only. Returns whether the setting is in force.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    _MALLOC_TUNED = bool(mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD)
                         and mallopt(_M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD))
    return _MALLOC_TUNED


def channels_last_strides(shape) -> tuple[int, ...]:
    """The strides of a channels-last ``(N, C, H, W)`` tensor, spelled out even where a size-1
    dimension makes both layouts the same memory."""
    n, c, h, w = shape
    return (h * w * c, 1, w * c, c)


def to_channels_last(module: nn.Module) -> list[nn.Parameter]:
    """Give every 4-D parameter (conv weights) of ``module`` channels-last strides; return those moved.

    A weight with one input or output channel (the first layer on grey images, a last layer to one
    channel) is contiguous in both layouts, so ``contiguous(memory_format=channels_last)`` leaves
    its default strides, and oneDNN then runs that layer in the default layout: its activations come
    out in one layout and their gradients in the other, and the elementwise ops between (the ReLU's
    backward) fall off their vectorised path (10× slower on a 64×32×32×32 map). The strides are set
    explicitly instead. ``param.data`` is swapped in place, so the parameter objects (and whatever
    holds them: the optimiser, Pyro traces) stay the same. Values are untouched: only the strides change.
    """
    moved = []
    for param in module.parameters():
        if param.dim() == 4 and param.stride() != channels_last_strides(param.shape):
            param.data = torch.empty_strided(param.shape, channels_last_strides(param.shape), dtype=param.dtype,
                                             device=param.device).copy_(param.data)
            moved.append(param)
    return moved


def _default_layout(tensor: torch.Tensor) -> torch.Tensor:
    return torch.empty(tensor.shape, dtype=tensor.dtype, device=tensor.device).copy_(tensor)


def restore_layout(params: list[nn.Parameter]) -> None:
    for param in params:
        param.data = _default_layout(param.data)
        if param.grad is not None:
            param.grad = _default_layout(param.grad)


def make_optimizer(params, lr: float, fast: bool = True) -> torch.optim.Adam:
    """Adam with the papers' betas; on the fast path its fused kernel where the parameters allow it."""
    params = list(params)
    if fast:
        try:
            return torch.optim.Adam(params, lr=lr, betas=ADAM_BETAS, fused=True)
        except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
            pass
    return torch.optim.Adam(params, lr=lr, betas=ADAM_BETAS)


def match_state_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give every per-parameter optimiser state tensor its parameter's strides.

    A checkpoint holds Adam's moments in the layout of the run that wrote it. The fused kernel walks
    parameter, gradient and moments as flat memory, so a moment whose strides differ from its
    parameter's (an eager run's moments for a channels-last weight, or the reverse) would be updated
    at the wrong elements without any error. Copying into ``empty_like(param)`` keeps every value
    and takes the parameter's layout.
    """
    for param, state in optimizer.state.items():
        for key, value in state.items():
            if (torch.is_tensor(value) and value.shape == param.shape
                    and value.stride() != param.stride()):
                state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """``optimizer.load_state_dict(saved)`` keeping this run's kernel choice (fused or not).

    ``load_state_dict`` also restores the saved param groups' ``fused``/``foreach`` flags, which
    say how the writing run computed its update, not what it learnt: a fast run resuming an eager
    checkpoint would otherwise fall back to the for-loop kernel, and the reverse would run the
    fused one on parameters in the default layout. The values (moments, step counts) are restored
    exactly; the fused kernel's step counts live on the parameter's device as float32.
    """
    flags = [{k: group[k] for k in ("fused", "foreach") if k in group} for group in optimizer.param_groups]
    optimizer.load_state_dict(saved)
    for group, kept in zip(optimizer.param_groups, flags):
        group.update(kept)
        on_device = group.get("fused") or group.get("capturable")
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            if torch.is_tensor(state.get("step")):  # where torch.optim.Adam keeps it for this kernel
                state["step"] = (state["step"].to(dtype=torch.float32, device=param.device) if on_device
                                 else state["step"].to("cpu"))
    match_state_layout(optimizer)


def svi_step(loss, model, guide, optimizer: torch.optim.Optimizer, args=(), kwargs=None):
    """One training step as ``fit`` makes it after a session's first: what ``pyro.infer.SVI.step`` does.

    Clears the gradients, calls ``loss.loss_and_grads(model, guide, *args)`` (the gradients and a
    stateful ELBO's per-step update) with Pyro's validation off, and steps the optimiser. Returns
    the loss as a tensor on the device, without a host synchronisation. ``model`` and ``guide``
    are the programs as run (``fit`` passes them under :func:`~inference.handlers.local_params`).
    """
    optimizer.zero_grad(set_to_none=True)
    with pyro.validation_enabled(False):
        value = loss.loss_and_grads(model, guide, *args, **(kwargs or {}))
    optimizer.step()
    return value


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
    atomic_write_text(path, "".join(line + "\n" for line in keep), create_folder=False)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def fit(model, guide, loss, data: Data, *, steps: int, out_dir=None, batch_size: int = 64,
        lr: float = 1e-4, warmup_steps: int = 0, warmup_start: float = 0.01, seed: int = 0,
        resume: bool = False, log_every: int = 10, checkpoint_every: int = 500, device=None,
        config: dict | None = None, progress: bool | None = None, fast: bool = True,
        log_dir=None, image_every: int = 0) -> FitResult:
    """Fit ``model``/``guide`` to ``data`` by minimising ``loss`` (an ELBO of :mod:`inference.elbo`).

    :param steps: total number of optimiser steps (a resumed run continues up to it).
    :param lr: Adam's learning rate (1e-4 in the dpVAE and VITAE supplements).
    :param warmup_steps: steps over which the latent sites' weight rises from ``warmup_start`` to 1.
    :param out_dir: run directory; ``None`` trains without writing anything.
    :param resume: continue from ``out_dir/checkpoint.pt``.
    :param progress: show a tqdm bar (``None``: only on a terminal).
    :param fast: the fast path (module docstring): the same model and loss, computed faster.
        ``False`` runs the plain eager step (default memory format, for-loop Adam); a subset of
        :data:`FAST_PARTS` runs those parts only.
    :param log_dir: also log to TensorBoard in this folder (:mod:`inference.tensorboard`; needs the
        ``tensorboard`` extra): the logged terms, the KL weight and the objective's state at every
        log step from the same host values, the config as hparams at the end; a resumed run
        appends to the same TensorBoard run. Recorded in ``config.json`` as ``tensorboard``.
    :param image_every: with ``log_dir``, reconstructions and a traversal grid every this many steps
        (a multiple of ``log_every``; 0: none).
    """
    parts = fast_parts(fast)
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
    if out is not None:
        runlock.check_free(out)
    state = None
    if resume:
        if out is None:
            raise ConfigError("resume needs a run directory")
        stamp = _file_stamp(out / CHECKPOINT)
        state = load_checkpoint(out / CHECKPOINT, map_location="cpu")
        try:
            pair.load_state_dict(state["params"])
        except RuntimeError as err:
            first = str(err).strip().splitlines()
            raise CheckpointError(f"{out / CHECKPOINT} does not match this model "
                                  f"({first[1].strip() if len(first) > 1 else first[0]})") from None
    elif out is not None and not _is_empty(out):
        raise ConfigError(f"run directory {out} already exists and is not empty "
                          "(use --resume to continue it, or another --out)")
    board = None
    if log_dir is not None:
        from .tensorboard import TrainingBoard
        board = TrainingBoard(log_dir, start=state["step"] if state is not None else 0, resume=resume,
                              log_every=log_every, image_every=image_every)
    elif image_every:
        raise ConfigError("image_every needs log_dir (the pictures go to TensorBoard)")

    pair.to(device)
    if hasattr(loss, "to"):
        loss.to(device)
    if "allocator" in parts and device.type == "cpu":
        keep_freed_memory()
    moved = to_channels_last(pair) if "channels_last" in parts else []
    try:
        with runlock.hold(out) if out is not None else nullcontext(), preemption.stop_on_signals():
            if out is not None:  # what was checked may have changed before the lock was ours
                if resume and _file_stamp(out / CHECKPOINT) != stamp:
                    raise RunInUseError(f"{out / CHECKPOINT} changed while it was read (another "
                                        "process writing this run folder?); try again")
                if not resume and not _is_empty(out):
                    raise ConfigError(f"run directory {out} already exists and is not empty "
                                      "(use --resume to continue it, or another --out)")
            return _fit(pair, model, guide, loss, data, state, out, device, parts, steps=steps,
                        batch_size=batch_size, lr=lr, warmup_steps=warmup_steps,
                        warmup_start=warmup_start, seed=seed, resume=resume, log_every=log_every,
                        checkpoint_every=checkpoint_every, config=config, progress=progress,
                        board=board)
    finally:
        restore_layout(moved)


def _is_empty(out: Path) -> bool:
    """No such folder, or nothing in it but its lock file."""
    return not out.is_dir() or all(p.name == runlock.LOCK for p in out.iterdir())


def _file_stamp(path: Path):
    """What changes when a file is replaced (inode, size, modification time), or None."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _fit(pair, model, guide, loss, data, state, out, device, parts, *, steps, batch_size, lr,
         warmup_steps, warmup_start, seed, resume, log_every, checkpoint_every, config,
         progress, board=None) -> FitResult:
    optimizer = make_optimizer(pair.parameters(), lr, fast="fused_adam" in parts)
    generator = torch.Generator()
    start, train_seconds = 0, 0.0
    if state is not None:
        try:
            load_optimizer_state(optimizer, state["optimizer"])
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
        if board is not None:
            run_config["tensorboard"] = str(board.dir.resolve())
        atomic_write_text(out / CONFIG, json.dumps(run_config, indent=2, sort_keys=True) + "\n",
                          create_folder=False)
        _truncate_metrics(out / METRICS, start)

    takes_index = _takes_index(model) and _takes_index(guide)
    local_model, local_guide = local_params(model), local_params(guide)
    n_items = len(data)

    def checkpoint(step: int) -> None:
        if out is None:
            return
        save_checkpoint(out / CHECKPOINT, create_folder=False, state={
            "step": step,
            # default layout on disk, whatever the run's memory format
            "params": {k: v.detach().cpu().contiguous() for k, v in pair.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "loss_state": loss.state_dict(),
            "rng": _rng_state(generator, device),
            "train_seconds": train_seconds + (time.perf_counter() - t0),
            "config": {"steps": steps, "seed": seed},
        })

    names: list[str] | None = None
    acc = count = first_bad = bad_value = None
    last_terms: dict = {}
    if out is not None:
        with writing(out / METRICS):
            metrics_file = open(out / METRICS, "a")
    else:
        metrics_file = None
    bar = tqdm(total=steps, initial=start, disable=(not progress) if progress is not None else None,
               dynamic_ncols=True, leave=False)
    t0 = time.perf_counter()
    try:
        for step in range(start, steps):
            index = torch.randint(n_items, (batch_size,), generator=generator)
            x, _ = data.batch(index, device=device)
            args = (x, to_device(index, device)) if takes_index else (x,)  # queued, no host wait
            weight = warmup_weight(step, warmup_steps, warmup_start)
            m, g = (local_model, local_guide) if weight == 1.0 else (
                scale_latent(local_model, weight), scale_latent(local_guide, weight))
            # SVI.step's call: gradients and the ELBO's per-step update. Pyro's argument checks, and
            # the check that every parameter is registered with Pyro, run on a process's first step
            # only: they catch a mis-built pair at once and cost nothing afterwards.
            if step == start:
                optimizer.zero_grad(set_to_none=True)
                with pyro.validation_enabled(True), poutine.trace(param_only=True) as capture:
                    value = loss.loss_and_grads(m, g, *args)
                check_registered(pair, capture.trace)
                optimizer.step()
            else:
                value = svi_step(loss, m, g, optimizer, args)

            terms = loss.terms or {"loss": value}
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
            # A stop request (SIGTERM, SIGINT, a Ray trial's end) is a plain Python flag: no sync.
            stop = preemption.requested() is not None and done < steps
            is_log = done % log_every == 0 or done == steps or stop
            is_ckpt = done % checkpoint_every == 0 or done == steps or stop
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
                    with writing(out / METRICS):
                        metrics_file.write(json.dumps({"step": done, **last_terms, "kl_weight": weight}) + "\n")
                        metrics_file.flush()
                if is_log and board is not None:  # the same host values: no other sync
                    board.log_window(done, last_terms, weight)
                    if board.images_due(done):
                        board.log_images(done, model, guide, data, device)
                bar.set_postfix(loss=f"{last_terms.get('loss', float('nan')):.4g}", refresh=False)
                acc.zero_()
                count = 0
                if is_ckpt:
                    checkpoint(done)
            bar.update(1)
            if stop:
                raise Preempted(preemption.requested(), done, out / CHECKPOINT if out is not None else None)
        if board is not None:
            board.log_hparams(run_config if out is not None else {
                **(config or {}), "steps": steps, "batch_size": batch_size, "lr": lr,
                "warmup_steps": warmup_steps, "seed": seed})
    finally:
        bar.close()
        if board is not None:
            board.close()
        if metrics_file is not None:
            try:
                metrics_file.close()
            except OSError:
                pass  # a failed write raised already, and said which file
    train_seconds += time.perf_counter() - t0
    final_step = max(start, steps)
    if out is not None:
        ran = final_step - start
        atomic_write_text(out / SUMMARY, json.dumps({
            "step": final_step, "terms": last_terms, "train_seconds": train_seconds,
            "steps_per_second_last_session": ran / max(time.perf_counter() - t0, 1e-9),
        }, indent=2) + "\n", create_folder=False)
    return FitResult(final_step, last_terms, out, train_seconds)
