"""One writer per run folder: an OS lock (``fcntl.flock``) on ``<run>/.lock``, which holds the pid.

Training, resuming, evaluating (its report) and a sweep trial each hold their run folder's lock
while they write into it; a second process that opens the folder meanwhile gets
:class:`~inference.errors.RunInUseError`, one line naming the folder and the holder's pid. The
kernel drops a flock when its holder exits, however it exits (SIGKILL, out of memory), so no lock
outlives a killed run: the file stays behind, but a file is not the lock. Holding is re-entrant
within a thread (a trial holds its folder while ``train_run`` and ``evaluate_run`` take it again);
another thread of the same process is refused like another process.
"""

from __future__ import annotations

import functools
import os
import threading
from contextlib import contextmanager
from pathlib import Path

from .errors import RunInUseError, WriteError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not locked there
    fcntl = None

LOCK = ".lock"

_held: dict[str, list] = {}  # real path of the folder -> [fd, thread ident, depth]
_guard = threading.Lock()


def _key(run_dir: Path) -> str:
    return os.path.realpath(run_dir)


def holder(run_dir) -> str:
    """The pid written in ``run_dir``'s lock file, or ``"unknown"``."""
    try:
        text = (Path(run_dir) / LOCK).read_text().strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"


def _refuse(run_dir: Path):
    pid = holder(run_dir)
    who = f"process {pid}" + (" (another thread of this process)" if pid == str(os.getpid()) else "")
    return RunInUseError(f"run folder {run_dir} is in use by {who}; wait for it to finish or stop it")


def check_free(run_dir) -> None:
    """Raise :class:`RunInUseError` if another process or thread holds ``run_dir``; creates nothing."""
    run_dir = Path(run_dir)
    path = run_dir / LOCK
    if fcntl is None or not path.is_file():
        return
    with _guard:
        entry = _held.get(_key(run_dir))
        if entry is not None:
            if entry[1] != threading.get_ident():
                raise _refuse(run_dir)
            return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # unreadable: holding it will say why
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _refuse(run_dir) from None
    finally:
        os.close(fd)  # closing drops the probe's shared lock


@contextmanager
def hold(run_dir):
    """Hold ``run_dir``'s lock for the block, creating the folder and its lock file if needed.

    Raises :class:`RunInUseError` when another process or thread holds it, and
    :class:`~inference.errors.WriteError` when the lock file cannot be made (a read-only folder).
    """
    run_dir = Path(run_dir)
    key = _key(run_dir)
    with _guard:
        entry = _held.get(key)
        if entry is not None:
            if entry[1] != threading.get_ident():
                raise _refuse(run_dir)
            entry[2] += 1
    if entry is None:
        entry = _acquire(run_dir)
        with _guard:
            _held[key] = entry
    try:
        yield
    finally:
        with _guard:
            entry[2] -= 1
            last = entry[2] == 0
            if last:
                del _held[key]
        if last and entry[0] is not None:
            os.close(entry[0])  # the kernel drops the flock with the last descriptor


def holds_run_folder(fn):
    """Decorate ``fn(run_dir, ...)`` to run holding ``run_dir`` when it has a lock file, as every
    folder ``fit`` has written does; nothing is created for a folder without one (not a run, or
    one from before locks: ``fn`` refuses or reads it as it is)."""
    @functools.wraps(fn)
    def holding(run_dir, *args, **kwargs):
        if not (Path(run_dir) / LOCK).is_file():
            return fn(run_dir, *args, **kwargs)
        with hold(run_dir):
            return fn(run_dir, *args, **kwargs)
    return holding


def _acquire(run_dir: Path) -> list:
    if fcntl is None:
        return [None, threading.get_ident(), 1]
    path = run_dir / LOCK
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise WriteError(path, err) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise _refuse(run_dir) from None
    try:  # the pid is for the message only: a full disk must not stop the lock from working
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass
    return [fd, threading.get_ident(), 1]


def clear_folder(run_dir) -> None:
    """Remove everything in ``run_dir`` except its lock file (a trial that starts over, lock held)."""
    import shutil

    for item in Path(run_dir).iterdir():
        if item.name == LOCK:
            continue
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item)
        else:
            item.unlink()
