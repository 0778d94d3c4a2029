"""Effect handlers that weight latent sites, the Pyro way (cf. ``pyro.poutine.scale``)."""

from __future__ import annotations

from pyro.poutine.messenger import Messenger


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
