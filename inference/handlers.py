"""Effect handlers: weight latent sites the Pyro way (cf. ``pyro.poutine.scale``); module-local params."""

from __future__ import annotations

from pyro.poutine.messenger import Messenger
from torch import nn


class LatentScaleMessenger(Messenger):
    """Multiply the scale of latent (unobserved) sample sites by ``scale``.

    Unlike ``poutine.scale`` it leaves observed sites alone, so wrapping model *and* guide in it
    weights the KL term of ``TraceMeanField_ELBO`` (which reads the scale from the guide site) and
    the Monte Carlo ``log p(z) - log q(z)`` alike, but not the likelihood: β and KL warm-up.

    :param float scale: a positive weight (Pyro refuses scale 0: warm-up starts above it).
    :param sites: names of the sites to weight; ``None`` weights every latent site.
    """

    def __init__(self, scale, sites=None):
        super().__init__()
        if not isinstance(scale, (int, float)) or not scale > 0:
            raise ValueError(f"latent scale must be a positive number, got {scale!r}")
        self.scale = float(scale)
        self.sites = None if sites is None else frozenset(sites)

    def _process_message(self, msg):
        if msg["type"] != "sample" or msg["is_observed"]:
            return
        if self.sites is None or msg["name"] in self.sites:
            msg["scale"] = self.scale * msg["scale"]


def scale_latent(fn=None, scale=1.0, sites=None):
    """``fn`` run under :class:`LatentScaleMessenger` (or the messenger itself when ``fn`` is None)."""
    messenger = LatentScaleMessenger(scale, sites)
    return messenger if fn is None else messenger(fn)


class LocalParamMessenger(Messenger):
    """Answer ``param`` sites that carry an ``nn.Parameter`` with that parameter, bypassing the store.

    ``pyro.module`` (and :func:`ppl_models.registration.pyro_module`) emits one ``param`` site per
    module parameter, with the parameter itself as the initial value. Outside this handler Pyro puts
    it in the global parameter store; inside it the site's value is the module's own parameter and
    the store is never read or written, so a model trained by :func:`inference.svi.fit` (whose
    optimiser holds the module's parameters) leaves no trace in, and takes nothing from, the store
    that a user's ``pyro.infer.SVI`` session uses. The sites still appear in traces, so the ELBO can
    check that a program registers its parameters at all. Other ``param`` sites (a bare
    ``pyro.param(name, tensor)``) go to the store as usual.
    """

    def _process_message(self, msg):
        if msg["type"] != "param" or msg["value"] is not None or len(msg["args"]) < 2:
            return
        init = msg["args"][1]
        if isinstance(init, nn.Parameter):
            msg["value"] = init
            msg["done"] = True


def local_params(fn=None):
    """``fn`` run under :class:`LocalParamMessenger` (or the messenger itself when ``fn`` is None)."""
    messenger = LocalParamMessenger()
    return messenger if fn is None else messenger(fn)
