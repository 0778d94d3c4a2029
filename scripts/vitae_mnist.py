"""VITAE experiment: U-VITAE vs C-VITAE vs a VAE of the same latent size, and the swap test.

    python scripts/vitae_mnist.py --quick [--out runs/vitae_mnist]          # procedural dSprites
    python scripts/vitae_mnist.py --data-root DIR [--device cuda]           # MNIST, paper settings

Without ``--data-root`` the data are procedural dSprites, whose pose factors (pos_x, pos_y, scale,
orientation) are perspective and whose shape is appearance; VITAE then gets ``SHAPES_VITAE``
(z_persp of 6, a canonical appearance window of 0.4 of the frame), MNIST the paper's
``MNIST_VITAE``. Writes ``results.json`` (with the per-dimension MI matrix), ``table.md``,
``swap_*.png`` (rows: appearance donors x1, perspective donors x2, decode(z_persp(x2), z_app(x1)),
canonical appearance of x1) and each model's reconstructions under ``--out``. The swap test scores
position by pixel centroids and shape by a pose-blind nearest-template reader (``ShapeReader``).

Paper settings (supplement §2): Adam lr 1e-4, batch 512, 2000 MNIST epochs, KL warm-up over half of
them, MLPs of Table 1 (LeakyReLU 0.1), d = 4 for the VAE and 2 + 2 for VITAE.
"""

from __future__ import annotations

import warnings

warnings.filterwarnings("ignore")

import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import pyro  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import ppl_data  # noqa: E402
from inference import TermsELBO, build, fit, resolve_config  # noqa: E402
from inference.cli import (OneLineParser, check_batch_size, check_output_dir, default_device,  # noqa: E402
                           existing_dir, fraction_or_one, positive_float, positive_int, random_seed, run_main,
                           torch_device)
from inference.pictures import save_grid  # noqa: E402
from ppl_models.spatial import TRANSFORMERS  # noqa: E402

PERSPECTIVE_FACTORS = ("scale", "orientation", "pos_x", "pos_y")  # dSprites pose = perspective
APPEARANCE_FACTORS = ("shape",)
MI_BINS = 20  # disentanglement_lib MIG discretisation: 20 equal-width bins per code


# Supplement Table 1 (MNIST): d = 2 + 2, the whole frame, the paper's net sizes.
MNIST_VITAE = {"persp_dim": 2, "app_dim": 2, "canonical_fraction": 1.0, "app_width": 1}
# Shapes (ours): z_persp as wide as the affine θ (6) for 4 pose factors; the appearance is drawn on
# the central 0.4 of the frame (a 12 px window at 32 px; the largest sprite is ~11 px) so that the
# appearance path cannot place a sprite anywhere. A wider appearance path (app_dim 4, app_width 4)
# let z_app take position back (C-VITAE, 10⁴ steps: NMI(pos) 0.13 in both groups), so it stays small.
SHAPES_VITAE = {"persp_dim": 6, "app_dim": 2, "canonical_fraction": 0.4, "app_width": 1}


# -- data ----------------------------------------------------------------------------------------
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
        xs, fs = zip(*(part.batch(index[i:i + 5000]) for i in range(0, n, 5000)))
        pools.append(ppl_data.TensorData((torch.cat(xs) * 255).to(torch.uint8), torch.cat(fs),
                                         sim.factor_names, sim.factor_sizes, name="dsprites"))
    return pools[0], pools[1], sim


def eval_batches(data, n: int, batch: int, device):
    """The first ``n`` items of a fixed permutation of ``data``, in batches (seeded, same every call)."""
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(123))[:n]
    for i in range(0, len(perm), batch):
        yield data.batch(perm[i:i + batch], device=device)


# -- evaluation ----------------------------------------------------------------------------------
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


def mutual_information(codes: torch.Tensor, factors: torch.Tensor, bins: int = MI_BINS) -> torch.Tensor:
    """I(code_j; factor_k) in nats, ``(D, K)``: codes cut into ``bins`` equal-width bins (histogram estimator)."""
    codes, factors = codes.double().cpu(), factors.long().cpu()
    n, d = codes.shape
    out = torch.zeros(d, factors.shape[1], dtype=torch.float64)
    for j in range(d):
        lo, hi = codes[:, j].min(), codes[:, j].max()
        edges = torch.linspace(float(lo), float(hi), bins + 1, dtype=torch.float64)
        b = torch.bucketize(codes[:, j], edges[1:-1])
        for k in range(factors.shape[1]):
            f = torch.unique(factors[:, k], return_inverse=True)[1]
            nf = int(f.max()) + 1
            joint = torch.bincount(b * nf + f, minlength=bins * nf).reshape(bins, nf).double() / n
            pb, pf = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
            nz = joint > 0
            out[j, k] = (joint[nz] * (joint[nz] / (pb @ pf)[nz]).log()).sum()
    return out


def factor_entropy(factors: torch.Tensor) -> torch.Tensor:
    h = []
    for k in range(factors.shape[1]):
        p = torch.unique(factors[:, k], return_counts=True)[1].double() / len(factors)
        h.append(float(-(p * p.log()).sum()))
    return torch.tensor(h, dtype=torch.float64)


@torch.no_grad()
def codes_and_factors(guide, data, n, device):
    codes, facs = {}, []
    for x, f in eval_batches(data, n, 500, device):
        for site, (loc, _) in guide.posterior(x).items():
            codes.setdefault(site, []).append(loc.cpu())
        facs.append(f.cpu())
    return {k: torch.cat(v) for k, v in codes.items()}, torch.cat(facs)


def disentanglement(guide, data, n, device) -> dict:
    """Normalised MI (MI / H(factor)) of each latent group's best dimension with each factor, and MIG."""
    codes, factors = codes_and_factors(guide, data, n, device)
    names = list(data.factor_names)
    h = factor_entropy(factors)
    all_codes = torch.cat(list(codes.values()), 1)
    nmi = mutual_information(all_codes, factors) / h  # (D, K)
    out, start = {"nmi": {}, "nmi_matrix": {}}, 0
    for site, c in codes.items():
        block = nmi[start:start + c.shape[1]]
        start += c.shape[1]
        out["nmi"][site] = {names[k]: float(block[:, k].max()) for k in range(len(names))}
        out["nmi_matrix"][site] = [[round(float(v), 4) for v in row] for row in block]  # (dims, factors)
    top = nmi.sort(0, descending=True).values
    gap = top[0] - top[1] if nmi.shape[0] > 1 else top[0]
    out["mig"] = {names[k]: float(gap[k]) for k in range(len(names))}
    persp = [names.index(f) for f in PERSPECTIVE_FACTORS if f in names]
    app = [names.index(f) for f in APPEARANCE_FACTORS if f in names]
    out["mig_perspective"] = float(gap[persp].mean()) if persp else float("nan")
    out["mig_appearance"] = float(gap[app].mean()) if app else float("nan")
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

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        out = []
        for i in range(0, len(images), self.batch):
            a = centred(images[i:i + self.batch].to(self.templates.dtype)).flatten(1)
            d = a.square().sum(1, keepdim=True) - 2 * a @ self.templates.T + self.templates.square().sum(1)
            out.append(self.shapes[d.argmin(1)])
        return torch.cat(out)


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
    the ceiling for ``shape_kept``); ``data_shape_read``: the reader on x1 itself (its own ceiling).
    """
    x, f = list(eval_batches(data, 2 * n, 2 * n, device))[0]
    x1, x2, f1, f2 = x[:n], x[n:], f[:n], f[n:]
    p1, p2 = guide.posterior(x1), guide.posterior(x2)
    swapped = model.decode_parts(p2["z_persp"][0], p1["z_app"][0])
    names = list(getattr(data, "factor_names", ()))
    if "shape" in names and sim is not None:
        s, read = names.index("shape"), ShapeReader(sim, device)
        res = swap_scores(swapped, x1, x2, read(swapped), f1[:, s].to(device), f2[:, s].to(device))
        recon = model.decode_parts(p1["z_persp"][0], p1["z_app"][0])
        res["recon_shape_kept"] = float((read(recon) == f1[:, s].to(device)).float().mean())
        res["data_shape_read"] = float((read(x1) == f1[:, s].to(device)).float().mean())
    else:
        res = swap_scores(swapped, x1, x2)
    if out_png is not None:
        k = min(8, n)
        canon = model.canonical(p1["z_app"][0][:k])
        save_grid(torch.cat([x1[:k], x2[:k], swapped[:k], canon]), out_png, nrow=k)
    return res


# -- training ------------------------------------------------------------------------------------
def settings(args) -> dict:
    if args.quick:
        # Quick CPU setting (ours): 10⁴ steps at a higher learning rate than the paper.
        s = dict(steps=10000, batch_size=64, lr=1e-3, resolution=32, n_eval=3000, n_train=40000)
    else:
        # Supplement §2: lr 1e-4, batch 512, 2000 epochs of MNIST (60k items), warm-up = half.
        s = dict(steps=2000 * math.ceil(60000 / 512), batch_size=512, lr=1e-4, resolution=64, n_eval=10000,
                 n_train=200000)
    for key in ("steps", "batch_size", "lr"):
        if getattr(args, key) is not None:
            s[key] = getattr(args, key)
    s["warmup_steps"] = s["steps"] // 2  # supplement §2: warm-up over half the training
    return s


def train(name, model_key, overrides, train_data, s, out, device, seed):
    cfg = resolve_config(model_key, overrides)
    pyro.set_rng_seed(seed)
    model, guide, loss = build(cfg, train_data.data_shape, len(train_data))
    t0 = time.time()
    fit(model, guide, loss, train_data, steps=s["steps"], out_dir=out / name, batch_size=s["batch_size"],
        lr=s["lr"], warmup_steps=s["warmup_steps"], seed=seed, log_every=50,
        checkpoint_every=max(500, s["steps"]), device=device, config=cfg, progress=False)
    model.eval()
    guide.eval()
    return model, guide, time.time() - t0


def make_parser():
    p = OneLineParser(prog="vitae_mnist.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short CPU run on dSprites (~10 min)")
    p.add_argument("--data-root", type=existing_dir, help="MNIST folder (IDX files); default: procedural dSprites")
    p.add_argument("--out", default="runs/vitae_mnist")
    p.add_argument("--steps", type=positive_int)
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--lr", type=positive_float)
    p.add_argument("--persp-dim", type=positive_int,
                   help=f"MNIST: {MNIST_VITAE['persp_dim']} (supplement Table 1); shapes: {SHAPES_VITAE['persp_dim']}")
    p.add_argument("--app-dim", type=positive_int,
                   help=f"MNIST: {MNIST_VITAE['app_dim']} (supplement Table 1); shapes: {SHAPES_VITAE['app_dim']}")
    p.add_argument("--canonical-fraction", type=fraction_or_one,
                   help=f"side of the appearance frame / image side; MNIST: 1, shapes: "
                        f"{SHAPES_VITAE['canonical_fraction']}")
    p.add_argument("--app-width", type=positive_int,
                   help=f"appearance nets' width multiplier; MNIST: 1, shapes: {SHAPES_VITAE['app_width']}")
    p.add_argument("--transformer", default="affine_diffeo", choices=tuple(TRANSFORMERS))
    p.add_argument("--seed", type=random_seed, default=0)
    p.add_argument("--device", type=torch_device, help="cpu, cuda or cuda:N (default: cuda when available)")
    return p


def main(argv=None):
    args = make_parser().parse_args(argv)
    s = settings(args)
    device = torch.device(args.device or default_device())
    out = check_output_dir(args.out)
    train_data, test_data, sim = load_split(args.data_root, s["resolution"], s["n_train"], s["n_eval"])
    check_batch_size(s["batch_size"], len(train_data), "MNIST train" if args.data_root else "dSprites train pool")
    out.mkdir(parents=True, exist_ok=True)
    vitae = dict(MNIST_VITAE if args.data_root is not None else SHAPES_VITAE, transformer=args.transformer)
    for key in ("persp_dim", "app_dim", "canonical_fraction", "app_width"):
        if getattr(args, key) is not None:
            vitae[key] = getattr(args, key)
    d = vitae["persp_dim"] + vitae["app_dim"]
    runs = [("vae", "vae", {"latent_dim": d, "net": "mlp"}),  # supplement Table 1 MLP, same latent size
            ("u_vitae", "vitae_u", vitae), ("c_vitae", "vitae_c", vitae)]
    results = {"settings": {**s, **vars(args), "vitae": vitae}, "models": {}}
    for name, key, overrides in runs:
        model, guide, seconds = train(name, key, overrides, train_data, s, out, device, args.seed)
        r = {"train_seconds": seconds, **test_elbo(model, guide, test_data, s["n_eval"], device)}
        if test_data.has_factors:
            r.update(disentanglement(guide, test_data, s["n_eval"], device))
        if name != "vae":
            r["swap"] = swap_test(model, guide, test_data, 500, device, out / f"swap_{name}.png", sim)
        x, _ = next(eval_batches(test_data, 8, 8, device))
        z = torch.cat([loc for loc, _ in guide.posterior(x).values()], -1)  # sites in posterior order
        save_grid(torch.cat([x, model.decode(z)]), out / f"recon_{name}.png", nrow=8)
        results["models"][name] = r
        print(f"{name}: {json.dumps({k: v for k, v in r.items() if not isinstance(v, dict)})}", flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = render_table(results["models"], test_data)
    (out / "table.md").write_text(table)
    print(table)


def render_table(models: dict, data) -> str:
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
        lines += ["", "Swap test (500 pairs): decode(z_persp(x2), z_app(x1)); shape read by the pose-blind "
                  "nearest-template reader, over pairs of different shapes (chance 1/3); recon = the "
                  "reader's accuracy on x1's own reconstruction, data = on x1 itself:", "",
                  "| model | centroid → pose donor (px) | → app donor (px) | donors apart (px) | "
                  "closer to pose donor | shape kept | shape of pose donor | recon shape | data shape |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, r in swaps.items():
            kept = (f"{r['shape_kept']:.3f} ({r['shape_pairs']} pairs) | {r['shape_from_pose_donor']:.3f} | "
                    f"{r['recon_shape_kept']:.3f} | {r['data_shape_read']:.3f}" if "shape_kept" in r
                    else "n/a | n/a | n/a | n/a")
            lines.append(f"| {name} | {r['centroid_px_to_pose_donor']:.2f} | {r['centroid_px_to_app_donor']:.2f} | "
                         f"{r['centroid_px_donors_apart']:.2f} | {r['closer_to_pose_donor']:.3f} | {kept} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(run_main(main))
