"""Claims 4–6: the papers whose comparison is one experiment function of ``inference.papers``.

- **Robust pose/appearance** (:func:`inference.papers.robust.run_robust_ablation`): one row per
  ablation variant of Table 1, each trained and evaluated alone.
- **MS-VAE** (:func:`inference.papers.msvae.run_experiment`): one row per seed of the whole
  experiment (stage one is shared by every two-stage variant, so the models cannot be split).
- **VITAE** (:func:`inference.papers.vitae.run_vitae_experiment` and
  :func:`~inference.papers.vitae.run_stability_study`): the swap test and the stability table.
"""

from __future__ import annotations

import math
from pathlib import Path

from .driver import Claim, Reproduction, column, fmt, row_dir, separated, stats, table

# -- claim 6: robust pose/appearance ------------------------------------------------------------------
#: cpu: the quick settings (32×32 sprites, conv32 nets, l_γ = 0.1) for 12,000 steps (~13 min on one
#: core): at 3,000 no variant reached I_T′ ≤ ε (λ ≈ 35 was still too weak against the reconstruction
#: term); at 12,000 the full model does. Runs of fewer steps continue to it (the checkpoint resumes
#: bit-identically and nothing in the loss depends on the total number of steps).
ROBUST = {"tiny": dict(steps=10, eval_pairs=50, fresh_pairs=100, fresh_steps=5, batch_size=16, warmup_steps=2),
          "cpu": dict(steps=12_000), "gpu": {}}
ROBUST_TRIPLETS = {"tiny": 20, "cpu": 2000, "gpu": 8000}
#: The paper's Table 1 (ε = 0.125): I_T′ and L_rec per variant (sprites).
ROBUST_PAPER = {"variational": "I_T′ 0.1239, L_rec 3.9350", "adversarial": "I_T′ 0.8727, L_rec 2.9818",
                "no_bias": "I_T′ 0.1247, L_rec 3.9615", "fixed_gamma": "I_T′ 0.4096, L_rec 3.2504",
                "full": "I_T′ 0.1201, L_rec 3.5279"}


def _fresh(path: Path) -> Path:
    """``path`` emptied for an experiment that cannot resume: a folder left there (a killed run, or
    one of a stale protocol) is kept beside it as ``<name>.stale-<k>``, never deleted."""
    if path.is_dir() and any(path.iterdir()):
        k = 0
        while path.with_name(f"{path.name}.stale-{k}").exists():
            k += 1
        path.rename(path.with_name(f"{path.name}.stale-{k}"))
    return path


def _robust_rows(budget):
    from ..papers.robust import LABELS, ORDER
    return {LABELS[v]: {"variant": v} for v in ORDER}


def _run_robust(row, settings, seed, folder, budget):
    from ..papers.robust import run_robust_ablation

    out = folder / "ablation"
    r = run_robust_ablation(out, quick=budget != "gpu", variants=(settings["variant"],),
                            triplets=ROBUST_TRIPLETS[budget], seed=seed, resume=out.is_dir(), **ROBUST[budget])
    numbers = {k: v for k, v in r[settings["variant"]].items() if k not in ("errors", "wall_s")}
    return {**numbers, "train_s": r[settings["variant"]]["wall_s"]}  # over every session that trained it


def _epsilon(budget):
    from ..papers.robust import EPSILON
    return EPSILON


def _robust_page(results, budget):
    keys = [("transfer_median", "transfer MSE (median)", 4), ("recon_mse", "recon MSE", 4),
            ("I_T", "I_T", 3), ("I_T_prime", "I_T′", 3), ("I_fresh", "I fresh T", 3),
            ("gamma", "γ", 3), ("lambda", "λ", 3)]
    eps = _epsilon(budget)
    rows = []
    for name, s in _robust_rows(budget).items():
        if name not in results:
            continue
        held = sum(v <= eps for v in column(results, name, "I_T_prime"))
        rows.append([name] + [fmt(column(results, name, k), d) for k, _, d in keys]
                    + [f"{held}/{len(results[name])}", ROBUST_PAPER.get(s["variant"], "")])
    return (f"Procedural sprites (32×32 at the cpu budget). I_T′ ≤ ε holds in how many seeds, ε = {eps}. "
            "Transfer MSE: D(E_π(x3), E_α(x1)) against x2 rendered exactly, held-out characters.\n\n"
            + table(["variant"] + [label for _, label, _ in keys] + ["I_T′ ≤ ε", "paper Table 1"], rows))


def _robust_claims(results, budget):
    from ..papers.robust import LABELS
    eps = _epsilon(budget)
    full = LABELS["full"]
    paper = "e) lowest L_rec (3.5279) of the variants with I_T′ ≤ ε = 0.125 (a, c, e; Table 1)"
    if full not in results:
        return [Claim("Variant (e) has the lowest transfer error among those that hold I_T′ ≤ ε", paper, "–",
                      "inconclusive", "variant e not run")]
    full_it = column(results, full, "I_T_prime")
    held = sum(v <= eps for v in full_it)
    verdict = ("holds" if held == len(full_it) >= 2 else "does not hold" if stats(full_it)[0] > eps
               else "inconclusive")
    reached = Claim("The full model (e) reaches the constraint I_T′ ≤ ε (a prerequisite of the comparison)",
                    "e) I_T′ 0.1201 ≤ ε = 0.125 (Table 1)", f"e) I_T′ {fmt(full_it)}, {held}/{len(full_it)} seeds",
                    verdict, "every seed at or under ε" if verdict == "holds" else
                    "not in every seed, or fewer than two" if verdict == "inconclusive" else "the mean is over ε")
    holding = [n for n in _robust_rows(budget) if n in results and n != LABELS["beta_vae"]
               and stats(column(results, n, "I_T_prime"))[0] <= eps]
    ours = ", ".join(f"{n.split(')')[0]}) {fmt(column(results, n, 'transfer_median'), 4)}" for n in holding) or "none"
    if full not in holding:
        return [reached, Claim("Variant (e) has the lowest transfer error among those that hold I_T′ ≤ ε", paper,
                               f"e) I_T′ {fmt(full_it)} > ε", "does not hold",
                               "the full model does not reach the constraint at this budget")]
    others = [n for n in holding if n != full]
    gaps = [separated(column(results, n, "transfer_median"), column(results, full, "transfer_median"))
            for n in others]
    if not others:
        run = [n for n in _robust_rows(budget) if n in results and n != LABELS["beta_vae"]]
        best = min(run, key=lambda n: stats(column(results, n, "transfer_median"))[0])
        verdict, why = "inconclusive", ("only the full model holds the constraint: nothing to compare (of every "
                                        f"variant run, {best.split(')')[0]}) transfers best)")
    elif min(len(results[n]) for n in holding) < 2:
        verdict, why = "inconclusive", "fewer than two seeds"
    elif all(g > 1 for g in gaps):
        verdict, why = "holds", f"every other holding variant is ≥ {min(gaps):.1f} seed spreads worse"
    elif any(g < -1 for g in gaps):
        verdict, why = "does not hold", "another holding variant transfers better beyond the seed spread"
    else:
        verdict, why = "inconclusive", f"gaps of {', '.join(f'{g:+.1f}' for g in gaps)} seed spreads"
    claims = [reached, Claim("Variant (e) has the lowest transfer error among those that hold I_T′ ≤ ε (holding: "
                    + ", ".join(n.split(")")[0] for n in holding) + ")", paper, ours, verdict, why)]
    rec = [separated(column(results, n, "recon_mse"), column(results, full, "recon_mse")) for n in others]
    if others and min(len(results[n]) for n in holding) >= 2:
        v = "holds" if all(g > 1 for g in rec) else "does not hold" if any(g < -1 for g in rec) else "inconclusive"
        claims.append(Claim("Variant (e) has the lowest reconstruction error among those that hold I_T′ ≤ ε "
                            "(the paper's own Table 1 reading)", paper,
                            ", ".join(f"{n.split(')')[0]}) {fmt(column(results, n, 'recon_mse'), 4)}" for n in holding),
                            v, f"gaps of {', '.join(f'{g:+.1f}' for g in rec)} seed spreads"))
    return claims


def _robust_figures(results, out, budget, runs=None):
    """I_T, I_T′, γ and λ against the step for each variant's lowest finished seed (eqs. 18–24 at work)."""
    from ..papers.robust import trajectories

    if runs is None:
        return []
    folders = {}
    for name, s in _robust_rows(budget).items():
        if results.get(name):
            seed = min(results[name])
            run_dir = row_dir(runs, "robust", budget, name, seed) / "ablation" / s["variant"]
            if (run_dir / "metrics.jsonl").is_file():
                folders[s["variant"]] = run_dir
    if not folders:
        return []
    seeds = sorted({min(results[n]) for n in results if results[n]})
    trajectories(folders, out / "robust_trajectories.png", _epsilon(budget),
                 title=f"training trajectories, seed {', '.join(map(str, seeds))} of each variant")
    return ["robust_trajectories.png"]


ROBUST_REPRO = Reproduction(
    "robust", "Claim 6: robust pose/appearance disentangling, the ablation of Table 1",
    rows=_robust_rows, run=_run_robust, page=_robust_page, claims=_robust_claims, figures=_robust_figures,
    protocol=lambda budget: {"train": ROBUST[budget], "triplets": ROBUST_TRIPLETS[budget]},
    notes={"tiny": "Smoke test only.",
           "cpu": ("32×32 procedural sprites, conv32 nets, batch 64, lr 1e-3, l_γ = 0.1, 12,000 steps, one core "
                   "(at 3,000 steps no variant reached I_T′ ≤ ε). The paper: 64×64, l_γ = 0.01, 100,000 steps."),
           "gpu": "64×64, conv64, batch 16, lr 2e-4, 100,000 steps, l_γ = 0.01 (authors' code)."})


# -- claim 4: MS-VAE ----------------------------------------------------------------------------------
#: cpu: the quick settings with stage one at the shapes budget's 25,000 steps (at the quick 2,000 its
#: MIG is 0.02, below the 0.1 the comparison needs) and stage two at 5,000; the equal-size β-TCVAE
#: trains their sum, 30,000 steps (~25 min on one core: the one run over the 15-minute guide).
MSVAE = {"tiny": dict(steps1=10, steps2=10, n_eval=64, n_probe=64, mlp_iter=5, batch_size=16),
         "cpu": dict(steps1=25_000, steps2=5_000), "gpu": {}}
MSVAE_MODELS = ("betatc", "msvae", "big_betatc")


def _msvae_settings(budget):
    from ..papers import msvae
    return {**(msvae.PAPER if budget == "gpu" else msvae.QUICK), **MSVAE[budget]}


def _run_msvae(row, settings, seed, folder, budget):
    from ..papers import msvae

    res = msvae.run_experiment(_msvae_settings(budget), _fresh(folder / "experiment"), models=MSVAE_MODELS,
                               seed=seed)
    return {f"{m}/{k}": v for m, r in res["rows"].items() for k, v in r.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _msvae_page(results, budget):
    keys = [("mig", 3), ("fid", 1), ("l2", 4), ("M1", 3), ("M2", 3), ("M3", 3), ("M4", 3)]
    rows = []
    for m in MSVAE_MODELS:
        cells = [fmt(column(results, "experiment", f"{m}/{k}"), d) for k, d in keys]
        if any(c != "–" for c in cells):
            rows.append([m] + cells)
    return ("Procedural textured shapes (32×32 at the cpu budget). FID of reconstructions (the paper's, §4 and "
            "App. J) in our offline feature net: a grey-level net trained on dSprites and digits, so texture and "
            "colour barely reach it. On 1,000 held-out textured images two independent samples of the data score "
            "0.68 and a 3×3 blur of them 1.64: FID differences below ~1 are under what it resolves here. "
            "big_betatc: the equal-size β-TCVAE (same parameters and 20 latents as App. H asks), built as "
            "stage one's decoder plus MS-VAE's refiner trained end to end, a stronger baseline than a widened "
            "plain network.\n\n"
            + table(["model", "MIG (C)", "FID (recon)", "L2", "M1", "M2", "M3", "M4"], rows))


def _msvae_claims(results, budget):
    r = lambda k: column(results, "experiment", k)  # noqa: E731
    s1 = r("betatc/mig")
    stage = stats(s1)[0]
    claims = [Claim("Stage one (β-TCVAE) reaches MIG ≥ 0.1 first", "a prerequisite of §4 (not a paper number)",
                    f"MIG {fmt(s1)}", "holds" if stage >= 0.1 else "does not hold" if s1 else "inconclusive",
                    "the comparison below needs a disentangled stage one")]
    fid_ms, fid_big = r("msvae/fid"), r("big_betatc/fid")
    sep = separated(fid_big, fid_ms)
    if stage < 0.1 or not fid_ms:
        verdict, why = "inconclusive", "stage one did not reach MIG 0.1, so 'at kept MIG' cannot be judged"
    else:
        verdict = "holds" if sep > 1 else "does not hold" if sep < -1 else "inconclusive"
        why = (f"the FID gap is {sep:+.1f} seed spreads; the L2 gap "
               f"{separated(r('big_betatc/l2'), r('msvae/l2')):+.1f}")
    claims.append(Claim("MS-VAE's FID much lower than an equal-size β-TCVAE at kept MIG",
                        "SmallNORB 59.16 ± 4.52 vs 152.19 ± 2.68; Cars3D 22.72 vs 35.24 (App. H Table 1)",
                        f"FID {fmt(fid_ms, 2)} vs {fmt(fid_big, 2)}; L2 {fmt(r('msvae/l2'), 4)} vs "
                        f"{fmt(r('big_betatc/l2'), 4)}; MIG {fmt(r('msvae/mig'))} vs {fmt(r('big_betatc/mig'))}",
                        verdict, why))
    ms = {k: stats(r(f"msvae/{k}"))[0] for k in ("M1", "M2", "M3", "M4")}
    if any(math.isnan(v) for v in ms.values()):
        claims.append(Claim("M2 > M1 > M3 ≫ M4", "§4.1, Fig. 5 (bars, no values)", "–", "inconclusive", "not run"))
    else:
        order = ms["M2"] > ms["M1"] > ms["M3"] > ms["M4"]
        claims.append(Claim("M2 > M1 > M3 ≫ M4", "§4.1, Fig. 5 (bars, no values)",
                            ", ".join(f"{k} {fmt(r(f'msvae/{k}'))}" for k in ms),
                            "holds" if order and stage >= 0.1 else "does not hold" if not order else "inconclusive",
                            "the order of the means" + ("" if stage >= 0.1 else "; stage one below MIG 0.1")))
    return claims


MSVAE_REPRO = Reproduction(
    "msvae", "Claim 4: MS-VAE against an equal-size β-TCVAE, and the conditioning metrics M1–M4",
    rows=lambda budget: {"experiment": {}}, run=_run_msvae, page=_msvae_page, claims=_msvae_claims,
    protocol=lambda budget: {"settings": _msvae_settings(budget), "models": MSVAE_MODELS},
    notes={"tiny": "Smoke test only.",
           "cpu": ("The experiment's quick settings (inference.papers.msvae.QUICK: 32×32 procedural textured "
                   "shapes, batch 64, lr 1e-3) with stage one at 25,000 steps and stage two at 5,000; the "
                   "equal-size β-TCVAE trains 30,000 (~26 min, the one run over the 15-minute guide). The paper: "
                   "64×64, lr 1e-4, 300,000 steps per stage."),
           "gpu": "The paper's settings (inference.papers.msvae.PAPER)."})


# -- claim 5: VITAE -----------------------------------------------------------------------------------
#: The swap test's settings beyond the experiment's quick (cpu) or paper (gpu) ones. cpu: 40,000 steps,
#: four times the quick run's, at which the 10,000-step reconstructions did not yet show shapes.
VITAE_SWAP = {"tiny": dict(steps=10, n_train=256, n_eval=64, batch_size=16), "cpu": dict(steps=40_000), "gpu": {}}
VITAE_STABILITY = {"tiny": dict(steps=10, n_train=256, n_eval=64), "cpu": {}, "gpu": {}}


#: Our choice, not the paper's, and it bears on the stability claim: eqs. (1)–(2) are written around
#: the identity (A = I + θ, s = 1 + θ) and the θ head starts at zero, so every transformer starts at
#: the identity; in the paper (and the authors' code) only eq. (3) does (expm(0) = I).
IDENTITY_START = ("Deviation: all three parametrisations start at the identity here (eqs. (1)–(2) as I + θ and "
                  "1 + θ, the θ head initialised at zero); in the paper only eq. (3) does, which may be where its "
                  "stability comes from.")


def _vitae_protocol(budget):
    """The swap test's and the stability study's settings as they run (the given ones over the defaults)."""
    from ..papers import vitae
    gpu = budget == "gpu"
    return {"swap": {**(vitae.EXPERIMENT_PAPER if gpu else vitae.EXPERIMENT_QUICK), **VITAE_SWAP[budget]},
            "stability": {**(vitae.STABILITY_PAPER if gpu else vitae.STABILITY_QUICK), **VITAE_STABILITY[budget]}}


def _vitae_rows(budget):
    return {"swap test": {"study": "swap"}, "stability": {"study": "stability"}}


def _run_vitae(row, settings, seed, folder, budget):
    from ..papers import vitae

    quick = budget != "gpu"
    if settings["study"] == "swap":
        res = vitae.run_vitae_experiment(_fresh(folder / "experiment"), quick=quick, seed=seed, **VITAE_SWAP[budget])
        out = {}
        for m, r in res["models"].items():
            out[f"{m}/elbo"] = r["elbo"]
            for k, v in r.get("swap", {}).items():
                if isinstance(v, (int, float)):
                    out[f"{m}/{k}"] = v
        return out
    res = vitae.run_stability_study(_fresh(folder / "stability"), quick=quick, seed=seed, **VITAE_STABILITY[budget])
    return {f"{name}/lr={row['lr']:g}": (row["elbo"] if row["elbo"] is not None else float("nan"))
            for name, rows in res.items() for row in rows}


def _vitae_page(results, budget):
    keys = [("elbo", 1), ("closer_to_pose_donor", 3), ("shape_kept", 3), ("shape_from_pose_donor", 3),
            ("recon_shape_kept", 3)]
    rows = [[m] + [fmt(column(results, "swap test", f"{m}/{k}"), d) for k, d in keys] for m in ("u_vitae", "c_vitae")]
    lrs = _stability_lrs(results)
    names = sorted({k.split("/")[0] for seed in results.get("stability", {}).values() for k in seed if "lr=" in k})
    stab = []
    for n in names:
        cells = []
        for lr in lrs:
            ok, runs = _trained(results, n, lr)
            cells.append(fmt(column(results, "stability", f"{n}/lr={lr}"), 1)
                         + (f" ({ok}/{runs} trained)" if ok < runs else ""))
        stab.append([n] + cells)
    return ("Swap test: decode(z_persp(x2), z_app(x1)) on 32×32 procedural shapes; shape read by a pose-blind "
            "nearest-template reader over pairs of different shapes (chance 1/3).\n\n"
            + table(["model", "test ELBO", "closer to pose donor", "shape kept", "shape from pose donor",
                     "shape of own recon"], rows)
            + "\nStability (supplement Fig. 1): C-VITAE test ELBO per learning rate, eq. (1)–(3) "
              "parametrisations; – where every seed diverged. A run counts as trained when its test ELBO is "
              "finite and no worse than the same transformer's, same seed's, at the smallest learning rate "
              "(a run that ends below the slowest one has diverged, whatever its sign).\n\n"
            + (table(["transformer"] + [f"λ={lr}" for lr in lrs], stab) if stab else "not run\n"))


def _stability_lrs(results):
    return sorted({k.split("=")[1] for seed in results.get("stability", {}).values() for k in seed if "lr=" in k},
                  key=float)


def _trained(results, name, lr):
    """(runs of transformer ``name`` at ``lr`` that trained, runs): finite and at least the ELBO of
    the same seed at the smallest learning rate."""
    slowest = _stability_lrs(results)[0]
    ok = runs = 0
    for numbers in results.get("stability", {}).values():
        elbo, floor = numbers.get(f"{name}/lr={lr}"), numbers.get(f"{name}/lr={slowest}")
        if elbo is None or floor is None:
            continue
        runs += 1
        ok += bool(math.isfinite(elbo) and math.isfinite(floor) and elbo >= floor)
    return ok, runs


def _vitae_claims(results, budget):
    kept = column(results, "swap test", "c_vitae/shape_kept")
    recon = column(results, "swap test", "c_vitae/recon_shape_kept")
    pose = column(results, "swap test", "c_vitae/closer_to_pose_donor")
    if not kept:
        verdict, why = "inconclusive", "not run"
    elif stats(recon)[0] < 0.5:
        verdict, why = "inconclusive", f"reconstructions do not show shapes (reader on own recon {fmt(recon)} < 0.5)"
    else:
        ok = stats(kept)[0] > 1 / 3 and stats(pose)[0] > 0.5
        verdict = "holds" if ok else "does not hold"
        why = "shape kept above chance (1/3) and position from the pose donor" if ok else \
            "shape not kept above chance or position not from the pose donor"
    claims = [Claim("C-VITAE separates pose from appearance (swap test)", "qualitative (supplement swaps)",
                    f"shape kept {fmt(kept)}, closer to pose donor {fmt(pose)}", verdict, why)]
    diffeo = [k for seed in results.get("stability", {}).values() for k in seed if k.startswith("affine_diffeo/")]
    if diffeo:
        lrs = _stability_lrs(results)
        counts = {n: [_trained(results, n, lr) for lr in lrs] for n in ("affine", "affine_decomp", "affine_diffeo")}
        alive = {n: sum(ok for ok, _ in c) for n, c in counts.items()}
        total = {n: sum(runs for _, runs in c) for n, c in counts.items()}
        best = max(alive.values())
        verdict = "holds" if alive["affine_diffeo"] == best and best > min(alive.values()) else \
            "does not hold" if alive["affine_diffeo"] < best else "inconclusive"
        top = {n: max((float(lr) for lr, (ok, runs) in zip(lrs, c) if runs and ok == runs), default=float("nan"))
               for n, c in counts.items()}
        claims.append(Claim("The diffeomorphic affine (eq. 3) tolerates higher learning rates",
                            "Fig. 1: eq. 3 trains at the highest λ where eqs. 1–2 diverge (no values)",
                            ", ".join(f"{n}: {alive[n]}/{total[n]} runs trained, every seed up to λ={top[n]:g}"
                                      for n in alive), verdict,
                            "runs (learning rate × seed) that trained: a finite test ELBO no worse than at the "
                            "smallest learning rate"))
    return claims


VITAE_REPRO = Reproduction(
    "vitae", "Claim 5: VITAE, C-VITAE's swap test and the transformers' stability",
    rows=_vitae_rows, run=_run_vitae, page=_vitae_page, claims=_vitae_claims,
    protocol=_vitae_protocol,
    notes={"tiny": "Smoke test only.",
           "cpu": ("The experiments' quick settings (32×32 procedural dSprites, batch 64, lr 1e-3); the swap "
                   "test trains 40,000 steps (the quick run's 10,000 left reconstructions without shapes), "
                   "the stability study 1,000 per learning rate (the paper: MNIST, batch 512, ~60,000). "
                   + IDENTITY_START),
           "gpu": "The supplement's settings. " + IDENTITY_START})


__all__ = ["ROBUST_REPRO", "MSVAE_REPRO", "VITAE_REPRO"]
