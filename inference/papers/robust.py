"""Robust pose/appearance disentangling (Esser et al. 2019): MI classifiers T, T′, adaptive γ, λ;
the pair builder, the §4.1 evaluation and the Table 1 ablation experiment.

The loss for the generative networks (eq. 19) is L = L_rec + L_VB + L_MI:

* L_rec + L_VB is the ELBO of :class:`ppl_models.robust.PoseAppearanceModel` with the pose KL
  weighted by γ (eqs. 20-21) — ``RobustELBO`` passes γ to model and guide as ``pose_scale``;
* L_MI (eq. 22) is the augmented-Lagrangian penalty on I_T(π, α) ≤ ε, added with the
  :meth:`~inference.elbo.TermsELBO.penalty` hook. α is detached there, so E_α and D are trained on
  L_rec alone and E_π on the full L (§3.5): D never sees L_VB or L_MI, E_α never sees L_MI.

In each training step (:meth:`RobustELBO.step_update`, inside ``loss_and_grads``: under
``pyro.infer.SVI`` as under ``inference.fit``) T and T′
take one step of the classification objective eq. (10)-(11) on the step's detached (π, α), then
γ (eq. 18, or eq. 24 for the variational ablation) and λ (eq. 23) are updated — all on the device
as tensors, with no host synchronisation. T′'s estimate is computed without gradients and only
ever enters γ's update, never a loss the encoder sees. T and T′ are trained on the logistic
density-ratio loss :func:`inference.penalties.density_ratio_loss` (shared with FactorVAE's and
MS-GAN's discriminators).

The networks live with their side: the decoders in :mod:`ppl_models.nets`, the encoders in
:mod:`guides.nets`; the classifiers
T, T′ belong to the objective and live here. :func:`run_robust_ablation` is the §4.1 / Table 1
experiment on procedural sprites (``scripts/robust_sprites.py``).

References
[1] Esser, Haux, Ommer. Unsupervised Robust Disentangling of Latent Characteristics for Image
    Synthesis. ICCV 2019, §3.3-3.5, §4.1. arXiv:1910.10223
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from guides.nets import Conv32Encoder, MLPEncoder, make_encoder
from guides.robust import PointEncoder, PoseAppearanceGuide
from ppl_data import SpritePairs, Sprites
from ppl_models.nets import Conv32Decoder, MLPDecoder, make_decoder, mlp, net_kind
from ppl_models.robust import PoseAppearanceModel

from ..checkpoint import atomic_save_figure, atomic_write_text
from ..cli import check_batch_size, check_output_dir
from ..elbo import TermsELBO
from ..errors import ConfigError
from ..penalties import density_ratio_loss
from ..pictures import save_grid
from ..posterior import encode_batched
from ..svi import default_device, fit

# Defaults. ε is stated by the paper (Table 1: ε = 0.125); the others are not, and come from the
# authors' code (github.com/CompVis/robust-disentangling, rodi/pt/losses.py): μ = 0.1, λ₀ = 0,
# γ₀ = 1 (its KL weight), l_γ = 0.01, b_γ = 0.01, 1000 warm-up steps before the constraint and the
# multiplier updates start, classifier learning rate 2× the generator's.
EPSILON = 0.125
MU = 0.1
LAMBDA_INIT = 0.0
GAMMA_INIT = 1.0
L_GAMMA = 0.01
B_GAMMA = 0.01
WARMUP_STEPS = 1000
#: T and T′ (not stated by the paper or fixed by us from the authors' code): two hidden layers of 512
#: and 8 shuffles of the batch for the product-of-marginals term. With 256-256 and one shuffle the
#: online T of the 32×32 quick run estimated I_T ≈ 0.03-0.15 nats while a fresh 512-512 classifier
#: fitted to the same trained codes found ≈ 0.58 nats: the constraint never bound.
CLASSIFIER_HIDDEN = (512, 512)
NEGATIVES = 8
BETA = 4.0  # β-VAE baseline: the paper gives no β; 4 is Higgins et al. (2017)'s value for 2-D shapes

#: Variants of Esser et al. §4.1 / Table 1: (L_MI in the loss, γ rule, b_γ override, fixed γ).
VARIANTS = {
    "full": (True, "eq18", None, None),           # e) the full model
    "variational": (False, "eq24", None, None),   # a) no L_MI, γ from eq. (24)
    "adversarial": (True, "fixed", None, 0.0),    # b) no L_VB (γ = 0)
    "no_bias": (True, "eq18", 0.0, None),         # c) b_γ = 0
    "fixed_gamma": (True, "fixed", None, 1.0),    # d) γ = 1 fixed
    "beta_vae": (False, "fixed", None, BETA),     # β-VAE objective (Higgins et al. 2017)
}


# -- the equations, as plain tensor functions ------------------------------------------------
def mi_constraint_loss(i_t, lam, mu: float, eps: float):
    """L_MI of eq. (22): λ(I_T − ε) + μ/2 (I_T − ε)² if I_T − ε ≥ −λ/μ, else −λ²/(2μ)."""
    c = i_t - eps
    return torch.where(c >= -lam / mu, lam * c + 0.5 * mu * c * c, -lam * lam / (2.0 * mu))


def lambda_update(lam, i_t, mu: float, eps: float):
    """Eq. (23): λ ← max(0, λ + μ (I_T − ε))."""
    return (lam + mu * (i_t - eps)).clamp(min=0.0)


def gamma_update(gamma, i_t_prime, i_t, l_gamma: float, b_gamma: float):
    """Eq. (18): γ ← max(0, γ + l_γ (I_T′ − I_T − b_γ))."""
    return (gamma + l_gamma * (i_t_prime - i_t - b_gamma)).clamp(min=0.0)


def gamma_update_variational(gamma, i_t_prime, l_gamma: float, eps: float):
    """Eq. (24), the ablation without L_MI: γ ← max(0, γ + l_γ (I_T′ − ε))."""
    return (gamma + l_gamma * (i_t_prime - eps)).clamp(min=0.0)


class MIClassifier(nn.Module):
    """T(π, α): a real number, the logit that (π, α) was drawn from the joint (§3.3)."""

    def __init__(self, pose_dim: int, appearance_dim: int, hidden=(256, 256)):
        super().__init__()
        self.net = mlp([pose_dim + appearance_dim, *hidden, 1])

    def forward(self, pose, appearance):
        return self.net(torch.cat([pose, appearance], -1)).squeeze(-1)


def product_of_marginals(appearance, negatives: int = 1):
    """α of other items for each π: the batch rolled by 1, …, ``negatives`` (no fixed points).

    Returns ``(negatives, B, d)``: row k − 1 pairs item i with item i − k (mod B), so every row is
    a draw of (π, α) from p(π) p(α) and more rows make a less noisy estimate of the expectation (11).
    """
    batch = appearance.shape[0]
    if not 1 <= negatives < batch:
        raise ValueError(f"negatives must be in [1, batch size - 1 = {batch - 1}], got {negatives}")
    shifts = torch.arange(1, negatives + 1, device=appearance.device)
    index = (torch.arange(batch, device=appearance.device)[None] - shifts[:, None]) % batch
    return appearance[index]


def classifier_loss(classifier, pose, appearance, negatives: int = 1):
    """Negative of eq. (10)-(11): −E_joint log σ(T) − E_marginals log(1 − σ(T)).

    The second expectation is averaged over ``negatives`` shuffles of the batch (same objective,
    smaller variance: T learns the density ratio faster, which matters at a short budget).
    """
    joint = classifier(pose, appearance)
    marginal = classifier(pose.expand(negatives, *pose.shape), product_of_marginals(appearance, negatives))
    return density_ratio_loss(joint, marginal)


def mi_estimate(classifier, pose, appearance):
    """I_T = E_{(π, α) ~ p(π, α)} T(π, α), eq. (12)."""
    return classifier(pose, appearance).mean()


# -- the ELBO ---------------------------------------------------------------------------------
class RobustELBO(TermsELBO):
    """L = L_rec + γ KL + L_MI (eq. 19) for the pose/appearance pair, with T, T′, γ, λ as its state.

    :param str variant: one of :data:`VARIANTS` (``"full"`` is the paper's model).
    :param float epsilon: ε of constraint (5)/(14).
    :param float mu: μ of the augmented Lagrangian (eq. 22).
    :param float l_gamma, b_gamma: learning rate and bias of γ (eq. 18).
    :param int warmup_steps: steps before L_MI and the multiplier updates switch on (T learns first).
    :param float classifier_lr: Adam learning rate of T and T′.
    :param int negatives: batch shuffles per classifier step for the product-of-marginals term (11).
    """

    def __init__(self, pose_dim: int, appearance_dim: int, variant: str = "full",
                 epsilon: float = EPSILON, mu: float = MU, lambda_init: float = LAMBDA_INIT,
                 gamma_init: float = GAMMA_INIT, l_gamma: float = L_GAMMA, b_gamma: float = B_GAMMA,
                 warmup_steps: int = WARMUP_STEPS, classifier_lr: float = 4e-4,
                 classifier_hidden=CLASSIFIER_HIDDEN, negatives: int = NEGATIVES, beta: float = BETA):
        super().__init__(sites=("pose",))
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        if not (isinstance(negatives, int) and negatives >= 1):
            raise ValueError(f"negatives must be an integer >= 1, got {negatives!r}")
        for name, value in (("mu", mu), ("classifier_lr", classifier_lr)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        for name, value in (("epsilon", epsilon), ("lambda_init", lambda_init), ("gamma_init", gamma_init),
                            ("l_gamma", l_gamma), ("b_gamma", b_gamma), ("warmup_steps", warmup_steps)):
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        self.variant = variant
        self.use_mi, self.gamma_rule, b_override, fixed_gamma = VARIANTS[variant]
        if variant == "beta_vae":
            fixed_gamma = beta
        self.epsilon, self.mu, self.l_gamma = float(epsilon), float(mu), float(l_gamma)
        self.b_gamma = float(b_gamma if b_override is None else b_override)
        self.warmup_steps = int(warmup_steps)
        self.negatives = int(negatives)
        self.T = MIClassifier(pose_dim, appearance_dim, classifier_hidden)
        self.T_prime = MIClassifier(pose_dim, appearance_dim, classifier_hidden)
        self.classifier_lr = float(classifier_lr)
        self.optimizer = torch.optim.Adam(
            list(self.T.parameters()) + list(self.T_prime.parameters()), lr=self.classifier_lr)
        g0 = gamma_init if fixed_gamma is None else fixed_gamma
        self.gamma = torch.tensor(float(g0))
        self.lam = torch.tensor(float(lambda_init))
        self.step = torch.tensor(0)

    def to(self, device):
        self.T.to(device)
        self.T_prime.to(device)
        self.gamma, self.lam, self.step = (t.to(device) for t in (self.gamma, self.lam, self.step))
        return self

    def warm(self):
        """1.0 once ``warmup_steps`` steps have been taken, else 0.0 (a tensor: no host sync)."""
        return (self.step >= self.warmup_steps).to(self.gamma.dtype)

    def differentiable_loss(self, model, guide, *args, **kwargs):
        kwargs.setdefault("pose_scale", self.gamma.detach().clone())
        return super().differentiable_loss(model, guide, *args, **kwargs)

    def loss_and_grads(self, model, guide, *args, **kwargs):
        kwargs.setdefault("pose_scale", self.gamma.detach().clone())
        return super().loss_and_grads(model, guide, *args, **kwargs)

    def penalty(self, model_trace, guide_trace, info):
        pose = guide_trace.nodes["pose"]["value"]
        appearance = guide_trace.nodes["appearance"]["value"]
        # α detached: L_MI trains E_π only (§3.5). T's parameters get gradients here too, but they are
        # not in the generative optimiser and are zeroed before T's own step.
        i_t = mi_estimate(self.T, pose, appearance.detach())
        with torch.no_grad():  # T′ never reaches the encoder (§3.5)
            i_t_prime = mi_estimate(self.T_prime, pose, appearance)
        l_mi = mi_constraint_loss(i_t, self.lam, self.mu, self.epsilon) * self.warm()
        extra = l_mi if self.use_mi else torch.zeros_like(l_mi)
        return extra, {"I_T": i_t, "I_T_prime": i_t_prime, "L_MI": l_mi, "gamma": self.gamma,
                       "lambda": self.lam}

    def step_update(self, model_trace, guide_trace, info) -> None:
        """One classifier step on this step's detached (π, α), then γ and λ (eqs. 18/24, 23).

        I_T and I_T′ are the step's own estimates (``self.terms``, detached, as the loss saw them).
        """
        pose = guide_trace.nodes["pose"]["value"].detach()
        appearance = guide_trace.nodes["appearance"]["value"].detach()
        self.classifier_step(pose, appearance)
        self.update_multipliers(self.terms["I_T"], self.terms["I_T_prime"])

    def classifier_step(self, pose, appearance):
        self.optimizer.zero_grad(set_to_none=True)
        n = min(self.negatives, pose.shape[0] - 1)
        loss = (classifier_loss(self.T, pose, appearance, n)
                + classifier_loss(self.T_prime, pose, appearance, n))
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    @torch.no_grad()
    def update_multipliers(self, i_t, i_t_prime):
        warm = self.warm() > 0
        if self.use_mi:
            self.lam = torch.where(warm, lambda_update(self.lam, i_t, self.mu, self.epsilon), self.lam)
        if self.gamma_rule == "eq18":
            new = gamma_update(self.gamma, i_t_prime, i_t, self.l_gamma, self.b_gamma)
        elif self.gamma_rule == "eq24":
            new = gamma_update_variational(self.gamma, i_t_prime, self.l_gamma, self.epsilon)
        else:
            new = self.gamma
        self.gamma = torch.where(warm, new, self.gamma)
        self.step = self.step + 1

    def state_dict(self) -> dict:
        return {"T": self.T.state_dict(), "T_prime": self.T_prime.state_dict(),
                "optimizer": self.optimizer.state_dict(), "gamma": self.gamma.detach().cpu(),
                "lambda": self.lam.detach().cpu(), "step": self.step.detach().cpu()}

    def load_state_dict(self, state: dict) -> None:
        device = self.gamma.device
        self.T.load_state_dict(state["T"])
        self.T_prime.load_state_dict(state["T_prime"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.gamma = state["gamma"].to(device)
        self.lam = state["lambda"].to(device)
        self.step = state["step"].to(device)


# -- evaluation (§4.1) ------------------------------------------------------------------------
@torch.no_grad()
def transfer(model, guide, x_appearance, x_pose):
    """x̃2 = D(E_π(x3), E_α(x1)): appearance of ``x_appearance`` in the pose of ``x_pose``."""
    pose, appearance = guide.encode(x_pose, x_appearance)
    return model.decode(pose, appearance)


def transfer_errors(model, guide, x1, x2, x3, chunk: int = 500):
    """Per-triplet mean squared error of x̃2 = D(E_π(x3), E_α(x1)) against the ground truth x2 (§4.1)."""
    def errors(a, b, c):
        return (transfer(model, guide, a, c) - b).square().flatten(1).mean(1)
    return encode_batched(errors, (x1, x2, x3), chunk)


@torch.no_grad()
def appearance_usage(model, guide, x1, x2):
    """(recon MSE, MSE with α swapped) against x2: D(E_π(x2), E_α(x1)) and D(E_π(x2), E_α(x1′)).

    x1′ is x1 of the previous pair in the batch (another character, almost always).

    A diagnostic of the degenerate solution of §3.1: if the decoder ignores α (π carries the
    appearance too), swapping α between pairs leaves the reconstruction as good as before.
    """
    pose, appearance = guide.encode(x2, x1)
    recon = (model.decode(pose, appearance) - x2).square().flatten(1).mean(1).mean()
    other = product_of_marginals(appearance)[0]
    swapped = (model.decode(pose, other) - x2).square().flatten(1).mean(1).mean()
    return recon, swapped


def fitted_mi(pose_train, appearance_train, pose_test, appearance_test, steps: int = 1000,
              batch_size: int = 256, hidden=CLASSIFIER_HIDDEN, lr: float = 1e-3, generator=None):
    """I_T (eq. 12) of a *fresh* classifier fitted by eq. (10)-(11) to fixed codes, on held-out codes.

    An independent check of the training-time T and T′: they learn online, on a moving encoder, and
    can lag the dependence the codes actually have; this one sees a static encoder for ``steps``.
    """
    with torch.enable_grad():
        T = MIClassifier(pose_train.shape[-1], appearance_train.shape[-1], hidden).to(pose_train.device)
        opt = torch.optim.Adam(T.parameters(), lr=lr)
        for _ in range(steps):
            i = torch.randint(len(pose_train), (batch_size,), generator=generator).to(pose_train.device)
            opt.zero_grad(set_to_none=True)
            classifier_loss(T, pose_train[i], appearance_train[i]).backward()
            opt.step()
    with torch.no_grad():
        return mi_estimate(T, pose_test, appearance_test)


def draw_codes(guide, x1, x2, chunk: int = 2000):
    """(π ~ q(π | x2), α = E_α(x1)) as in training, in chunks of ``chunk`` pairs."""
    def codes(a, b):
        loc, scale = guide.pose_encoder(b)
        return loc + scale * torch.randn_like(loc), guide.appearance_encoder(a)
    return encode_batched(codes, (x1, x2), chunk)


@torch.no_grad()
def mi_estimates(loss: RobustELBO, guide, x1, x2):
    """(I_T, I_T′) on pairs, at posterior draws of π as in training."""
    pose, app = draw_codes(guide, x1, x2)
    return mi_estimate(loss.T, pose, app), mi_estimate(loss.T_prime, pose, app)


# -- building the pair --------------------------------------------------------------------------
POSE_DIM = 16        # the authors' code: 16 channels for π and for α
APPEARANCE_DIM = 16
MLP_HIDDEN = (512, 256)  # our choice for the small-image MLP nets (the foundation's 64-64 is too narrow)


def robust_pair(data_shape, pose_dim: int = POSE_DIM, appearance_dim: int = APPEARANCE_DIM,
                net: str = "auto", dataset_size: int | None = None, mlp_hidden=MLP_HIDDEN):
    """Model (decoder D) and guide (E_π, E_α) for pairs of images shaped ``data_shape = (2, C, H, W)``.

    ``net``: ``"conv64"`` (Burgess et al. 2018 nets, 64×64 images), ``"conv32"`` (the small conv nets
    :class:`ppl_models.nets.Conv32Decoder` and :class:`guides.nets.Conv32Encoder`, 32×32
    images, E_α pooled over positions), ``"mlp"`` (encoder hidden sizes ``mlp_hidden``, the decoder
    mirrored) or ``"auto"`` (conv64 at 64×64, conv32 at 32×32, else MLP).
    """
    data_shape = tuple(data_shape)
    if len(data_shape) != 4 or data_shape[0] != 2:
        raise ConfigError(f"pairs must be shaped (2, C, H, W), got data shape {data_shape}")
    if pose_dim < 1 or appearance_dim < 1:
        raise ConfigError(f"pose_dim and appearance_dim must be >= 1, got {pose_dim}, {appearance_dim}")
    image = data_shape[1:]
    try:
        net = net_kind(net, image)
        if net == "conv32":
            decoder = Conv32Decoder(pose_dim + appearance_dim, image[0])
            pose_enc = Conv32Encoder(image[0], pose_dim)
            app_enc = Conv32Encoder(image[0], appearance_dim, pool=True)
        elif net == "mlp":
            decoder = MLPDecoder(pose_dim + appearance_dim, image, hidden=tuple(mlp_hidden)[::-1])
            pose_enc = MLPEncoder(image, pose_dim, hidden=tuple(mlp_hidden))
            app_enc = MLPEncoder(image, appearance_dim, hidden=tuple(mlp_hidden))
        else:
            decoder = make_decoder(net, pose_dim + appearance_dim, image)
            pose_enc = make_encoder(net, image, pose_dim)
            app_enc = make_encoder(net, image, appearance_dim)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    model = PoseAppearanceModel(decoder, pose_dim, appearance_dim, dataset_size=dataset_size)
    guide = PoseAppearanceGuide(pose_enc, PointEncoder(app_enc), dataset_size=dataset_size)
    return model, guide


# -- the experiment: §4.1 / Table 1 on procedural sprites -------------------------------------------
LABELS = {"variational": "a) no L_MI, γ eq. 24", "adversarial": "b) no L_VB", "no_bias": "c) b_γ = 0",
          "fixed_gamma": "d) γ = 1 fixed", "full": "e) full", "beta_vae": "β-VAE (β = 4)",
          "copy_pose": "baseline: copy x3"}
ORDER = ("variational", "adversarial", "no_bias", "fixed_gamma", "full", "beta_vae")
#: --quick: 32×32 images and the small conv nets (Conv32Decoder / Conv32Encoder; an MLP reconstructed only a
#: blurred average figure in 1000 steps, every variant alike), 1500 steps of batch 64 at lr 1e-3, so
#: six runs take ~15 CPU-minutes. l_γ = 0.1 instead of the authors' 0.01: at 1500 steps γ could move
#: by at most ~0.015 through its bias term with 0.01 (γ stayed ≈ 1, variant e was variant d);
#: 0.1 lets γ decay to 0 within ~1000 steps unless I_T′ − I_T exceeds b_γ, the paper's intent
#: ("γ should be very small and only active" when T is overpowered, §3.5) on our time scale.
#: Paper-like (GPU): 64×64, conv nets, and the authors' code's batch 16, lr 2e-4, 1000 warm-up steps,
#: l_γ = 0.01 (the paper states none of these). Evaluation (ours): 2000 held-out pairs for the
#: reconstruction and the final I_T, I_T′; a fresh classifier fitted for 1000 steps on the codes of
#: 10,000 training pairs.
QUICK = dict(resolution=32, net="conv32", steps=1500, batch_size=64, lr=1e-3, warmup_steps=200,
             mlp_hidden=[256, 128], epsilon=EPSILON, l_gamma=0.1, eval_pairs=2000, fresh_pairs=10_000,
             fresh_steps=1000)
FULL = dict(resolution=64, net="conv64", steps=100_000, batch_size=16, lr=2e-4, warmup_steps=1000,
            mlp_hidden=[512, 256], epsilon=EPSILON, l_gamma=L_GAMMA, eval_pairs=2000, fresh_pairs=10_000,
            fresh_steps=1000)
TRIPLETS = 8000  # held-out evaluation triplets (§4.1)


def ablation_settings(quick: bool = False, **overrides) -> dict:
    """``QUICK`` or ``FULL`` with the non-None ``overrides`` of its keys; refuses a net/resolution mismatch."""
    s = dict(QUICK if quick else FULL)
    unknown = sorted(set(overrides) - set(s))
    if unknown:
        raise TypeError(f"unknown settings {', '.join(unknown)}; known: {', '.join(s)}")
    s.update({k: v for k, v in overrides.items() if v is not None})
    for net, res in (("conv64", 64), ("conv32", 32)):
        if s["net"] == net and s["resolution"] != res:
            raise ConfigError(f"--net {net} needs --resolution {res}, got {s['resolution']}")
    return s


def eval_triplets(sprites, n, seed, chunk=500):
    """The same ``n`` held-out triplets for every variant, in chunks (a chunk = a seeded draw)."""
    return [sprites.triplets(min(chunk, n - start), torch.Generator().manual_seed(10_000 * seed + k),
                             split="test") for k, start in enumerate(range(0, n, chunk))]


@torch.no_grad()
def evaluate(model, guide, loss, sprites, triplets, seed, device, eval_pairs: int = 2000,
             fresh_pairs: int = 10_000, fresh_steps: int = 1000) -> dict:
    """§4.1 on held-out characters: transfer error quartiles, reconstruction (plain, α swapped), the
    final I_T, I_T′, γ, λ, and the I_T of a fresh classifier fitted to the final codes."""
    model.eval(), guide.eval()
    errs = [transfer_errors(model, guide, t.x1.to(device), t.x2.to(device), t.x3.to(device))
            for t in triplets]
    errs = torch.cat(errs).cpu()
    pairs = sprites.pairs(eval_pairs, torch.Generator().manual_seed(seed + 1), split="test", device=device)
    recon, swapped = appearance_usage(model, guide, pairs.x1, pairs.x2)
    torch.manual_seed(seed)
    i_t, i_tp = mi_estimates(loss, guide, pairs.x1, pairs.x2)
    # A fresh classifier on the final encoder's codes (training pairs -> the held-out pairs):
    # is the dependence the online T, T′ report the dependence the codes have?
    train = sprites.pairs(fresh_pairs, torch.Generator().manual_seed(seed + 2), split="train", device=device)
    codes = [draw_codes(guide, x1, x2) for x1, x2 in ((train.x1, train.x2), (pairs.x1, pairs.x2))]
    i_fresh = fitted_mi(*codes[0], *codes[1], steps=fresh_steps, generator=torch.Generator().manual_seed(seed))
    q = torch.quantile(errs, torch.tensor([0.25, 0.5, 0.75]))
    return {"transfer_q1": float(q[0]), "transfer_median": float(q[1]), "transfer_q3": float(q[2]),
            "transfer_mean": float(errs.mean()), "recon_mse": float(recon),
            "recon_mse_alpha_swapped": float(swapped), "I_T": float(i_t),
            "I_T_prime": float(i_tp), "I_fresh": float(i_fresh), "gamma": float(loss.gamma),
            "lambda": float(loss.lam),
            "errors": errs}


@torch.no_grad()
def transfer_grid(model, guide, sprites, device, n=6, seed=123):
    """Rows: pose targets x3; columns: appearance targets x1; plus the exactly rendered ground truth."""
    t = sprites.triplets(n, torch.Generator().manual_seed(seed), split="test", device=device)
    app_src = t.x1[None].expand(n, -1, -1, -1, -1).reshape(n * n, *t.x1.shape[1:])  # column j
    pose_src = t.x3[:, None].expand(-1, n, -1, -1, -1).reshape(n * n, *t.x3.shape[1:])  # row i
    fake = transfer(model, guide, app_src, pose_src)
    k = sprites.n_app
    f_app = t.factors1[None].expand(n, -1, -1).reshape(n * n, -1)
    f_pose = t.factors3[:, None].expand(-1, n, -1).reshape(n * n, -1)
    truth = sprites.images(torch.cat([f_app[:, :k], f_pose[:, k:]], 1))

    def framed(body):
        blank = torch.ones_like(t.x1[:1])
        rows = [torch.cat([blank, t.x1])]
        rows += [torch.cat([t.x3[i:i + 1], body[i * n:(i + 1) * n]]) for i in range(n)]
        return torch.cat(rows)
    return framed(fake), framed(truth)


def box_plot(results, path, epsilon):
    """Box plot of the per-triplet transfer error of each variant (and the copy-x3 baseline)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 1, 4))
    ax.boxplot([results[v]["errors"].numpy() for v in names], showfliers=False)
    ax.set_xticks(range(1, len(names) + 1), [LABELS[v].replace(", ", "\n") for v in names], fontsize=8)
    ax.set_ylabel("transfer MSE per triplet")
    ax.set_title(f"Transfer error on held-out triplets (ε = {epsilon})")
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=120)
    plt.close(fig)


def trajectories(runs: dict, path, epsilon, title: str | None = None) -> dict:
    """I_T, I_T′ (with ε), γ and λ against the step, from the metrics.jsonl of each run of ``runs``
    ({variant: run folder}): :func:`~inference.pictures.training_curves`, one colour per variant.
    Returns the plotted series."""
    from ..pictures import read_metrics, training_curves

    return training_curves({LABELS[v]: read_metrics(Path(d) / "metrics.jsonl") for v, d in runs.items()},
                           path, [("I_T (solid), I_T′ (dotted), ε (dashed)", ("I_T", "I_T_prime")),
                                  ("γ", ("gamma",)), ("λ", ("lambda",))],
                           hlines={0: epsilon}, title=title, ncols=3, panel_size=(13 / 3, 3.6))


def table(results, epsilon) -> str:
    """``results.md``'s table: one row per variant."""
    lines = ["| variant | transfer MSE median [q1, q3] | recon MSE | recon MSE, α swapped | I_T | I_T′ "
             "| I_T′ ≤ ε | I fresh T | γ | λ | wall s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for v, r in results.items():
        holds = "yes" if r["I_T_prime"] <= epsilon else "no"
        lines.append(f"| {LABELS[v]} | {r['transfer_median']:.4f} [{r['transfer_q1']:.4f}, "
                     f"{r['transfer_q3']:.4f}] | {r['recon_mse']:.4f} | {r['recon_mse_alpha_swapped']:.4f} | "
                     f"{r['I_T']:.3f} | {r['I_T_prime']:.3f} | {holds} | {r['I_fresh']:.3f} | "
                     f"{r['gamma']:.3f} | {r['lambda']:.3f} | {r['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"


def run_robust_ablation(out, *, quick: bool = False, variants=ORDER, triplets: int = TRIPLETS, seed: int = 0,
                        log_every: int = 25, device=None, resume: bool = False, **overrides) -> dict:
    """Esser et al. §4.1 / Table 1 on procedural sprites: ablations a-e and a β-VAE, equal budget.

    Each variant trains on pairs (x1, x2) of training characters from ``seed``; then on ``triplets``
    triplets of held-out characters it measures the transfer error MSE(D(E_π(x3), E_α(x1)), x2)
    with x2 rendered exactly, and :func:`evaluate`'s other numbers. ``overrides``: keys of
    ``QUICK`` / ``FULL`` (``steps``, ``lr``, ``net`` ...). Writes under ``out`` ``results.md``,
    ``results.json``, ``transfer_box.png``, ``trajectories.png``, ``transfer_<variant>.png``,
    ``transfer_truth.png`` and one run folder per variant (``resume`` continues them).
    Returns ``{variant: numbers}`` (with the per-triplet ``errors``).
    """
    s = ablation_settings(quick, **overrides)
    out = check_output_dir(out, continuing=resume, how="--resume to continue them")
    device = torch.device(device) if device else default_device()
    if quick and device.type == "cpu":
        torch.set_num_threads(1)  # on a shared 2-core machine, 2 threads per process run ~10× slower
    sprites = Sprites(s["resolution"])
    data = SpritePairs(sprites, split="train")
    check_batch_size(s["batch_size"], len(data), "training sprite pairs")
    tri = eval_triplets(sprites, triplets, seed)  # rendered once, on the CPU
    results = {}
    for v in variants:
        torch.manual_seed(seed)
        model, guide = robust_pair(data.data_shape, net=s["net"], mlp_hidden=s["mlp_hidden"])
        loss = RobustELBO(model.pose_dim, model.appearance_dim, variant=v, warmup_steps=s["warmup_steps"],
                          classifier_lr=2 * s["lr"], epsilon=s["epsilon"], l_gamma=s["l_gamma"])
        fitted = fit(model, guide, loss, data, steps=s["steps"], out_dir=out / v, batch_size=s["batch_size"],
                     lr=s["lr"], seed=seed, resume=resume and (out / v / "checkpoint.pt").exists(),
                     log_every=log_every, checkpoint_every=max(s["steps"] // 4, 1), device=device,
                     config={"variant": v, **s, "data_shape": list(data.data_shape)})
        r = evaluate(model, guide, loss, sprites, tri, seed, device, s["eval_pairs"], s["fresh_pairs"],
                     s["fresh_steps"])
        r["wall_s"] = fitted.train_seconds  # training time only (summed over resumed sessions)
        results[v] = r
        fake, truth = transfer_grid(model, guide, sprites, device)
        save_grid(fake, out / f"transfer_{v}.png", nrow=7)
        save_grid(truth, out / "transfer_truth.png", nrow=7)
        print(f"{v}: transfer median {r['transfer_median']:.4f}, recon {r['recon_mse']:.4f}, "
              f"I_T {r['I_T']:.3f}, I_T' {r['I_T_prime']:.3f}, gamma {r['gamma']:.3f}, "
              f"lambda {r['lambda']:.3f}, {r['wall_s']:.0f} s", flush=True)
    baseline = torch.cat([(t.x3 - t.x2).square().flatten(1).mean(1) for t in tri])
    q = torch.quantile(baseline, torch.tensor([0.25, 0.5, 0.75])).tolist()
    md = table(results, s["epsilon"]) + (
        f"\nbaseline, x̃2 = x3 (copy the pose image): transfer MSE median {q[1]:.4f} "
        f"[{q[0]:.4f}, {q[2]:.4f}]\n")
    atomic_write_text(out / "results.md", f"settings: {json.dumps(s)}, triplets {triplets}\n\n" + md)
    atomic_write_text(out / "results.json", json.dumps(
        {v: {k: x for k, x in r.items() if k != "errors"} for v, r in results.items()}, indent=2) + "\n")
    trajectories({v: out / v for v in results}, out / "trajectories.png", s["epsilon"])
    box_plot({**results, "copy_pose": {"errors": baseline}}, out / "transfer_box.png", s["epsilon"])
    print(md)
    return results
