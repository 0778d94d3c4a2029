"""VITAE (Detlefsen & Hauberg 2019): the ``vitae_u`` / ``vitae_c`` objectives, their evaluation
protocol and the two experiments that regenerate the tables.

**Objectives.** Networks follow the VITAE supplement §2, Table 1 (MLPs, LeakyReLU 0.1, d = 2 per
latent group for MNIST); each VITAE network has about half the neurons of the VAE's (enc 128-64,
dec 64-64), the appearance nets a little more than the perspective nets ("benefits from a bit
higher capacity"). The encoders' softplus head gives the variance σ² (Table 1;
:class:`guides.vitae.VITAEEncoder`). The likelihood is Bernoulli by default (MNIST, §2); with
``likelihood="gaussian"`` its variance is fixed to σ²_decoder = 0.1 (§2, SMPL), i.e. ``obs_scale``
= √0.1 (a standard deviation, as for every model). The pair and the two objectives (``SPECS``) are
built in :mod:`inference.vitae_pair`, below the catalog, and re-exported here: this module imports
the catalog, never the reverse.

**Evaluation.** :func:`test_elbo` (per-item test ELBO), :func:`disentanglement` (normalised MI of
each latent group with each factor, and MIG), :func:`swap_test` (decode(z_persp(x2), z_app(x1)):
position scored by pixel centroids, shape by the pose-blind nearest-template
:class:`ShapeReader`).

MI and MIG come from :mod:`inference.metrics` (disentanglement_lib's estimator: 20 equal-width
bins over [min, max] per code, plug-in MI, factor entropy from the sample), the same functions
``scripts/evaluate.py`` uses. The table reports the *per-factor* normalised gap and its means over
the perspective and the appearance factors; ``mig`` in ``results.json`` is also per factor, and
``mig_mean`` is the single number ``evaluate.py`` reports (the mean over factors). Until issue 15
the VITAE script carried its own histogram estimator. It differed from this one in two details:
a code value lying exactly on an interior bin edge went to the lower bin (``torch.bucketize``)
instead of the upper one (disentanglement_lib), and a constant factor gave NaN instead of 0.

**Experiments.** :func:`run_vitae_experiment` (``scripts/vitae_mnist.py``): U-VITAE vs C-VITAE vs a
VAE of the same latent size, with the swap test. :func:`run_stability_study`
(``scripts/vitae_stability.py``, supplement §3, Fig. 1): C-VITAE's test ELBO against the learning
rate, one line per transformer parametrisation.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pyro
import torch
from torch.nn import functional as F

import ppl_data

from ..checkpoint import atomic_save_figure, atomic_write_text
from ..catalog import build, resolve_config
from ..cli import check_batch_size, check_output_dir, default_device
from ..elbo import TermsELBO
from ..errors import ConfigError, NonFiniteLossError
from ..metrics import discrete_entropy, mig_terms, mutual_info_matrix
from ..pictures import save_grid
from ..posterior import encode_batched
from ..svi import fit
from ..vitae_pair import (APP_DECODER, APP_ENCODER, PERSP_DECODER, PERSP_ENCODER, SPECS,  # noqa: F401
                          VITAE_PARAMS, vitae_pair)

# == evaluation protocol ==========================================================================
PERSPECTIVE_FACTORS = ("scale", "orientation", "pos_x", "pos_y")  # dSprites pose = perspective
APPEARANCE_FACTORS = ("shape",)
MI_BINS = 20  # disentanglement_lib MIG discretisation: 20 equal-width bins per code
SWAP_PAIRS = 500  # pairs of the swap test (fewer when the test set has fewer than 2·500 items)
EVAL_SEED = 123  # the fixed permutation of the test set every evaluation reads

# Supplement Table 1 (MNIST): d = 2 + 2, the whole frame, the paper's net sizes.
MNIST_VITAE = {"persp_dim": 2, "app_dim": 2, "canonical_fraction": 1.0, "app_width": 1}
# Shapes: the paper's VITAE as it is (supplement Table 1: d = 2 per latent group; §2: the appearance
# decoder draws the whole frame), on dSprites. Until issue 24 this was ours: a 6-D z_persp and a
# 12-pixel canonical window zero-padded to 32 px (canonical_fraction 0.4), so that the appearance
# path could not place a sprite. The remaining deviation: a 2-D z_persp for dSprites' 4 pose factors.
SHAPES_VITAE = dict(MNIST_VITAE)


def load_split(data_root, resolution: int, n_train: int, n_test: int):
    """(train, test, simulator): MNIST's own split when ``data_root`` is given, else dSprites.

    dSprites items are drawn once from a seeded train/test split of the factor grid and rendered
    into memory (rendering in large batches is ~50× cheaper per item than per training batch).
    """
    if data_root is not None:
        return ppl_data.mnist(data_root, split="train"), ppl_data.mnist(data_root, split="test"), None
    sim = ppl_data.DSprites(resolution=resolution)
    train, test = sim.split(test_fraction=0.05, seed=0)
    gen = torch.Generator().manual_seed(0)
    pools = []
    for part, n in ((train, n_train), (test, n_test)):
        index = torch.randperm(len(part), generator=gen)[:n]
        xs, fs = encode_batched(part.batch, index, 5000)
        pools.append(ppl_data.TensorData((xs * 255).to(torch.uint8), fs,
                                         sim.factor_names, sim.factor_sizes, name="dsprites"))
    return pools[0], pools[1], sim


def eval_index(data, n: int) -> torch.Tensor:
    """The first ``n`` items of a fixed permutation of ``data`` (seeded, the same every call)."""
    return torch.randperm(len(data), generator=torch.Generator().manual_seed(EVAL_SEED))[:n]


def eval_batches(data, n: int, batch: int, device):
    """The items of :func:`eval_index` in batches ``(x, factors)``."""
    perm = eval_index(data, n)
    for i in range(0, len(perm), batch):
        yield data.batch(perm[i:i + batch], device=device)


@torch.no_grad()
def test_elbo(model, guide, data, n: int, device, batch: int = 500) -> dict:
    """Per-item test ELBO, reconstruction and KL (one-sample estimate, batch = whole plate)."""
    elbo, sums, count = TermsELBO(), {}, 0
    for x, _ in eval_batches(data, n, batch, device):
        elbo.differentiable_loss(model, guide, x)
        for k, v in elbo.terms.items():
            sums[k] = sums.get(k, 0.0) + float(v) * len(x)
        count += len(x)
    out = {k: v / count for k, v in sums.items()}
    return {"elbo": -out["loss"], "recon": out["recon"], **{k: v for k, v in out.items() if k.startswith("kl")}}


def codes_and_factors(guide, data, n: int, device, batch: int = 500):
    """``({site: posterior mean (n, d)}, factors (n, K))`` on the CPU for the items of :func:`eval_index`."""
    def chunk(index):
        x, f = data.batch(index, device=device)
        return {site: loc.cpu() for site, (loc, _) in guide.posterior(x).items()}, f.cpu()
    return encode_batched(chunk, eval_index(data, n), batch)


def disentanglement(guide, data, n: int, device) -> dict:
    """Normalised MI (MI / H(factor)) of each latent group's best dimension with each factor, and MIG.

    ``nmi[site][factor]``: the best dimension of the group; ``nmi_matrix[site]``: (dims, factors);
    ``mig[factor]``: the normalised gap between the two most informative dimensions of all groups
    (:func:`inference.metrics.mig_terms`); ``mig_mean`` their mean (``inference.metrics.mig``);
    ``mig_perspective`` / ``mig_appearance``: the mean over the pose / the appearance factors.
    """
    codes, factors = codes_and_factors(guide, data, n, device)
    names = list(data.factor_names)
    all_codes = torch.cat(list(codes.values()), 1)
    with np.errstate(divide="ignore", invalid="ignore"):  # a constant factor: NMI undefined (NaN)
        nmi = torch.from_numpy(mutual_info_matrix(all_codes, factors, MI_BINS) / discrete_entropy(factors))
    gaps, h = (torch.from_numpy(a) for a in mig_terms(all_codes, factors, MI_BINS))
    out, start = {"nmi": {}, "nmi_matrix": {}}, 0
    for site, c in codes.items():
        block = nmi[start:start + c.shape[1]]
        start += c.shape[1]
        out["nmi"][site] = {names[k]: float(block[:, k].max()) for k in range(len(names))}
        out["nmi_matrix"][site] = [[round(float(v), 4) for v in row] for row in block]  # (dims, factors)
    out["mig"] = {names[k]: float(gaps[k]) for k in range(len(names))}
    out["mig_mean"] = float(gaps[h > 0].mean()) if (h > 0).any() else float("nan")
    persp = [names.index(f) for f in PERSPECTIVE_FACTORS if f in names]
    app = [names.index(f) for f in APPEARANCE_FACTORS if f in names]
    out["mig_perspective"] = float(gaps[persp].mean()) if persp else float("nan")
    out["mig_appearance"] = float(gaps[app].mean()) if app else float("nan")
    return out


def centroids(images: torch.Tensor) -> torch.Tensor:
    """Mass-weighted (x, y) pixel centroid of each image ``(N, 1, H, W)``."""
    h, w = images.shape[-2:]
    mass = images.flatten(1).sum(1).clamp_min(1e-6)
    ys = torch.arange(h, dtype=images.dtype, device=images.device)
    xs = torch.arange(w, dtype=images.dtype, device=images.device)
    cx = (images[:, 0].sum(1) * xs).sum(1) / mass
    cy = (images[:, 0].sum(2) * ys).sum(1) / mass
    return torch.stack([cx, cy], 1)


def centred(images: torch.Tensor) -> torch.Tensor:
    """Each image ``(N, 1, H, W)`` shifted (bilinear) so that its pixel centroid sits at the centre."""
    n, _, h, w = images.shape
    c = centroids(images)
    shift = torch.stack([(2 * c[:, 0] + 1) / w - 1, (2 * c[:, 1] + 1) / h - 1], 1)  # grid_sample frame
    eye = torch.eye(2, dtype=images.dtype, device=images.device).expand(n, 2, 2)
    grid = F.affine_grid(torch.cat([eye, shift[:, :, None]], 2), images.shape, align_corners=False)
    return F.grid_sample(images, grid, align_corners=False)


class ShapeReader:
    """Nearest-template shape classifier, blind to pose: an image and every sprite (each shape, scale
    and orientation, drawn at the centre) are centred on their centroids; the shape of the nearest
    template in squared pixel distance is the image's shape."""

    def __init__(self, sim, device, batch: int = 256):
        names = list(sim.factor_names)
        grid = torch.cartesian_prod(*(torch.arange(sim.factor_sizes[names.index(k)])
                                      for k in ("shape", "scale", "orientation")))
        f = torch.zeros(len(grid), len(names), dtype=torch.long)
        for col, k in enumerate(("shape", "scale", "orientation")):
            f[:, names.index(k)] = grid[:, col]
        for k in ("pos_x", "pos_y"):
            f[:, names.index(k)] = sim.factor_sizes[names.index(k)] // 2
        self.templates = centred(sim.images(f.to(device))).flatten(1)
        self.shapes, self.batch = f[:, names.index("shape")].to(device), batch

    def read(self, images: torch.Tensor) -> torch.Tensor:
        """Shapes of a chunk of images: the nearest template's."""
        a = centred(images.to(self.templates.dtype)).flatten(1)
        d = a.square().sum(1, keepdim=True) - 2 * a @ self.templates.T + self.templates.square().sum(1)
        return self.shapes[d.argmin(1)]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return encode_batched(self.read, images, self.batch)


def normalised_mi(codes, factor, num_bins: int = MI_BINS) -> np.ndarray:
    """``(D,)``: I(code_d; factor) / H(factor) for each dimension of ``codes`` ``(N, D)``, the code
    discretised into ``num_bins`` equal-width bins and the MI a plug-in estimate
    (:func:`inference.metrics.mutual_info_matrix`, as :func:`disentanglement` computes it)."""
    h = discrete_entropy(factor)
    return mutual_info_matrix(codes, factor, num_bins)[:, 0] / h[0]


def confusion(true, read, k: int) -> list:
    """``k × k`` counts, row = the true class, column = the class the reader gave (no loop over items)."""
    true, read = torch.as_tensor(true).long().flatten().cpu(), torch.as_tensor(read).long().flatten().cpu()
    counts = torch.bincount(true * k + read, minlength=k * k).reshape(k, k)
    return counts.tolist()


def reading(read, true, k: int) -> dict:
    """The reader's accuracy on a set of images of known shape, and its confusion matrix."""
    read, true = torch.as_tensor(read).flatten(), torch.as_tensor(true).flatten().to(read.device)
    return {"accuracy": float((read == true).float().mean()), "confusion": confusion(true, read, k)}


@torch.no_grad()
def reconstruction_reading(model, guide, data, n: int, device, sim) -> dict:
    """The shape reader on ``n`` test items' reconstructions (decode of the posterior means, every site
    in the guide's order): ``recon_shape_kept`` (accuracy), ``recon_confusion`` (true × read counts),
    ``data_shape_read`` (the reader on the items themselves, its ceiling) and ``data_confusion``.
    The same for any model with ``decode(z)``: a plain VAE's reconstructions are the control."""
    x, f = data.batch(eval_index(data, n), device=device)
    s, read = list(data.factor_names).index("shape"), ShapeReader(sim, device)
    z = torch.cat([loc for loc, _ in guide.posterior(x).values()], -1)
    k = sim.factor_sizes[s]
    on_recon, on_data = reading(read(model.decode(z)), f[:, s], k), reading(read(x), f[:, s], k)
    return {"recon_shape_kept": on_recon["accuracy"], "recon_confusion": on_recon["confusion"],
            "data_shape_read": on_data["accuracy"], "data_confusion": on_data["confusion"]}


def swap_scores(swapped, x1, x2, out_shape=None, app_shape=None, pose_shape=None) -> dict:
    """Scores of ``swapped`` = decode(z_persp(x2), z_app(x1)) against its two donors.

    Position: each output's pixel centroid against the pose donor's (x2) and the appearance donor's
    (x1); ``closer_to_pose_donor`` is the fraction of pairs nearer x2. Shape (``out_shape``: the
    outputs' shapes as read by :class:`ShapeReader`): over the pairs whose shapes differ,
    ``shape_kept`` is the fraction equal to x1's shape ``app_shape``, ``shape_from_pose_donor`` the
    fraction equal to x2's ``pose_shape`` (shape leaking through z_persp).
    """
    c_out, c1, c2 = centroids(swapped), centroids(x1), centroids(x2)
    d2, d1 = (c_out - c2).norm(dim=1), (c_out - c1).norm(dim=1)
    res = {"centroid_px_to_pose_donor": float(d2.mean()), "centroid_px_to_app_donor": float(d1.mean()),
           "centroid_px_donors_apart": float((c1 - c2).norm(dim=1).mean()),
           "closer_to_pose_donor": float((d2 < d1).float().mean())}
    if out_shape is not None:
        differ = app_shape != pose_shape
        res["shape_kept"] = float((out_shape == app_shape)[differ].float().mean())
        res["shape_from_pose_donor"] = float((out_shape == pose_shape)[differ].float().mean())
        res["shape_pairs"] = int(differ.sum())
    return res


@torch.no_grad()
def swap_test(model, guide, data, n: int, device, out_png=None, sim=None) -> dict:
    """decode(z_persp(x2), z_app(x1)) for ``n`` test pairs: at x2's position, with x1's shape?

    ``recon_shape_kept``: the shape reader on x1's own reconstruction (the model's shape fidelity,
    the ceiling for ``shape_kept``), ``recon_confusion`` its true × read counts; ``data_shape_read``
    and ``data_confusion``: the reader on x1 itself (its own ceiling). x1 are the items of
    :func:`reconstruction_reading` with the same ``n``.
    """
    x, f = data.batch(eval_index(data, 2 * n), device=device)
    x1, x2, f1, f2 = x[:n], x[n:], f[:n], f[n:]
    p1, p2 = guide.posterior(x1), guide.posterior(x2)
    swapped = model.decode_parts(p2["z_persp"][0], p1["z_app"][0])
    names = list(getattr(data, "factor_names", ()))
    if "shape" in names and sim is not None:
        s, read = names.index("shape"), ShapeReader(sim, device)
        res = swap_scores(swapped, x1, x2, read(swapped), f1[:, s].to(device), f2[:, s].to(device))
        recon = model.decode_parts(p1["z_persp"][0], p1["z_app"][0])
        k = sim.factor_sizes[s]
        on_recon, on_data = reading(read(recon), f1[:, s], k), reading(read(x1), f1[:, s], k)
        res.update(recon_shape_kept=on_recon["accuracy"], recon_confusion=on_recon["confusion"],
                   data_shape_read=on_data["accuracy"], data_confusion=on_data["confusion"])
    else:
        res = swap_scores(swapped, x1, x2)
    res["pairs"] = n
    if out_png is not None:
        k = min(8, n)
        canon = model.canonical(p1["z_app"][0][:k])
        save_grid(torch.cat([x1[:k], x2[:k], swapped[:k], canon]), out_png, nrow=k)
    return res


# == experiments ==================================================================================
def _settings(quick: dict, paper: dict, is_quick: bool, overrides: dict) -> dict:
    """The quick or paper settings, the non-None ``overrides`` applied, warm-up = half the steps."""
    s = dict(quick if is_quick else paper)
    s.update({k: v for k, v in overrides.items() if v is not None})
    s["warmup_steps"] = s["steps"] // 2  # supplement §2: KL warm-up over half the training
    return s


def _prepare(out, data_root, s: dict):
    """Check ``out`` (a new or empty folder), load the data, check the batch size, create ``out``."""
    out = check_output_dir(out)
    train_data, test_data, sim = load_split(data_root, s["resolution"], s["n_train"], s["n_eval"])
    check_batch_size(s["batch_size"], len(train_data), "MNIST train" if data_root else "dSprites train pool")
    out.mkdir(parents=True, exist_ok=True)
    return out, train_data, test_data, sim


def train_model(run_dir, model_key: str, overrides: dict, train_data, s: dict, device, seed: int,
                log_every: int = 50):
    """``(model, guide, seconds)``: the catalog's ``model_key`` trained with the settings ``s``
    (``steps``, ``batch_size``, ``lr``, ``warmup_steps``) from ``seed``, in eval mode."""
    cfg = resolve_config(model_key, overrides)
    pyro.set_rng_seed(seed)
    model, guide, loss = build(cfg, train_data.data_shape, len(train_data))
    t0 = time.time()
    fit(model, guide, loss, train_data, steps=s["steps"], out_dir=run_dir, batch_size=s["batch_size"],
        lr=s["lr"], warmup_steps=s["warmup_steps"], seed=seed, log_every=log_every,
        checkpoint_every=max(500, s["steps"]), device=device, config=cfg, progress=False)
    model.eval()
    guide.eval()
    return model, guide, time.time() - t0


# Quick CPU setting (ours): 10⁴ steps at a higher learning rate than the paper.
EXPERIMENT_QUICK = dict(steps=10000, batch_size=64, lr=1e-3, resolution=32, n_eval=3000, n_train=40000)
# Supplement §2: lr 1e-4, batch 512, 2000 epochs of MNIST (60k items), warm-up = half.
EXPERIMENT_PAPER = dict(steps=2000 * math.ceil(60000 / 512), batch_size=512, lr=1e-4, resolution=64,
                        n_eval=10000, n_train=200000)


def run_vitae_experiment(out, *, quick: bool = False, data_root=None, steps=None, batch_size=None, lr=None,
                         persp_dim=None, app_dim=None, canonical_fraction=None, app_width=None,
                         transformer: str = "affine_diffeo", seed: int = 0, device=None, n_train=None,
                         n_eval=None) -> dict:
    """U-VITAE vs C-VITAE vs a VAE of the same latent size, trained alike; returns ``results.json``.

    Without ``data_root`` the data are procedural dSprites (pose factors = perspective, shape =
    appearance) and VITAE gets ``SHAPES_VITAE``; with an MNIST folder, ``MNIST_VITAE``. The VITAE
    keys given here (``persp_dim`` ...) override those. Writes under ``out`` (a new or empty folder)
    ``results.json``, ``table.md``, ``swap_<model>.png`` (rows: appearance donors x1, perspective
    donors x2, decode(z_persp(x2), z_app(x1)), canonical appearance of x1), ``recon_<model>.png``
    and one run folder per model.
    """
    options = dict(out=str(out), quick=quick, data_root=data_root, steps=steps, batch_size=batch_size, lr=lr,
                   persp_dim=persp_dim, app_dim=app_dim, canonical_fraction=canonical_fraction,
                   app_width=app_width, transformer=transformer, seed=seed, device=device)
    s = _settings(EXPERIMENT_QUICK, EXPERIMENT_PAPER, quick,
                  dict(steps=steps, batch_size=batch_size, lr=lr, n_train=n_train, n_eval=n_eval))
    device = torch.device(device or default_device())
    out, train_data, test_data, sim = _prepare(out, data_root, s)
    vitae = dict(MNIST_VITAE if data_root is not None else SHAPES_VITAE, transformer=transformer)
    vitae.update({k: v for k, v in dict(persp_dim=persp_dim, app_dim=app_dim, app_width=app_width,
                                         canonical_fraction=canonical_fraction).items() if v is not None})
    d = vitae["persp_dim"] + vitae["app_dim"]
    runs = [("vae", "vae", {"latent_dim": d, "net": "mlp"}),  # supplement Table 1 MLP, same latent size
            ("u_vitae", "vitae_u", vitae), ("c_vitae", "vitae_c", vitae)]
    results = {"settings": {**s, **options, "vitae": vitae}, "models": {}}
    for name, key, overrides in runs:
        model, guide, seconds = train_model(out / name, key, overrides, train_data, s, device, seed)
        r = {"train_seconds": seconds, **test_elbo(model, guide, test_data, s["n_eval"], device)}
        if test_data.has_factors:
            r.update(disentanglement(guide, test_data, s["n_eval"], device))
        pairs = min(SWAP_PAIRS, len(test_data) // 2)
        if name != "vae":
            r["swap"] = swap_test(model, guide, test_data, pairs, device, out / f"swap_{name}.png", sim)
        elif sim is not None:  # the control: a plain VAE's reconstructions of the same x1, the same reader
            r["swap"] = reconstruction_reading(model, guide, test_data, pairs, device, sim)
            r["swap"]["pairs"] = pairs
        x, _ = next(eval_batches(test_data, 8, 8, device))
        z = torch.cat([loc for loc, _ in guide.posterior(x).values()], -1)  # sites in posterior order
        save_grid(torch.cat([x, model.decode(z)]), out / f"recon_{name}.png", nrow=8)
        results["models"][name] = r
        print(f"{name}: {json.dumps({k: v for k, v in r.items() if not isinstance(v, dict)})}", flush=True)
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    table = render_table(results["models"], test_data)
    atomic_write_text(out / "table.md", table)
    print(table)
    return results


def render_table(models: dict, data) -> str:
    """``table.md`` of :func:`run_vitae_experiment`: ELBO, normalised MI / MIG, swap test."""
    lines = ["| model | test ELBO | recon | KL | train s |", "|---|---|---|---|---|"]
    for name, r in models.items():
        lines.append(f"| {name} | {r['elbo']:.2f} | {r['recon']:.2f} | {r['kl']:.2f} | {r['train_seconds']:.0f} |")
    if data.has_factors and "nmi" in next(iter(models.values())):
        names = list(data.factor_names)
        lines += ["", "Normalised MI (best dimension of the group) / MIG per factor:", "",
                  "| model | group | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        for name, r in models.items():
            for site, row in r["nmi"].items():
                lines.append(f"| {name} | {site} | " + " | ".join(f"{row[f]:.3f}" for f in names) + " |")
            lines.append(f"| {name} | MIG | " + " | ".join(f"{r['mig'][f]:.3f}" for f in names) + " |")
    swaps = {k: r["swap"] for k, r in models.items() if "swap" in r}
    if swaps:
        pairs = next(iter(swaps.values()))["pairs"]
        lines += ["", f"Swap test ({pairs} pairs): decode(z_persp(x2), z_app(x1)); shape read by the pose-blind "
                  "nearest-template reader, over pairs of different shapes (chance 1/3); recon = the "
                  "reader's accuracy on x1's own reconstruction, data = on x1 itself:", "",
                  "| model | centroid → pose donor (px) | → app donor (px) | donors apart (px) | "
                  "closer to pose donor | shape kept | shape of pose donor | recon shape | data shape |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, r in swaps.items():
            if "closer_to_pose_donor" not in r:  # the VAE control: its reconstructions only
                lines.append(f"| {name} (control) | – | – | – | – | – | – | {r['recon_shape_kept']:.3f} | "
                             f"{r['data_shape_read']:.3f} |")
                continue
            kept = (f"{r['shape_kept']:.3f} ({r['shape_pairs']} pairs) | {r['shape_from_pose_donor']:.3f} | "
                    f"{r['recon_shape_kept']:.3f} | {r['data_shape_read']:.3f}" if "shape_kept" in r
                    else "n/a | n/a | n/a | n/a")
            lines.append(f"| {name} | {r['centroid_px_to_pose_donor']:.2f} | {r['centroid_px_to_app_donor']:.2f} | "
                         f"{r['centroid_px_donors_apart']:.2f} | {r['closer_to_pose_donor']:.3f} | {kept} |")
    return "\n".join(lines) + "\n"


# -- supplement §3, Fig. 1: stability against the learning rate ----------------------------------
LEARNING_RATES = (1e-4, 1e-3, 1e-2, 1e-1)  # supplement §3
PAPER_TRANSFORMERS = ("affine", "affine_decomp", "affine_diffeo")  # supplement §3, eqs. (1)-(3) (ours: around I)
#: The study's two arms: (the transformers of eqs. (1), (2), (3), how the θ head starts).
STABILITY_ARMS = {
    # Supplement §3, eqs. (1)-(3) as written ([A | b] = θ; raw scales; expm), the θ head's last layer
    # PyTorch's default init: eqs. (1)-(2) start near the degenerate A ≈ 0, eq. (3) near expm(0) = I.
    "literal": (("affine_literal", "affine_decomp_literal", "affine_diffeo"), "default"),
    # Ours, kept as an ablation: eqs. (1)-(2) written around the identity (I + θ, 1 + θ) and every θ
    # head starting at its identity (weight 0), so all three start at T = id.
    "identity": (PAPER_TRANSFORMERS, "identity"),
}
#: Each transformer's equation in the supplement (§3).
EQUATION = {"affine": "eq. (1)", "affine_literal": "eq. (1)", "affine_decomp": "eq. (2)",
            "affine_decomp_literal": "eq. (2)", "affine_decomp_pos": "eq. (2), s = exp θ (ours)",
            "affine_diffeo": "eq. (3)", "cpab": "CPAB"}
# Ours, CPU; the learning rate is the study's variable. 10,000 steps, chosen by the pilot of issue 24
# (results/vitae_stability_pilot.json: seed 0, λ = 1e-2 and 1e-1, eq. (1) literal against eq. (3), 10,000
# steps): what diverged did so at once (eq. 3 at λ = 1e-1: NaN at step 4; eq. 1: collapsed by step 100),
# and at λ = 1e-2 both trained through the KL warm-up (5,000) and 5,000 steps at full weight, eq. (1)
# with a late transient (training loss 43 at step 7,900 against ~26) that 1,000 steps could not show.
# ~12 ms of one core a step: ~2 CPU-minutes a run. The paper's 60,000 (Fig. 1) runs at the gpu budget.
STABILITY_QUICK = dict(steps=10_000, batch_size=64, resolution=32, n_eval=2000, n_train=20000)
# Supplement §3: C-VITAE, Table 1 nets, batch 512, MNIST; 6·10⁴ iterations in Fig. 1 (bottom).
STABILITY_PAPER = dict(steps=60000, batch_size=512, resolution=64, n_eval=10000, n_train=200000)
TRAJECTORY_POINTS = 50  # training-loss points a stability row keeps (the last one included)


def thinned(rows: list, points: int = TRAJECTORY_POINTS) -> dict:
    """``{"step": [...], "loss": [...]}`` of metrics.jsonl rows, at most ``points`` of them, the last kept."""
    stride = max(1, math.ceil(len(rows) / points))
    kept = rows[::stride] + ([rows[-1]] if rows and (len(rows) - 1) % stride else [])
    return {"step": [r["step"] for r in kept], "loss": [round(r["loss"], 3) for r in kept]}


def _trajectory(run_dir: Path) -> dict:
    path = Path(run_dir) / "metrics.jsonl"
    rows = []
    for line in path.read_text().splitlines() if path.is_file() else ():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "step" in row and "loss" in row:
            rows.append(row)
    return thinned(rows)


def stability_run(name: str, lr: float, run_dir, train_data, test_data, s: dict, device, seed: int,
                  persp_init: str = "identity") -> dict:
    """One C-VITAE with transformer ``name`` (its θ head started as ``persp_init``) at learning rate
    ``lr``: its test ELBO, or the step where it diverged, and its training loss over the steps.

    A run whose loss turned non-finite (``diverged_at``: that step), whose A had no inverse (LAPACK
    refused), or (CPAB) whose integrator got NaN θ counts as diverged (``elbo`` None). Whether it
    *trained* is judged against the other learning rates (:func:`mark_trained`).
    """
    t0 = time.time()
    row = {"lr": lr, "transformer": name, "persp_init": persp_init, "elbo": None, "diverged_at": None}
    try:
        model, guide, _ = train_model(run_dir, "vitae_c", {"transformer": name, "persp_init": persp_init},
                                      train_data, {**s, "lr": lr}, device, seed,
                                      log_every=max(25, s["steps"] // (4 * TRAJECTORY_POINTS)))
        ev = test_elbo(model, guide, test_data, s["n_eval"], device)
        row["elbo"] = ev["elbo"] if math.isfinite(ev["elbo"]) else None
    except NonFiniteLossError as err:
        row["diverged_at"] = err.step
    except torch.linalg.LinAlgError as err:
        # eq. (1)'s A inverted by torch.linalg.inv (the C-VITAE guide's T⁻¹) hit exactly singular.
        row["diverged_at"], row["error"] = "?, singular A", str(err)
    except IndexError as err:
        # libcpab's expm indexes by a squaring count computed from ‖θ‖: NaN θ raises here.
        if name != "cpab":
            raise
        row["diverged_at"], row["error"] = "?, CPAB integrator got NaN θ", str(err)
    row["trajectory"] = _trajectory(run_dir)
    row["seconds"] = time.time() - t0
    return row


def mark_trained(rows: list) -> list:
    """Sets ``trained`` on the rows of one transformer and seed (one per learning rate), the rule of the
    stability study (supplement §3, Fig. 1: "missing values indicate that the network diverged").

    The reference is the run at the smallest learning rate (the supplement's λ = 10⁻⁴, "to make sure
    all transformer types would converge"): it trained if its test ELBO is finite. Any other run
    trained if its test ELBO is finite and no worse than the reference's: a run that diverged may
    end finite (a collapsed or saturated decoder) and then ends below the slowest run, whatever its
    sign. When the reference did not train, a finite ELBO is all a run needs.
    """
    ref = min(rows, key=lambda r: r["lr"])
    floor = ref["elbo"] if ref["elbo"] is not None and math.isfinite(ref["elbo"]) else None
    for r in rows:
        finite = r["elbo"] is not None and math.isfinite(r["elbo"])
        r["trained"] = bool(finite and (r is ref or floor is None or r["elbo"] >= floor))
    return rows


def largest_trained_lr(rows: list) -> float:
    """The largest learning rate at which a transformer trained (rows of one transformer and seed, each
    with ``trained``); one step of the grid below its smallest (λ_min / 10) when none did."""
    ok = [r["lr"] for r in rows if r["trained"]]
    return max(ok) if ok else min(r["lr"] for r in rows) / 10


def run_stability_study(out, *, quick: bool = False, data_root=None, steps=None, arm: str = "literal",
                        transformers=None, lrs=LEARNING_RATES, seed: int = 0, device=None,
                        n_train=None, n_eval=None) -> dict:
    """For each transformer of ``arm`` (:data:`STABILITY_ARMS`) and learning rate, a C-VITAE from the
    same seed; the test ELBO it reaches, whether it trained (:func:`mark_trained`), where it diverged.

    ``arm``: "literal" (supplement eqs. (1)-(3) as written, θ head default-initialised; the paper) or
    "identity" (ours, the ablation: every transformer starts at the identity). ``transformers``
    replaces the arm's (its ``persp_init`` kept). Writes ``results.json``, ``table.md`` (rows:
    transformers, columns: learning rates) and ``stability.png`` (ELBO vs λ, log axis; runs that did
    not train left out of the line, as in the paper). Returns ``{transformer: [row per learning rate]}``.
    """
    if arm not in STABILITY_ARMS:
        raise ConfigError(f"arm must be one of {', '.join(STABILITY_ARMS)}, got {arm!r}")
    arm_transformers, persp_init = STABILITY_ARMS[arm]
    transformers, lrs = list(transformers or arm_transformers), list(lrs)
    options = dict(out=str(out), quick=quick, data_root=data_root, steps=steps, arm=arm, persp_init=persp_init,
                   transformers=transformers, lrs=lrs, seed=seed, device=device)
    s = _settings(STABILITY_QUICK, STABILITY_PAPER, quick, dict(steps=steps, n_train=n_train, n_eval=n_eval))
    device = torch.device(device or default_device())
    out, train_data, test_data, _ = _prepare(out, data_root, s)
    results = {}
    for name in transformers:
        results[name] = []
        for lr in lrs:
            row = stability_run(name, lr, out / f"{name}_{persp_init}_lr{lr:g}", train_data, test_data, s, device,
                                seed, persp_init)
            results[name].append(row)
            print(f"{name} ({persp_init} start) lr={lr:g}: "
                  f"{ {k: v for k, v in row.items() if k != 'trajectory'} }", flush=True)
        mark_trained(results[name])
    atomic_write_text(out / "results.json", json.dumps({"settings": {**s, **options}, "results": results},
                                                 indent=2) + "\n")
    table = stability_table(results, lrs)
    atomic_write_text(out / "table.md", table)
    plot_stability(results, out / "stability.png")
    print(table)
    return results


def stability_table(results: dict, lrs) -> str:
    """Markdown: one row per transformer, one column per learning rate (ELBO, or why it did not train)."""
    def cell(r):
        if r["elbo"] is None:
            return f"diverged (step {r['diverged_at']})"
        return f"{r['elbo']:.2f}" + ("" if r.get("trained", True) else " (did not train)")
    lines = ["| transformer | " + " | ".join(f"λ={lr:g}" for lr in lrs) + " |", "|---|" + "---|" * len(lrs)]
    for name, rows in results.items():
        lines.append(f"| {name} | " + " | ".join(cell(r) for r in rows) + " |")
    return "\n".join(lines) + "\n"


def plot_stability(results: dict, path: Path) -> None:
    """ELBO against the learning rate (log axis), one line per transformer, diverged runs left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, rows in results.items():
        kept = [r for r in rows if r["elbo"] is not None and r.get("trained", True)]
        ax.plot([r["lr"] for r in kept], [r["elbo"] for r in kept], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("test ELBO")
    ax.set_title("C-VITAE: ELBO vs learning rate (missing = did not train)")
    ax.legend()
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=120)
    plt.close(fig)
