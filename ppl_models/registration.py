"""Register a model's or guide's networks with Pyro, so ``pyro.infer.SVI`` trains them.

Every Pyro program shipped here is an ``nn.Module`` (so ``state_dict()`` saves it and ``fit``
checkpoints it) whose ``forward`` starts with ``pyro_module(self)``: the same registration as
``pyro.module(name, self)`` in Pyro's ``examples/vae``, done for the whole module tree. Each
parameter then appears as a ``param`` site of the trace, under ``"<name>$$$<parameter path>"``:

* under ``pyro.infer.SVI`` the parameter store holds the module's own ``nn.Parameter`` objects, so
  ``SVI.step`` moves the module's weights;
* under :func:`inference.svi.fit` (and our evaluation code) a handler answers the ``param`` sites
  with the module's parameters without touching the global store, so two models built in one
  process never share a parameter by name.

Names are unique per instance (``VAEModel_0``, ``VAEModel_1``, ...; or the ``pyro_name`` you set on
the module), so two pairs trained with SVI in one process never alias each other's weights, which
``pyro.module`` with one fixed name silently does. Frozen parameters (``requires_grad=False``, e.g.
MS-VAE's first stage during the second) are not registered, as in ``pyro.module``.
"""

from __future__ import annotations

import itertools
from collections import defaultdict

import pyro
from pyro.params.param_store import param_with_module_name
from torch import nn

_COUNTERS: defaultdict[str, itertools.count] = defaultdict(itertools.count)


def _fresh_name(module: nn.Module) -> str:
    cls = type(module).__name__
    return f"{cls}_{next(_COUNTERS[cls])}"


def _held_by_another(name: str, module: nn.Module) -> bool:
    """Whether the global store holds, under ``name``, parameters that are not ``module``'s own."""
    store = pyro.get_param_store()
    for param_name, value in module.named_parameters():
        full = param_with_module_name(name, param_name)
        if full in store:
            return store[full] is not value  # a copy (deepcopy) or an unrelated module
        return False
    return False


def pyro_module(module: nn.Module) -> nn.Module:
    """``pyro.module(module.pyro_name, module)``: emit a ``param`` site for each trainable parameter.

    The name is given on first use (a fresh ``<ClassName>_<k>``) and kept on the module as
    ``pyro_name``; a module that finds its name taken by another module's parameters in the global
    store (a ``copy.deepcopy`` of a registered module) takes a fresh one instead of aliasing them.
    """
    name = module.__dict__.get("pyro_name")
    if name is None or _held_by_another(name, module):
        name = _fresh_name(module)
        module.__dict__["pyro_name"] = name
    for param_name, value in module.named_parameters():
        if value.requires_grad:
            pyro.param(param_with_module_name(name, param_name), value)
    return module
