"""dpVAE (Bhalodia, Lee, Elhabian 2020): LP-Gen and the experiments behind its tables.

The decoupled flow prior itself is a prior of the generative story (:mod:`ppl_models.priors`,
:mod:`ppl_models.flows`; ``prior="flow"`` on any catalog model), so this module holds what is
particular to the paper's evaluation:

* **LP-Gen** (low-posterior sampling, §4.1), :func:`inference.lp_gen.low_posterior_samples`
  (generic over any pair, so it lives below the papers; re-exported here): draw many codes from
  the prior, score each under the aggregate posterior q(z) = (1/N) Σₙ q(z | xₙ) of the training
  data, keep the lowest-scoring fraction and decode it. Those codes lie in the "pockets" that a
  regularised VAE's decoder never saw in training; the dpVAE claim is that with the decoupled prior
  even they decode to data-like samples.
* :func:`run_two_moons` (``scripts/dpvae_two_moons.py``): the two-moons toy, a β-VAE with and
  without the decoupled prior, side by side.
* :func:`run_dpvae_comparison` (``scripts/dpvae_compare.py``): every regularised ELBO of the
  family with and without the decoupled prior on the shapes, same seeds (supplement Table 2, §5).

References: Bhalodia, Lee, Elhabian. dpVAEs: Fixing Sample Generation for Regularized VAEs.
ACCV 2020, §4.1 (LP-Gen), supplement §3 and Tables 1-2.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

import ppl_data
from guides.nets import MLPEncoder
from guides.vae import VAEGuide
from ppl_models.likelihoods import GaussianLikelihood
from ppl_models.nets import MLPDecoder
from ppl_models.priors import make_prior
from ppl_models.vae import VAEModel

from .. import metrics as M
from ..checkpoint import atomic_save_figure, atomic_write_text
from ..cli import check_output_dir
from ..elbo import TermsELBO
from ..errors import ConfigError
from ..fid import feature_net, fid_kid
from ..metrics.reconstruction import reconstruction_error
from ..pictures import prior_samples, save_grid
from ..lp_gen import LowPosteriorSamples, aggregate_log_density, encode_posterior, low_posterior_samples  # noqa: F401
from ..svi import fit


# == the two-moons toy (supplement §3) ==============================================================
# dpVAE supplement: lr 1e-4, 100,000 iterations, β = 4 (Table 1); batch 100 as for MNIST. The data:
# 10,000 points of two moons with noise 0.05 (ours).
TWO_MOONS_PAPER = dict(steps=100_000, lr=1e-4, batch_size=100, beta=4.0, points=10_000)
TWO_MOONS_QUICK = dict(steps=4000, lr=1e-3, batch_size=100, beta=4.0, points=10_000)
ON_MANIFOLD = 0.02  # a decoded sample within this distance (unit square) of a data point is "on" it


def two_moons_pair(prior_kind: str, dataset_size: int, obs_scale: float):
    """The toy's β-VAE: encoder 100-50, decoder mirrored, 2-D latent (supplement §3), ``prior_kind`` prior."""
    encoder = MLPEncoder((2,), 2, hidden=(100, 50))
    decoder = MLPDecoder(2, (2,), hidden=(50, 100))
    model = VAEModel(decoder, 2, dataset_size=dataset_size, likelihood=GaussianLikelihood(obs_scale),
                     prior=make_prior(prior_kind, 2))
    return model, VAEGuide(encoder, dataset_size=dataset_size)


@torch.no_grad()
def nearest_distance(samples: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """Distance of each sample to its nearest data point."""
    return torch.cdist(samples, data).min(dim=1).values


@torch.no_grad()
def evaluate_two_moons(model, guide, data, seed: int) -> dict:
    """How close decoded prior and LP-Gen samples fall to the data; keys ``_*`` hold the points drawn."""
    x, _ = data.all()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        z = model.sample_prior(2000)
    decoded = model.decode(z)
    lp = low_posterior_samples(model, guide, data, num_samples=5000, fraction=0.05, num_data=len(data), seed=seed)
    lp_decoded = model.decode(lp.z)
    d_prior, d_lp = nearest_distance(decoded, x), nearest_distance(lp_decoded, x)
    loc, _ = encode_posterior(guide, data)
    recon = (model.decode(loc) - x).pow(2).sum(1).mean()
    return {
        "prior_mean_nn_distance": float(d_prior.mean()),
        "prior_on_manifold": float((d_prior < ON_MANIFOLD).float().mean()),
        "lpgen_mean_nn_distance": float(d_lp.mean()),
        "lpgen_on_manifold": float((d_lp < ON_MANIFOLD).float().mean()),
        "recon_mse": float(recon),
        "_z": z, "_decoded": decoded, "_lp": lp_decoded, "_lpz": lp.z, "_loc": loc,
    }


def draw_two_moons(results: dict, data, path: Path) -> None:
    """Rows: the two priors; columns: latent space, decoded prior samples, decoded LP-Gen samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, f = data.all()
    fig, axes = plt.subplots(2, 3, figsize=(12, 8))
    for row, (name, r) in enumerate(results.items()):
        ax = axes[row, 0]
        ax.scatter(*r["_z"][:1000].T, s=2, c="lightgrey", label="prior draws")
        ax.scatter(*r["_loc"].T, s=2, c=f[:, 0], cmap="coolwarm", label="posterior means")
        ax.scatter(*r["_lpz"].T, s=6, c="k", marker="x", label="LP-Gen codes")
        ax.set_title(f"{name}: latent space")
        ax.legend(loc="upper right", fontsize=7, markerscale=3)
        for col, key, title in ((1, "_decoded", "decoded prior samples"), (2, "_lp", "decoded LP-Gen samples")):
            ax = axes[row, col]
            ax.scatter(*x.T, s=1, c="lightgrey")
            ax.scatter(*r[key].T, s=3, c="tab:green" if col == 1 else "tab:red")
            on = r["prior_on_manifold" if col == 1 else "lpgen_on_manifold"]
            ax.set_title(f"{name}: {title}\n({100 * on:.0f}% within {ON_MANIFOLD} of data)", fontsize=9)
            ax.set_xlim(0, 1), ax.set_ylim(0, 1)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=110)
    plt.close(fig)


def run_two_moons(out, *, quick: bool = False, steps=None, seed: int = 0, obs_scale: float = 0.03,
                  device="cpu") -> list[dict]:
    """A β-VAE with the standard-Normal and with the decoupled prior on two moons, same seed and budget.

    Writes under ``out`` (a new or empty folder) ``two_moons.png``, ``results.md`` and
    ``results.json`` (one row per prior), and one run folder per prior; returns the rows. The
    settings are ``TWO_MOONS_QUICK`` or ``TWO_MOONS_PAPER`` (``steps`` overridden when given).
    """
    settings = dict(TWO_MOONS_QUICK if quick else TWO_MOONS_PAPER)
    if steps:
        settings["steps"] = steps
    out = check_output_dir(out)
    data = ppl_data.load("two_moons", n=settings["points"], noise=0.05, seed=seed)
    results, rows = {}, []
    for prior in ("normal", "flow"):
        name = "β-VAE" if prior == "normal" else "β-dpVAE"
        torch.manual_seed(seed)
        model, guide = two_moons_pair(prior, len(data), obs_scale)
        t = time.perf_counter()
        fit(model, guide, TermsELBO(kl_scale=settings["beta"]), data, steps=settings["steps"],
            batch_size=settings["batch_size"], lr=settings["lr"], seed=seed, out_dir=out / prior,
            device=device, config={"model": name, "prior": prior, **settings})
        seconds = time.perf_counter() - t
        model.eval(), guide.eval()
        r = evaluate_two_moons(model.cpu(), guide.cpu(), data, seed)
        r["train_seconds"] = seconds
        results[name] = r
        rows.append({"model": name, **{k: v for k, v in r.items() if not k.startswith("_")}})
    draw_two_moons(results, data, out / "two_moons.png")
    lines = ["| model | recon MSE | prior: mean NN dist | prior: on data | LP-Gen: mean NN dist | LP-Gen: on data "
             "| train s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['recon_mse']:.5f} | {r['prior_mean_nn_distance']:.4f} | "
                     f"{100 * r['prior_on_manifold']:.1f}% | {r['lpgen_mean_nn_distance']:.4f} | "
                     f"{100 * r['lpgen_on_manifold']:.1f}% | {r['train_seconds']:.0f} |")
    note = (f"\nSettings: {settings}, seed {seed}, Gaussian likelihood std {obs_scale}. "
            f"'on data' = share of decoded samples within {ON_MANIFOLD} of a training point; "
            "LP-Gen = the 5% of 5,000 prior draws with the lowest aggregate-posterior density.\n")
    atomic_write_text(out / "results.md", "\n".join(lines) + "\n" + note)
    atomic_write_text(out / "results.json", json.dumps({"settings": settings, "rows": rows}, indent=2) + "\n")
    print("\n".join(lines) + note)
    return rows


# == the ELBO family with and without the decoupled prior (supplement Table 2, §5) ==================
COMPARE_MODELS = ("beta", "capacity", "betatc", "factor", "info")
# dpVAE supplement §3: lr 1e-4, 100,000 iterations (batch 100 on MNIST; 64 is the dSprites norm).
# Evaluation (ours): codes for MIG, FactorVAE votes, images for FID, LP-Gen's prior pool and the
# held-out items whose aggregate posterior scores it.
COMPARE_PAPER = dict(steps=100_000, lr=1e-4, batch_size=64, mig_codes=10_000, fv_train=10_000, fv_eval=5_000,
                     fid_images=10_000, lp_pool=20_000, lp_data=10_000)
# CPU setting: the same objectives for a short budget with a larger step size.
COMPARE_QUICK = dict(steps=600, lr=5e-4, batch_size=64, mig_codes=3_000, fv_train=200, fv_eval=100,
                     fid_images=1_000, lp_pool=5_000, lp_data=10_000)


@torch.no_grad()
def score(model, guide, data, test, s: dict, seed: int, out: Path) -> dict:
    """MIG, FactorVAE score, per-pixel L2 reconstruction, FID of prior and of LP-Gen samples."""
    model.eval(), guide.eval()
    represent = lambda x: guide.posterior(x)[model.site][0]  # noqa: E731
    gen = lambda k: torch.Generator().manual_seed(1000 * seed + k)  # noqa: E731
    codes, factors = M.sample_codes(data, represent, s["mig_codes"], gen(1))
    fv = M.compute_factor_vae(data, represent, gen(2), num_train=s["fv_train"], num_eval=s["fv_eval"],
                              num_variance_estimate=s["mig_codes"])
    real, _ = test.batch(torch.randperm(len(test), generator=gen(3))[: s["fid_images"]])
    recon = reconstruction_error(model, guide, real[:1000], model.site)
    samples = prior_samples(model, s["fid_images"], seed=seed)
    lp = low_posterior_samples(model, guide, test, num_samples=s["lp_pool"],
                               fraction=min(0.5, s["fid_images"] / s["lp_pool"]),
                               num_data=min(len(test), s["lp_data"]), seed=seed)
    lp_images = model.decode(lp.z)
    with torch.enable_grad():  # an uncached feature net is trained first
        net = feature_net()
    save_grid(samples[:64], out / "prior_samples.png")
    save_grid(lp_images[:64], out / "lp_samples.png")
    return {"mig": M.mig(codes, factors), "factor_vae": fv["eval_accuracy"], "recon_l2": recon["l2"],
            "fid_prior": fid_kid(real, samples, net)["fid"], "fid_lpgen": fid_kid(real, lp_images, net)["fid"]}


def comparison_table(rows: list[dict], models, s: dict, seed: int) -> str:
    """``compare.md``: one row per run, then flow − normal per ELBO."""
    lines = ["| ELBO | prior | MIG | FactorVAE | recon L2/pixel | FID prior samples | FID LP-Gen | train s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['prior']} | {r['mig']:.3f} | {r['factor_vae']:.3f} | "
                     f"{r['recon_l2']:.4f} | {r['fid_prior']:.1f} | {r['fid_lpgen']:.1f} | {r['train_seconds']:.0f} |")
    lines += ["", "| ELBO | ΔMIG (flow − normal) | ΔFactorVAE | ΔFID prior | ΔFID LP-Gen |", "|---|---|---|---|---|"]
    for m in models:
        a = next((r for r in rows if r["run"] == f"{m}-normal"), None)
        b = next((r for r in rows if r["run"] == f"{m}-flow"), None)
        if a and b:
            lines.append(f"| {m} | {b['mig'] - a['mig']:+.3f} | {b['factor_vae'] - a['factor_vae']:+.3f} | "
                         f"{b['fid_prior'] - a['fid_prior']:+.1f} | {b['fid_lpgen'] - a['fid_lpgen']:+.1f} |")
    note = (f"\nSettings: {s}, seed {seed}, conv64 on procedural dSprites; hyperparameters of the "
            "dpVAE supplement Table 1. FID uses our offline feature net (inference/fid.py), not Inception; "
            "lower is better.\n")
    return "\n".join(lines) + "\n" + note


def run_dpvae_comparison(out, *, quick: bool = False, models=COMPARE_MODELS, steps=None, seed: int = 0,
                         device="cpu", resume: bool = False) -> list[dict]:
    """Each ELBO of ``models`` trained twice on dSprites (conv64), standard-Normal and decoupled
    prior, same seed and budget, then scored (:func:`score`).

    Writes ``compare.json`` after every run (``resume`` skips the runs it already holds and
    continues a stopped training) and ``compare.md``; returns the rows.
    """
    from ..catalog import build, resolve_config  # here: the catalog imports the papers

    out = check_output_dir(out, continuing=resume, how="--resume to continue it")
    s = dict(COMPARE_QUICK if quick else COMPARE_PAPER)
    if steps:
        s["steps"] = steps
    rows = []
    results_path = out / "compare.json"
    done = []
    if resume and results_path.exists():  # a stopped comparison resumes where it was
        try:
            done = list(json.loads(results_path.read_text())["rows"])
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"--resume: {results_path} is not a comparison's results") from None
    data = ppl_data.load("dsprites")
    _, test = data.split(0.05, seed=0)
    for model_name in models:
        for prior in ("normal", "flow"):
            key = f"{model_name}-{prior}"
            prev = [r for r in done if isinstance(r, dict) and r.get("run") == key]
            if prev:
                rows.append(prev[0])
                continue
            config = resolve_config(model_name, {"prior": prior})
            config.update(data="dsprites", data_root=None, data_shape=list(data.data_shape),
                          dataset_size=len(data))
            torch.manual_seed(seed)
            model, guide, loss = build(config, data.data_shape, len(data))
            t = time.perf_counter()
            run_dir = out / key
            fit(model, guide, loss, data, steps=s["steps"], batch_size=s["batch_size"], lr=s["lr"],
                seed=seed, out_dir=run_dir, resume=(run_dir / "checkpoint.pt").exists(),
                device=device, config=config, log_every=50)
            seconds = time.perf_counter() - t
            row = {"run": key, "model": model_name, "prior": prior, "train_seconds": seconds,
                   **score(model.cpu(), guide.cpu(), data, test, s, seed, run_dir)}
            rows.append(row)
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(results_path, json.dumps({"settings": s, "seed": seed, "rows": rows}, indent=2))
            print(json.dumps(row))
    text = comparison_table(rows, models, s, seed)
    atomic_write_text(out / "compare.md", text)
    print(text)
    return rows
