"""Claims 4–6: the papers whose comparison is one experiment function of ``inference.papers``.

- **Robust pose/appearance** (:func:`inference.papers.robust.run_robust_ablation`): one row per
  ablation variant of Table 1, each trained and evaluated alone.
- **MS-VAE** (:func:`inference.papers.msvae.run_experiment`): one row per seed of the whole
  experiment (stage one is shared by every two-stage variant, so the models cannot be split).
- **VITAE** (:func:`inference.papers.vitae.run_vitae_experiment` and
  :func:`~inference.papers.vitae.run_stability_study`): the swap test and the stability table.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

from .driver import Claim, Reproduction, column, fmt, per_seed, row_dir, stats, table
from .stats import all_of, order, threshold, two_arm

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
    return {**numbers, "train_s": r[settings["variant"]]["wall_s"],  # over every session that trained it
            "trajectory": trajectory(out / settings["variant"] / "metrics.jsonl")}


#: The logged numbers the trajectories figure draws, and how many points of each a record keeps.
TRAJECTORY_KEYS, TRAJECTORY_POINTS = ("I_T", "I_T_prime", "gamma", "lambda"), 300


def trajectory(path: Path) -> dict:
    """{"step": [...], key: [...]} of :data:`TRAJECTORY_KEYS` from a run's metrics.jsonl, thinned to at
    most :data:`TRAJECTORY_POINTS` rows (the last kept): the figure's data, kept in the record so the
    page redraws it from a clean clone."""
    rows = []
    for line in Path(path).read_text().splitlines() if Path(path).is_file() else ():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "step" in row and all(k in row for k in TRAJECTORY_KEYS):
            rows.append(row)
    stride = max(1, math.ceil(len(rows) / TRAJECTORY_POINTS))
    kept = rows[::stride] + ([rows[-1]] if rows and (len(rows) - 1) % stride else [])
    return {k: [r[k] for r in kept] for k in ("step", *TRAJECTORY_KEYS)}


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
    kept = any(n.get("trajectory") for per_seed in results.values() for n in per_seed.values())
    return (f"Procedural sprites (32×32 at the cpu budget). I_T′ ≤ ε holds in how many seeds, ε = {eps}. "
            "Transfer MSE: D(E_π(x3), E_α(x1)) against x2 rendered exactly, held-out characters.\n\n"
            + ("" if kept else "The trajectories figure below was drawn from run folders that are gone: these "
               "records predate the trajectories a record now keeps, so it is not redrawn from them.\n\n")
            + table(["variant"] + [label for _, label, _ in keys] + ["I_T′ ≤ ε", "paper Table 1"], rows))


#: The comparators, fixed before any run: Table 1 of Esser et al. finds variants a), c) and e) under ε and
#: e) the best of them on L_rec, so e) is compared with a) and c), on our transfer error and on the
#: reconstruction error (the paper's own reading), whatever our a) and c) reach.
ROBUST_COMPARATORS = ("variational", "no_bias")


def _robust_claims(results, budget):
    from ..papers.robust import LABELS
    eps = _epsilon(budget)
    full = LABELS["full"]
    paper = "e) lowest L_rec (3.5279) of the variants with I_T′ ≤ ε = 0.125 (a, c, e; Table 1)"
    if full not in results:
        return [Claim("Variant (e) transfers better than (a) and (c), the variants Table 1 finds under ε", paper,
                      "–", "inconclusive", "variant e not run")]
    full_it = column(results, full, "I_T_prime")
    held = sum(v <= eps for v in full_it)
    claims = [Claim.tested("The full model (e) reaches the constraint I_T′ ≤ ε (a prerequisite of the comparison)",
                           "e) I_T′ 0.1201 ≤ ε = 0.125 (Table 1)",
                           f"e) I_T′ {fmt(full_it)}, {held}/{len(full_it)} seeds ≤ ε",
                           ("I_T′ − ε", threshold(full_it, eps, below=True)))]
    others = [LABELS[v] for v in ROBUST_COMPARATORS]
    for key, what, reading in (("transfer_median", "transfer error", ""),
                               ("recon_mse", "reconstruction error", " (the paper's own Table 1 reading)")):
        tests = [(f"e) − {n.split(')')[0]})", two_arm(column(results, full, key), column(results, n, key),
                                                      higher=False, digits=4)) for n in others]
        held_by = {n: sum(v <= eps for v in column(results, n, "I_T_prime")) for n in others}
        claims.append(Claim.tested(
            f"Variant (e) has a lower {what} than (a) and (c), the variants Table 1 finds under ε{reading}", paper,
            ", ".join(f"{n.split(')')[0]}) {fmt(column(results, n, key), 4)}" for n in [full] + others)
            + "; ≤ ε in " + ", ".join(f"{n.split(')')[0]}) {held_by[n]}/{len(results.get(n, {}))}" for n in others)
            + " seeds", *tests, verdict=all_of([v for _, v in tests]), digits=4))
    return claims


def _robust_figures(results, out, budget, runs=None):
    """I_T, I_T′, γ and λ against the step for each variant's lowest seed (eqs. 18–24 at work), from the
    trajectories the records keep (:func:`trajectory`), else from the run folders. When neither has
    them (records that predate trajectories, their run folder gone) a figure already on the page is
    kept as it is, and the page's text says so."""
    from ..papers.robust import trajectories

    series = {}
    for name, s in _robust_rows(budget).items():
        if not results.get(name):
            continue
        seed = min(results[name])
        kept = results[name][seed].get("trajectory")
        run_dir = None if runs is None else row_dir(runs, "robust", budget, name, seed) / "ablation" / s["variant"]
        if not (kept and kept.get("step")) and run_dir is not None and (run_dir / "metrics.jsonl").is_file():
            kept = trajectory(run_dir / "metrics.jsonl")
        if kept and kept.get("step"):
            series[s["variant"]] = (seed, kept)
    if not series:
        return [ROBUST_FIGURE] if (out / ROBUST_FIGURE).is_file() else []
    with tempfile.TemporaryDirectory() as tmp:  # trajectories() reads metrics.jsonl files
        folders = {}
        for v, (_, kept) in series.items():
            folders[v] = Path(tmp) / v
            folders[v].mkdir()
            rows = [dict(zip(kept, values)) for values in zip(*kept.values())]
            (folders[v] / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        seeds = sorted({seed for seed, _ in series.values()})
        trajectories(folders, out / ROBUST_FIGURE, _epsilon(budget),
                     title=f"training trajectories, seed {', '.join(map(str, seeds))} of each variant")
    return [ROBUST_FIGURE]


ROBUST_FIGURE = "robust_trajectories.png"


ROBUST_REPRO = Reproduction(
    "robust", "Claim 6: robust pose/appearance disentangling, the ablation of Table 1",
    rows=_robust_rows, run=_run_robust, page=_robust_page, claims=_robust_claims, figures=_robust_figures,
    seeds=(0, 1, 2, 3, 4),
    protocol=lambda budget: {"train": ROBUST[budget], "triplets": ROBUST_TRIPLETS[budget]},
    notes={"tiny": "Smoke test only.",
           "cpu": ("32×32 procedural sprites, conv32 nets, batch 64, lr 1e-3, l_γ = 0.1, 12,000 steps, one core. "
                   "The paper: 64×64, l_γ = 0.01, 100,000 steps. The claims compare (e) with (a) and (c), the "
                   "variants the paper's Table 1 finds under ε, fixed before the runs."),
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
            "colour barely reach it: a 3×3 blur of the data scores not far from a second sample of the data, so "
            "small FID differences are under what it resolves here (its calibration is not yet a record). "
            "big_betatc: the equal-size β-TCVAE (same parameters and 20 latents as App. H asks), built as "
            "stage one's decoder plus MS-VAE's refiner trained end to end, a stronger baseline than a widened "
            "plain network.\n\n"
            + table(["model", "MIG (C)", "FID (recon)", "L2", "M1", "M2", "M3", "M4"], rows))


def _msvae_claims(results, budget):
    r = lambda k: column(results, "experiment", k)  # noqa: E731
    s1 = r("betatc/mig")
    stage = threshold(s1, 0.1, below=False)
    claims = [Claim.tested("Stage one (β-TCVAE) reaches MIG ≥ 0.1 first", "a prerequisite of §4 (not a paper number)",
                           f"MIG {fmt(s1)}", ("MIG − 0.1", stage))]
    # The paper's comparator: MS-VAE against a β-TCVAE of equal size (App. H, Table 1).
    fid_ms, fid_big = r("msvae/fid"), r("big_betatc/fid")
    fid = two_arm(fid_ms, fid_big, higher=False, digits=2)
    ours = (f"FID {fmt(fid_ms, 2)} vs {fmt(fid_big, 2)}; L2 {fmt(r('msvae/l2'), 4)} vs {fmt(r('big_betatc/l2'), 4)}; "
            f"MIG {fmt(r('msvae/mig'))} vs {fmt(r('big_betatc/mig'))}")
    claim = "MS-VAE's FID much lower than an equal-size β-TCVAE at kept MIG"
    paper = "SmallNORB 59.16 ± 4.52 vs 152.19 ± 2.68; Cars3D 22.72 vs 35.24 (App. H Table 1)"
    if stage.verdict != "holds":
        claims.append(Claim.tested(claim, paper, ours, ("FID MS-VAE − β-TCVAE", fid), verdict="inconclusive"))
        claims[-1].why = "Stage one is not shown to reach MIG 0.1, so 'at kept MIG' cannot be judged. " + claims[-1].why
    else:
        claims.append(Claim.tested(claim, paper, ours, ("FID MS-VAE − β-TCVAE", fid)))
    ms = per_seed(results, "experiment", [f"msvae/{k}" for k in ("M2", "M1", "M3", "M4")])
    if not any(ms.values()):
        claims.append(Claim("M2 > M1 > M3 ≫ M4", "§4.1, Fig. 5 (bars, no values)", "–", "inconclusive", "not run"))
    else:
        # each adjacent pair by a paired one-sided t-test over seeds; "≫" is tested as ">" (no margin given)
        v = order({k.split("/")[1]: values for k, values in ms.items()})
        means = ", ".join(f"{k} {fmt(r(f'msvae/{k}'))}" for k in ("M1", "M2", "M3", "M4"))
        claims.append(Claim.tested("M2 > M1 > M3 ≫ M4 (each adjacent pair, paired over seeds; ≫ tested as >)",
                                   "§4.1, Fig. 5 (bars, no values)", means, ("", v)))
    return claims


MSVAE_REPRO = Reproduction(
    "msvae", "Claim 4: MS-VAE against an equal-size β-TCVAE, and the conditioning metrics M1–M4",
    rows=lambda budget: {"experiment": {}}, run=_run_msvae, page=_msvae_page, claims=_msvae_claims,
    seeds=(0, 1, 2, 3, 4),
    protocol=lambda budget: {"settings": _msvae_settings(budget), "models": MSVAE_MODELS},
    notes={"tiny": "Smoke test only.",
           "cpu": ("The experiment's quick settings (inference.papers.msvae.QUICK: 32×32 procedural textured "
                   "shapes, batch 64, lr 1e-3) with stage one at 25,000 steps and stage two at 5,000; the "
                   "equal-size β-TCVAE trains 30,000 (the one run over the 15-minute guide). The paper: "
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
