"""The regularised ELBO family: β-VAE, β-VAE-B, β-TCVAE, FactorVAE, DIP-VAE-I/II, InfoVAE.

Each class is a :class:`~inference.elbo.TermsELBO` (Pyro's ``TraceMeanField_ELBO`` with named terms)
that reads one latent site — ``z`` by default, or whatever ``site`` names — from the guide trace (its
sample and its diagonal-Normal ``loc``/``scale``) and the dataset size N from the site's plate, and
adds a penalty from :mod:`inference.penalties`. They work on any model/guide pair whose latent site
is a (diagonal) Normal over a vector, inside a plate. Every class constructs with no arguments;
defaults are the papers' (dpVAE supplement Table 1; DIP-VAE §3). Where a penalty is a weight on the
KL, the weight is ``kl_scale``, i.e. a scale on the latent site in model *and* guide.

Logged terms (``self.terms``, then ``metrics.jsonl``): ``loss``, ``recon``, ``kl`` from the base
class, and ``mi``/``tc``/``dim_kl`` (β-TCVAE), ``tc``/``discriminator`` (FactorVAE), ``dip``,
``mmd``, ``capacity`` (the current C of β-VAE-B).

References
[1] Higgins et al. β-VAE. ICLR 2017.  [2] Burgess et al. arXiv:1804.03599.
[3] Chen et al. β-TCVAE. NeurIPS 2018, arXiv:1802.04942.  [4] Kim & Mnih. FactorVAE. ICML 2018.
[5] Kumar et al. DIP-VAE. ICLR 2018, arXiv:1711.00848.  [6] Zhao et al. InfoVAE. AAAI 2019.
[7] dpVAE supplement (``papers/dpvae-decoupled-prior-supplement.txt``), Table 1 and §3.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import kl_divergence

from ppl_models.nets import mlp, tf_default_init_

from .elbo import TermsELBO
from .penalties import (capacity_schedule, density_ratio_loss, dip_covariance, dip_matrix_penalty, mmd,
                        mws_offsets, tc_decomposition)


def _positive(name, value):
    if not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _non_negative(name, value):
    if not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


def diagonal_normal(fn):
    """The ``Normal`` inside ``fn`` (unwrapping ``Independent``), or a ValueError naming what it is."""
    base = fn
    while isinstance(base, torch.distributions.Independent):
        base = base.base_dist
    if not isinstance(base, torch.distributions.Normal):
        raise ValueError(f"the penalty needs a diagonal Normal guide site, got {type(fn).__name__}")
    return base


def read_site(elbo: TermsELBO, model_trace, guide_trace):
    """``(z, loc, scale, model_site, guide_site)`` of the penalty's latent site; tensors (B, D)."""
    name = elbo.penalty_site(model_trace, guide_trace)
    if name not in guide_trace.nodes:
        raise ValueError(f"latent site {name!r} is not in the guide (sites: "
                         f"{', '.join(k for k, v in guide_trace.nodes.items() if v['type'] == 'sample')})")
    guide_site, model_site = guide_trace.nodes[name], model_trace.nodes[name]
    normal = diagonal_normal(guide_site["fn"])
    z = guide_site["value"]
    if z.ndim == 1:  # a scalar latent per data point
        z = z.unsqueeze(-1)
    if z.ndim != 2:
        raise ValueError(f"latent site {name!r} must be a vector per data point, shaped (B, D); "
                         f"got {tuple(guide_site['value'].shape)}")
    loc, scale = (t.reshape(z.shape[0], -1).expand_as(z) for t in torch.broadcast_tensors(normal.loc, normal.scale))
    return z, loc, scale, model_site, guide_site


def site_kl(model_site, guide_site) -> torch.Tensor:
    """Per-data-point KL(q ‖ p) of a site, (B,): closed form, else log q(z) − log p(z) (as TermsELBO)."""
    try:
        return kl_divergence(guide_site["fn"], model_site["fn"])
    except NotImplementedError:
        z = guide_site["value"]
        return guide_site["fn"].log_prob(z) - model_site["fn"].log_prob(z)


class BetaELBO(TermsELBO):
    """β-VAE [1]: −E log p(x|z) + β·KL, β as the latent sites' scale. β = 4: [7] Table 1 (β-VAE-H)."""

    def __init__(self, beta: float = 4.0, site: str | None = None, **kwargs):
        super().__init__(kl_scale=_positive("beta", beta), sites=site, **kwargs)
        self.beta = float(beta)


class CapacityELBO(TermsELBO):
    """β-VAE-B [2] eq. 8: −E log p(x|z) + γ·|KL − C(t)|, C rising linearly to C_max at step C_stop.

    The base ELBO's KL of the site is cancelled exactly (the same tensor, with the site's own scale)
    so the objective is the paper's. KL is the batch mean; the step counter advances in
    :meth:`step_update` (once per training step, under ``pyro.infer.SVI`` or ``fit``) and is
    checkpointed. γ = 15, C_max = 25 nats, C_stop = 100000: [7] Table 1.
    """

    def __init__(self, gamma: float = 15.0, c_max: float = 25.0, c_stop: int = 100_000,
                 site: str | None = None, **kwargs):
        super().__init__(sites=site, **kwargs)
        self.gamma = _positive("gamma", gamma)
        self.c_max = _non_negative("c_max", c_max)
        if not isinstance(c_stop, int) or c_stop < 0:
            raise ValueError(f"c_stop must be an integer >= 0, got {c_stop!r}")
        self.c_stop = c_stop
        self.step = 0

    def capacity(self) -> float:
        return capacity_schedule(self.step, self.c_max, self.c_stop)

    def penalty(self, model_trace, guide_trace, info):
        _, _, _, model_site, guide_site = read_site(self, model_trace, guide_trace)
        kl = site_kl(model_site, guide_site)
        in_base = (kl * guide_site["scale"]).sum() / info.dataset_size  # what the base ELBO added
        c = self.capacity()
        return (self.gamma * (kl.mean() - c).abs() - in_base,
                {"capacity": torch.full((), c, device=kl.device)})

    def step_update(self, model_trace, guide_trace, info):
        self.step += 1

    def state_dict(self):
        return {"step": self.step}

    def load_state_dict(self, state):
        self.step = int(state.get("step", 0))


class BetaTCELBO(TermsELBO):
    """β-TCVAE [3] eq. 4: −E log p(x|z) + α·MI + β·TC + γ·dim-KL, the terms estimated on the batch.

    The base ELBO keeps the analytic KL (= MI + TC + dim-KL in expectation); the penalty adds
    (α−1)·MI + (β−1)·TC + (γ−1)·dim-KL from :func:`~inference.penalties.tc_decomposition`.
    ``estimator`` is ``"mss"`` or ``"mws"``; the logged ``mi``/``tc``/``dim_kl`` have MWS's constant
    offsets (log N, (D−1)·log N, −D·log N) removed so both estimators log comparable numbers (the
    loss keeps them: they are constants). α = 1, β = 4, γ = 15: [7] Table 1.
    """

    def __init__(self, alpha: float = 1.0, beta: float = 4.0, gamma: float = 15.0,
                 estimator: str = "mss", site: str | None = None, **kwargs):
        super().__init__(sites=site, **kwargs)
        self.alpha = _non_negative("alpha", alpha)
        self.beta = _non_negative("beta", beta)
        self.gamma = _non_negative("gamma", gamma)
        if estimator not in ("mss", "mws"):
            raise ValueError(f"estimator must be 'mss' or 'mws', got {estimator!r}")
        self.estimator = estimator

    def penalty(self, model_trace, guide_trace, info):
        z, loc, scale, model_site, _ = read_site(self, model_trace, guide_trace)
        log_pz = model_site["fn"].log_prob(model_site["value"])
        n = self.dataset_size(info)
        parts = tc_decomposition(z, loc, scale, log_pz.reshape(z.shape[0]), n, self.estimator)
        extra = (self.alpha - 1) * parts.mi + (self.beta - 1) * parts.tc + (self.gamma - 1) * parts.dim_kl
        if self.estimator == "mws":
            off = mws_offsets(z.shape[1], n)
            parts = type(parts)(*(p - o for p, o in zip(parts, off)))
        return extra, parts._asdict()


def permute_dims(z: torch.Tensor) -> torch.Tensor:
    """Each column of ``z`` (B, D) shuffled independently across the batch ([4] Algorithm 1)."""
    order = torch.rand(z.shape, device=z.device).argsort(dim=0)
    return z.gather(0, order)


#: FactorVAE's discriminator and its training step, by the reference each follows:
#: "dpvae": [7] §3, five hidden layers of 1000, PyTorch's init, trained on the step's batch split in
#: halves (the first half's codes against the second half's, permuted: a stand-in for [4]'s second batch);
#: "dl": disentanglement_lib's ``fc_discriminator`` ([4] Appendix A: six hidden layers of 1000; TF's
#: init) trained on the whole batch's codes against the same codes permuted across the batch
#: (``methods/unsupervised/vae.py``, FactorVAE).
DISCRIMINATORS = {"dpvae": dict(layers=5, batch="half", init="torch"), "dl": dict(layers=6, batch="full", init="tf")}


def factor_discriminator(latent_dim: int, kind: str = "dpvae") -> nn.Module:
    """Fully connected layers of 1000 units, each followed by LeakyReLU(0.2); 2 logits
    (:data:`DISCRIMINATORS`: five for [7] §3, six for [4] and disentanglement_lib, with TF's init)."""
    spec = DISCRIMINATORS[kind]
    net = mlp([latent_dim] + [1000] * spec["layers"] + [2], activation=lambda: nn.LeakyReLU(0.2))
    return tf_default_init_(net) if spec["init"] == "tf" else net


class FactorELBO(TermsELBO):
    """FactorVAE [4] eq. 2: −ELBO + γ·TC, TC ≈ E[logit D(z) − logit(1 − D(z))] (density-ratio trick).

    The discriminator D (logit 0: "a draw of q(z)", logit 1: "permuted") is trained in
    :meth:`step_update` (inside ``loss_and_grads``: under ``pyro.infer.SVI`` as under ``fit``) by its
    own Adam (lr 1e-4, betas (0.5, 0.9): [4] §4 / Appendix) on the codes the VAE step just used.
    ``kind`` (:data:`DISCRIMINATORS`): ``"dpvae"`` splits the batch in halves, the first half's codes
    as q(z) draws, the second half's with each dimension permuted across the half as draws of
    Π q(z_j) (Kim & Mnih draw a second batch; a half is its stand-in without a second encoder pass),
    with [7]'s five layers; ``"dl"`` is disentanglement_lib's: six layers, TF's init, the whole
    batch's codes against the same codes permuted. Its weights and optimiser state are in
    :meth:`state_dict`. γ = 1000: [7] Table 1. Logs ``tc`` and ``discriminator`` (D's loss).
    """

    def __init__(self, gamma: float = 1000.0, discriminator: nn.Module | None = None,
                 latent_dim: int | None = None, lr: float = 1e-4, betas=(0.5, 0.9),
                 site: str | None = None, kind: str = "dpvae", **kwargs):
        super().__init__(sites=site, **kwargs)
        if kind not in DISCRIMINATORS:
            raise ValueError(f"FactorVAE discriminator must be one of {', '.join(DISCRIMINATORS)}, got {kind!r}")
        self.kind = kind
        self.gamma = _non_negative("gamma", gamma)
        self.lr, self.betas = _positive("lr", lr), tuple(betas)
        self.discriminator = self.optimizer = None
        self._device = None
        if discriminator is None and latent_dim is not None:
            discriminator = factor_discriminator(latent_dim, kind)
        if discriminator is not None:
            self._set_discriminator(discriminator)

    def _set_discriminator(self, module: nn.Module):
        self.discriminator = module.to(self._device) if self._device is not None else module
        self.optimizer = torch.optim.Adam(module.parameters(), lr=self.lr, betas=self.betas)

    def to(self, device):
        self._device = torch.device(device)
        if self.discriminator is not None:
            self.discriminator.to(self._device)
        return self

    def penalty(self, model_trace, guide_trace, info):
        z = read_site(self, model_trace, guide_trace)[0]
        if self.discriminator is None:
            self._device = z.device
            self._set_discriminator(factor_discriminator(z.shape[1], self.kind))
        logits = self.discriminator(z)
        tc = (logits[:, 0] - logits[:, 1]).mean()
        return self.gamma * tc, {"tc": tc}

    def step_update(self, model_trace, guide_trace, info):
        """One discriminator step ([4] Algorithm 1) on this step's codes, detached."""
        z = read_site(self, model_trace, guide_trace)[0].detach()
        half = z.shape[0] // 2
        if half < 1:
            raise ValueError("FactorVAE's discriminator step needs a batch of at least 2")
        if DISCRIMINATORS[self.kind]["batch"] == "full":  # disentanglement_lib: the codes and the same, permuted
            real, fake = z, permute_dims(z)
        else:
            real, fake = z[:half], permute_dims(z[half:2 * half])
        logits = self.discriminator(torch.cat([real, fake]))
        # ½(CE(real, 0) + CE(fake, 1)): at the optimum, logit 0 − logit 1 = log q(z)/Π q(z_j)
        loss = 0.5 * density_ratio_loss(logits[:len(real)], logits[len(real):])
        self.optimizer.zero_grad(set_to_none=True)  # also drops the grads the VAE loss left in D
        loss.backward()
        self.optimizer.step()
        self.terms["discriminator"] = loss.detach()

    def state_dict(self):
        if self.discriminator is None:
            return {}
        return {"discriminator": self.discriminator.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state):
        if not state:
            return
        if self.discriminator is None:
            self._set_discriminator(factor_discriminator(state["discriminator"]["0.weight"].shape[1]))
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])


class DIPELBO(TermsELBO):
    """DIP-VAE [5] eq. 6: −ELBO + λ_od Σ_{i≠j} C_ij² + λ_d Σ_i (C_ii − 1)².

    C is the batch covariance of the encoder means (kind ``"i"``) or that plus the batch mean of
    diag(σ²) (kind ``"ii"``). With ``momentum`` > 0, C is a running estimate
    m·C_prev + (1−m)·C_batch with C_prev held constant (the seed paper's §3 option, default off;
    ``self.momentum`` says which a run used), committed in :meth:`step_update` (once per training
    step) and checkpointed.
    λ_od = 10; λ_d = 10·λ_od for I and λ_d = λ_od for II ([5]).
    """

    def __init__(self, kind: str = "i", lambda_od: float = 10.0, lambda_d: float | None = None,
                 momentum: float = 0.0, site: str | None = None, **kwargs):
        super().__init__(sites=site, **kwargs)
        if kind not in ("i", "ii"):
            raise ValueError(f"DIP kind must be 'i' or 'ii', got {kind!r}")
        self.kind = kind
        self.lambda_od = _non_negative("lambda_od", lambda_od)
        if lambda_d is None:
            lambda_d = 10.0 * self.lambda_od if kind == "i" else self.lambda_od
        self.lambda_d = _non_negative("lambda_d", lambda_d)
        if not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self.running = None

    def covariance(self, model_trace, guide_trace) -> torch.Tensor:
        """C of eq. 6: the batch's, or the running estimate m·C_prev + (1−m)·C_batch."""
        _, loc, scale, _, _ = read_site(self, model_trace, guide_trace)
        cov = dip_covariance(loc, scale, self.kind)
        if self.momentum > 0 and self.running is not None:
            cov = self.momentum * self.running + (1 - self.momentum) * cov
        return cov

    def penalty(self, model_trace, guide_trace, info):
        dip = dip_matrix_penalty(self.covariance(model_trace, guide_trace), self.lambda_od, self.lambda_d)
        return dip, {"dip": dip}

    def step_update(self, model_trace, guide_trace, info):
        if self.momentum > 0:
            with torch.no_grad():
                self.running = self.covariance(model_trace, guide_trace)

    def to(self, device):
        if self.running is not None:
            self.running = self.running.to(device)
        return self

    def state_dict(self):
        return {} if self.running is None else {"running_cov": self.running}

    def load_state_dict(self, state):
        self.running = state.get("running_cov")


class InfoELBO(TermsELBO):
    """InfoVAE [6] (MMD form, [7] eq. for Info-VAE): −E log p(x|z) + (1−α)·KL + (α+λ−1)·MMD(q(z), p(z)).

    (1−α) is the latent sites' scale (so α < 1); the MMD compares the batch's codes with as many
    prior draws (unbiased MMD², IMQ kernel by default). The prior draws are reparametrised
    (``rsample``), so a learnable prior — dpVAE's decoupled flow, Info-dpVAE ([7] eq. 27) — gets
    the MMD's gradient; for the fixed N(0, I) it changes nothing. α = 0, λ = 1000: [7] Table 1.
    """

    def __init__(self, alpha: float = 0.0, lambda_: float = 1000.0, kernel: str = "imq",
                 kernel_scale: float = 1.0, site: str | None = None, **kwargs):
        if not isinstance(alpha, (int, float)) or not alpha < 1:
            raise ValueError(f"alpha must be < 1 (the KL weight is 1 − alpha), got {alpha!r}")
        super().__init__(kl_scale=1.0 - alpha, sites=site, **kwargs)
        self.alpha = float(alpha)
        self.lambda_ = _non_negative("lambda_", lambda_)
        if kernel not in ("imq", "rbf"):
            raise ValueError(f"kernel must be 'imq' or 'rbf', got {kernel!r}")
        self.kernel, self.kernel_scale = kernel, _positive("kernel_scale", kernel_scale)

    def penalty(self, model_trace, guide_trace, info):
        z, _, _, model_site, _ = read_site(self, model_trace, guide_trace)
        prior_z = model_site["fn"].rsample().reshape(z.shape)
        value = mmd(z, prior_z, self.kernel, self.kernel_scale)
        return (self.alpha + self.lambda_ - 1) * value, {"mmd": value}


__all__ = ["BetaELBO", "CapacityELBO", "BetaTCELBO", "FactorELBO", "DIPELBO", "InfoELBO",
           "permute_dims", "factor_discriminator", "read_site", "site_kl", "diagonal_normal"]
