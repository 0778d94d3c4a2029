"""The sweep's optional dependencies: Ray Tune and PyYAML come with the ``sweep`` extra.

A core install (``pip install pyro-disentangle``) trains, evaluates and exports without them; only
sweeps (and the study files they read) need them. Every import of Ray or YAML in the library goes
through :func:`require`, inside the function that needs it, so that without the extra the user
gets one line naming what to install (:class:`MissingExtraError`, a user error: scripts print it and
exit 2) instead of a traceback.
"""

from __future__ import annotations

import importlib

from ..errors import ConfigError

INSTALL = "pip install 'pyro-disentangle[sweep]' (in a clone: pip install -e '.[sweep]')"


class MissingExtraError(ConfigError):
    """An optional dependency of the sweep is not installed."""


def require(module: str):
    """Import ``module`` (e.g. ``"ray.tune"``, ``"yaml"``), or raise :class:`MissingExtraError` naming
    the ``sweep`` extra."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        missing = getattr(err, "name", None) or module
        raise MissingExtraError(f"sweeps and study files need the 'sweep' extra ({missing} is not "
                                f"installed): {INSTALL}") from None


def check_installed() -> None:
    """Raise :class:`MissingExtraError` unless Ray Tune and PyYAML both import."""
    require("yaml")
    require("ray.tune")
