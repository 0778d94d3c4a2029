"""Errors a user can cause. Scripts print their message as one line and exit 2."""

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


#: Exceptions that are the user's to fix, reported without a traceback.
USER_ERRORS = (DataError, ConfigError, CheckpointError, NonFiniteLossError, FileNotFoundError)
