"""Checkpoints: plain dicts of tensors and numbers, written atomically, read without running code.

A checkpoint is what ``torch.load(path, weights_only=True)`` can read: no pickled classes.
Writing goes to a temporary file in the same folder, is flushed to disk, then ``os.replace``-d over
the old one, so a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from .errors import CheckpointError

FORMAT = "pyro-disentangle/1"
REQUIRED_KEYS = ("format", "step", "params", "optimizer", "rng")


def atomic_write_bytes(path: str | Path, write) -> None:
    """Call ``write(fileobj)`` on a temporary file next to ``path``, then move it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, lambda fh: fh.write(text.encode("utf-8")))


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Atomically save ``state`` (which must be ``weights_only``-loadable) to ``path``."""
    state = {"format": FORMAT, **state}
    atomic_write_bytes(path, lambda fh: torch.save(state, fh))


def load_checkpoint(path: str | Path, map_location=None) -> dict:
    """Read a checkpoint; anything but one of ours raises :class:`CheckpointError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, unsafe pickle, random bytes: all the same to the user
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint ({reason[:160]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} checkpoint")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}")
    if not isinstance(state["params"], dict) or not all(
            isinstance(k, str) and torch.is_tensor(v) for k, v in state["params"].items()):
        raise CheckpointError(f"{path}: 'params' must map names to tensors")
    if not isinstance(state["step"], int) or state["step"] < 0:
        raise CheckpointError(f"{path}: bad step {state['step']!r}")
    return state
