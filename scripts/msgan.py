"""MS-GAN (appendix E) against MS-VAE on the same frozen β-TCVAE stage one: FID, L1/L2 and M1–M4.

    python scripts/msgan.py --quick [--out runs/msgan]     # textured shapes at 32×32, minutes on a CPU
    python scripts/msgan.py --device cuda                   # the paper's sizes (64×64, long runs)

Stage one is the β-TCVAE of ``inference.msvae`` (C = 10, β = 4). Stage two is trained twice on it:
MS-VAE (term (b) of eq. 2, ``inference.msvae``) and MS-GAN (eq. 3's density-ratio objective,
``inference.msgan``: logistic discriminator on (x, y) pairs, generator minimising E[−D] (eq. 4),
Z through AdaIN, a z-encoder on the generator's pairs). Table columns (§4, Appendices G, J):
``fid_recon`` (reconstructions of held-out items vs the items), ``fid_sample`` (G(y, z) with y from
held-out items and z from the prior vs the items), L1, L2 of reconstructions, M1–M4. FID uses our
offline feature net (``inference.fid``), not Inception. Writes ``results.json``, ``table.md`` and
``samples.png`` (rows: data, Y, MS-VAE reconstruction, MS-GAN reconstruction, MS-GAN with z from the prior).
"""

from __future__ import annotations

import warnings

warnings.filterwarnings("ignore")

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from guides.nets import make_encoder  # noqa: E402
from inference import fit  # noqa: E402
from inference.checkpoint import atomic_write_text  # noqa: E402
from inference.cli import experiment_parser, experiment_settings, positive_int, run_main  # noqa: E402
from inference.fid import feature_net, features, fid_from_features  # noqa: E402
from inference.metrics.conditioning import conditioning_measures  # noqa: E402
from inference.msgan import MSGANPosterior, MSGANTrainer, train  # noqa: E402
from inference.msvae import (C_DIM, STAGE_ONE, STAGE_ONE_OVERRIDES, Z_DIM, batched,  # noqa: E402
                             conditioning_codes, family_member, image_errors, msvae_pair, reconstruct,
                             second_stage_loss)
from inference.pictures import save_grid  # noqa: E402
from ppl_data import TexturedShapes  # noqa: E402
from ppl_models.msgan import MSGANModel, PairDiscriminator  # noqa: E402
from ppl_models.msvae import ConditionalDecoder  # noqa: E402

QUICK = dict(resolution=32, batch_size=32, lr=1e-3, steps1=300, steps2=200, gan_steps=3000, gan_lr=2e-4,
             hidden=8, blocks=1, disc_hidden=16, n_eval=1000)
# Paper: batch 64, Adam 1e-4, 300k steps per stage (msvae_experiment); GAN: DCGAN's Adam 2e-4, β1 = 0.5.
PAPER = dict(resolution=64, batch_size=64, lr=1e-4, steps1=300_000, steps2=300_000, gan_steps=300_000,
             gan_lr=2e-4, hidden=32, blocks=2, disc_hidden=64, n_eval=10_000)


def parse(argv):
    p = experiment_parser(__doc__.splitlines()[0], "runs/msgan")
    p.add_argument("--gan-steps", type=positive_int, help="override MS-GAN's steps")
    return p.parse_args(argv)


def run(args):
    s, out = experiment_settings(args, QUICK, PAPER, {"gan_steps": args.gan_steps})
    t0, dev = time.perf_counter(), torch.device(args.device)
    data = TexturedShapes(s["resolution"])
    shape, n = data.data_shape, len(data)
    x_eval = data.images(data.sample_factors(s["n_eval"], torch.Generator().manual_seed(args.seed + 1))).to(dev)
    net = feature_net(device=dev)
    feat_eval = features(x_eval, net)
    seconds = {}

    def timed(name, fn):
        t = time.perf_counter()
        fn()
        seconds[name] = round(time.perf_counter() - t, 1)
        print(f"{name}: {seconds[name]} s", flush=True)

    fit_kw = dict(batch_size=s["batch_size"], lr=s["lr"], seed=args.seed, device=dev, progress=False)
    torch.manual_seed(args.seed)
    m1, g1, loss1, _ = family_member(STAGE_ONE, {**STAGE_ONE_OVERRIDES, "latent_dim": C_DIM, "net": "auto"}, shape, n)
    timed("betatc", lambda: fit(m1, g1, loss1, data, steps=s["steps1"], **fit_kw))
    vae, vae_g = msvae_pair(m1, g1, "msvae", Z_DIM, shape, n, s["hidden"], s["blocks"])
    timed("msvae", lambda: fit(vae, vae_g, second_stage_loss("msvae"), data, steps=s["steps2"], **fit_kw))
    gan = MSGANModel(m1, ConditionalDecoder(shape, Z_DIM, "y", "adain", hidden=s["hidden"], blocks=s["blocks"]),
                     Z_DIM).to(dev)
    disc = PairDiscriminator(shape, s["disc_hidden"]).to(dev)
    gan_post = MSGANPosterior(g1, make_encoder("auto", shape, Z_DIM), gan).to(dev)
    trainer = MSGANTrainer(gan, disc, gan_post, lr=s["gan_lr"])
    log = []
    timed("msgan", lambda: log.extend(train(trainer, data, s["gan_steps"], s["batch_size"], args.seed, dev,
                                            log_every=max(s["gan_steps"] // 10, 1))))

    gen = torch.Generator().manual_seed(args.seed + 2)
    z_prior = torch.randn(len(x_eval), Z_DIM, generator=gen).to(dev)
    c_loc = batched(lambda x: g1.posterior(x)["z"][0], x_eval)
    rows = {}

    def row(name, recon, sample, pair=None):
        r = {"train_s": seconds[name], "fid_recon": fid_from_features(feat_eval, features(recon, net)),
             "fid_sample": fid_from_features(feat_eval, features(sample, net)), **image_errors(x_eval, recon)}
        if pair is not None:
            g = torch.Generator().manual_seed(args.seed + 3)
            r.update(conditioning_measures(batched(lambda x: conditioning_codes(*pair, x, g), x_eval)))
        rows[name] = r
        print(name, {k: round(v, 4) for k, v in r.items()}, flush=True)

    with torch.no_grad():
        base = batched(lambda c: m1.decode(c), c_loc)
        row("betatc", base, base)
        vae_rec = batched(lambda x: reconstruct(vae, vae_g, x)[1], x_eval)
        vae_smp = batched(lambda cz: vae.generate(cz[:, :C_DIM], cz[:, C_DIM:])[1], torch.cat([c_loc, z_prior], 1))
        row("msvae", vae_rec, vae_smp, (vae, vae_g))
        gan_rec = batched(lambda x: gan.generate(g1.posterior(x)["z"][0], gan_post.posterior(x)["z"][0])[1], x_eval)
        gan_smp = batched(lambda cz: gan.generate(cz[:, :C_DIM], cz[:, C_DIM:])[1], torch.cat([c_loc, z_prior], 1))
        row("msgan", gan_rec, gan_smp, (gan, gan_post))
        save_grid(torch.cat([x_eval[:8], base[:8], vae_rec[:8], gan_rec[:8], gan_smp[:8]]).cpu(),
                  out / "samples.png", nrow=8)
    wall = time.perf_counter() - t0
    results = {"settings": s, "wall_seconds": round(wall, 1), "command": " ".join(sys.argv), "rows": rows,
               "gan_log": log}
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    cols = ["train_s", "fid_recon", "fid_sample", "l1", "l2", "M1", "M2", "M3", "M4"]
    lines = [f"settings: {json.dumps(s)}; wall {wall:.0f} s", "", "| model | " + " | ".join(cols) + " |",
             "|" + "---|" * (len(cols) + 1)]
    lines += [f"| {k} | " + " | ".join(f"{r[c]:.3f}" if c in r else "" for c in cols) + " |" for k, r in rows.items()]
    atomic_write_text(out / "table.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None):
    run(parse(argv))


if __name__ == "__main__":
    sys.exit(run_main(main))
