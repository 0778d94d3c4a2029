"""dpVAE's two-moons toy: a β-VAE with and without the decoupled prior, side by side.

    python scripts/dpvae_two_moons.py --out runs/dpvae_two_moons [--quick]

Two-moons data in a 2-D latent space (dpVAE supplement §3: encoder 100-50, decoder mirrored,
2-D latent). For each prior it trains the same β-VAE, then measures how close decoded samples
fall to the data: plain prior samples and LP-Gen samples (the prior draws the aggregate
posterior finds least likely). Writes ``two_moons.png`` (rows: standard-Normal prior, decoupled
prior; columns: latent space with prior draws, decoded prior samples, decoded LP-Gen samples)
and ``results.md`` / ``results.json`` with the numbers behind it.
"""

from __future__ import annotations

import warnings

warnings.filterwarnings("ignore")

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

import ppl_data  # noqa: E402
from guides.nets import MLPEncoder  # noqa: E402
from guides.vae import VAEGuide  # noqa: E402
from inference import fit  # noqa: E402
from inference.cli import (OneLineParser, check_output_dir, default_device, positive_float,  # noqa: E402
                           positive_int, random_seed, run_main, torch_device)
from inference.elbo import TermsELBO  # noqa: E402
from inference.lpgen import encode_posterior, low_posterior_samples  # noqa: E402
from ppl_models.likelihoods import GaussianLikelihood  # noqa: E402
from ppl_models.nets import MLPDecoder  # noqa: E402
from ppl_models.priors import make_prior  # noqa: E402
from ppl_models.vae import VAEModel  # noqa: E402

# dpVAE supplement: lr 1e-4, 100,000 iterations, β = 4 (Table 1); batch 100 as for MNIST.
PAPER = dict(steps=100_000, lr=1e-4, batch_size=100, beta=4.0)
QUICK = dict(steps=4000, lr=1e-3, batch_size=100, beta=4.0)
ON_MANIFOLD = 0.02  # a decoded sample within this distance (unit square) of a data point is "on" it


def make_pair(prior_kind: str, dataset_size: int, obs_scale: float):
    encoder = MLPEncoder((2,), 2, hidden=(100, 50))
    decoder = MLPDecoder(2, (2,), hidden=(50, 100))
    model = VAEModel(decoder, 2, dataset_size=dataset_size, likelihood=GaussianLikelihood(obs_scale),
                     prior=make_prior(prior_kind, 2))
    return model, VAEGuide(encoder, dataset_size=dataset_size)


@torch.no_grad()
def nearest_distance(samples: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    return torch.cdist(samples, data).min(dim=1).values


@torch.no_grad()
def evaluate(model, guide, data, seed: int) -> dict:
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


def draw(results: dict, data, path: Path) -> None:
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
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = OneLineParser(prog="dpvae_two_moons.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--quick", action="store_true", help="CPU setting (minutes), else the paper's")
    p.add_argument("--steps", type=positive_int)
    p.add_argument("--seed", type=random_seed, default=0)
    p.add_argument("--obs-scale", type=positive_float, default=0.03, help="std of the Gaussian likelihood")
    p.add_argument("--device", type=torch_device, default=default_device())
    args = p.parse_args(argv)
    settings = dict(QUICK if args.quick else PAPER)
    if args.steps:
        settings["steps"] = args.steps
    out = check_output_dir(args.out)
    data = ppl_data.load("two_moons", n=10_000, noise=0.05, seed=args.seed)
    results, rows = {}, []
    for prior in ("normal", "flow"):
        name = "β-VAE" if prior == "normal" else "β-dpVAE"
        torch.manual_seed(args.seed)
        model, guide = make_pair(prior, len(data), args.obs_scale)
        t = time.perf_counter()
        fit(model, guide, TermsELBO(kl_scale=settings["beta"]), data, steps=settings["steps"],
            batch_size=settings["batch_size"], lr=settings["lr"], seed=args.seed, out_dir=out / prior,
            device=args.device, config={"model": name, "prior": prior, **settings})
        seconds = time.perf_counter() - t
        model.eval(), guide.eval()
        r = evaluate(model.cpu(), guide.cpu(), data, args.seed)
        r["train_seconds"] = seconds
        results[name] = r
        rows.append({"model": name, **{k: v for k, v in r.items() if not k.startswith("_")}})
    draw(results, data, out / "two_moons.png")
    lines = ["| model | recon MSE | prior: mean NN dist | prior: on data | LP-Gen: mean NN dist | LP-Gen: on data | train s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['recon_mse']:.5f} | {r['prior_mean_nn_distance']:.4f} | "
                     f"{100 * r['prior_on_manifold']:.1f}% | {r['lpgen_mean_nn_distance']:.4f} | "
                     f"{100 * r['lpgen_on_manifold']:.1f}% | {r['train_seconds']:.0f} |")
    note = (f"\nSettings: {settings}, seed {args.seed}, Gaussian likelihood std {args.obs_scale}. "
            f"'on data' = share of decoded samples within {ON_MANIFOLD} of a training point; "
            "LP-Gen = the 5% of 5,000 prior draws with the lowest aggregate-posterior density.\n")
    (out / "results.md").write_text("\n".join(lines) + "\n" + note)
    (out / "results.json").write_text(json.dumps({"settings": settings, "rows": rows}, indent=2) + "\n")
    print("\n".join(lines) + note)


if __name__ == "__main__":
    sys.exit(run_main(main))
