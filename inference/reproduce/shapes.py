"""Claims 1–3 on the procedural shapes: the baselines, the DIP-VAE study and dpVAE's flow prior.

Every row here is one catalog model trained by :func:`inference.runs.train_run` on procedural
dSprites. The trained runs live in one store, ``runs/shapes/<budget>/<model>-<hash>/seed_<k>``,
keyed by their settings: a configuration two papers share (β-VAE at β = 4 with the Normal prior is a
baseline, a point of the DIP study's β grid and dpVAE's "without flow" row) trains once. Each
evaluation is cached beside its run (``eval_<kind>.json``). A run whose budget grew continues from
the store's shorter run of the same settings (:data:`CONTINUES`): a run is a function of its seed
(every batch comes from the run's own generator, and nothing in these models depends on the total
number of steps), so 15,000 steps continued to 25,000 are the 25,000-step run
(``tests/test_reproduce.py`` checks it parameter for parameter).

Budgets (:data:`BASE`):
- ``cpu``: **32×32 shapes** (the same simulator drawn at half the side) with the conv32 nets
  (:class:`ppl_models.nets.Conv32Decoder`, :class:`guides.nets.Conv32Encoder`), batch 64, Adam at
  lr 1e-3 for :data:`CPU_STEPS` steps: about 13 minutes on one core (30 ms a step), 14 with the
  evaluation, the most the issue's 15 minutes per run allow. At 15,000 steps (3 seeds) β-TCVAE's
  MIG was 0.106 ± 0.074 against the VAE's 0.098 ± 0.023: not yet apart. Before that, probes: β-TCVAE (MWS, β = 6) reached
  MIG 0.032 after 6,000 steps at lr 5e-4, 0.081 after 4,000 and 0.105 after 8,000 at lr 1e-3 (one
  seed); at 5,000 steps and lr 1e-3 the plain VAE had 0.071 ± 0.020, β-VAE 0.050 and FactorVAE
  0.027 (3, 2, 2 seeds): nothing had disentangled. 64×64 with conv64 costs ~4× per step.
- ``cpu64``: 64×64 with disentanglement_lib's nets as written (``conv64_dl``), lr 1e-4, batch 64,
  30,000 steps (:data:`CPU64_STEPS`); its earlier protocols are the second readings
  :data:`CPU64_V1` (our first conv64 nets) and :data:`CPU64_LR1E3` (those at lr 1e-3).
- ``gpu``: disentanglement_lib's protocol (Locatello et al. 2019): 64×64, its nets (``conv64_dl``),
  lr 1e-4, batch 64, 300,000 steps, full-size metrics.
- ``tiny``: a few steps, for the tests.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import shutil
from pathlib import Path

import torch

from ppl_data import dsprites as _dsprites

from ..checkpoint import atomic_save_figure, atomic_write_text
from ..report import evaluate_run
from ..runs import load_data, load_run, train_run
from ..svi import CHECKPOINT, CONFIG as RUN_CONFIG, METRICS as RUN_METRICS, SUMMARY
from ..errors import ConfigError
from .driver import Claim, Reproduction, column, fmt, on_cpu, stats, table
from .stats import all_of, non_inferior, two_arm

CPU_STEPS = 25_000
#: The 64×64 cpu budget of claim 1 (issue 25): its steps, chosen by the pilot (:func:`pilot64`), whose
#: milestones are :data:`PILOT64_STEPS` (each continues the one before; the last is a run of the budget).
PILOT64_STEPS = (10_000, 20_000, 30_000)
CPU64_STEPS = 30_000
#: The pilot's rows: β-TCVAE and the plain VAE (the budget check's two arms), seeds 0 and 1.
PILOT64_ROWS, PILOT64_SEEDS = ("β-TCVAE", "VAE"), (0, 1)
#: The learning rate the pilot began at (the 32×32 page's); its record keys carry no lr suffix
#: (:func:`pilot_key`). Its arm at disentanglement_lib's 1e-4 replaced it as the budget's rate.
PILOT64_FIRST_LR = 1e-3
PILOT_FILE = "baselines_pilot.json"  # the pilot's records, in results/ beside the page
#: The DIP study's cpu steps: its 20 runs (10 grid points × 2 seeds) at half the shapes budget fit
#: one session on two cores; a later 25,000-step grid continues them (:data:`CONTINUES`).
DIP_CPU_STEPS = 12_500
#: Shorter step counts of a budget whose stored runs a longer run of the same settings continues.
CONTINUES = {"cpu": (DIP_CPU_STEPS, 15_000), "cpu64": PILOT64_STEPS[:-1]}
BASE = {
    "tiny": dict(data="dsprites", resolution=32, steps=20, batch_size=32, lr=1e-3, log_every=10,
                 checkpoint_every=10),
    "cpu": dict(data="dsprites", resolution=32, steps=CPU_STEPS, batch_size=64, lr=1e-3, log_every=100,
                checkpoint_every=1000),
    # 64×64 dSprites and disentanglement_lib's conv64 nets (4 convs, dense 256, 10 latents, Bernoulli),
    # batch 64 and Adam lr 1e-4 as theirs, for a tenth of their 300k steps. The budget began at lr 1e-3
    # (the 32×32 probes learned faster there); the pilot (issue 25) replaced it: at 30,000 steps
    # β-TCVAE's MIG was 0.008 and 0.044 at 1e-3 against 0.241 and 0.244 at 1e-4 (seeds 0 and 1), at a
    # higher reconstruction error (0.0034 against 0.0042 per pixel): the faster rate bought
    # reconstruction, not disentanglement. Fixed here before any other row ran at 1e-4; the 1e-3 runs
    # are the second reading CPU64_LR1E3 (results/baselines64_lr1e-3.md). The nets are
    # disentanglement_lib's conv_encoder/deconv_decoder as written (conv64_dl): the first nets, Burgess et
    # al.'s 4×4 kernels with a softplus scale and PyTorch's init, are the second reading CPU64_V1
    # (results/baselines64_v1.md), an audit against disentanglement_lib having found them apart.
    "cpu64": dict(data="dsprites", resolution=64, net="conv64_dl", steps=CPU64_STEPS, batch_size=64, lr=1e-4,
                  log_every=100, checkpoint_every=1000),
    # disentanglement_lib (Locatello et al. 2019, model gin configs): its nets, Adam 1e-4, batch 64, 300k steps.
    "gpu": dict(data="dsprites", resolution=64, net="conv64_dl", steps=300_000, batch_size=64, lr=1e-4,
                log_every=500, checkpoint_every=10_000),
}
#: The 64×64 page's protocol until its nets became disentanglement_lib's (the pilot's and the first
#: page's runs): the conv64 nets (Burgess et al. 2018 kernels, softplus scale, PyTorch init).
CPU64_V1 = {**BASE["cpu64"], "net": "conv64"}
#: Evaluation sample sizes of :func:`inference.report.evaluate_run` per budget. cpu: MIG on
#: disentanglement_lib's 10,000 codes; DCI/SAP trained on 2,000 (disentanglement_lib: 10,000; GBT on
#: one core costs ~1 s per 100 points); FactorVAE score on 500/300 votes (10,000/5,000).
SIZES = {
    "tiny": {"codes_train": 300, "codes_test": 100, "dci_train": 200, "sap_train": 200,
             "factor_vae_train": 20, "factor_vae_eval": 10, "factor_vae_variance": 300,
             "beta_vae_train": 20, "beta_vae_eval": 10, "group_size": 16, "recon": 100},
    "cpu": {"codes_train": 10_000, "codes_test": 2_000, "dci_train": 2_000, "sap_train": 2_000,
            "factor_vae_train": 500, "factor_vae_eval": 300, "factor_vae_variance": 5_000,
            "beta_vae_train": 300, "beta_vae_eval": 150, "group_size": 64, "recon": 2_000},
    "gpu": None,  # disentanglement_lib's sizes (report.SIZES["full"])
}
SIZES["cpu64"] = SIZES["cpu"]  # the same evaluation as the 32×32 page (issue 25)
#: The 64×64 page's first protocol (lr 1e-3), which the pilot replaced: its runs stay, as a labelled
#: second reading under their own name, never mixed with the budget's.
CPU64_LR1E3 = {**CPU64_V1, "lr": PILOT64_FIRST_LR}
#: dpVAE's scoring sizes per budget (:func:`inference.papers.dpvae.score`).
DPVAE_SCORE = {
    "tiny": dict(mig_codes=300, fv_train=20, fv_eval=10, fid_images=100, lp_pool=500, lp_data=300),
    "cpu": dict(mig_codes=10_000, fv_train=500, fv_eval=300, fid_images=2_000, lp_pool=10_000, lp_data=10_000),
    "gpu": dict(mig_codes=10_000, fv_train=10_000, fv_eval=5_000, fid_images=10_000, lp_pool=20_000,
                lp_data=10_000),
}
SHAPES_NOTE = {
    "tiny": "Smoke test only: nothing has learned.",
    "cpu": (f"**32×32 procedural dSprites** (the simulator at half the side), conv32 nets, batch 64, "
            f"Adam lr 1e-3, {CPU_STEPS:,} steps, one core per run. disentanglement_lib trains 64×64 dSprites "
            f"for 300,000 steps at lr 1e-4: ours is {300_000 // CPU_STEPS}× fewer steps on images 4× smaller."),
    "gpu": "The papers' protocol: 64×64 procedural dSprites, conv64, lr 1e-4, batch 64, 300,000 steps.",
}


def protocol(budget: str) -> dict:
    """What a row's numbers depend on beyond its settings: the budget's training and evaluation sizes."""
    return {"train": BASE[budget], "eval": SIZES[budget]}


def dip_base(budget: str) -> dict:
    """The DIP study's training settings at ``budget``: the shapes budget, cpu cut to :data:`DIP_CPU_STEPS`."""
    return {**BASE[budget], "steps": DIP_CPU_STEPS} if budget == "cpu" else BASE[budget]


def dip_protocol(budget: str) -> dict:
    return {"train": dip_base(budget), "eval": SIZES[budget], "beta_vae_classifiers": ["svm", "logistic"]}


# -- the shared run store ---------------------------------------------------------------------------
def store_dir(runs: Path, budget: str, settings: dict, seed: int, base: dict | None = None) -> Path:
    """Where the run of ``settings`` (a catalog model's flags) at ``budget`` and ``seed`` lives: keyed
    by the resolved config (defaults filled in) and the net it trains with, so equal runs share a folder
    however they were named. ``base``: the budget's settings (default ``BASE[budget]``)."""
    from ..catalog import resolve_config

    hyper = {k: v for k, v in settings.items() if k != "model"}
    base = BASE[budget] if base is None else base
    flags = {**base, **resolve_config(settings["model"], hyper)}
    # The net the run trains with is the row's, else the budget's (train_run's flags: {**base, **settings}).
    # Keys made before a budget named another net held resolve_config's "auto" there, which is the first
    # nets at 64×64: those keep it, so every stored run keeps its folder; any other net enters the key.
    net = hyper.get("net", base.get("net", "auto"))
    if net not in ("auto", "conv64"):
        flags["net"] = net
    if flags.get("discriminator") == "dpvae":  # FactorVAE's default, from before the setting existed
        del flags["discriminator"]
    key = hashlib.sha1(json.dumps(flags, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return Path(runs) / "shapes" / budget / f"{settings['model']}-{key}" / f"seed_{seed}"


def trained(runs: Path, budget: str, settings: dict, seed: int, base: dict | None = None) -> Path:
    """Train (or finish training) the run of ``settings``; its directory. A new run starts from the
    store's longest shorter run of the same settings (:data:`CONTINUES`), when there is one."""
    base = BASE[budget] if base is None else base
    flags = {**base, **settings, "seed": seed, "no_pictures": budget == "tiny"}
    run_dir = store_dir(runs, budget, settings, seed, base)
    summary = run_dir / SUMMARY
    if summary.is_file() and json.loads(summary.read_text()).get("step") == flags["steps"]:
        return run_dir
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    if not (run_dir / CHECKPOINT).is_file():
        continue_from(runs, budget, settings, seed, base, run_dir)
    train_run(flags, run_dir, resume=(run_dir / CHECKPOINT).is_file(), progress=False)
    return run_dir


def continue_from(runs: Path, budget: str, settings: dict, seed: int, base: dict, run_dir: Path) -> Path | None:
    """Copy the longest finished shorter run of ``settings`` (its config, checkpoint and metrics) into
    the empty ``run_dir``, so that training continues it; the run copied from, or None."""
    for steps in sorted((s for s in CONTINUES.get(budget, ()) if s < base["steps"]), reverse=True):
        shorter = store_dir(runs, budget, settings, seed, {**base, "steps": steps})
        summary = shorter / SUMMARY
        if not summary.is_file() or json.loads(summary.read_text()).get("step") != steps:
            continue
        staging = run_dir.with_name(run_dir.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name in (RUN_CONFIG, CHECKPOINT, RUN_METRICS):
            shutil.copy2(shorter / name, staging / name)
        shutil.rmtree(run_dir, ignore_errors=True)  # empty or a partial copy: no checkpoint was in it
        staging.rename(run_dir)  # whole or not at all
        return shorter
    return None


def cached(run_dir: Path, kind: str, compute) -> dict:
    """``compute()`` once per run and ``kind``: kept in ``eval_<kind>.json``."""
    path = run_dir / f"eval_{kind}.json"
    if path.is_file():
        return json.loads(path.read_text())
    numbers = compute()
    atomic_write_text(path, json.dumps(numbers, indent=2, default=float) + "\n")
    return numbers


def runs_root(row_folder: Path) -> Path:
    """The runs folder of a row folder ``runs/<paper>/<budget>/<row>/seed_<k>``."""
    return Path(row_folder).parents[3]


def final_terms(run_dir: Path) -> dict:
    return json.loads((run_dir / SUMMARY).read_text()).get("terms", {})


def train_seconds(run_dir: Path) -> float:
    """The stored run's training time, over every session that trained it (a row that reuses the run
    reports it as ``train_s``, so that the page's wall time counts the training once it is shared)."""
    return float(json.loads((run_dir / SUMMARY).read_text()).get("train_seconds", float("nan")))


#: DCI's importance model on every shapes page: disentanglement_lib's gradient-boosted trees.
DCI_IMPORTANCE = "gbt"


def disentanglement(run_dir: Path, budget: str, seed: int, beta_vae_classifier: str = "logistic") -> dict:
    """disentanglement_lib's metrics (MIG, FactorVAE, DCI with GBT, SAP, β-VAE metric) and the
    reconstruction of a run, as flat numbers."""
    def compute():
        rep = evaluate_run(run_dir, ("training", "reconstruction", "factor_metrics"), full=budget == "gpu",
                           seed=seed, sizes=SIZES[budget], dci_importance=DCI_IMPORTANCE,
                           beta_vae_classifier=beta_vae_classifier, fid=False)
        m = rep["metrics"]
        return {**_factor_numbers(m), "recon_l2": m["reconstruction"]["l2"],
                "recon_nll": final_terms(run_dir).get("recon", float("nan")),
                "train_s": rep.get("training", {}).get("train_seconds") or float("nan")}
    return cached(run_dir, f"disentanglement_{beta_vae_classifier}", compute)


def _factor_numbers(m: dict) -> dict:
    """The flat numbers of a report's ``factor_metrics`` section (``report["metrics"]``)."""
    return {"mig": m["mig"]["value"], "factor_vae": m["factor_vae"]["eval_accuracy"],
            "dci_d": m["dci"]["disentanglement"], "dci_c": m["dci"]["completeness"],
            "dci_i": m["dci"]["informativeness_test"], "sap": m["sap"]["discrete"], "sap_continuous": m["sap"]["continuous"],
            "beta_vae": m["beta_vae"]["eval_accuracy"],
            "factor_vae_active": m["factor_vae"]["num_active_dims"],  # the latents left after its pruning
            # the latent × factor MI matrix (nats) and the factors' entropies: the page's figure
            "mi": m["mutual_information"]["matrix"], "mi_factors": m["mutual_information"]["factors"],
            "factor_entropy": m["mutual_information"].get("factor_entropy"),
            # each latent's variance of its posterior mean over the same codes (active units)
            "code_var": m["active_units"]["variance"]}


def initial_guide(run_dir: Path):
    """The guide of ``run_dir``'s run as it was before its first step: its architecture rebuilt from the
    run's config and initialised as :func:`~inference.runs.train_run` initialises it (the run's seed,
    then the catalog's build). The RNG streams outside are left as they were."""
    from ..catalog import build

    config = json.loads((Path(run_dir) / RUN_CONFIG).read_text())
    with torch.random.fork_rng(devices=[]):  # the nets are built on the CPU: its generator is all they draw from
        torch.default_generator.manual_seed(int(config["seed"]))
        _, guide, _ = build(config, config["data_shape"], config["dataset_size"])
    return guide.eval()


def factor_metrics_of(run_dir: Path, budget: str, seed: int, guide=None) -> dict:
    """:func:`disentanglement`'s metrics (not the reconstruction) of ``run_dir`` on the very codes it
    scores (same sizes, classifiers and generator seed), with ``guide`` in place of the run's own
    (default: the run's own). Writes nothing into ``run_dir``."""
    from ..report import Evaluation

    ev = Evaluation(Path(run_dir), full=budget == "gpu", device="cpu", seed=seed, sizes=SIZES[budget],
                    dci_importance=DCI_IMPORTANCE, beta_vae_classifier="logistic")
    ev.progress, ev.write_pictures = False, False  # the run's own report and pictures stay its own
    if guide is not None:
        ev.guide = guide.to(ev.device).eval()
    with torch.no_grad():  # as evaluate_run scores every section
        ev.factor_metrics()
    return _factor_numbers(ev.report["metrics"])


def untrained_floor(run_dir: Path, budget: str, seed: int) -> dict:
    """Every metric of the floor: ``run_dir``'s encoder at its initialisation (:func:`initial_guide`, the
    weights the run started from), scored on the trained run's codes (:func:`factor_metrics_of`).
    Kept in the run folder as ``eval_floor.json``."""
    return cached(Path(run_dir), "floor_v2", lambda: {**factor_metrics_of(run_dir, budget, seed, initial_guide(run_dir)),
                                                      "untrained": True})


def _floor_outdated(numbers: dict) -> str | None:
    """A floor record made before the floor kept the FactorVAE metric's active latents is run again."""
    return ("it predates the FactorVAE metric's count of active latents"
            if numbers.get("untrained") and "factor_vae_active" not in numbers else None)


def code_variance(run_dir: Path, budget: str, seed: int, mig: float | None = None) -> dict:
    """``{"code_var": [...]}``: each latent's variance of its posterior mean over the codes that
    :func:`disentanglement` drew for MIG (same run, same seed, same draw), for a record made before its
    evaluation kept them. ``mig``: the record's MIG; the codes must give it again (within 1e-6), else
    they are not the record's codes and nothing is returned but an error."""
    from ..metrics import active_units, mig as mig_of
    from ..report import Evaluation

    ev = Evaluation(run_dir, full=budget == "gpu", device="cpu", seed=seed, sizes=SIZES[budget])
    with torch.no_grad():
        codes, factors = ev.codes_of(ev.train, ev.sizes["codes_train"], 1)
    if mig is not None and not abs(mig_of(codes, factors) - mig) <= 1e-6:
        raise ConfigError(f"the codes of {run_dir} give MIG {mig_of(codes, factors):.6f}, the record {mig:.6f}: "
                          "they are not the codes the record was evaluated on; re-run the row instead")
    return {"code_var": active_units(codes)["variance"]}


def _amend_baseline(row, settings, seed, folder, budget, numbers, base=None):
    """What a baselines record lacks (:func:`code_variance`), from its stored run; None if the run is
    not on this machine."""
    if "code_var" in numbers:
        return {}
    run_dir = store_dir(runs_root(folder), budget, settings, seed, base)
    if not (run_dir / CHECKPOINT).is_file():
        return None
    return code_variance(run_dir, budget, seed, numbers.get("mig"))


# -- claim 1: the baselines -------------------------------------------------------------------------
#: The six baselines and the hyperparameter each is run at. β-VAE: β = 4 (dpVAE supplement Table 1);
#: β-TCVAE: β = 6 with α = γ = 1 and the MWS estimator (disentanglement_lib's beta_tc_vae); FactorVAE:
#: γ = 40 (Kim & Mnih 2018's dSprites choice, inside disentanglement_lib's sweep 10–100); DIP-VAE-I:
#: λ_od = 20, λ_d = 10·λ_od; DIP-VAE-II: λ_od = λ_d = 20 (inside disentanglement_lib's sweep 1–100,
#: and points of the DIP study's grid, so those runs are shared with claim 2).
#: FactorVAE's discriminator is disentanglement_lib's (six layers, TF init, the whole batch against its
#: permutation); :data:`BASELINES_V1`, the first page's and the 32×32 page's rows, had the dpVAE
#: supplement's (five layers, half batches).
BASELINES_V1 = {
    "VAE": {"model": "vae"},
    "β-VAE": {"model": "beta", "beta": 4.0},
    "β-TCVAE": {"model": "betatc", "beta": 6.0, "alpha": 1.0, "gamma": 1.0, "estimator": "mws"},
    "FactorVAE": {"model": "factor", "gamma": 40.0},
    "DIP-VAE-I": {"model": "dip1", "lambda_od": 20.0, "lambda_d": 200.0},
    "DIP-VAE-II": {"model": "dip2", "lambda_od": 20.0, "lambda_d": 20.0},
}
BASELINES = {**BASELINES_V1, "FactorVAE": {"model": "factor", "gamma": 40.0, "discriminator": "dl"}}
METRICS = [("mig", "MIG"), ("factor_vae", "FactorVAE score"), ("dci_d", "DCI disent. (GBT)"), ("dci_i", "DCI inform. (GBT)"),
           ("sap", "SAP"), ("beta_vae", "β-VAE metric (logistic)"), ("recon_l2", "recon L2/pixel"),
           ("recon_nll", "recon NLL (nats/image)")]
#: A rough scale for dSprites from disentanglement_lib's study (Locatello et al. 2019): their numbers
#: exist only as violin plots over 50 runs per model (300k steps, 64×64), no table; these ranges are
#: approximate readings, not values to compare digits against.
REFERENCE = {"mig": "≈0.05–0.35", "factor_vae": "≈0.6–0.85", "dci_d": "≈0.1–0.6", "sap": "≈0.01–0.08"}


#: The floor row of the lead page: the plain VAE's encoder before its first step (:func:`untrained_floor`).
#: An objective that learned nothing scores here, so every trained model's MIG is tested against it.
FLOOR = "untrained encoder (floor)"
FLOOR_ROW = {"model": "vae", "untrained": True}


def _run_baseline(row, settings, seed, folder, budget):
    if settings.get("untrained"):  # the VAE's run of this seed, scored with the encoder it started from
        # (trained here first if this machine lacks it: the row's wall time then counts that training)
        run = trained(runs_root(folder), budget, {k: v for k, v in settings.items() if k != "untrained"}, seed)
        return untrained_floor(run, budget, seed)
    return disentanglement(trained(runs_root(folder), budget, settings, seed), budget, seed)


def _base_of(base_name: str, budget: str) -> dict | None:
    """A second reading's cpu64 training settings (the module constant ``base_name``, read at call time);
    None at any other budget (tiny: the smoke test's own settings)."""
    return globals()[base_name] if budget == "cpu64" else None


def _run_baseline_on(base_name, row, settings, seed, folder, budget):
    """A row of a 64×64 second reading, whose runs used :func:`_base_of` ``base_name``: the run store's."""
    return disentanglement(trained(runs_root(folder), budget, settings, seed, _base_of(base_name, budget)), budget, seed)


def _amend_baseline_on(base_name, row, settings, seed, folder, budget, numbers):
    return _amend_baseline(row, settings, seed, folder, budget, numbers, _base_of(base_name, budget))


def _protocol_on(base_name, budget: str) -> dict:
    return {"train": _base_of(base_name, budget), "eval": SIZES["cpu64"]} if budget == "cpu64" else protocol(budget)


def active_latents(numbers: dict):
    """A record's active latents (Burda et al. 2016: variance of the posterior mean > ACTIVE_AT), as a
    boolean per latent, or None when the record predates ``code_var``."""
    import numpy as np

    from ..metrics import ACTIVE_AT

    return None if "code_var" not in numbers else np.asarray(numbers["code_var"], float) > ACTIVE_AT


def _active_column(results, name) -> str:
    """Mean ± std of the active-unit counts of ``name``'s records, and how many records keep them when
    some do not."""
    counts = [int(a.sum()) for a in map(active_latents, (n for _, n in sorted(results[name].items()))) if a is not None]
    shown = fmt(counts, 1)
    return shown if len(counts) in (0, len(results[name])) else f"{shown} ({len(counts)} of {len(results[name])} records)"


def _train_minutes(results, name) -> str:
    """Training minutes of ``name``'s records trained on a CPU; those trained on a GPU are counted apart."""
    per_seed = [n for _, n in sorted(results[name].items())]
    shown = fmt([n["train_s"] / 60 for n in per_seed if on_cpu(n) and "train_s" in n], 1)
    gpu = sum(not on_cpu(n) for n in per_seed)
    return shown + (f" ({gpu} trained on a GPU left out)" if gpu else "")


def _baselines_page(results, budget):
    active = any(active_latents(n) is not None for per_seed in results.values() for n in per_seed.values())
    header = ["model", "n"] + [label for _, label in METRICS] + ["active units"] * active + ["train min"]
    rows = [[name, str(len(results[name]))] + [fmt(column(results, name, k), 4 if k == "recon_l2" else 3) for k, _ in METRICS]
            + [_active_column(results, name)] * active
            + [_train_minutes(results, name)] for name in (*BASELINES, FLOOR) if name in results]
    ref = (["disentanglement_lib on dSprites, approximate range (Locatello et al. 2019, violin plots)", ""]
           + [REFERENCE.get(k, "") for k, _ in METRICS] + [""] * active + [""])
    mi = _mi_table(results)
    floor = ""
    if FLOOR in results:
        from ..metrics.factor_vae import PRUNE_STD

        # seeds where the FactorVAE metric pruned every latent (its own count): none was left to vote
        zero = sum(n.get("factor_vae_active") == 0 for n in results[FLOOR].values())
        floor = (f"\n*{FLOOR}*: the plain VAE's encoder as initialised, the very weights its run of the same seed "
                 "started from, scored on the same codes with the same metrics; what an objective that learned nothing "
                 "scores. Its reconstruction and training columns do not apply ('–'). A model whose MIG is near "
                 "this floor while its informativeness is above it learned the factors without setting them apart."
                 + (f" In {zero} of its {len(results[FLOOR])} seeds the FactorVAE metric found no latent whose code "
                    f"varies by std {PRUNE_STD:g} or more: it drops such latents (disentanglement_lib's `prune_dims`) "
                    "and, with none left to vote, scores 0, as theirs does." if zero else "") + "\n")
    return table(header, rows + [ref]) + floor + ("\n" + mi if mi else "")


def _baselines_claims(results, budget, pilot_seeds=(), floor: bool = False):
    """``pilot_seeds``: seeds of β-TCVAE and the VAE that the pilot chose the budget from; the budget
    check is then also judged without them (a confirmatory reading the choice cannot have biased).
    ``floor``: the page has the :data:`FLOOR` row, and every model is tested against it."""
    # The comparator the papers name: β-TCVAE against the plain VAE on MIG (Chen et al. 2018, Fig. 3).
    tc, vae = column(results, "β-TCVAE", "mig"), column(results, "VAE", "mig")
    claims = [Claim.tested("Budget check: β-TCVAE's MIG above the plain VAE's",
                           "β-TCVAE > VAE in MIG (Chen et al. 2018; Locatello et al. 2019 Fig. 13)",
                           f"β-TCVAE {fmt(tc)} vs VAE {fmt(vae)}", ("MIG", two_arm(tc, vae, higher=True)))]
    if pilot_seeds:
        fresh = {row: {s: n for s, n in per_seed.items() if s not in pilot_seeds} for row, per_seed in results.items()}
        tc_f, vae_f = column(fresh, "β-TCVAE", "mig"), column(fresh, "VAE", "mig")
        claims.append(Claim.tested(
            f"Budget check on the seeds the pilot did not see (all but {', '.join(map(str, pilot_seeds))})",
            "as above; the pilot chose the budget's learning rate from these two rows' seeds "
            f"{', '.join(map(str, pilot_seeds))}, so this reading leaves them out",
            f"β-TCVAE {fmt(tc_f)} vs VAE {fmt(vae_f)}", ("MIG", two_arm(tc_f, vae_f, higher=True))))
    # Claim 1 as the papers state it: each regularised objective disentangles more than the plain VAE
    # (Higgins et al. 2017; Chen et al. 2018; Kim & Mnih 2018; Kumar et al. 2018), each a Welch test on
    # MIG against the VAE; the claim is their conjunction (stats.all_of: each holds at α, one fails at α/k).
    # disentanglement_lib's range (REFERENCE) stays on the table as orientation only: it is read off
    # violin plots, not a number to test against.
    regularised = [n for n in BASELINES if n != "VAE"]
    if any(n in results for n in regularised):
        claims.append(_all_above(results, regularised, "VAE", "Every regularised baseline's MIG is above the plain VAE's",
                                 "each regularised objective disentangles more than the VAE (β-VAE, β-TCVAE, FactorVAE, "
                                 "DIP-VAE papers; Locatello et al. 2019 Fig. 13 for the spread)"))
    if floor:
        # Not a paper's claim but what every claim above presumes: training gave each model a code of the
        # factors, more informative than its encoder's untrained one (FLOOR), where an objective that learned
        # nothing stays. Informativeness (DCI's test accuracy), not MIG: a model can learn the factors in a
        # rotated code whose MIG sits at the floor (then it learned and did not disentangle).
        claims.append(_all_above(
            results, list(BASELINES), FLOOR,
            "Prerequisite: every model's code predicts the factors better than the untrained encoder's (the floor)",
            "– (not a paper's claim: an objective that learned nothing stays at the floor; DCI informativeness, "
            "Eastwood & Williams 2018, GBT test accuracy as disentanglement_lib's `dci`)", key="dci_i"))
    return claims


def _all_above(results, names, comparator, claim, paper, key: str = "mig") -> Claim:
    """Each of ``names`` above ``comparator`` in ``key``, a one-sided Welch test each; the claim is their
    conjunction (stats.all_of: each holds at α, one fails at α/k), inconclusive while a row is not run unless
    one already does not hold."""
    ran = [n for n in names if n in results]
    base = column(results, comparator, key)
    tests = [(n, two_arm(column(results, n, key), base, higher=True)) for n in ran]
    if not tests:
        return Claim(claim, paper, "–", "inconclusive", f"not run: {', '.join(names)}")
    missing = [n for n in names if n not in results] + ([comparator] if comparator not in results else [])
    verdict = all_of([v for _, v in tests])
    if missing and verdict != "does not hold":
        verdict = "inconclusive"
    what = "" if key == "mig" else f"{dict(METRICS).get(key, key)}: "
    return Claim.tested(claim, paper, what + ", ".join(f"{n} {fmt(column(results, n, key))}" for n in ran)
                        + f"; {comparator} {fmt(base)}" * (comparator != "VAE" and comparator in results)
                        + (f"; not run: {', '.join(missing)}" if missing else ""), *tests, verdict=verdict, family=True)


#: What was checked when the budget check did not hold (issue 17: check the implementation once more).
CHECKED = (
    "\n\n**Checked against the references** (`tests/test_penalties.py`, `tests/test_metrics.py`): the "
    "β-TCVAE loss differs from disentanglement_lib's `kl_loss + (β − 1)·tc` only by the MWS constant "
    "(D − 1)·log(N·B), with the same gradient; the plate carries the dataset size N. Our MIG follows "
    "disentanglement_lib's `mig.py` (20 equal-width bins, the factor's empirical entropy). SAP is the "
    "discrete one (disentanglement_lib's `sap_score.continuous_factors = False`).")
#: The nets of each 64×64 protocol, as its page states them.
NETS_DL = ("disentanglement_lib's nets as written (`conv_encoder`: convs 32-32-64-64 with kernels 4, 4, 2, 2, "
           "stride 2, dense 256, separate mean and log-variance heads; `deconv_decoder`; Glorot-uniform weights and "
           "zero biases, TF's defaults), 10 latents, Bernoulli decoder, FactorVAE's discriminator `fc_discriminator` "
           "(six layers of 1000, the same init) trained on the whole batch's codes against the same codes permuted")
NETS_V1 = ("our first conv64 nets (Burgess et al. 2018: four 4×4 stride-2 convs 32-32-64-64, dense 256, a softplus "
           "scale; PyTorch's default init), 10 latents, Bernoulli decoder, and FactorVAE's five-layer discriminator "
           "on half batches (dpVAE supplement §3). disentanglement_lib's `conv_encoder` has 2×2 kernels in its last "
           "two convs, a log-variance head and TF's init, and its discriminator six layers on the whole batch: an "
           "audit found these apart after the runs, and the 64×64 page `baselines.md` now uses disentanglement_lib's")
#: What still differs from disentanglement_lib's training (each checked; none is a tuning choice).
DL_DEVIATIONS = (" Still different from disentanglement_lib: procedural dSprites drawn by our renderer, not the "
                 "dSprites file (the same factor grid; our shapes' outlines and sizes are our own, and smaller: "
                 f"{_dsprites.MEAN_PIXEL_64:.1%} of the pixels are on, on average, against the file's "
                 f"{_dsprites.DSPRITES_FILE_MEAN_PIXEL:.2%}, so each factor moves fewer pixels); the loss is the "
                 "ELBO summed over the dataset (Pyro's plate scale), which Adam's update ignores up to ε; PyTorch's "
                 "Adam applies ε after the bias correction, TF's before; the discriminator's cross-entropy is not "
                 "clipped (TF clips probabilities to [1e-6, 1 − 1e-6]).")


def _cpu64_note(lr: float, lr_note: str, tail: str, nets: str = NETS_DL) -> str:
    return (f"**64×64 procedural dSprites** with {nets}, batch 64, Adam lr {lr:g} (disentanglement_lib: 1e-4; {lr_note}), "
            f"{CPU64_STEPS:,} steps, one core per run: {CPU64_STEPS * 64 / (300_000 * 64):.0%} of disentanglement_lib's "
            f"300,000 steps × 64 images. The evaluation is the 32×32 page's (MIG on 10,000 codes; DCI with GBT and "
            f"SAP trained on 2,000; FactorVAE score on 500/300 votes). " + tail)


CPU64_NOTE = _cpu64_note(
    BASE["cpu64"]["lr"], f"a pilot on the first nets chose it over {PILOT64_FIRST_LR:g}: `baselines64_v1.md`",
    f"The steps come from that pilot. The first nets' runs are the second readings `baselines64_v1.md` (lr "
    f"{BASE['cpu64']['lr']:g}) and `baselines64_lr1e-3.md`." + DL_DEVIATIONS)
CPU64_V1_NOTE = _cpu64_note(
    CPU64_V1["lr"], f"the pilot began at {PILOT64_FIRST_LR:g}, whose runs are the second reading "
    "`baselines64_lr1e-3.md`", "The steps and learning rate come from the pilot below.", NETS_V1)


def pilot_records(results: Path) -> dict:
    """The pilot's records ``{"<row>|<seed>|<steps>": numbers}`` kept in ``results/baselines_pilot.json``."""
    path = Path(results) / PILOT_FILE
    return json.loads(path.read_text())["records"] if path.is_file() else {}


def pilot_key(row: str, seed: int, steps: int, lr: float | None = None) -> str:
    """A pilot record's key: ``"<row>|<seed>|<steps>"`` at the rate the pilot began at
    (:data:`PILOT64_FIRST_LR`), with ``"|<lr>"`` appended at any other (its learning-rate arm, now the
    budget's rate). ``lr`` defaults to the budget's. The keys never change meaning with the budget."""
    lr = CPU64_V1["lr"] if lr is None else lr
    return f"{row}|{seed}|{steps}" + ("" if lr == PILOT64_FIRST_LR else f"|{lr:g}")


def parse_pilot_key(key: str) -> tuple[str, int, int, float]:
    """``(row, seed, steps, lr)`` of a :func:`pilot_key`."""
    row, seed, steps, *lr = key.split("|")
    return row, int(seed), int(steps), float(lr[0]) if lr else PILOT64_FIRST_LR


def pilot64(runs, results, *, rows=PILOT64_ROWS, seeds=PILOT64_SEEDS, lr: float | None = None,
            log=print) -> dict:
    """The 64×64 pilot of issue 25: each (row, seed) trained to every milestone of
    :data:`PILOT64_STEPS` in turn (each continues the one before, bit-identical to training that long
    from the start) and evaluated there; each record enters ``results/baselines_pilot.json`` as soon
    as it is evaluated (merged under a file lock, so two processes share the file). At the budget's
    learning rate the last milestone is the ``cpu64`` budget's own run; ``lr`` runs the pilot's
    learning-rate arm (its own run folders and keys, :func:`pilot_key`). Returns every record."""
    import fcntl

    unknown = [r for r in rows if r not in BASELINES]
    if unknown:
        raise ConfigError(f"--only {unknown[0]!r} is not a row of baselines; its rows: {', '.join(BASELINES)}")
    if lr is not None and not (isinstance(lr, (int, float)) and 0 < lr < math.inf):
        raise ConfigError(f"lr must be a positive number, got {lr!r}")
    lr = CPU64_V1["lr"] if lr is None else float(lr)
    path = Path(results) / PILOT_FILE
    for steps in PILOT64_STEPS:
        base = {**CPU64_V1, "steps": steps, "lr": lr}  # the pilot ran on the first nets (its records are theirs)
        for row in rows:
            for seed in seeds:
                key = pilot_key(row, seed, steps, lr)
                if key in pilot_records(results):
                    continue
                log(f"[pilot64] {row} seed {seed} to {steps:,} steps")
                run_dir = trained(runs, "cpu64", BASELINES_V1[row], seed, base)
                numbers = disentanglement(run_dir, "cpu64", seed) | {
                    "steps": steps, "lr": lr, "train_s": train_seconds(run_dir),
                    "s_per_step": json.loads((run_dir / SUMMARY).read_text()).get("steps_per_second_last_session")}
                numbers["s_per_step"] = 1.0 / numbers["s_per_step"] if numbers["s_per_step"] else float("nan")
                lock_path = Path(runs) / "shapes" / "cpu64" / ".pilot.lock"  # beside the runs, not in results/
                with open(lock_path, "w") as lock:
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    kept = json.loads(path.read_text()) if path.is_file() else {}  # e.g. its idle speed
                    records = pilot_records(results) | {key: numbers}
                    atomic_write_text(path, json.dumps(
                        {**kept, "what": "issue 25's 64×64 pilot", "protocol": _protocol_on("CPU64_V1", "cpu64"),
                         "records": dict(sorted(records.items()))}, indent=2, default=float) + "\n")
                log(f"[pilot64] {key}: MIG {numbers['mig']:.3f}, recon L2 {numbers['recon_l2']:.4f}")
    return pilot_records(results)


def pilot64_speed(runs, results, *, steps: int = 300, warmup: int = 50) -> dict:
    """Seconds per step of the ``cpu64`` β-TCVAE on one thread, measured by training ``steps`` steps
    from scratch (the first ``warmup`` left out), kept in ``results/baselines_pilot.json`` under
    ``speed``: run it on an idle machine. The page reads the budget's cost from it."""
    import tempfile
    import time as _time

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        Path(runs).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=runs) as tmp:
            flags = {**CPU64_V1, **BASELINES_V1["β-TCVAE"], "seed": 0, "no_pictures": True,
                     "checkpoint_every": 10 * steps, "log_every": 50}
            train_run({**flags, "steps": warmup}, Path(tmp) / "a", progress=False)  # imports, allocator
            t0 = _time.perf_counter()
            train_run({**flags, "steps": warmup + steps}, Path(tmp) / "a", resume=True, progress=False)
            seconds = (_time.perf_counter() - t0) / steps
    finally:
        torch.set_num_threads(threads)
    import platform

    speed = {"s_per_step": seconds, "steps": steps, "threads": 1, "torch": torch.__version__,
             "cpu": platform.processor() or platform.machine()}
    path = Path(results) / PILOT_FILE
    page = json.loads(path.read_text()) if path.is_file() else {"what": "issue 25's 64×64 pilot", "records": {}}
    atomic_write_text(path, json.dumps({**page, "speed": speed}, indent=2, default=float) + "\n")
    return speed


def _pilot_reading(records: dict, speed: dict | None = None) -> str:
    """What the pilot's records say about the choice of steps and learning rate, computed from them:
    per model and learning rate the mean MIG and reconstruction error at each milestone, the change over
    the last stretch, and the run time the budget costs at the pilot's own speed."""
    from .driver import stats as mean_sd

    budget_lr = CPU64_V1["lr"]
    by = {}
    for key, n in records.items():
        row, _, steps, lr = parse_pilot_key(key)
        by.setdefault((row, lr), {}).setdefault(steps, []).append(n)
    lrs = sorted({lr for _, lr in by}, reverse=True)
    parts = []
    for (row, lr), milestones in sorted(by.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
        done = sorted(milestones)
        mig = ", ".join(f"{s:,}: {mean_sd([n['mig'] for n in milestones[s]])[0]:.3f}" for s in done)
        parts.append(f"{row}{f' at lr {lr:g}' if len(lrs) > 1 else ''} mean MIG by steps {mig}")
        if len(done) > 1:
            (a, b) = done[-2], done[-1]
            ra = mean_sd([n["recon_l2"] for n in milestones[a]])[0]
            rb = mean_sd([n["recon_l2"] for n in milestones[b]])[0]
            parts[-1] += f" (recon L2 {ra:.4f} → {rb:.4f} from {a:,} to {b:,} steps)"
    speeds = [n["s_per_step"] for n in records.values() if math.isfinite(n.get("s_per_step", math.nan))]
    fastest = min(speeds) if speeds else math.nan
    idle = (f"On an idle core ({speed['cpu']}, torch {speed['torch']}, {speed['steps']} steps timed) one step takes "
            f"{speed['s_per_step'] * 1000:.0f} ms, so the budget's {CPU64_STEPS:,} steps cost "
            f"{CPU64_STEPS * speed['s_per_step'] / 60:.0f} minutes of training per run. ") if speed else ""
    return ("; ".join(parts) + ". " + idle + (
        f"The pilot's own runs shared the machine (fastest {fastest * 1000:.0f} ms/step). " if speeds else "")
            + f"The budget was fixed at {CPU64_STEPS:,} steps before the pilot ran, as the most that fit "
              "30–40 minutes on one idle core; the pilot shows whether the models still change over its last "
              "stretch. " + _lr_reading(by, budget_lr, mean_sd))


#: Why the budget's learning rate is what it is, once the pilot's records compare the two rates.
LR_CHOICE = {
    1e-4: ("The budget takes 1e-4, disentanglement_lib's own rate: the pilot's reason is β-TCVAE, whose MIG at "
           "1e-3 stayed at the VAE's level at every milestone while at 1e-4 it rose clear of it (the table "
           "below), with a higher reconstruction error: within the budget's steps the faster rate bought "
           "reconstruction, not disentanglement. "
           "The rate was fixed before any other model ran at 1e-4, and no other rate was tried. The pilot's "
           "seeds 0 and 1 of β-TCVAE and the VAE are also the page's seeds 0 and 1 of those rows (the same "
           "runs), so the budget check includes the runs that chose its rate. The runs at 1e-3 stay as the "
           "second reading `baselines64_lr1e-3.md`."),
}


def _lr_reading(by: dict, budget_lr: float, mean_sd) -> str:
    """The learning-rate arm against the rate the pilot began at, per model at the last milestone
    both reached, and the budget's choice between them (:data:`LR_CHOICE`)."""
    first = PILOT64_FIRST_LR
    others = sorted({lr for _, lr in by if lr != first}, reverse=True)
    head = (f"The pilot began at lr {first:g}, the 32×32 page's, ten times disentanglement_lib's 1e-4 for a "
            "tenth of its steps")
    if not others:
        return head + "; no other rate is piloted yet."
    parts = []
    for row in sorted({row for row, _ in by}):
        for lr in others:
            a, b = by.get((row, first), {}), by.get((row, lr), {})
            common = sorted(set(a) & set(b))
            if not common:
                continue
            s = common[-1]
            ma, mb = (mean_sd([n["mig"] for n in m[s]])[0] for m in (a, b))
            ra, rb = (mean_sd([n["recon_l2"] for n in m[s]])[0] for m in (a, b))
            parts.append(f"{row} at {s:,} steps, MIG {ma:.3f} at {first:g} (n = {len(a[s])}) against "
                         f"{mb:.3f} at {lr:g} (n = {len(b[s])}), recon L2 {ra:.4f} against {rb:.4f}")
    return (head + ". The pilot's learning-rate arm ran "
            + ", ".join(f"{lr:g}" for lr in others) + ": " + ("; ".join(parts) or "no milestone in common yet")
            + ". These are pilot figures, not a stated test; the page's records use the budget's rate, "
            + f"{budget_lr:g}. " + LR_CHOICE.get(budget_lr, ""))


def _pilot_appendix(results: Path, budget: str) -> str:
    """The pilot's table (every milestone, every seed) from its records, under the 64×64 page."""
    if budget != "cpu64":
        return ""
    records = pilot_records(results)
    path = Path(results) / PILOT_FILE
    speed = json.loads(path.read_text()).get("speed") if path.is_file() else None
    if not records:
        return "## Pilot\n\nNo pilot record yet (`python scripts/reproduce.py baselines --budget cpu64 --pilot`)."
    rows, order = [], []
    for key, n in records.items():
        row, seed, steps, lr = parse_pilot_key(key)
        order.append((row, -lr, steps, seed))
        rows.append([row, f"{lr:g}", str(seed), f"{steps:,}", f"{n['mig']:.3f}", f"{n['factor_vae']:.3f}",
                     f"{n['dci_d']:.3f}", f"{n['recon_l2']:.4f}", f"{n['train_s'] / 60:.1f}",
                     f"{n['s_per_step'] * 1000:.0f}"])
    rows = [r for _, r in sorted(zip(order, rows))]
    lrs = sorted({parse_pilot_key(k)[3] for k in records}, reverse=True)
    return ("## Pilot (issue 25): steps and learning rate\n\n" + _pilot_reading(records, speed) + "\n\n"
            f"β-TCVAE and the VAE, seeds {', '.join(map(str, PILOT64_SEEDS))}, trained at lr {PILOT64_FIRST_LR:g} "
            + (f"(the learning-rate arm: lr {', '.join(f'{lr:g}' for lr in lrs if lr != PILOT64_FIRST_LR)}, "
               "the seeds it shows) " if len(lrs) > 1 else "")
            + f"and evaluated at {', '.join(f'{s:,}' for s in PILOT64_STEPS)} steps (each milestone continues the one "
            "before). ms/step: the last training session's, one core, with the other core busy.\n\n"
            + table(["model", "lr", "seed", "steps", "MIG", "FactorVAE", "DCI disent.", "recon L2/pixel",
                     "train min (cumulative)", "ms/step"], rows))


def normalised_mi(numbers: dict):
    """A record's latent × factor MI divided by each factor's entropy (the fraction of the factor's
    information a latent carries, MIG's normalisation), or None when the record has no matrix."""
    import numpy as np

    if not numbers.get("mi") or not numbers.get("factor_entropy"):
        return None
    return np.asarray(numbers["mi"], float) / np.maximum(np.asarray(numbers["factor_entropy"], float), 1e-12)


def _mi_seed(results, row):
    """The lowest seed of ``row`` whose record keeps its MI matrix, or None."""
    return next((seed for seed, n in sorted(results.get(row, {}).items()) if normalised_mi(n) is not None), None)


#: The share of a factor's entropy a latent must carry for the page to say the model codes the factor.
CODES_AT = 0.2


def _mi_table(results) -> str:
    """Per model (one seed), the largest share of each factor's entropy that any one latent carries."""
    from ..metrics import ACTIVE_AT

    rows, names, shown = [], None, []
    with_active = any_active(results)  # the table's last column: some shown record keeps its active units
    for name in BASELINES:
        seed = _mi_seed(results, name)
        if seed is None:
            continue
        n = results[name][seed]
        names = names or n["mi_factors"]
        share, active = normalised_mi(n), active_latents(n)
        shown.append(active is not None)
        z = (lambda j: f"z{j}") if active is None else (lambda j: f"z{j}" + ("" if active[j] else "†"))  # noqa: E731
        best, where = share.max(0), share.argmax(0)
        by_latent = {}  # the coded factors grouped by the latent that carries each: a shared latent is entangled
        for f, b, j in zip(n["mi_factors"], best, where):
            if b >= CODES_AT:
                by_latent.setdefault(int(j), []).append(f)
        coded = "; ".join(f"{z(j)}: {' + '.join(fs)}" for j, fs in sorted(by_latent.items()))
        on = "–" if active is None else (", ".join(f"z{j}" for j in range(len(active)) if active[j]) or "none")
        rows.append([name, str(seed)] + [f"{b:.2f} ({z(j)})" for b, j in zip(best, where)] + [coded or "none"]
                    + [on] * with_active)
    if not rows:
        return ""
    active_note = (f" The active latents are those whose posterior mean varies over the data by more than "
                   f"{ACTIVE_AT:g} (Burda et al. 2016, §5.2), the only ones the decoder gets a signal from; † marks "
                   f"an inactive one: its MI is the 20-bin histogram reading the small wiggles of a mean the decoder "
                   f"ignores, not a code." if with_active else "")
    if with_active and not all(shown):
        active_note += f" {shown.count(False)} of the {len(shown)} records shown predate the active units (–)."
    return (f"**What each model codes** (one seed each, 10,000 codes): the largest share of a factor's entropy "
            f"that one latent carries, max_j I(z_j; v_k) / H(v_k), and that latent; a model codes a factor where "
            f"the share is ≥ {CODES_AT}. The codes column groups the coded factors by their latent: factors that "
            f"share one are coded together, not apart.{active_note}\n\n"
            + table(["model", "seed"] + list(names) + [f"codes (≥ {CODES_AT}), by latent"]
                    + ["active latents"] * with_active, rows))


def any_active(results) -> bool:
    """Whether a record shown in the codes table keeps its active units (the table's last column)."""
    return any(active_latents(results[name][seed]) is not None
               for name in BASELINES if (seed := _mi_seed(results, name)) is not None)


def _baselines_figures(results, out, budget, runs=None, prefix="baselines"):
    """The latent × factor MI matrix (normalised by the factor's entropy) of one seed per model."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    shown = [(name, _mi_seed(results, name)) for name in BASELINES]
    shown = [(name, seed) for name, seed in shown if seed is not None]
    if not shown:
        return []
    fig, axes = plt.subplots(1, len(shown), figsize=(2.3 * len(shown) + 1, 3.6), squeeze=False)
    for ax, (name, seed) in zip(axes[0], shown):
        n = results[name][seed]
        m = normalised_mi(n)
        im = ax.imshow(m, cmap="viridis", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(m.shape[1]), n["mi_factors"], rotation=60, ha="right", fontsize=7)
        active = active_latents(n)
        ax.set_yticks(range(m.shape[0]), [f"z{i}" + ("" if active is None or active[i] else "†") for i in range(m.shape[0])],
                      fontsize=7)
        if active is not None:  # an inactive latent's label in grey: its MI is not a code
            for label, on in zip(ax.get_yticklabels(), active):
                label.set_color("black" if on else "0.6")
        ax.set_title(f"{name}, seed {seed}", fontsize=8)
        for (i, j), v in np.ndenumerate(m):
            if v >= 0.1:
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=5.5, color="black" if v > 0.6 else "white")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="I(z_j; v_k) / H(v_k)")
    inactive = ("; † grey: inactive latent" if any(active_latents(results[name][seed]) is not None for name, seed in shown)
                else "")
    fig.suptitle(f"Latent × factor mutual information, normalised by the factor's entropy ({budget}{inactive})",
                 fontsize=9)
    name = f"{prefix}_mi_{budget}.png"
    atomic_save_figure(fig, out / name, dpi=110, metadata={"Software": None}, bbox_inches="tight")
    plt.close(fig)
    return [name]


BASELINES_REPRO = Reproduction(
    "baselines", "Claim 1: the baselines on 64×64 procedural dSprites (VAE, β-VAE, β-TCVAE, FactorVAE, DIP-VAE-I/II)",
    rows=lambda budget: {**BASELINES, FLOOR: FLOOR_ROW}, run=_run_baseline, page=_baselines_page,
    claims=functools.partial(_baselines_claims, floor=True), protocol=protocol, seeds=(0, 1, 2, 3, 4),
    outdated=_floor_outdated, after={FLOOR: "VAE"},
    budgets=("tiny", "cpu64", "gpu"),
    figures=_baselines_figures, amend=_amend_baseline,
    notes={**SHAPES_NOTE, "cpu64": CPU64_NOTE, "gpu": SHAPES_NOTE["gpu"] + " Nets: " + NETS_DL + "."})
#: The 32×32 reading of claim 1, kept as a second, labelled page (``results/baselines32.md``).
BASELINES32_REPRO = Reproduction(
    "baselines32", "Claim 1, second reading: the baselines on 32×32 procedural shapes (superseded by the 64×64 page)",
    rows=lambda budget: dict(BASELINES_V1), run=_run_baseline, page=_baselines_page, claims=_baselines_claims,
    protocol=protocol, budgets=("tiny", "cpu"), notes={**SHAPES_NOTE, "cpu": SHAPES_NOTE["cpu"] + CHECKED})
#: The 64×64 page at lr 1e-4 on the first nets (:data:`CPU64_V1`, :data:`BASELINES_V1`), which an audit
#: against disentanglement_lib replaced by its own: a second, labelled reading (``results/baselines64_v1.md``)
#: with the pilot that chose the rate, whose seeds 0 and 1 of β-TCVAE and the VAE are this page's.
BASELINES64_V1_REPRO = Reproduction(
    "baselines64_v1", "Claim 1, second reading: the baselines on 64×64 procedural dSprites at lr 1e-4 on our first "
    "nets (superseded by the 64×64 page on disentanglement_lib's nets)",
    rows=lambda budget: dict(BASELINES_V1), run=functools.partial(_run_baseline_on, "CPU64_V1"), page=_baselines_page,
    claims=lambda results, budget: _baselines_claims(results, budget, PILOT64_SEEDS if budget == "cpu64" else ()),
    protocol=functools.partial(_protocol_on, "CPU64_V1"), seeds=(0, 1, 2, 3, 4), budgets=("tiny", "cpu64"),
    appendix=_pilot_appendix, amend=functools.partial(_amend_baseline_on, "CPU64_V1"),
    figures=functools.partial(_baselines_figures, prefix="baselines64_v1"), notes={"cpu64": CPU64_V1_NOTE})
#: The 64×64 page's first protocol, lr 1e-3, which the pilot replaced (:data:`CPU64_LR1E3`): a second,
#: labelled reading (``results/baselines64_lr1e-3.md``) of the runs made before the switch.
BASELINES64_LR1E3_REPRO = Reproduction(
    "baselines64_lr1e-3", "Claim 1, second reading: the baselines on 64×64 procedural dSprites at lr 1e-3 "
    "(superseded by the 64×64 page at lr 1e-4)",
    rows=lambda budget: dict(BASELINES_V1), run=functools.partial(_run_baseline_on, "CPU64_LR1E3"),
    page=_baselines_page, claims=_baselines_claims, protocol=functools.partial(_protocol_on, "CPU64_LR1E3"),
    seeds=(0, 1, 2, 3, 4), budgets=("tiny", "cpu64"), amend=functools.partial(_amend_baseline_on, "CPU64_LR1E3"),
    figures=functools.partial(_baselines_figures, prefix="baselines64_lr1e-3"),
    notes={"cpu64": _cpu64_note(
        PILOT64_FIRST_LR, "the budget's first rate, which the pilot (`baselines64_v1.md`) replaced "
        f"by {CPU64_V1['lr']:g}", "These runs stay as they were, a labelled second reading; the steps and "
        "the evaluation are the 64×64 page's.", NETS_V1)})


# -- claim 2: the DIP-VAE study -----------------------------------------------------------------------
STUDY_FILE = Path(__file__).resolve().parents[2] / "configs" / "sweeps" / "dip_study_quick.yaml"
#: The study file's base settings the budget replaces (its conv64 64×64 choice is the gpu one).
STUDY_OVERRIDES = ("data", "steps", "batch_size", "lr", "net", "device", "checkpoint_every", "log_every",
                   "no_pictures")


def dip_rows(budget: str) -> dict:
    """Every grid point of the quick DIP study file, as rows named by their varied value."""
    from ..papers.dip import study

    rows = {}
    for trial in study(STUDY_FILE, "/nonexistent").trials:
        flags = {k: v for k, v in trial.flags.items() if k not in STUDY_OVERRIDES and k != "seed"}
        if budget == "gpu":
            flags["net"] = "conv64"
        label = {"dip1": "DIP-VAE-I λ_od={lambda_od:g}", "dip2": "DIP-VAE-II λ_od={lambda_od:g}",
                 "beta": "β-VAE β={beta:g}"}[flags["model"]].format(**flags)
        rows.setdefault(label, flags)
    return rows


def _run_dip(row, settings, seed, folder, budget):
    """The §3 protocol: the β-VAE metric with the linear SVM and the reconstruction error; beside it
    the metric with disentanglement_lib's logistic regression on the same features."""
    from ..papers.dip import FLOOR_KEY, evaluate, reference_beta_vae
    from ..pictures import read_metrics, thin_trajectory

    run_dir = trained(runs_root(folder), budget, settings, seed, dip_base(budget))
    full, sizes = budget == "gpu", SIZES[budget]

    def compute():
        m = evaluate(run_dir, full=full, seed=seed, sizes=sizes)["metrics"]
        svm, floor = m["beta_vae"], m[FLOOR_KEY]
        # DIP §3/§4 and Higgins et al.: balanced points; the classifier's training accuracy and whether it
        # converged; an untrained encoder's score (the floor) beside the model's
        return {"beta_vae": svm["eval_accuracy"], "recon_l2": m["reconstruction"]["l2"],
                "beta_vae_balanced": bool(svm.get("balanced")), "beta_vae_train": svm.get("train_accuracy"),
                "beta_vae_converged": bool(svm.get("converged")), "beta_vae_floor": floor["eval_accuracy"]}

    def logistic():
        return {"beta_vae_logistic": reference_beta_vae(run_dir, full=full, seed=seed, sizes=sizes)["eval_accuracy"]}
    return {**cached(run_dir, "dip_protocol_balanced", compute), **cached(run_dir, "dip_logistic_balanced", logistic),
            "train_s": train_seconds(run_dir),
            "trajectory": thin_trajectory(read_metrics(run_dir), DIP_TRAJECTORY_KEYS, DIP_TRAJECTORY_POINTS)}


#: The logged numbers a DIP record keeps of its run's metrics.jsonl (the curves figure's data, so the
#: page redraws it from a clean clone), and at how many log steps at most; a β-VAE row logs no ``dip``.
DIP_TRAJECTORY_KEYS, DIP_TRAJECTORY_POINTS = ("dip", "recon", "kl", "kl_weight"), 100
DIP_CURVES = "dip_curves.png"


def _dip_curves(results, budget) -> dict:
    """{row: (seed, trajectory)}: each row's lowest seed whose record keeps a trajectory."""
    out = {}
    for name in dip_rows(budget):
        seeds = [s for s, n in sorted(results.get(name, {}).items()) if (n.get("trajectory") or {}).get("step")]
        if seeds:
            out[name] = (seeds[0], results[name][seeds[0]]["trajectory"])
    return out


def _dip_missing_curves(results, budget) -> str:
    """The page's one sentence on the records that keep no trajectory (older records), or nothing."""
    records = {name: per_seed for name, per_seed in results.items() if name in dip_rows(budget)}
    total = sum(len(per_seed) for per_seed in records.values())
    missing = sum(not (n.get("trajectory") or {}).get("step")
                  for per_seed in records.values() for n in per_seed.values())
    if not missing:
        return ""
    if missing == total:
        return (f"\nNone of the {total} records (row, seed) keeps its training trajectory (they predate it): the "
                "training curves figure appears once the rows are run again.\n")
    bare = [name for name in records if name not in _dip_curves(results, budget)]
    return (f"\n{missing} of the {total} records (row, seed) keep no training trajectory (older records): the "
            f"training curves below draw each row's lowest seed that keeps one"
            + (f", and {len(bare)} of the {len(records)} rows have none yet" if bare else "") + ".\n")


def _dip_outdated(numbers: dict) -> str | None:
    """A DIP record scored before the balanced protocol (:func:`_dip_protocol_note`) is run again."""
    return None if numbers.get("beta_vae_balanced") else ("its β-VAE metric predates the balanced points "
                                                          "(DIP §4) and the untrained floor")


def _dip_protocol_note(results, budget) -> str:
    """How many records were scored with the balanced protocol and its floor (newer records say so;
    older ones drew the fixed factor uniformly and scored no untrained encoder)."""
    records = [n for name, per_seed in results.items() if name in dip_rows(budget) for n in per_seed.values()]
    balanced = [n for n in records if n.get("beta_vae_balanced")]
    if not records or len(balanced) == len(records):
        return ""
    unconverged = sum(not n.get("beta_vae_converged", True) for n in balanced)
    return (f"\n{len(records) - len(balanced)} of the {len(records)} records (row, seed) predate the balanced "
            "protocol: their fixed factor was drawn uniformly, not equally often, and no untrained encoder was "
            "scored beside them (floor and training accuracy '–'). A re-run scores every row the same way: "
            f"`python scripts/reproduce.py dip --budget {budget}` runs these again (`--todo` lists them)"
            + (f"; {unconverged} balanced records' classifier did not converge" if unconverged else "") + ".\n")


def _dip_page(results, budget):
    rows = [[name, fmt(column(results, name, "beta_vae")), fmt(column(results, name, "beta_vae_train")),
             fmt(column(results, name, "beta_vae_floor")), fmt(column(results, name, "recon_l2"), 4),
             fmt(column(results, name, "beta_vae_logistic"))]
            for name in dip_rows(budget) if name in results]
    return ("β-VAE metric with the paper's one-vs-rest linear SVM, C = 0.01 (§3), on points balanced over the "
            "factors (each factor fixed equally often, DIP §4 and Higgins et al.); its training accuracy beside "
            "it, and the same metric of an untrained encoder of the same architecture (the floor); "
            "reconstruction: mean squared error per pixel of the decoded posterior mean on held-out images. The "
            "claim is judged on the SVM; the last column scores the same features with disentanglement_lib's "
            "logistic regression.\n\n"
            + table(["model", "β-VAE metric (SVM)", "SVM train accuracy", "untrained encoder (floor)",
                     "recon L2/pixel", "β-VAE metric (logistic)"], rows)
            + _dip_protocol_note(results, budget) + _dip_missing_curves(results, budget))


#: The comparators, fixed before any run: DIP-VAE Table 1 sets DIP-VAE against β-VAE at β₁ = 4 and
#: β₂ = 60 on 2D Shapes (Kumar et al. 2017, Table 1 caption).
DIP_COMPARATORS = {"β-VAE β=4": "β-VAE 80.7 at 0.0032", "β-VAE β=60": "β-VAE 95.7 at 0.0113"}


def _best_dip(results):
    """DIP-VAE-I at its best λ_od by the mean SVM metric: the paper reports DIP-VAE at the λ_od its Fig. 1
    shows best by the metric (Kumar et al. 2017, §3 and Table 1), so we pick it the same way."""
    names = [n for n in results if n.startswith("DIP-VAE-I ")]
    return max(names, key=lambda n: stats(column(results, n, "beta_vae"))[0]) if names else None


def _one_protocol(results):
    """The records the DIP claims compare: the balanced protocol's once any record has it, else the
    older ones (a claim never compares records scored two ways)."""
    if not any(n.get("beta_vae_balanced") for per_seed in results.values() for n in per_seed.values()):
        return results
    kept = {name: {s: n for s, n in per_seed.items() if n.get("beta_vae_balanced")} for name, per_seed in results.items()}
    return {name: per_seed for name, per_seed in kept.items() if per_seed}


def _dip_claims(results, budget):
    results = _one_protocol(results)
    dip = _best_dip(results)
    claims = []
    for beta, paper_beta in DIP_COMPARATORS.items():
        claim = (f"DIP-VAE-I (best λ_od) reaches a higher β-VAE metric at lower reconstruction error than "
                 f"{beta.replace('β-VAE ', 'β-VAE at ')}")
        paper = f"DIP-VAE 98.7 at recon 0.0018 vs {paper_beta} (Table 1, 2D Shapes)"
        if dip is None or beta not in results:
            claims.append(Claim(claim, paper, "–", "inconclusive", "rows missing"))
            continue
        d_m, b_m = column(results, dip, "beta_vae"), column(results, beta, "beta_vae")
        d_r, b_r = column(results, dip, "recon_l2"), column(results, beta, "recon_l2")
        metric, error = two_arm(d_m, b_m, higher=True), two_arm(d_r, b_r, higher=False)
        claims.append(Claim.tested(
            claim, paper, f"{dip} {fmt(d_m)} at {fmt(d_r, 4)}; {beta} {fmt(b_m)} at {fmt(b_r, 4)}",
            ("metric", metric), ("error", error), family=True, digits=4))
    return claims


def _dip_figures(results, out, budget, runs=None):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    readings = (("beta_vae", "β-VAE metric, linear SVM C = 0.01 (the paper's)"),
                ("beta_vae_logistic", "β-VAE metric, logistic regression (disentanglement_lib)"))
    for ax, (key, label) in zip(axes, readings):
        for prefix, marker, dy in (("DIP-VAE-I ", "o", 4), ("DIP-VAE-II ", "s", -10), ("β-VAE ", "^", 4)):
            names = [n for n in dip_rows(budget) if n.startswith(prefix) and n in results
                     and column(results, n, key)]
            if not names:
                continue
            x = [stats(column(results, n, "recon_l2"))[0] for n in names]
            y = [stats(column(results, n, key))[0] for n in names]
            ye = [stats(column(results, n, key))[1] for n in names]
            ax.errorbar(x, y, yerr=ye, marker=marker, label=prefix.strip(), capsize=2)
            for xi, yi, n in zip(x, y, names):
                ax.annotate(n.split(" ")[-1], (xi, yi), fontsize=7, xytext=(3, dy), textcoords="offset points")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(  # 0.002, 0.003, 0.005 … between the decades
            lambda v, _: f"{v:g}" if round(v / 10 ** math.floor(math.log10(v))) in (2, 3, 5) else ""))
        ax.set_xlabel("reconstruction error (L2 per pixel, log scale)")
        ax.set_ylabel(label, fontsize=8)
        ax.legend(fontsize=8)
    fig.suptitle("DIP-VAE Fig. 1: metric against reconstruction (mean ± std over seeds)")
    fig.tight_layout()
    atomic_save_figure(fig, out / "dip_tradeoff.png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return ["dip_tradeoff.png"] + ([DIP_CURVES] if dip_curves(results, out / DIP_CURVES, budget) else [])


def dip_curves(results, path, budget) -> dict:
    """The training curves of the DIP study (recon, KL, the DIP penalty, the KL weight against the step),
    one line per grid point, its lowest seed whose record keeps a trajectory, drawn by
    :func:`inference.pictures.training_curves` from the records alone; its plotted series, or ``{}``
    (nothing drawn) when no record keeps one."""
    from ..pictures import training_curves, trajectory_rows

    curves = _dip_curves(results, budget)
    if not curves:
        return {}
    panels = [("recon: reconstruction term (nats)", ("recon",)), ("kl: KL(q(z|x) ‖ p(z)) (nats)", ("kl",)),
              ("dip: DIP penalty, λ_od·off-diag + λ_d·diag (eq. 6)", ("dip",)),
              ("kl_weight: KL weight (warm-up)", ("kl_weight",))]
    seeds = sorted({seed for seed, _ in curves.values()})
    return training_curves({name: trajectory_rows(t) for name, (_, t) in curves.items()}, path, panels,
                           ncols=2, title=f"DIP study: training curves, seed {', '.join(map(str, seeds))} "
                                          "of each grid point")


DIP_REPRO = Reproduction(
    "dip", "Claim 2: DIP-VAE, the λ study of §3 (metric against reconstruction)",
    rows=dip_rows, run=_run_dip, page=_dip_page, claims=_dip_claims, seeds=(0, 1, 2, 3, 4), figures=_dip_figures,
    protocol=dip_protocol, outdated=_dip_outdated,
    notes={**{k: v + " Grid: every point of `configs/sweeps/dip_study_quick.yaml`." for k, v in SHAPES_NOTE.items()},
           "cpu": (f"**32×32 procedural dSprites** (the simulator at half the side), conv32 nets, batch 64, Adam lr 1e-3, "
                   f"{DIP_CPU_STEPS:,} steps (half the shapes budget of claims 1 and 3, so that the 10-point grid "
                   "fits two cores), one core per run. The paper trains 64×64 2D Shapes; the study file's own "
                   "base (conv64, 2,500 steps at lr 5e-4) is replaced by this budget. Grid: every point of "
                   "`configs/sweeps/dip_study_quick.yaml`. The claims compare DIP-VAE-I at its best λ_od (by the "
                   "metric, as the paper picks it) with β-VAE at β = 4 and β = 60, the comparators of the paper's "
                   "Table 1, fixed before the runs.")})


# -- claim 3: dpVAE -----------------------------------------------------------------------------------
DPVAE_ROWS = {}
for _name, _flags in (("β-VAE", BASELINES["β-VAE"]), ("β-TCVAE", BASELINES["β-TCVAE"])):
    DPVAE_ROWS[f"{_name}, Normal prior"] = dict(_flags)
    DPVAE_ROWS[f"{_name}, flow prior"] = {**_flags, "prior": "flow"}
MARGIN = 0.06  # supplement Table 2: the largest FactorVAE-score drop with the decoupled prior (β-VAE-B 0.67 → 0.61)


#: The supplement's Table 2 (MNIST, FactorVAE score), without → with the decoupled prior.
PAPER_FACTOR_VAE = {"β-VAE": "β-VAE-H 0.87 → 0.85", "β-TCVAE": "β-TC 0.98 → 0.96"}


def _run_dpvae(row, settings, seed, folder, budget):
    from ..papers.dpvae import score

    run_dir = trained(runs_root(folder), budget, settings, seed)

    def compute():
        run = load_run(run_dir)
        config = run.config
        data = load_data(config["data"], None, config.get("resolution"))
        _, test = data.split(0.05, seed=0)
        with torch.no_grad():
            return score(run.model, run.guide, data, test, DPVAE_SCORE[budget], seed, run_dir)
    return {**cached(run_dir, "dpvae", compute), "train_s": train_seconds(run_dir)}


def _dpvae_page(results, budget):
    keys = [("mig", "MIG", 3), ("factor_vae", "FactorVAE", 3), ("recon_l2", "recon L2/pixel", 4),
            ("fid_prior", "FID prior samples", 1), ("fid_lpgen", "FID LP-Gen", 1)]
    rows = [[name] + [fmt(column(results, name, k), d) for k, _, d in keys] for name in DPVAE_ROWS if name in results]
    return ("FID is ours: Fréchet distance in the features of a small offline net trained on the shapes "
            "(`inference/fid.py`), not Inception; lower is better. LP-Gen: decoded prior draws that the "
            "aggregate posterior finds least likely (dpVAE eq. 28).\n\n"
            + table(["ELBO, prior"] + [label for _, label, _ in keys], rows))


def _dpvae_claims(results, budget):
    # The paper's comparison: each ELBO with against without the decoupled flow prior (supplement Table 2).
    claims = []
    for name in ("β-VAE", "β-TCVAE"):
        a, b = f"{name}, Normal prior", f"{name}, flow prior"
        if a not in results or b not in results:
            continue
        fv_a, fv_b = column(results, a, "factor_vae"), column(results, b, "factor_vae")
        claims.append(Claim.tested(
            f"{name}: the flow prior keeps disentanglement (FactorVAE score) within {MARGIN}",
            f"{PAPER_FACTOR_VAE[name]} on MNIST (supplement Table 2); largest drop of any ELBO {MARGIN}",
            f"{fmt(fv_a)} → {fmt(fv_b)}; MIG {fmt(column(results, a, 'mig'))} → {fmt(column(results, b, 'mig'))}",
            ("flow − Normal", non_inferior(fv_b, fv_a, MARGIN))))
        for key, label in (("fid_prior", "prior samples"), ("fid_lpgen", "LP-Gen samples")):
            fa, fb = column(results, a, key), column(results, b, key)
            claims.append(Claim.tested(f"{name}: the flow prior improves {label} (lower FID)",
                                       "better samples with the decoupled prior (figures only; no FID in the supplement)",
                                       f"FID {fmt(fa, 1)} → {fmt(fb, 1)}",
                                       ("flow − Normal", two_arm(fb, fa, higher=False)), digits=1))
    return claims


def _dpvae_figures(results, out, budget, runs=None):
    """The two-moons figure (dpVAE supplement Fig. 1), regenerated at this budget, seed 0."""
    from ..papers.dpvae import run_two_moons

    folder = out / "dpvae_two_moons"
    if not (folder / "two_moons.png").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        run_two_moons(folder, quick=budget != "gpu", steps=50 if budget == "tiny" else None, seed=0)
        for prior in ("normal", "flow"):  # the pages keep the figure and its table, not the trained runs
            shutil.rmtree(folder / prior, ignore_errors=True)
    return [f"dpvae_two_moons/{p.name}" for p in sorted(folder.glob("*.png"))]


DPVAE_REPRO = Reproduction(
    "dpvae", "Claim 3: dpVAE, each ELBO with and without the decoupled flow prior",
    rows=lambda budget: dict(DPVAE_ROWS), run=_run_dpvae, page=_dpvae_page, claims=_dpvae_claims,
    figures=_dpvae_figures, notes=SHAPES_NOTE, seeds=(0, 1, 2, 3, 4),
    protocol=lambda budget: {**protocol(budget), "score": DPVAE_SCORE[budget]})


__all__ = ["BASE", "SIZES", "BASELINES", "BASELINES_V1", "BASELINES_REPRO", "BASELINES32_REPRO", "BASELINES64_LR1E3_REPRO",
           "BASELINES64_V1_REPRO", "CPU64_V1", "pilot64", "pilot64_speed", "pilot_records", "DIP_REPRO", "DPVAE_REPRO", "store_dir", "trained",
           "disentanglement", "dip_rows"]
