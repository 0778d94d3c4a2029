"""MS-VAE experiment: β-TCVAE alone vs MS-VAE and its ablations vs a β-TCVAE as large as MS-VAE.

    python scripts/msvae_experiment.py --quick [--out runs/msvae]     # ~20 min on a shared 2-core CPU
    python scripts/msvae_experiment.py --device cuda                  # the paper's settings

Data: procedural textured shapes (``ppl_data.textured``). Models, all with an equal budget of
S1 + S2 optimiser steps: ``betatc`` (stage one, |C| latents, S1 steps — the paper's β-TCVAE),
``msvae`` / ``msvae_c`` / ``msvae_c_in`` (S2 steps of stage two on that frozen stage one),
``msvae_e2e`` (S1 + S2 end to end), ``msvae_zc`` (a VAE over Z for S1, then C for S2) and
``big_betatc`` (|C| + |Z| latents, a decoder refined by a Z-less G as wide as MS-VAE's plus a dense
path to the pixels sized so that its parameter count matches MS-VAE's; S1 + S2 steps; Appendix H).
Writes ``results.json``, ``table.md``, ``reconstructions.png``, ``traversals.png``,
``z_perturbation.png`` under ``--out``.

Table columns (§4, Appendices G, J): MIG of C; FID of reconstructions against the data (our offline
feature net, ``inference.fid``; not Inception FID); L1, L2; M1–M4 (§4; M4 = MI[C_R; E(G(ε′, Z))] with
ε′ ~ N(0, I) in Y's space, since issue 14) and M_decoded_prior (the pre-issue-14 "M4": Y′ decoded from a
prior code; not a §4 measure); mean downstream accuracy over the ten factors of an MLP reading C, Z and
C+Z; and the same for the coarse and the fine factors.
Paper settings: C = 10, Z = 10 (§4, SmallNORB), β = 4 (Appendix A), batch 64, Adam lr 1e-4 and
300,000 steps per stage (disentanglement_lib's β-TCVAE defaults, which §3.2 says stage one uses).
"""

from __future__ import annotations

import warnings

warnings.filterwarnings("ignore")

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from inference import fit  # noqa: E402
from inference.checkpoint import atomic_write_text  # noqa: E402
from inference.cli import check_output_dir, comma_list, experiment_parser, positive_int, run_main  # noqa: E402
from inference.fid import feature_net, features, fid_from_features  # noqa: E402
from inference.metrics import mig  # noqa: E402
from inference.metrics.conditioning import conditioning_measures, mlp_accuracy  # noqa: E402
from inference.msvae import (C_DIM, STAGE_ONE, STAGE_ONE_OVERRIDES, Z_DIM, batched,  # noqa: E402
                             big_family_pair, conditioning_codes, count_parameters, effective_dims,
                             family_member, image_errors, msvae_pair, prior_seconds, reconstruct,
                             second_stage_loss, traversal_codes)
from inference.pictures import save_grid  # noqa: E402
from ppl_data import TexturedShapes  # noqa: E402

# --quick: ~20 min on the shared 2-core CPU, one thread (S1 + S2 = 3000 steps for end to end and the big
# β-TCVAE; batch 64 as the paper; lr 1e-3 rather than 1e-4 so that so few steps learn something).
QUICK = dict(resolution=32, batch_size=64, lr=1e-3, steps1=2000, steps2=1000, hidden=8, blocks=1,
             n_eval=1000, n_probe=1000, mlp=(64,), mlp_iter=100)
PAPER = dict(resolution=64, batch_size=64, lr=1e-4, steps1=300_000, steps2=300_000, hidden=32, blocks=2,
             n_eval=10_000, n_probe=10_000, mlp=(256, 256), mlp_iter=200)
MODELS = ("betatc", "msvae", "msvae_c", "msvae_c_in", "msvae_e2e", "msvae_zc", "big_betatc")


def parse(argv):
    p = experiment_parser(__doc__.splitlines()[0], "runs/msvae")
    p.add_argument("--models", type=comma_list(MODELS), default=",".join(MODELS),
                   help="comma-separated subset of " + ",".join(MODELS))
    p.add_argument("--steps1", type=positive_int, help="override stage-one steps")
    p.add_argument("--steps2", type=positive_int, help="override stage-two steps")
    return p.parse_args(argv)


class Experiment:
    def __init__(self, args):
        self.s = dict(QUICK if args.quick else PAPER)
        for k in ("steps1", "steps2"):
            if getattr(args, k):
                self.s[k] = getattr(args, k)
        self.args, self.device = args, torch.device(args.device)
        self.data = TexturedShapes(self.s["resolution"])
        self.shape, self.n = self.data.data_shape, len(self.data)
        gen = torch.Generator().manual_seed(args.seed + 1)
        self.f_eval = self.data.sample_factors(self.s["n_eval"], gen)
        self.f_probe = self.data.sample_factors(self.s["n_probe"], gen)
        self.x_eval = self.data.images(self.f_eval).to(self.device)
        self.x_probe = self.data.images(self.f_probe).to(self.device)
        self.net = feature_net(device=self.device)
        self.feat_eval = features(self.x_eval, self.net)
        self.rows, self.recons, self.seconds = {}, {}, {}
        self.coarse = [self.data.factor_names.index(k) for k in self.data.coarse_factors]
        self.fine = [k for k in range(len(self.data.factor_names)) if k not in self.coarse]

    def fit(self, name, model, guide, loss, steps):
        t = time.perf_counter()
        fit(model, guide, loss, self.data, steps=steps, batch_size=self.s["batch_size"], lr=self.s["lr"],
            seed=self.args.seed, device=self.device, progress=False, log_every=max(steps // 10, 1))
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t
        print(f"{name}: {steps} steps, {time.perf_counter() - t:.0f} s", flush=True)

    def family(self, name, latent_dim, **over):
        return family_member(name, {**(STAGE_ONE_OVERRIDES if name == STAGE_ONE else {}), "latent_dim": latent_dim,
                                    "net": "auto", **over}, self.shape, self.n)

    @torch.no_grad()
    def evaluate(self, name, recon_fn, code_fn, msvae=None):
        """recon_fn(x) -> images; code_fn(x) -> {"c": (B, d), optionally "z"}."""
        recon = batched(recon_fn, self.x_eval)
        codes, probe = encode_all(code_fn, self.x_eval), encode_all(code_fn, self.x_probe)
        row = {"params": self.params.get(name), "train_s": round(self.seconds.get(name, 0.0))}
        row["mig"] = mig(codes["c"], self.f_eval.numpy())
        row["fid"] = fid_from_features(self.feat_eval, features(recon, self.net))
        row.update(image_errors(self.x_eval, recon))
        if msvae is not None:
            gen = torch.Generator().manual_seed(self.args.seed + 2)
            cc = batched(lambda x: conditioning_codes(*msvae, x, gen), self.x_eval)
            row.update(conditioning_measures(cc))
        inputs = {"C": ("c",), "Z": ("z",), "C+Z": ("c", "z")} if "z" in codes else {"C": ("c",)}
        for k, keys in inputs.items():
            tr = np.concatenate([probe[j] for j in keys], 1)
            te = np.concatenate([codes[j] for j in keys], 1)
            acc = np.array([mlp_accuracy(tr, self.f_probe[:, f].numpy(), te, self.f_eval[:, f].numpy(),
                                         hidden=self.s["mlp"], max_iter=self.s["mlp_iter"], seed=self.args.seed)
                            for f in range(self.f_eval.shape[1])])
            row[f"acc_{k}"] = float(acc.mean())
            row[f"acc_{k}_coarse"] = float(acc[self.coarse].mean())
            row[f"acc_{k}_fine"] = float(acc[self.fine].mean())
            row[f"acc_{k}_per_factor"] = [round(float(a), 3) for a in acc]
        self.rows[name] = row
        self.recons[name] = recon[:8].cpu()
        print(name, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                     if not k.endswith("per_factor")}, flush=True)


@torch.no_grad()
def encode_all(code_fn, x) -> dict[str, np.ndarray]:
    """``code_fn`` over ``x`` in batches: {name: (N, d) array}."""
    keys = list(code_fn(x[:1]))
    parts = batched(lambda b: tuple(code_fn(b)[k] for k in keys), x)
    return {k: v.cpu().double().numpy() for k, v in zip(keys, parts)}


def run(args):
    wanted = args.models
    out = check_output_dir(args.out, continuing=args.force, how="--force to write into it")
    if args.quick:
        torch.set_num_threads(1)
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    ex = Experiment(args)
    s = ex.s
    ex.params = {}
    torch.manual_seed(args.seed)
    # Stage one: the β-TCVAE every C-first two-stage variant shares (frozen once stage two starts).
    m1, g1, loss1, _ = ex.family(STAGE_ONE, C_DIM)
    ex.params["betatc"] = count_parameters(m1, g1)
    ex.fit("betatc", m1, g1, loss1, s["steps1"])
    if "betatc" in wanted:
        ex.evaluate("betatc", lambda x: m1.decode(g1.posterior(x)["z"][0]), lambda x: {"c": g1.posterior(x)["z"][0]})
    pairs = {}
    for name in ("msvae", "msvae_c", "msvae_c_in", "msvae_e2e", "msvae_zc"):
        if name not in wanted and not (name == "msvae" and "big_betatc" in wanted):
            continue
        if name == "msvae_e2e":
            a, b, fam_loss, _ = ex.family(STAGE_ONE, C_DIM)
            model, guide = msvae_pair(a, b, name, Z_DIM, ex.shape, ex.n, s["hidden"], s["blocks"])
            steps = s["steps1"] + s["steps2"]
        elif name == "msvae_zc":
            a, b, vae_loss, _ = ex.family("vae", Z_DIM, beta=1.0)  # §L.3: Z by a standard VAE first
            ex.fit(name, a, b, vae_loss, s["steps1"])
            fam_loss = ex.family(STAGE_ONE, C_DIM)[2]
            model, guide = msvae_pair(a, b, name, C_DIM, ex.shape, ex.n, s["hidden"], s["blocks"])
            steps = s["steps2"]
        else:
            fam_loss = None
            model, guide = msvae_pair(m1, g1, name, Z_DIM, ex.shape, ex.n, s["hidden"], s["blocks"])
            ex.seconds[name] = ex.seconds["betatc"]
            steps = s["steps2"]
        ex.params[name] = count_parameters(model, guide)
        ex.fit(name, model, guide, second_stage_loss(name, fam_loss), steps)
        pairs[name] = (model, guide)
        if name in wanted:
            ex.evaluate(name, lambda x, p=(model, guide): reconstruct(*p, x)[1],
                        lambda x, g=guide: {k: v[0] for k, v in sorted(g.posterior(x).items())}, msvae=(model, guide))
    if "big_betatc" in wanted:
        target = ex.params["msvae"]
        big, big_g, big_loss, _ = big_family_pair(STAGE_ONE, {**STAGE_ONE_OVERRIDES, "latent_dim": C_DIM + Z_DIM},
                                                  ex.shape, ex.n, target, blocks=s["blocks"], hidden=s["hidden"])
        ex.params["big_betatc"] = count_parameters(big, big_g)
        ex.fit("big_betatc", big, big_g, big_loss, s["steps1"] + s["steps2"])
        ex.evaluate("big_betatc", lambda x: big.decode(big_g.posterior(x)["z"][0]),
                    lambda x: {"c": big_g.posterior(x)["z"][0]})
    pictures(ex, m1, g1, pairs, out)
    wall = time.perf_counter() - t0
    results = {"settings": s, "wall_seconds": wall, "command": " ".join(sys.argv), "rows": ex.rows}
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(out / "table.md", table_md(ex.rows, s, wall))
    print(table_md(ex.rows, s, wall))


@torch.no_grad()
def pictures(ex, m1, g1, pairs, out):
    x = ex.x_eval[:8]
    rows = [x.cpu()] + [ex.recons[k] for k in ex.recons]
    save_grid(torch.cat(rows), out / "reconstructions.png", nrow=8)
    atomic_write_text(out / "reconstructions.txt", "rows: data, " + ", ".join(ex.recons) + "\n")
    if "msvae" not in pairs:
        return
    model, guide = pairs["msvae"]
    post = guide.posterior(ex.x_eval[:256])
    dims = effective_dims(post["c"][1].mean(0))[:4]
    loc, z = post["c"][0][0], post["z"][0][:1]
    codes = traversal_codes(loc, dims, limit=2.0, steps=7)
    y, xs = model.generate(codes, z.expand(len(codes), -1))
    grid = torch.stack([y.reshape(len(dims), 7, *y.shape[1:]), xs.reshape(len(dims), 7, *xs.shape[1:])], 1)
    save_grid(grid.reshape(-1, *y.shape[1:]).cpu(), out / "traversals.png", nrow=7)
    seconds = prior_seconds(model, 7, seed=ex.args.seed)
    c4 = post["c"][0][:4]
    _, xz = model.generate(c4.repeat_interleave(7, 0), seconds.repeat(4, 1))
    y4 = model.first_stage_mean(c4)
    save_grid(torch.cat([torch.cat([y4[i:i + 1], xz[7 * i:7 * i + 7]]) for i in range(4)]).cpu(),
              out / "z_perturbation.png", nrow=8)
    atomic_write_text(out / "pictures.txt",
                      f"traversals.png: C dims {dims} (most active), odd rows Y (β-TCVAE), even rows "
                      "MS-VAE X with Z fixed at item 0's posterior mean, c over [-2, 2]\n"
                      "z_perturbation.png: per row, Y of an item then MS-VAE X for 7 prior draws of Z\n")


def table_md(rows, s, wall):
    cols = ["params", "train_s", "mig", "fid", "l1", "l2", "M1", "M2", "M3", "M4", "M_decoded_prior",
            "acc_C", "acc_Z", "acc_C+Z", "acc_C_fine", "acc_Z_fine", "acc_C+Z_fine"]
    lines = [f"settings: {json.dumps(s)}; wall {wall:.0f} s", "",
             "| model | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for name, r in rows.items():
        cells = [f"{r[c]:.3f}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    run(parse(argv))


if __name__ == "__main__":
    sys.exit(run_main(main))
