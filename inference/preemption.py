"""Preemption: SIGTERM or SIGINT asks :func:`inference.svi.fit` to stop after the current step.

Clusters preempt a job with SIGTERM (SLURM, Kubernetes, Ray) and allow it a grace period; a user
stops one with Ctrl-C (SIGINT). While ``fit`` runs in the main thread, :func:`stop_on_signals`
turns either signal into a request (:func:`request_stop`: a plain Python flag, nothing touches the
device), which ``fit`` reads after each step: it finishes the step, writes the checkpoint and the
metrics row, and raises :class:`Preempted`. ``inference.cli.run_main`` prints one line (the
checkpoint and the command that resumes it) and exits with 128 + the signal's number (143, 130).
A second SIGINT while the step finishes aborts at once (``KeyboardInterrupt``).

Code whose ``fit`` runs outside the main thread, where Python delivers no signals (a Ray trial),
calls :func:`request_stop` itself (:mod:`inference.sweep.trial`).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

SIGNALS = (signal.SIGTERM, signal.SIGINT)

_requested: int | None = None


class Preempted(BaseException):
    """``fit`` stopped on request after ``step`` steps, with its checkpoint written to ``checkpoint``
    (``None`` for a run without a directory). A ``BaseException``, like ``KeyboardInterrupt``, so that
    an ``except Exception`` around a fit does not swallow a preemption."""

    def __init__(self, signum: int, step: int, checkpoint=None):
        self.signum, self.step, self.checkpoint = int(signum), step, checkpoint
        saved = (f"checkpoint {checkpoint} at step {step}" if checkpoint is not None
                 else f"step {step}, nothing saved (no run directory)")
        super().__init__(f"stopped by {signal.Signals(self.signum).name}: {saved}")

    @property
    def exit_code(self) -> int:
        """The shell's status for a process ended by the signal: 143 for SIGTERM, 130 for SIGINT."""
        return 128 + self.signum


def request_stop(signum: int = signal.SIGTERM) -> None:
    """Ask the running (or next) ``fit`` to stop after its current step; the first request counts."""
    global _requested
    if _requested is None:
        _requested = int(signum)


def requested() -> int | None:
    """The signal number of the pending request, or ``None``."""
    return _requested


def clear() -> None:
    global _requested
    _requested = None


def _handle(signum, frame):
    if _requested is not None and signum == signal.SIGINT:
        raise KeyboardInterrupt  # asked twice: stop now
    request_stop(signum)


@contextmanager
def stop_on_signals():
    """For the block: SIGTERM and SIGINT request a stop instead of ending the process (main thread
    only; elsewhere the block runs unchanged). On leaving it the previous handlers are back and the
    request, served or moot, is cleared."""
    installed = {}
    if threading.current_thread() is threading.main_thread():
        for signum in SIGNALS:
            installed[signum] = signal.getsignal(signum)
            signal.signal(signum, _handle)
    try:
        yield
    finally:
        for signum, previous in installed.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        clear()
