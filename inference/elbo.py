"""The ELBO every objective in this project builds on: Pyro's mean-field ELBO with named terms.

``TermsELBO`` computes exactly what :class:`pyro.infer.TraceMeanField_ELBO` computes — the
observed sites' log-likelihood minus the analytic KL of each latent site (Monte Carlo
``log q − log p`` where no closed form exists, e.g. a flow prior) — and additionally

* weights the latent sites by ``kl_scale`` with :func:`~inference.handlers.scale_latent` applied to
  model *and* guide (β of β-VAE: the KL that Pyro reads from the guide site is scaled),
* adds the subclass's ``penalty`` (per data point, multiplied by the dataset size N read from the
  data plate, so it is in the same units as Pyro's N/B-scaled ELBO),
* records per-data-point terms in ``self.terms`` as detached tensors (no host synchronisation):
  ``loss``, ``recon`` (−E log p(x|z)), ``kl`` (unweighted KL summed over latent sites), ``kl_<site>``
  when there are several latent sites, and whatever the penalty logs.

Subclasses override :meth:`penalty` and, when they keep state that changes during training (a
discriminator, a schedule, a running estimate, multipliers), :meth:`step_update` with
``state_dict``/``load_state_dict``. ``step_update`` runs inside :meth:`loss_and_grads`, the one call
that ``pyro.infer.SVI.step`` makes, once per step and on that step's traces; ``inference.fit`` calls
the same method, so a stateful ELBO behaves the same under both. ``loss`` and
``differentiable_loss`` (evaluation) never change that state.

The plain-Pyro contract, with the misuse it refuses:

* ``loss_and_grads`` raises if the traces hold no ``param`` site at all: the networks were never
  registered with Pyro (``pyro.module``), and ``SVI.step`` would silently move nothing.
* A penalty that reads one latent site raises on a model with several latent sites unless ``site=``
  names one (it used to take the first silently).
* An estimator that needs the dataset size N reads it with :meth:`dataset_size`, which warns once
  when the data plate's size equals the batch, i.e. the plate was declared without subsampling
  (``pyro.plate("data", len(x))``) and N is unknown. β-TCVAE's TC estimators need N (their weights
  are functions of it). A penalty's *weight* does not: it is added per data point and multiplied
  by the plate's size like the ELBO itself, so its ratio to the ELBO is the same for any N (this
  is why InfoVAE's MMD and DIP's penalty do not warn).
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch
from pyro.distributions.util import scale_and_mask
from pyro.infer import TraceMeanField_ELBO
from pyro.infer.util import check_fully_reparametrized, is_validation_enabled
from torch.distributions import kl_divergence

from ppl_models.plates import DATA_PLATE

from .handlers import scale_latent


class PlateInfo(NamedTuple):
    """The minibatch size B and dataset size N of the data plate around a site."""

    batch_size: int
    dataset_size: int


def plate_info(site, plate_name: str = DATA_PLATE) -> PlateInfo:
    """B and N from ``site``'s data plate (the one named ``plate_name``, else the outermost vectorised one)."""
    frames = [f for f in site["cond_indep_stack"] if f.vectorized]
    if not frames:
        return PlateInfo(1, 1)
    named = [f for f in frames if f.name == plate_name]
    frame = named[0] if named else min(frames, key=lambda f: f.dim)
    size = int(frame.size)
    full = int(frame.full_size) if frame.full_size is not None else size
    return PlateInfo(size, full)


def latent_sites(model_trace, guide_trace):
    """Names of the model's unobserved sample sites that the guide samples, in model order."""
    return [name for name, site in model_trace.nodes.items()
            if site["type"] == "sample" and not site["is_observed"] and name in guide_trace.nodes]


class TermsELBO(TraceMeanField_ELBO):
    """Mean-field ELBO with named terms, a weight on the latent sites and a penalty hook.

    :param float kl_scale: weight of the latent sites (the KL), applied with ``scale_latent`` to model
        and guide. 1 gives the plain ELBO.
    :param sites: latent sites the weight and the penalty apply to; ``None`` means all of them
        (the penalty then reads the first latent site).
    :param int num_particles: as in Pyro.

    The value is Pyro's: −ELBO summed over the dataset (the data plate scales the batch by N/B);
    ``self.terms`` holds the same quantities per data point.
    """

    def __init__(self, kl_scale: float = 1.0, sites=None, num_particles: int = 1, **kwargs):
        super().__init__(num_particles=num_particles, **kwargs)
        if not isinstance(kl_scale, (int, float)) or not kl_scale > 0:
            raise ValueError(f"kl_scale must be a positive number, got {kl_scale!r}")
        self.kl_scale = float(kl_scale)
        self.sites = None if sites is None else tuple([sites] if isinstance(sites, str) else sites)
        self.terms: dict[str, torch.Tensor] = {}
        #: for each latent site, whether the last evaluation used the closed-form KL.
        self.analytic_kl: dict[str, bool] = {}
        self._warned: set[str] = set()

    # -- hooks for subclasses -------------------------------------------------------------
    def penalty(self, model_trace, guide_trace, info: PlateInfo):
        """Extra loss per data point and the terms to log: ``(tensor or 0.0, {name: tensor})``."""
        return 0.0, {}

    def step_update(self, model_trace, guide_trace, info: PlateInfo) -> None:
        """The per-step update of a stateful ELBO (e.g. a discriminator step), on this step's traces.

        Called by :meth:`loss_and_grads` after the gradients of the loss have been computed, once per
        call, with the last particle's traces. Stateless ELBOs do nothing.
        """

    @property
    def stateful(self) -> bool:
        """Whether this ELBO changes during training (it overrides :meth:`step_update`)."""
        return type(self).step_update is not TermsELBO.step_update

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, UserWarning, stacklevel=4)

    # -- Pyro ELBO interface -------------------------------------------------------------
    def _get_trace(self, model, guide, args, kwargs):
        if self.kl_scale != 1.0:
            model = scale_latent(model, self.kl_scale, self.sites)
            guide = scale_latent(guide, self.kl_scale, self.sites)
        return super()._get_trace(model, guide, args, kwargs)

    def penalty_site(self, model_trace, guide_trace) -> str:
        """The latent site the penalty reads: the first of ``sites``, else the model's only latent site.

        With several latent sites and no ``site=`` the choice would be arbitrary: that is an error
        that lists them.
        """
        if self.sites:
            return self.sites[0]
        names = latent_sites(model_trace, guide_trace)
        if not names:
            raise ValueError("the model has no latent sample site that the guide samples")
        if len(names) > 1:
            raise ValueError(f"{type(self).__name__}'s penalty reads one latent site, but the model has "
                             f"{len(names)}: {', '.join(map(repr, names))}; name one with "
                             f"{type(self).__name__}(site=...)")
        return names[0]

    def dataset_size(self, info: PlateInfo, plate_name: str = DATA_PLATE) -> int:
        """N for an estimator that needs it; warns once if the plate cannot have carried it (N = B)."""
        if info.dataset_size == info.batch_size and info.batch_size > 1:
            self._warn_once("dataset_size", (
                f"{type(self).__name__} needs the dataset size N, but the data plate "
                f"({plate_name!r} or the outermost plate) has size {info.batch_size}, the batch size: "
                f"its estimate treats the batch as the whole dataset. If the batch is a minibatch, "
                f"declare the plate with the dataset size: pyro.plate({plate_name!r}, N, "
                f"subsample=index) (or subsample_size=B). If it is the whole dataset, ignore this."))
        return info.dataset_size

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        surrogate, _ = self._particle(model_trace, guide_trace)
        return surrogate.detach(), surrogate

    def _particle(self, model_trace, guide_trace):
        """The surrogate loss of one particle and its data plate; appends its terms."""
        log_lik = 0.0
        elbo = 0.0
        kl_terms: dict[str, torch.Tensor] = {}
        info = None
        for name, model_site in model_trace.nodes.items():
            if model_site["type"] != "sample":
                continue
            if model_site["is_observed"]:
                log_lik = log_lik + model_site["log_prob_sum"]
                if info is None:
                    info = plate_info(model_site)
                continue
            guide_site = guide_trace.nodes[name]
            if is_validation_enabled():
                check_fully_reparametrized(guide_site)
            site_info = plate_info(guide_site)
            info = info or site_info
            try:
                kl = kl_divergence(guide_site["fn"], model_site["fn"])
                self.analytic_kl[name] = True
                elbo = elbo - scale_and_mask(kl, guide_site["scale"], guide_site["mask"]).sum()
                raw_kl = kl.sum()
            except NotImplementedError:
                # No closed form (e.g. a flow prior): KL = −H[q] − E_q log p(z), with the entropy in
                # closed form where q has one (dpVAE supplement eqs. 6, 10, 18) and log p(z) at the
                # guide's draw; otherwise Monte Carlo log q(z) − log p(z), as Pyro does.
                self.analytic_kl[name] = False
                log_p = model_site["unscaled_log_prob"]
                try:
                    entropy = guide_site["fn"].entropy()
                    neg_log_q = scale_and_mask(entropy, guide_site["scale"], guide_site["mask"]).sum()
                    raw_kl = -(entropy + log_p).sum()
                except NotImplementedError:
                    neg_log_q = -guide_site["score_parts"].entropy_term.sum()
                    raw_kl = (guide_site["unscaled_log_prob"] - log_p).sum()
                elbo = elbo + model_site["log_prob_sum"] + neg_log_q
            kl_terms[name] = raw_kl / site_info.batch_size

        for name, guide_site in guide_trace.nodes.items():  # auxiliary guide sites, as in Pyro
            if guide_site["type"] == "sample" and name not in model_trace.nodes:
                elbo = elbo - guide_site["score_parts"].entropy_term.sum()

        info = info or PlateInfo(1, 1)
        elbo = elbo + log_lik
        extra, logged = self.penalty(model_trace, guide_trace, info)
        surrogate = -elbo + info.dataset_size * extra
        n = info.dataset_size
        terms = {"loss": surrogate.detach() / n,
                 "recon": -torch.as_tensor(log_lik).detach() / n,
                 "kl": sum(kl_terms.values()).detach() if kl_terms else torch.zeros(())}
        if len(kl_terms) > 1:
            terms.update({f"kl_{k}": v.detach() for k, v in kl_terms.items()})
        terms.update({k: torch.as_tensor(v).detach() for k, v in logged.items()})
        self._particle_terms.append(terms)
        return surrogate, info

    def _evaluate(self, model, guide, args, kwargs):
        """``(loss, [(model_trace, guide_trace, info), ...])`` over the particles; fills ``self.terms``."""
        self._particle_terms = []
        loss, traces = 0.0, []
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            surrogate, info = self._particle(model_trace, guide_trace)
            loss = loss + surrogate / self.num_particles
            traces.append((model_trace, guide_trace, info))
        self._collect_terms()
        return loss, traces

    def differentiable_loss(self, model, guide, *args, **kwargs):
        """The surrogate loss to call ``backward()`` on; fills ``self.terms``. No host synchronisation.

        An evaluation: a stateful ELBO's state does not change here (train with
        :meth:`loss_and_grads`, which ``pyro.infer.SVI`` and ``inference.fit`` call).
        """
        if self.stateful and torch.is_grad_enabled():
            self._warn_once("differentiable_loss", (
                f"{type(self).__name__}.differentiable_loss does not make its per-step update "
                f"(step_update); a training loop built on it leaves that state frozen. Train with "
                f"loss_and_grads (pyro.infer.SVI, inference.fit), or call step_update yourself."))
        return self._evaluate(model, guide, args, kwargs)[0]

    def loss(self, model, guide, *args, **kwargs) -> float:
        """−ELBO (plus penalties) as a float; an evaluation that changes no state."""
        with torch.no_grad():
            return float(self._evaluate(model, guide, args, kwargs)[0])

    def loss_and_grads(self, model, guide, *args, **kwargs):
        """One training step's loss: backpropagates it, then makes the ELBO's :meth:`step_update`.

        Returns the loss as a detached tensor (``pyro.infer.SVI`` turns it into a float; ``fit``
        keeps it on the device). Raises if the traces hold no parameter: nothing would be trained.
        """
        loss, traces = self._evaluate(model, guide, args, kwargs)
        model_trace, guide_trace, info = traces[-1]
        if not any(site["type"] == "param" for trace in (model_trace, guide_trace)
                   for site in trace.nodes.values()):
            raise ValueError(
                "the model and guide registered no parameters with Pyro, so an SVI step would train "
                "nothing: call pyro.module('name', net) on each network inside the model/guide (or "
                "use PyroModule); for our nn.Module pairs, ppl_models.registration.pyro_module(self)")
        if torch.is_tensor(loss) and loss.requires_grad:
            loss.backward(retain_graph=self.retain_graph)
        self.step_update(model_trace, guide_trace, info)
        return loss.detach() if torch.is_tensor(loss) else torch.as_tensor(loss)

    def _collect_terms(self):
        # Sequential particles give one dict each; a vectorised trace sums over all particles.
        parts = self._particle_terms
        if len(parts) == 1 and self.num_particles == 1:  # the usual case: no arithmetic to do
            self.terms = dict(parts[0])
            return
        self.terms = {k: sum(p[k] for p in parts) / self.num_particles for k in parts[0]} if parts else {}

    # -- state for checkpoints: ELBOs with networks or running estimates override these ----
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} has no state, got keys {sorted(state)}")
