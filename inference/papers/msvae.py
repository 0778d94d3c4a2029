"""MS-VAE (Nazari et al., ``papers/msvae-multi-stage-modelling.txt``): its pairs, its ablations, its
evaluation protocol (§4, Appendices G, H, J) and the experiment that regenerates its table.

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

The experiment (:func:`run_experiment`, ``scripts/msvae_experiment.py``): β-TCVAE alone vs MS-VAE
and its ablations vs a β-TCVAE as large as MS-VAE, on procedural textured shapes
(``ppl_data.textured``), all with an equal budget of S1 + S2 optimiser steps: ``betatc`` (stage one,
|C| latents, S1 steps), ``msvae`` / ``msvae_c`` / ``msvae_c_in`` (S2 steps of stage two on that frozen
stage one), ``msvae_e2e`` (S1 + S2 end to end), ``msvae_zc`` (a VAE over Z for S1, then C for S2) and
``big_betatc`` (|C| + |Z| latents, :func:`big_family_pair`; S1 + S2 steps; Appendix H). Table columns
(§4, Appendices G, J): MIG of C; FID of reconstructions against the data (our offline feature net,
``inference.fid``; not Inception FID); L1, L2; M1–M4 (§4; M4 = MI[C_R; E(G(ε′, Z))] with ε′ ~ N(0, I)
in Y's space, since issue 14) and M_decoded_prior (the pre-issue-14 "M4": Y′ decoded from a prior
code; not a §4 measure); mean downstream accuracy over the ten factors of an MLP reading C, Z and
C+Z; and the same for the coarse and the fine factors.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from guides.msvae import MSVAEGuide
from guides.nets import make_encoder
from ppl_data import TexturedShapes
from ppl_models.msvae import ConditionalDecoder, MSVAEModel, RefinedDecoder
from ppl_models.nets import MLPDecoder

from ..catalog import build, resolve_config
from ..checkpoint import atomic_write_text
from ..elbo import TermsELBO
from ..errors import ConfigError
from ..fid import calibration_markdown, feature_net, features, fid_calibration, fid_from_features
from ..metrics.conditioning import conditioning_measures, downstream_table
from ..metrics.mig import mig
from ..metrics.reconstruction import image_errors
from ..pictures import save_grid, traversal_codes
from ..posterior import encode_batched
from ..svi import fit


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
STAGES = "stages"  # run_experiment's folder of the stages' run folders (stages/<model>/metrics.jsonl)


def variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ConfigError(f"unknown MS-VAE variant {name!r}; known: {', '.join(VARIANTS)}")
    return VARIANTS[name]


def family_member(name: str, overrides: dict, data_shape, dataset_size: int):
    """``(model, guide, loss, config)`` of an ELBO-family objective in :data:`inference.MODELS`."""
    config = resolve_config(name, overrides)
    model, guide, loss = build(config, data_shape, dataset_size)
    return model, guide, loss, config


def stage_one_member(name: str, latent_dim: int, data_shape, dataset_size: int, **overrides):
    """:func:`family_member` as the experiments build it: ``net="auto"``, the paper's β-TCVAE weights
    (:data:`STAGE_ONE_OVERRIDES`) when ``name`` is :data:`STAGE_ONE`."""
    return family_member(name, {**(STAGE_ONE_OVERRIDES if name == STAGE_ONE else {}), "latent_dim": latent_dim,
                                "net": "auto", **overrides}, data_shape, dataset_size)


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
    model, guide, loss, config = family_member(name, overrides, data_shape, dataset_size)
    refiner = ConditionalDecoder(data_shape, 0, "y", "concat", hidden=hidden, blocks=blocks)
    latent, pixels = config["latent_dim"], int(np.prod(data_shape))
    gap = target_params - count_parameters(model, guide, refiner)
    width = max(round((gap - pixels) / (latent + 1 + pixels)), 0)  # (latent+1)·w + (w+1)·pixels = gap
    dense = MLPDecoder(latent, data_shape, hidden=(width,)) if width > 0 else None
    model.decoder = RefinedDecoder(model.decoder, refiner, mean=model.likelihood.mean, dense=dense)
    return model, guide, loss, config


# -- evaluation protocol (§4, Appendices G, J) --------------------------------------------------------
@torch.no_grad()
def reconstruct(model: MSVAEModel, guide: MSVAEGuide, x: torch.Tensor):
    """(Y, X̂) at the posterior means: the stage-one and the MS-VAE reconstruction of ``x``."""
    post = guide.posterior(x)
    return model.generate(post[model.first_site][0], post[model.second_site][0])


def stage_two_input(model: MSVAEModel, code: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """What G reads besides the second latent: Y for a Y-conditioned G, else the first-stage code."""
    return y if getattr(model, "condition", "y") == "y" else code


@torch.no_grad()
def _batch_codes(model, guide, x: torch.Tensor, generator) -> dict[str, torch.Tensor]:
    """:func:`conditioning_codes` of one batch, as tensors."""
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
    return {"c_r": encode(x), "c_y": encode(y), "c_x": encode(g(code, y, second)),
            "c_z": encode(g(code, y, eps)),
            "c_y_prime": encode(g(eps_prime, eps_prime, second)),  # G(ε′, Z): ε′ stands in for Y (or code)
            "c_decoded_prior": encode(g(code_prior, model.first_stage_mean(code_prior), second))}


def conditioning_codes(model: MSVAEModel, guide: MSVAEGuide, x: torch.Tensor,
                       generator: torch.Generator | None = None, batch_size: int = 256) -> dict[str, np.ndarray]:
    """C_R, C_Y, C_X, C_Z, C_Y′ of §4 for items ``x``, E = the stage-one encoder mean, G = stage two.

    §4: C_R = E(X), C_Y = E(Y), C_X = E(G(Y, Z)), C_Z = E(G(Y, ε)), C_Y′ = E(G(ε′, Z)) with
    ε, ε′ ~ N(0, I). ε is drawn in the second latent's space and replaces Z; ε′ is drawn in Y's space
    (whatever G reads in Y's place: the image Y for a Y-conditioned G, the code for a code-conditioned
    one) and replaces Y itself — it is *not* a decoded prior code. Z is the posterior mean throughout.

    Also returned, under ``"c_decoded_prior"``: the measure this function called C_Y′ before issue 14,
    E(G(Y(c′), Z)) with c′ ~ N(0, I) in the first-stage code space decoded by stage one to Y(c′) —
    a different quantity (a Y-conditioned G sees a decoded image, not noise); see
    :data:`inference.metrics.conditioning.EXTRA_MEASURES`.

    ``x`` is read in chunks of ``batch_size``; in each chunk ``generator`` draws ε, c′, ε′ in that
    order (ε and c′ as before issue 14). Arrays (N, d), float64.
    """
    codes = encode_batched(lambda b: _batch_codes(model, guide, b, generator), x, batch_size)
    return {k: v.double().cpu().numpy() for k, v in codes.items()}


def prior_seconds(model: MSVAEModel, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` draws of the second latent from its prior under ``seed`` (RNG stream untouched)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return model.prior(n).sample()


def effective_dims(scale_mean: torch.Tensor, threshold: float = 0.8) -> list[int]:
    """Dimensions whose mean posterior scale is below ``threshold`` (active, not collapsed), most active first."""
    order = torch.argsort(scale_mean)
    return [int(d) for d in order if scale_mean[d] < threshold] or [int(order[0])]


def encode_codes(code_fn, x: torch.Tensor) -> dict[str, np.ndarray]:
    """``code_fn(x) -> {name: (B, d) tensor}`` over ``x`` in chunks: ``{name: (N, d) float64 array}``."""
    return {k: v.cpu().double().numpy() for k, v in encode_batched(code_fn, x).items()}


class EvalSet:
    """The held-out items of §4's tables (textured shapes): images, factors and their FID features.

    Draws ``n_eval`` evaluation items then ``n_probe`` probe items (the downstream MLPs' training set)
    with a generator seeded ``seed + 1``.
    """

    def __init__(self, data, n_eval: int, seed: int, device, n_probe: int = 0):
        gen = torch.Generator().manual_seed(seed + 1)
        self.f_eval = data.sample_factors(n_eval, gen)
        self.f_probe = data.sample_factors(n_probe, gen) if n_probe else None
        self.x_eval = data.images(self.f_eval).to(device)
        self.x_probe = data.images(self.f_probe).to(device) if n_probe else None
        self.net = feature_net(device=device)
        self.feat_eval = features(self.x_eval, self.net)

    def fid(self, images: torch.Tensor) -> float:
        """FID of ``images`` against the evaluation items (our offline feature net, ``inference.fid``)."""
        return fid_from_features(self.feat_eval, features(images, self.net))

    def conditioning(self, model, guide, seed: int) -> dict[str, float]:
        """M1–M4 (and M_decoded_prior) of §4 on the evaluation items, noise drawn under ``seed``."""
        gen = torch.Generator().manual_seed(seed)
        return conditioning_measures(conditioning_codes(model, guide, self.x_eval, gen))


def timed(seconds: dict, name: str, fn):
    """``fn()``, its wall time added to ``seconds[name]``."""
    t = time.perf_counter()
    out = fn()
    seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t
    return out


def fit_stage(model, guide, loss, data, steps: int, settings: dict, seed: int, device, out_dir=None):
    """Adam on ``loss`` for ``steps`` steps of ``settings["batch_size"]`` at ``settings["lr"]``. With
    ``out_dir`` (a new folder) the stage is a run folder: its ``metrics.jsonl`` logs the terms at 100
    steps of the stage (its one checkpoint, at the end, beside them); without it nothing is written.
    The training is the same either way (logging reads the terms, it draws nothing)."""
    fit(model, guide, loss, data, steps=steps, batch_size=settings["batch_size"], lr=settings["lr"],
        seed=seed, device=device, progress=False, out_dir=out_dir, checkpoint_every=max(steps, 1),
        log_every=max(steps // (10 if out_dir is None else 100), 1))


def table_md(rows: dict, columns, settings: dict, wall: float) -> str:
    """A markdown table: one row per model, ``columns`` (floats to 3 decimals), the settings above it."""
    lines = [f"settings: {json.dumps(settings)}; wall {wall:.0f} s", "",
             "| model | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
    for name, r in rows.items():
        cells = [f"{r[c]:.3f}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(out: Path, results: dict, table: str) -> None:
    """``results.json`` and ``table.md`` under ``out``, written atomically; the table is printed."""
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(out / "table.md", table)
    print(table)


# -- the experiment -----------------------------------------------------------------------------------
# quick: ~20 min on the shared 2-core CPU, one thread (S1 + S2 = 3000 steps for end to end and the big
# β-TCVAE; batch 64 as the paper; lr 1e-3 rather than 1e-4 so that so few steps learn something).
QUICK = dict(resolution=32, batch_size=64, lr=1e-3, steps1=2000, steps2=1000, hidden=8, blocks=1,
             n_eval=1000, n_probe=1000, mlp=(64,), mlp_iter=100)
# Paper: C = 10, Z = 10 (§4, SmallNORB), β = 4 (Appendix A), batch 64, Adam lr 1e-4 and 300,000 steps
# per stage (disentanglement_lib's β-TCVAE defaults, which §3.2 says stage one uses).
PAPER = dict(resolution=64, batch_size=64, lr=1e-4, steps1=300_000, steps2=300_000, hidden=32, blocks=2,
             n_eval=10_000, n_probe=10_000, mlp=(256, 256), mlp_iter=200)
EXPERIMENT_MODELS = ("betatc", "msvae", "msvae_c", "msvae_c_in", "msvae_e2e", "msvae_zc", "big_betatc")
TABLE_COLUMNS = ("params", "train_s", "mig", "fid", "l1", "l2", "M1", "M2", "M3", "M4", "M_decoded_prior",
                 "acc_C", "acc_Z", "acc_C+Z", "acc_C_fine", "acc_Z_fine", "acc_C+Z_fine")


class _Table:
    """The rows of the experiment's table, filled model by model on one :class:`EvalSet`."""

    def __init__(self, settings: dict, seed: int, device, stages: Path | None = None):
        self.s, self.seed, self.device = settings, seed, torch.device(device)
        self.stages = stages  # each fitted stage's run folder (its metrics.jsonl) goes under it
        self.data = TexturedShapes(settings["resolution"])
        self.shape, self.n = self.data.data_shape, len(self.data)
        self.ev = EvalSet(self.data, settings["n_eval"], seed, self.device, settings["n_probe"])
        self.rows, self.recons, self.seconds, self.params = {}, {}, {}, {}
        self.coarse = [self.data.factor_names.index(k) for k in self.data.coarse_factors]
        self.fine = [k for k in range(len(self.data.factor_names)) if k not in self.coarse]

    def fit(self, name, model, guide, loss, steps, stage: str | None = None):
        """Train ``name``'s ``stage`` (default: ``name``), its run folder ``<stages>/<stage>``."""
        folder = None if self.stages is None else self.stages / (stage or name)
        if folder is not None and folder.exists():  # a folder of an earlier run of the experiment
            shutil.rmtree(folder)
        timed(self.seconds, name, lambda: fit_stage(model, guide, loss, self.data, steps, self.s, self.seed,
                                                    self.device, out_dir=folder))
        print(f"{name}: {steps} steps, {self.seconds[name]:.0f} s", flush=True)

    def family(self, name, latent_dim, **over):
        return stage_one_member(name, latent_dim, self.shape, self.n, **over)

    @torch.no_grad()
    def evaluate(self, name, recon_fn, code_fn, msvae=None):
        """recon_fn(x) -> images; code_fn(x) -> {"c": (B, d), optionally "z"}; msvae: (model, guide)."""
        ev = self.ev
        recon = encode_batched(recon_fn, ev.x_eval)
        codes, probe = encode_codes(code_fn, ev.x_eval), encode_codes(code_fn, ev.x_probe)
        row = {"params": self.params.get(name), "train_s": round(self.seconds.get(name, 0.0))}
        row["mig"] = mig(codes["c"], ev.f_eval.numpy())
        row["fid"] = ev.fid(recon)
        row.update(image_errors(ev.x_eval, recon))
        if msvae is not None:
            row.update(ev.conditioning(*msvae, self.seed + 2))
        table = downstream_table(probe, codes, ev.f_probe.numpy(), ev.f_eval.numpy(), hidden=self.s["mlp"],
                                 max_iter=self.s["mlp_iter"], seed=self.seed)
        # the MLPs that hit their epoch budget unconverged: counted in the record, never silenced
        row["mlp_unconverged"], row["mlp_fits"] = table.unconverged, table.fits
        for k, acc in table.items():
            row[f"acc_{k}"] = float(acc.mean())
            row[f"acc_{k}_coarse"] = float(acc[self.coarse].mean())
            row[f"acc_{k}_fine"] = float(acc[self.fine].mean())
            row[f"acc_{k}_per_factor"] = [round(float(a), 3) for a in acc]
        self.rows[name] = row
        self.recons[name] = recon[:8].cpu()
        print(name, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                     if not k.endswith("per_factor")}, flush=True)


def _second_stage(t: _Table, name: str, m1, g1):
    """``(model, guide, loss, steps)`` of MS-VAE variant ``name``; MSVAE-ZC's VAE over Z is trained here."""
    s = t.s
    if name == "msvae_e2e":
        a, b, fam_loss, _ = t.family(STAGE_ONE, C_DIM)
        model, guide = msvae_pair(a, b, name, Z_DIM, t.shape, t.n, s["hidden"], s["blocks"])
        return model, guide, second_stage_loss(name, fam_loss), s["steps1"] + s["steps2"]
    if name == "msvae_zc":
        a, b, vae_loss, _ = t.family("vae", Z_DIM, beta=1.0)  # §L.3: Z by a standard VAE first
        t.fit(name, a, b, vae_loss, s["steps1"], stage="msvae_zc_stage_one")
        fam_loss = t.family(STAGE_ONE, C_DIM)[2]
        model, guide = msvae_pair(a, b, name, C_DIM, t.shape, t.n, s["hidden"], s["blocks"])
        return model, guide, second_stage_loss(name, fam_loss), s["steps2"]
    model, guide = msvae_pair(m1, g1, name, Z_DIM, t.shape, t.n, s["hidden"], s["blocks"])
    t.seconds[name] = t.seconds["betatc"]
    return model, guide, second_stage_loss(name), s["steps2"]


def run_experiment(settings: dict, out, *, models=EXPERIMENT_MODELS, seed: int = 0, device="cpu",
                   command: str = "") -> dict:
    """Train and evaluate ``models`` (a subset of :data:`EXPERIMENT_MODELS`) under ``settings``
    (:data:`QUICK`, :data:`PAPER` or your own) and write under ``out``: ``results.json``, ``table.md``,
    ``fid_calibration.md`` (:func:`calibrate_fid`, also in ``results.json``), ``reconstructions.png``,
    ``traversals.png``, ``z_perturbation.png`` (and two ``.txt`` captions), and each stage it trains as a
    run folder ``stages/<stage>`` (its ``metrics.jsonl``: the stage's logged terms against its own step;
    ``stages/betatc`` is stage one, ``stages/msvae`` MS-VAE's stage two).

    Returns the results: ``{"settings", "wall_seconds", "command", "rows": {model: {column: value}},
    "fid_calibration"}``.
    """
    wanted, out, t0 = list(models), Path(out), time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    t = _Table(dict(settings), seed, device, stages=out / STAGES)
    s = t.s
    torch.manual_seed(seed)
    # Stage one: the β-TCVAE every C-first two-stage variant shares (frozen once stage two starts).
    m1, g1, loss1, _ = t.family(STAGE_ONE, C_DIM)
    t.params["betatc"] = count_parameters(m1, g1)
    t.fit("betatc", m1, g1, loss1, s["steps1"])
    if "betatc" in wanted:
        t.evaluate("betatc", lambda x: m1.decode(g1.posterior(x)["z"][0]), lambda x: {"c": g1.posterior(x)["z"][0]})
    pairs = {}
    for name in ("msvae", "msvae_c", "msvae_c_in", "msvae_e2e", "msvae_zc"):
        if name not in wanted and not (name == "msvae" and "big_betatc" in wanted):
            continue
        model, guide, loss, steps = _second_stage(t, name, m1, g1)
        t.params[name] = count_parameters(model, guide)
        t.fit(name, model, guide, loss, steps)
        pairs[name] = (model, guide)
        if name in wanted:
            t.evaluate(name, lambda x, p=(model, guide): reconstruct(*p, x)[1],
                       lambda x, g=guide: {k: v[0] for k, v in sorted(g.posterior(x).items())}, msvae=(model, guide))
    if "big_betatc" in wanted:
        big, big_g, big_loss, _ = big_family_pair(STAGE_ONE, {**STAGE_ONE_OVERRIDES, "latent_dim": C_DIM + Z_DIM},
                                                  t.shape, t.n, t.params["msvae"], blocks=s["blocks"],
                                                  hidden=s["hidden"])
        t.params["big_betatc"] = count_parameters(big, big_g)
        t.fit("big_betatc", big, big_g, big_loss, s["steps1"] + s["steps2"])
        t.evaluate("big_betatc", lambda x: big.decode(big_g.posterior(x)["z"][0]),
                   lambda x: {"c": big_g.posterior(x)["z"][0]})
    pictures(t.ev.x_eval, t.recons, pairs.get("msvae"), out, seed)
    calibration = calibrate_fid(s, seed, net=t.ev.net)
    wall = time.perf_counter() - t0
    results = {"settings": s, "wall_seconds": wall, "command": command, "rows": t.rows,
               "fid_calibration": calibration}
    write_results(out, results, table_md(t.rows, TABLE_COLUMNS, s, wall))
    atomic_write_text(out / "fid_calibration.md", calibration_markdown(calibration))
    return results


def calibrate_fid(settings: dict, seed: int = 0, device="cpu", net=None) -> dict:
    """The FID calibration (:func:`inference.fid.fid_calibration`) at the experiment's resolution and
    evaluation size (``settings["resolution"]``, ``settings["n_eval"]``): what a second sample of the
    textured shapes, a 3×3 blur, noise and each factor narrowed score against the data, in the same
    feature space as the table's FID column. ``results.json`` keeps it under ``"fid_calibration"``;
    :func:`inference.fid.calibration_markdown` renders it."""
    return fid_calibration(TexturedShapes(settings["resolution"]), n=settings["n_eval"], seed=seed,
                           net=net or feature_net(device=device))


@torch.no_grad()
def pictures(x_eval: torch.Tensor, recons: dict, msvae, out: Path, seed: int = 0) -> None:
    """``reconstructions.png`` (rows: the first 8 items of ``x_eval``, then each model's ``recons`` of
    them); with ``msvae`` = (model, guide) also ``traversals.png`` (the C dimensions most active on the
    first 256 items) and ``z_perturbation.png``; captions in ``reconstructions.txt``, ``pictures.txt``."""
    save_grid(torch.cat([x_eval[:8].cpu()] + list(recons.values())), out / "reconstructions.png", nrow=8)
    atomic_write_text(out / "reconstructions.txt", "rows: data, " + ", ".join(recons) + "\n")
    if msvae is None:
        return
    model, guide = msvae
    post = guide.posterior(x_eval[:256])
    dims = effective_dims(post["c"][1].mean(0))[:4]
    loc, z = post["c"][0][0], post["z"][0][:1]
    codes = traversal_codes(loc, dims, limit=2.0, steps=7)
    y, xs = model.generate(codes, z.expand(len(codes), -1))
    grid = torch.stack([y.reshape(len(dims), 7, *y.shape[1:]), xs.reshape(len(dims), 7, *xs.shape[1:])], 1)
    save_grid(grid.reshape(-1, *y.shape[1:]).cpu(), out / "traversals.png", nrow=7)
    seconds = prior_seconds(model, 7, seed=seed)
    c4 = post["c"][0][:4]
    _, xz = model.generate(c4.repeat_interleave(7, 0), seconds.repeat(4, 1))
    y4 = model.first_stage_mean(c4)
    save_grid(torch.cat([torch.cat([y4[i:i + 1], xz[7 * i:7 * i + 7]]) for i in range(4)]).cpu(),
              out / "z_perturbation.png", nrow=8)
    atomic_write_text(out / "pictures.txt",
                      f"traversals.png: C dims {dims} (most active), odd rows Y (β-TCVAE), even rows "
                      "MS-VAE X with Z fixed at item 0's posterior mean, c over [-2, 2]\n"
                      "z_perturbation.png: per row, Y of an item then MS-VAE X for 7 prior draws of Z\n")


__all__ = ["VARIANTS", "Variant", "variant", "family_member", "stage_one_member", "freeze", "msvae_pair",
           "second_stage_loss", "count_parameters", "big_family_pair", "reconstruct", "stage_two_input",
           "conditioning_codes", "prior_seconds", "effective_dims", "encode_codes", "EvalSet", "timed",
           "fit_stage", "table_md", "write_results", "run_experiment", "calibrate_fid", "pictures", "QUICK",
           "PAPER",
           "EXPERIMENT_MODELS", "TABLE_COLUMNS", "C_DIM", "Z_DIM", "STAGE_ONE", "STAGE_ONE_OVERRIDES", "STAGES"]
