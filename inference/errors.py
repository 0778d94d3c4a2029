"""Errors a user can cause. Scripts print their message as one line and exit 2."""

import errno

from ppl_data import DataError


class ConfigError(ValueError):
    """A bad configuration value (unknown model, negative steps, conflicting flags...)."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, truncated, foreign or unsafe."""


class NonFiniteLossError(RuntimeError):
    """Training produced NaN or inf; names the term and the step."""

    def __init__(self, term: str, step: int, value: float):
        self.term, self.step, self.value = term, step, value
        super().__init__(f"non-finite {term} ({value}) at step {step}; "
                         "the last good checkpoint was kept")


class RunInUseError(RuntimeError):
    """Another process (or thread) holds the run folder's lock: one writer per run folder."""


class WriteError(OSError):
    """Writing a file failed (no space left, a read-only or removed folder): names the path and the
    OS error. The file it was replacing, if any, is untouched (writes are atomic)."""

    def __init__(self, path, err: OSError):
        code = err.errno
        name = errno.errorcode.get(code, "") if code is not None else ""
        super().__init__(code, err.strerror or str(err) or type(err).__name__, str(path))
        self.path = path
        self.message = f"cannot write {path}: {self.strerror}" + (f" ({name})" if name else "")

    def __str__(self):
        return self.message


#: Exceptions that are the user's to fix, reported without a traceback.
USER_ERRORS = (DataError, ConfigError, CheckpointError, NonFiniteLossError, RunInUseError,
               FileNotFoundError)
