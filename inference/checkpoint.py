"""Checkpoints: plain dicts of tensors and numbers, written atomically, read without running code.

A checkpoint is what ``torch.load(path, weights_only=True)`` can read: no pickled classes.
Writing goes to a temporary file in the same folder, is flushed to disk, then ``os.replace``-d over
the old one, so a crash mid-write leaves the previous checkpoint intact; a write that fails (full
disk, read-only or removed folder) raises :class:`~inference.errors.WriteError` and removes its
temporary file.
"""

from __future__ import annotations

import io
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

from .errors import CheckpointError, WriteError

FORMAT = "pyro-disentangle/1"
REQUIRED_KEYS = ("format", "step", "params", "optimizer", "rng")


def _read_umask() -> int:
    mask = os.umask(0o022)  # read once, at import (single-threaded), and put back
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write_bytes(path: str | Path, write, *, create_folder: bool = True) -> None:
    """Call ``write(fileobj)`` on an in-memory buffer, then write it to a temporary file next to
    ``path``, flush it to disk and move it into place.

    Whatever fails (no space left, a read-only or removed folder) raises :class:`WriteError` naming
    ``path`` and the OS error; the file ``path`` held before is untouched and no temporary file is
    left behind. The bytes are made in memory first so that a full disk surfaces as the OS error
    itself, not as a serialiser's own exception (``torch.save``'s zip writer turns it into
    ``RuntimeError: [enforce fail at inline_container.cc]``). ``create_folder=False``: a folder that
    has gone (removed mid-run) is an error, not silently made again.
    """
    path = Path(path)
    buffer = io.BytesIO()
    write(buffer)
    tmp = None
    try:
        if create_folder:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600: a shared cluster's readers need the umask's mode
        with os.fdopen(fd, "wb") as fh:
            fh.write(buffer.getbuffer())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(err, OSError) and not isinstance(err, WriteError):
            raise WriteError(path, err) from None
        raise


@contextmanager
def writing(path: str | Path):
    """Turn an ``OSError`` of the block (an append, a flush) into :class:`WriteError` naming ``path``."""
    try:
        yield
    except WriteError:
        raise
    except OSError as err:
        raise WriteError(path, err) from None


def atomic_write_text(path: str | Path, text: str, *, create_folder: bool = True) -> None:
    atomic_write_bytes(path, lambda fh: fh.write(text.encode("utf-8")), create_folder=create_folder)


def atomic_save_figure(fig, path: str | Path, **savefig_kwargs) -> Path:
    """``fig.savefig(path, **savefig_kwargs)`` through :func:`atomic_write_bytes`: a failed write
    leaves the picture ``path`` held before. The format is the suffix's (``.png``, ``.pdf``, ...)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".") or None
    atomic_write_bytes(path, lambda fh: fig.savefig(fh, format=fmt, **savefig_kwargs))
    return path


def atomic_write_file(path: str | Path, write_to) -> Path:
    """For writers that need a file name rather than a file object (netCDF through HDF5):
    ``write_to(temporary_name)`` in ``path``'s folder, then flush it to disk and move it into place,
    with the same guarantees as :func:`atomic_write_bytes`."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f"{path.suffix}.tmp")
        os.close(fd)
        os.unlink(tmp)  # the writer makes the file itself (some refuse to open an existing one)
        write_to(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(err, OSError) and not isinstance(err, WriteError):
            raise WriteError(path, err) from None
        raise
    return path


def save_checkpoint(path: str | Path, state: dict, *, create_folder: bool = True) -> None:
    """Atomically save ``state`` (which must be ``weights_only``-loadable) to ``path``."""
    state = {"format": FORMAT, **state}
    atomic_write_bytes(path, lambda fh: torch.save(state, fh), create_folder=create_folder)


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
