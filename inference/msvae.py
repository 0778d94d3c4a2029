"""Building and training MS-VAE (Nazari et al., ``papers/msvae-multi-stage-modelling.txt``) and its ablations.

Stage one is any objective of the ELBO family in :data:`inference.MODELS` (β-TCVAE by default, §3.2);
it is trained first on x alone. Stage two trains the conditional decoder G and the residual encoder
R with stage one frozen: each step draws c ~ q(c | x) from the frozen encoder and forms the pair
(y = E[p(y | c)], x) on the fly (Appendix I), maximising term (b) of eq. 2 — a plain ELBO, β = 1.

Variants (Appendix L), all of :class:`ppl_models.msvae.MSVAEModel` / :class:`guides.msvae.MSVAEGuide`:

=============  =========  ========  =====  ==========  ===============================================
name           condition  inject    order  end to end  second-stage objective
=============  =========  ========  =====  ==========  ===============================================
msvae          y          adain     cz     no          ELBO on z
msvae_c        code       concat    cz     no          ELBO on z                     (MSVAE-C, M2)
msvae_c_in     code       adain     cz     no          ELBO on z                     (MSVAE-C-IN, M3)
msvae_e2e      y          adain     cz     yes         stage-one penalty on c only   (§L.1, M1)
msvae_zc       code       concat    zc     no          stage-one penalty on c        (MSVAE-ZC, M5)
=============  =========  ========  =====  ==========  ===============================================

For MSVAE-ZC the first stage is a plain VAE (β = 1) over z (§L.3).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from guides.msvae import MSVAEGuide
from guides.nets import make_encoder
from ppl_models.msvae import ConditionalDecoder, MSVAEModel, RefinedDecoder
from ppl_models.nets import MLPDecoder

from .build import build, resolve_config
from .elbo import TermsELBO
from .errors import ConfigError


class Variant(NamedTuple):
    condition: str
    inject: str
    order: str
    end_to_end: bool


VARIANTS = {
    "msvae": Variant("y", "adain", "cz", False),
    "msvae_c": Variant("code", "concat", "cz", False),
    "msvae_c_in": Variant("code", "adain", "cz", False),
    "msvae_e2e": Variant("y", "adain", "cz", True),
    "msvae_zc": Variant("code", "concat", "zc", False),
}

C_DIM = 10  # §4: "we use a 10-dimensional C" (after Locatello et al. 2018)
Z_DIM = 10  # §4: 10-dimensional Z for SmallNORB (5 for Cars3D)
STAGE_ONE = "betatc"  # §3.2: stage one is a β-TCVAE
STAGE_ONE_OVERRIDES = {"beta": 4.0, "gamma": 1.0}  # Appendix A sweeps at β = 4; α = γ = 1 (Chen et al. eq. 4)


def variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ConfigError(f"unknown MS-VAE variant {name!r}; known: {', '.join(VARIANTS)}")
    return VARIANTS[name]


def family_member(name: str, overrides: dict, data_shape, dataset_size: int):
    """``(model, guide, loss, config)`` of an ELBO-family objective in :data:`inference.MODELS`."""
    config = resolve_config(name, overrides)
    model, guide, loss = build(config, data_shape, dataset_size)
    return model, guide, loss, config


def freeze(*modules: nn.Module) -> None:
    """No gradient and eval mode for every parameter of ``modules`` (stage one during stage two)."""
    for module in modules:
        module.requires_grad_(False)
        module.eval()


def msvae_pair(stage_one_model, stage_one_guide, name: str, second_dim: int, data_shape,
               dataset_size: int, hidden: int = 16, blocks: int = 2, net: str = "auto"):
    """MS-VAE variant ``name`` on a (trained) stage-one pair; stage one is frozen unless end to end."""
    v = variant(name)
    if second_dim < 1:
        raise ConfigError(f"the second latent's dimension must be >= 1, got {second_dim}")
    try:
        decoder = ConditionalDecoder(data_shape, second_dim, v.condition, v.inject,
                                     code_dim=stage_one_model.latent_dim, hidden=hidden, blocks=blocks)
        encoder = make_encoder(net, data_shape, second_dim)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    model = MSVAEModel(stage_one_model, decoder, second_dim, dataset_size,
                       likelihood=stage_one_model.likelihood, order=v.order, condition=v.condition,
                       end_to_end=v.end_to_end)
    guide = MSVAEGuide(stage_one_guide, encoder, model, dataset_size)
    if not v.end_to_end:
        freeze(stage_one_model, stage_one_guide)
    return model, guide


def second_stage_loss(name: str, family_loss: TermsELBO | None = None) -> TermsELBO:
    """Term (b) of eq. 2 (plain ELBO) for two-stage C-first variants; else ``family_loss`` on site c only.

    End to end (§L.1) "penalizing only C", and the second stage of MSVAE-ZC (§L.3) learning C "by
    enforcing a KL-penalty", use the stage-one objective with its weight and penalty on ``c``.
    """
    v = variant(name)
    if not v.end_to_end and v.order == "cz":
        return TermsELBO()
    if family_loss is None:
        raise ConfigError(f"variant {name!r} needs the disentangling objective for site 'c'")
    family_loss.sites = ("c",)
    return family_loss


def count_parameters(*modules: nn.Module) -> int:
    """Distinct parameters of ``modules`` (shared ones counted once)."""
    seen = {id(p): p.numel() for m in modules for p in m.parameters()}
    return int(sum(seen.values()))


def big_family_pair(name: str, overrides: dict, data_shape, dataset_size: int, target_params: int,
                    blocks: int = 2, hidden: int = 16):
    """The stage-one objective with latent |C|+|Z| and about ``target_params`` parameters (Big-β-TCVAE,
    Appendix H, which fixes only the parameter count and the latent size).

    Its decoder is the family's decoder, refined by a Z-less G of MS-VAE's width (``hidden``,
    ``blocks``: the same convolutional cost as MS-VAE's G), plus a dense path code → width →
    pixels whose width brings the count closest to ``target_params`` (:class:`RefinedDecoder`), so
    the matched capacity costs dense-layer time, not a wide convolutional net's.
    """
    config = resolve_config(name, overrides)
    model, guide, loss = build(config, data_shape, dataset_size)
    refiner = ConditionalDecoder(data_shape, 0, "y", "concat", hidden=hidden, blocks=blocks)
    latent, pixels = config["latent_dim"], int(np.prod(data_shape))
    gap = target_params - count_parameters(model, guide, refiner)
    width = max(round((gap - pixels) / (latent + 1 + pixels)), 0)  # (latent+1)·w + (w+1)·pixels = gap
    dense = MLPDecoder(latent, data_shape, hidden=(width,)) if width > 0 else None
    model.decoder = RefinedDecoder(model.decoder, refiner, mean=model.likelihood.mean, dense=dense)
    return model, guide, loss, config


# -- evaluation ---------------------------------------------------------------------------------
@torch.no_grad()
def reconstruct(model: MSVAEModel, guide: MSVAEGuide, x: torch.Tensor):
    """(Y, X̂) at the posterior means: the stage-one and the MS-VAE reconstruction of ``x``."""
    post = guide.posterior(x)
    return model.generate(post[model.first_site][0], post[model.second_site][0])


def stage_two_input(model: MSVAEModel, code: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """What G reads besides the second latent: Y for a Y-conditioned G, else the first-stage code."""
    return y if getattr(model, "condition", "y") == "y" else code


@torch.no_grad()
def conditioning_codes(model: MSVAEModel, guide: MSVAEGuide, x: torch.Tensor,
                       generator: torch.Generator | None = None) -> dict[str, np.ndarray]:
    """C_R, C_Y, C_X, C_Z, C_Y′ of §4 for a batch ``x``, E = the stage-one encoder mean, G = stage two.

    §4: C_R = E(X), C_Y = E(Y), C_X = E(G(Y, Z)), C_Z = E(G(Y, ε)), C_Y′ = E(G(ε′, Z)) with
    ε, ε′ ~ N(0, I). ε is drawn in the second latent's space and replaces Z; ε′ is drawn in Y's space
    (whatever G reads in Y's place: the image Y for a Y-conditioned G, the code for a code-conditioned
    one) and replaces Y itself — it is *not* a decoded prior code. Z is the posterior mean throughout.

    Also returned, under ``"c_decoded_prior"``: the measure this function called C_Y′ before issue 14,
    E(G(Y(c′), Z)) with c′ ~ N(0, I) in the first-stage code space decoded by stage one to Y(c′) —
    a different quantity (a Y-conditioned G sees a decoded image, not noise); see
    :data:`inference.metrics.conditioning.EXTRA_MEASURES`.

    Draws from ``generator`` in the order ε, c′, ε′ (ε and c′ as before issue 14).
    """
    encode = lambda img: guide.first_posterior(img)[0]  # noqa: E731
    post = guide.posterior(x)
    code, second = post[model.first_site][0], post[model.second_site][0]
    n = x.shape[0]
    y = model.first_stage_mean(code)
    g = lambda c, yy, s: model.likelihood.mean(model.logits(c, yy, s))  # noqa: E731
    eps = torch.randn(n, model.second_dim, generator=generator).to(x.device)  # ε ~ N(0, I), §4
    code_prior = torch.randn(n, code.shape[1], generator=generator).to(x.device)  # c′ (old measure)
    u = stage_two_input(model, code, y)
    eps_prime = torch.randn(u.shape, generator=generator).to(device=x.device, dtype=u.dtype)  # ε′, §4
    out = {"c_r": encode(x), "c_y": encode(y), "c_x": encode(g(code, y, second)),
           "c_z": encode(g(code, y, eps)),
           "c_y_prime": encode(g(eps_prime, eps_prime, second)),  # G(ε′, Z): ε′ stands in for Y (or code)
           "c_decoded_prior": encode(g(code_prior, model.first_stage_mean(code_prior), second))}
    return {k: v.double().cpu().numpy() for k, v in out.items()}


def image_errors(x: torch.Tensor, recon: torch.Tensor) -> dict[str, float]:
    """Mean per-element L1 and L2 (squared) error (Appendix J)."""
    return {"l1": float((recon - x).abs().mean()), "l2": float((recon - x).square().mean())}


def batched(fn, x: torch.Tensor, batch_size: int = 256):
    """``fn`` over ``x`` in batches; tuples of outputs are concatenated element-wise."""
    outs = [fn(x[s:s + batch_size]) for s in range(0, len(x), batch_size)]
    if isinstance(outs[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*outs))
    if isinstance(outs[0], dict):
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
    return torch.cat(outs)


def prior_seconds(model: MSVAEModel, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` draws of the second latent from its prior under ``seed`` (RNG stream untouched)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return model.prior(n).sample()


def traversal_codes(loc: torch.Tensor, dims, limit: float = 2.0, steps: int = 7) -> torch.Tensor:
    """Codes (len(dims)·steps, D): row i sweeps dimension dims[i] of ``loc`` (D,) over [−limit, limit]."""
    dims = torch.as_tensor(list(dims), dtype=torch.long)
    codes = loc.repeat(len(dims), steps, 1)
    codes[torch.arange(len(dims)), :, dims] = torch.linspace(-limit, limit, steps, device=loc.device)
    return codes.reshape(len(dims) * steps, -1)


def effective_dims(scale_mean: torch.Tensor, threshold: float = 0.8) -> list[int]:
    """Dimensions whose mean posterior scale is below ``threshold`` (active, not collapsed), most active first."""
    order = torch.argsort(scale_mean)
    return [int(d) for d in order if scale_mean[d] < threshold] or [int(order[0])]


__all__ = ["VARIANTS", "Variant", "variant", "family_member", "freeze", "msvae_pair",
           "second_stage_loss", "count_parameters", "big_family_pair", "reconstruct",
           "conditioning_codes", "stage_two_input", "image_errors", "batched", "prior_seconds",
           "traversal_codes", "effective_dims", "C_DIM", "Z_DIM", "STAGE_ONE", "STAGE_ONE_OVERRIDES"]
