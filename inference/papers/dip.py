"""DIP-VAE (Kumar, Sattigeri & Balakrishnan, ``papers/dipvae-disentangled-inferred-prior.txt``): the
λ study of §3 on Ray Tune, and the paper's evaluation protocol.

The objective is a baseline of the catalog, not defined here: DIP-VAE-I (eq. 6: the covariance of
the posterior means, pushed to I with λ_od off the diagonal and λ_d on it) and DIP-VAE-II (the ICLR
2018 version: the covariance of the posterior, E[Σ] + Cov[μ]) are :class:`inference.elbos.DIPELBO`
over :func:`inference.penalties.dip_covariance_penalty`, trained as ``scripts/train.py --model dip1``
/ ``dip2``.

**Protocol (§3, "Disentanglement metric score and reconstruction error").** Each model is scored by
the Higgins et al. (2017) β-VAE metric — average |z₁ − z₂| over L pairs sharing one factor, the
shared factor predicted by "a one-vs-rest linear SVM with weight on the hinge loss C set to 0.01 and
weight on the regularizer set to 1" (:func:`inference.metrics.beta_vae.compute_beta_vae` with
``classifier="svm"``; not disentanglement_lib's logistic regression, which scores higher on the same
codes) — and by the per-pixel reconstruction error of the decoded posterior mean on held-out images.
The points are balanced over the factors, as §3 describes them ("n such minibatches … for the factor
y. This process is repeated for all generative factors": ``balanced=True``, every factor fixed by
exactly n/K points), not drawn with a uniform factor per point as in Higgins et al. and
disentanglement_lib. The record carries the SVM's training accuracy and whether it converged.

**The floor.** :func:`beta_vae_floor` scores an untrained encoder of the same architecture (the run's
config, freshly initialised from a seed) with the same protocol, sizes and draws: the score a model
must beat before its number says anything. :func:`evaluate` stores it beside the model's score under
``report["metrics"]["beta_vae_floor"]``.
Fig. 1 plots one against the other as λ_od varies with λ_d = 10·λ_od (DIP-VAE-I, §3
"Hyperparameters": λ_od ∈ {1, 2, 5, 10, 20, 50}) and as β varies for β-VAE; Table 1 compares the
best of each on 2D Shapes (DIP-VAE 98.7 at 0.0018 vs β-VAE 95.7 at 0.0113).

**The study.** A study file (``configs/sweeps/dip_study_quick.yaml``, ``dip_study_full.yaml``) lists
the grid; :func:`run_study` runs it through :mod:`inference.sweep` (each trial trains with
:func:`inference.runs.train_run` and is evaluated by :func:`inference.report.evaluate_run`) and writes
``sweep.csv``, ``sweep.md`` and ``sweep.png`` (the study's ``plot.tradeoff``: Fig. 1). The protocol's
classifier is the default of every study run here; a study file may still name another.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..catalog import build
from ..checkpoint import atomic_write_text
from ..cli import check_output_dir
from ..metrics.beta_vae import compute_beta_vae
from ..report import REPORT, Evaluation, evaluate_run, markdown
from ..sweep import Study, apply_overrides, expand, read_study_file, run_sweep

BETA_VAE_CLASSIFIER = "svm"  # §3: one-vs-rest linear SVM, C = 0.01 (hinge), regulariser weight 1
BETA_VAE_BALANCED = True  # §3: "n such minibatches ... for the factor y ... repeated for all generative factors"
FLOOR_KEY = "beta_vae_floor"  # report["metrics"] key of the untrained encoder's score
SECTIONS = ("training", "reconstruction", "beta_vae")  # §3 / Table 1: the metric and the reconstruction error
LAMBDA_D_PER_LAMBDA_OD = {"dip1": 10.0, "dip2": 1.0}  # §3 Hyperparameters (I); the ICLR 2018 version (II)


def beta_vae_metric(data, represent, generator, **sizes) -> dict:
    """The DIP paper's score (§3): the β-VAE metric with the linear SVM, C = 0.01, on points balanced
    over the factors.

    ``represent(x) -> codes`` (posterior means), ``sizes``: ``num_train``, ``num_eval`` (multiples of
    the number of factors), ``batch_size`` (L, the pairs per point) of
    :func:`~inference.metrics.beta_vae.compute_beta_vae`.
    """
    return compute_beta_vae(data, represent, generator, classifier=BETA_VAE_CLASSIFIER,
                            balanced=BETA_VAE_BALANCED, **sizes)


def evaluate(run_dir, *, full: bool = False, device: str = "cpu", seed: int = 0, sizes: dict | None = None,
             floor: bool = True) -> dict:
    """A trained run's report with the §3 protocol (training time, reconstruction error, the β-VAE
    metric with the SVM on balanced points) and, ``floor``, the same metric of an untrained encoder
    (:func:`beta_vae_floor`, under ``report["metrics"]["beta_vae_floor"]``); writes ``report.json`` /
    ``report.md`` into ``run_dir`` and returns the report."""
    report = evaluate_run(run_dir, SECTIONS, full=full, device=device, seed=seed, sizes=sizes,
                          beta_vae_classifier=BETA_VAE_CLASSIFIER, beta_vae_balanced=BETA_VAE_BALANCED)
    if floor:
        report["metrics"][FLOOR_KEY] = beta_vae_floor(run_dir, full=full, device=device, seed=seed, sizes=sizes)
        atomic_write_text(Path(run_dir) / REPORT, json.dumps(report, indent=2))
        atomic_write_text(Path(run_dir) / "report.md", markdown(report))
    return report


def _protocol_evaluation(run_dir, full, device, seed, sizes, classifier) -> Evaluation:
    ev = Evaluation(Path(run_dir), full, device, seed, beta_vae_classifier=classifier, sizes=sizes,
                    beta_vae_balanced=BETA_VAE_BALANCED)
    ev.progress = False
    return ev


def reference_beta_vae(run_dir, *, full: bool = False, device: str = "cpu", seed: int = 0,
                       sizes: dict | None = None) -> dict:
    """The β-VAE metric of a trained run with disentanglement_lib's logistic regression, on the same
    features as :func:`evaluate`'s SVM (the same balanced points, sizes and generator seed): the
    reference implementation's classifier beside the paper's. Writes nothing into ``run_dir``."""
    ev = _protocol_evaluation(run_dir, full, device, seed, sizes, "logistic")
    ev.beta_vae()
    return ev.report["metrics"]["beta_vae"]


def beta_vae_floor(run_dir, *, full: bool = False, device: str = "cpu", seed: int = 0,
                   sizes: dict | None = None, init_seed: int | None = None,
                   classifier: str = BETA_VAE_CLASSIFIER) -> dict:
    """The β-VAE metric of an *untrained* encoder: the run's architecture (its config, rebuilt by the
    catalog) with freshly initialised weights, scored with the §3 protocol on the very points that
    :func:`evaluate` scores the trained one (same sizes, balance, classifier and generator seed).

    ``init_seed`` seeds the initialisation (default: the run's training seed, so the floors of
    several seeds form a sample); the RNG streams outside are left as they were. Returns the
    metric's record with ``init_seed``; writes nothing into ``run_dir``.
    """
    ev = _protocol_evaluation(run_dir, full, device, seed, sizes, classifier)
    init_seed = int(ev.config.get("seed", 0) if init_seed is None else init_seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        _, guide, _ = build(ev.config, ev.data.data_shape, len(ev.data))
    ev.guide = guide.to(ev.device).eval()
    ev.beta_vae()
    return {**ev.report["metrics"]["beta_vae"], "init_seed": init_seed, "untrained": True}


def _study_raw(study_file, sets) -> dict:
    raw = apply_overrides(read_study_file(study_file), list(sets))
    evaluation = raw.get("evaluate", {})
    if isinstance(evaluation, dict):  # anything else: expand() names the bad value
        raw["evaluate"] = {"beta_vae_classifier": BETA_VAE_CLASSIFIER, "beta_vae_balanced": BETA_VAE_BALANCED,
                           **evaluation}
    return raw


def study(study_file, out, sets=()) -> Study:
    """The trials of a DIP study file, ``sets`` (``KEY.PATH=VALUE`` edits, as ``scripts/sweep.py --set``)
    applied, the §3 classifier the default of its evaluation; run directories under ``out``."""
    return expand(_study_raw(study_file, sets), out)


def run_study(study_file, out=None, *, sets=(), scheduler: str = "fifo", **sweep_options) -> list[dict]:
    """Run a DIP study file through the sweep (:func:`inference.sweep.run_sweep`) and return its rows.

    ``out`` defaults to ``runs/sweeps/<study name>``; a folder of an earlier run of the study is
    continued (its finished trials skipped), any other non-empty one refused. ``scheduler="asha"``
    stops bad trials early; ``sweep_options`` go to :func:`~inference.sweep.run_sweep` (``address``,
    ``num_cpus``, ``max_concurrent``, ...).
    """
    raw = _study_raw(study_file, sets)
    out = Path(out or Path("runs") / "sweeps" / str(raw["name"]))
    out = check_output_dir(out, continuing=(out / "sweep.json").is_file() or (out / "runs").is_dir())
    return run_sweep(expand(raw, out), out, scheduler=scheduler, **sweep_options)


__all__ = ["BETA_VAE_CLASSIFIER", "BETA_VAE_BALANCED", "FLOOR_KEY", "SECTIONS", "LAMBDA_D_PER_LAMBDA_OD",
           "beta_vae_metric", "evaluate", "reference_beta_vae", "beta_vae_floor", "study", "run_study"]
