"""The evaluation report of a trained run: one method per section, one driver, one markdown page.

:func:`evaluate_run` is the one evaluation driver: ``scripts/evaluate.py`` runs it on every section,
a sweep trial on the study's sections (:data:`SECTIONS`). ``Evaluation(run_dir, full, device, seed,
dci_importance, beta_vae_classifier, sizes)`` loads a run and fills ``report`` section by section
(training time and curves, pictures, reconstruction, factor metrics, IWAE log-likelihood, FID/KID, ArviZ
export); ``markdown(report)`` renders it. Sample sizes are ``SIZES["quick"]`` (a CPU evaluation of a
dSprites run in minutes) or ``SIZES["full"]`` (disentanglement_lib's), updated by ``sizes``.

Two metric choices change the reported numbers, so the report names them
(``report["metric_options"]``, each metric's own result, and the markdown rows): the DCI importance
model (``dci_importance``, default ``"gbt"`` as in disentanglement_lib; ``"forest"`` a faster
random forest) and the β-VAE metric's classifier (``beta_vae_classifier``, default ``"logistic"``
as in disentanglement_lib; ``"svm"`` the DIP-VAE paper's linear SVM with C = 0.01).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from . import metrics as M
from . import runlock
from .checkpoint import atomic_write_file, atomic_write_text
from .errors import ConfigError
from .fid import fid_kid
from .likelihood import log_likelihood
from .metrics.reconstruction import reconstruction_error
from .pictures import (mi_heatmap, prior_samples, read_metrics, reconstructions, save_grid, training_curves,
                       traversals)
from .posterior import encode_batched, posterior_code, to_inferencedata
from .runs import load_data, load_run, read_run_config
from .svi import METRICS, SUMMARY

REPORT = "report.json"

#: Sample sizes. "full" is disentanglement_lib's (Locatello et al. 2019, metric gin configs);
#: "quick" keeps a CPU evaluation of a conv64 dSprites run within ~5 minutes, plus DCI's GBT
#: importances: ~150 CPU-seconds at 5,000 / 2,000 points (~330 at full size; benchmarks/dci_speed.py).
SIZES = {
    # ~130k encoder passes: about 2 min at ~1,000 64×64 images/s (conv64 encoder, 2 free cores).
    "quick": {"codes_train": 10_000, "codes_test": 2_000, "dci_train": 5_000, "sap_train": 5_000,
              "factor_vae_train": 400, "factor_vae_eval": 200, "factor_vae_variance": 5_000,
              "beta_vae_train": 250, "beta_vae_eval": 125, "group_size": 64,
              "recon": 1_000, "loglik_items": 256, "loglik_samples": 50, "fid_images": 2_000,
              "posterior_obs": 64, "posterior_draws": 100},
    "full": {"codes_train": 10_000, "codes_test": 5_000, "dci_train": 10_000, "sap_train": 10_000,
             "factor_vae_train": 10_000, "factor_vae_eval": 5_000, "factor_vae_variance": 10_000,
             "beta_vae_train": 10_000, "beta_vae_eval": 5_000, "group_size": 64,
             "recon": 10_000, "loglik_items": 1_000, "loglik_samples": 1_000, "fid_images": 10_000,
             "posterior_obs": 256, "posterior_draws": 500},
}


NEEDS_SIMULATOR = "needs a simulator that can fix one factor (GroundTruthData)"


class Evaluation:
    """Holds the run, its data and the report as it fills up; one method per report section."""

    def __init__(self, run_dir: Path, full: bool, device: str, seed: int,
                 dci_importance: str = "gbt", beta_vae_classifier: str = "logistic",
                 sizes: dict | None = None, beta_vae_balanced: bool = False):
        if dci_importance not in M.DCI_IMPORTANCE_MODELS:
            raise ConfigError(f"unknown DCI importance model {dci_importance!r}; expected one of "
                              f"{M.DCI_IMPORTANCE_MODELS}")
        if beta_vae_classifier not in M.BETA_VAE_CLASSIFIERS:
            raise ConfigError(f"unknown β-VAE metric classifier {beta_vae_classifier!r}; expected one "
                              f"of {M.BETA_VAE_CLASSIFIERS}")
        self.dci_importance, self.beta_vae_classifier = dci_importance, beta_vae_classifier
        self.beta_vae_balanced = bool(beta_vae_balanced)  # DIP §3: every factor fixed equally often
        self.progress = True  # progress bars of the interventional metrics (off in sweeps)
        self.write_pictures = True  # False: score only, write nothing into the run folder (a floor's encoder)
        self.dir, self.device, self.seed = run_dir, torch.device(device), seed
        self.run = load_run(run_dir, device=device)
        self.model, self.guide, self.config = self.run.model, self.run.guide, self.run.config
        self.data = load_data(self.config["data"], self.config.get("data_root"), self.config.get("resolution"))
        unknown = set(sizes or ()) - set(SIZES["quick"])
        if unknown:
            raise ConfigError(f"unknown sample size(s) {sorted(unknown)}; expected some of "
                              f"{', '.join(SIZES['quick'])}")
        self.sizes = {**SIZES["full" if full else "quick"], **(sizes or {})}
        self.is_image = len(self.data.data_shape) == 3
        self.ground_truth = hasattr(self.data, "sample_factors") and self.data.has_factors
        self.train, self.test = self.data.split(0.1, seed=0)
        x0 = self.test.batch(torch.arange(1), device=self.device)[0]
        with torch.no_grad():
            # Every latent site, concatenated in the guide's order: what model.decode takes.
            self.site = None
            sites = list(self.guide.posterior(x0))
        self.report = {"run_dir": str(run_dir), "model": self.config.get("model"),
                       "data": self.config.get("data"), "latent_site": "+".join(sites),
                       "step": self.run.step, "mode": "full" if full else "quick",
                       "sizes": dict(self.sizes),
                       "metric_options": {"dci_importance": dci_importance,
                                          "beta_vae_classifier": beta_vae_classifier,
                                          "beta_vae_balanced": self.beta_vae_balanced},
                       "metrics": {}, "skipped": [], "files": [],
                       "seconds": {}}

    # -- helpers --------------------------------------------------------------------------------
    def represent(self, x):
        return posterior_code(self.guide, x)[0]

    def gen(self, offset: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1000 + offset)

    def skip(self, what: str, why: str):
        self.report["skipped"].append(f"{what}: {why}")

    def items(self, subset, n: int, offset: int):
        index = torch.randperm(len(subset), generator=self.gen(offset))[:n]
        return subset.batch(index, device=self.device)

    def codes_of(self, subset, n: int, offset: int):
        """Codes and factors: simulator draws for ground truth, else a random subset of items."""
        if self.ground_truth:
            return M.sample_codes(self.data, self.represent, n, self.gen(offset), device=self.device,
                                  progress="codes")
        index = torch.randperm(len(subset), generator=self.gen(offset))[:n]

        def chunk(part):
            x, f = subset.batch(part, device=self.device)
            return self.represent(x).cpu().double().numpy(), f.cpu().numpy()

        return encode_batched(chunk, index, 256)

    # -- sections -------------------------------------------------------------------------------
    def factor_metrics(self):
        m, s = self.report["metrics"], self.sizes
        if not self.data.has_factors:
            for name in ("mig", "dci", "sap", "factor_vae", "beta_vae", "mutual_information", "active_units"):
                self.skip(name, f"dataset {self.config['data']!r} has no factors")
            return
        codes, factors = self.codes_of(self.train, s["codes_train"], 1)
        test_codes, test_factors = self.codes_of(self.test, s["codes_test"], 2)
        names = list(self.data.factor_names) or [f"factor{k}" for k in range(factors.shape[1])]
        mi = M.mutual_info_matrix(codes, factors)
        m["mig"] = {"value": M.mig(codes, factors), "num_points": len(codes), "num_bins": 20}
        m["mutual_information"] = {"matrix": mi.tolist(), "factors": names,
                                   "factor_entropy": M.discrete_entropy(factors).tolist()}
        # beside the MI matrix: which latents the decoder can use (Burda et al. 2016, §5.2)
        m["active_units"] = {**M.active_units(codes), "num_points": len(codes)}
        n_dci = min(s["dci_train"], len(codes))
        m["dci"] = {**M.dci(codes[:n_dci], factors[:n_dci], test_codes, test_factors,
                            model=self.dci_importance),
                    "num_train": n_dci, "num_test": len(test_codes)}
        n_sap = min(s["sap_train"], len(codes))
        m["sap"] = {"continuous": M.sap(codes[:n_sap], factors[:n_sap]),
                    "discrete": M.sap(codes[:n_sap], factors[:n_sap], test_codes, test_factors,
                                      continuous=False),
                    "num_train": n_sap, "num_test": len(test_codes)}
        acc = M.factor_accuracies(codes[:n_dci], factors[:n_dci], test_codes, test_factors)
        m["downstream_accuracy"] = {"logistic": dict(zip(names, acc.tolist())),
                                    "num_train": n_dci, "num_test": len(test_codes)}
        if self.is_image and self.write_pictures:
            mi_heatmap(mi, self.dir / "mi_heatmap.png", names)
            self.report["files"].append("mi_heatmap.png")
        if not self.ground_truth:
            self.skip("factor_vae", NEEDS_SIMULATOR)
            return self.beta_vae()
        m["factor_vae"] = {**M.compute_factor_vae(
            self.data, self.represent, self.gen(3), num_train=s["factor_vae_train"],
            num_eval=s["factor_vae_eval"], batch_size=s["group_size"],
            num_variance_estimate=s["factor_vae_variance"], device=self.device, progress=self.progress),
            "num_train": s["factor_vae_train"], "num_eval": s["factor_vae_eval"],
            "group_size": s["group_size"], "num_variance_estimate": s["factor_vae_variance"]}
        self.beta_vae()

    def beta_vae(self):
        """The β-VAE metric alone (part of :meth:`factor_metrics`; much cheaper on its own)."""
        if not self.ground_truth:
            return self.skip("beta_vae", NEEDS_SIMULATOR)
        s = self.sizes
        self.report["metrics"]["beta_vae"] = {**M.compute_beta_vae(
            self.data, self.represent, self.gen(4), num_train=s["beta_vae_train"],
            num_eval=s["beta_vae_eval"], batch_size=s["group_size"], device=self.device,
            progress=self.progress, classifier=self.beta_vae_classifier, balanced=self.beta_vae_balanced),
            "num_train": s["beta_vae_train"], "num_eval": s["beta_vae_eval"], "group_size": s["group_size"]}

    def reconstruction(self):
        x, _ = self.items(self.test, self.sizes["recon"], 5)

        def chunk(part):  # one row per chunk: its mean errors and its size
            err = reconstruction_error(self.model, self.guide, part, self.site)
            return np.array([[err["l1"], err["l2"], len(part)]])

        parts = encode_batched(chunk, x, 256)
        self.report["metrics"]["reconstruction"] = {
            k: float(np.average(parts[:, i], weights=parts[:, 2])) for i, k in enumerate(("l1", "l2"))}
        self.report["metrics"]["reconstruction"]["num_points"] = len(x)

    def likelihood(self):
        s = self.sizes
        x, _ = self.items(self.test, s["loglik_items"], 6)
        ll = log_likelihood(self.model, self.guide, x, num_samples=s["loglik_samples"],
                            batch_size=32, device=self.device)
        self.report["metrics"]["log_likelihood"] = {
            "mean": float(ll.mean()), "std": float(ll.std()), "num_points": len(x),
            "num_samples": s["loglik_samples"], "split": "test (10%, seed 0)"}

    def fid(self, enabled: bool = True):
        if not enabled:
            return self.skip("fid", "--no-fid")
        if not self.is_image:
            return self.skip("fid", "data are vectors, not images")
        n = self.sizes["fid_images"]
        real, _ = self.items(self.test, n, 7)
        fake = prior_samples(self.model, n, seed=self.seed)
        self.report["metrics"]["fid_kid"] = {**fid_kid(real, fake.reshape(real.shape)),
                                             "between": "test images and prior samples",
                                             "note": "offline feature net, not Inception FID"}

    def pictures(self):
        if not self.is_image:
            return self.skip("pictures", "data are vectors, not images")
        x, _ = self.items(self.test, 8, 8)
        save_grid(reconstructions(self.model, self.guide, x, site=self.site),
                  self.dir / "reconstructions.png", nrow=8)
        trav = traversals(self.model, self.guide, x[:1], site=self.site, steps=7)
        save_grid(trav.reshape(-1, *x.shape[1:]), self.dir / "traversals.png", nrow=7)
        save_grid(prior_samples(self.model, 64, seed=self.seed).reshape(64, *x.shape[1:]),
                  self.dir / "prior_samples.png", nrow=8)
        self.report["files"] += ["reconstructions.png", "traversals.png", "prior_samples.png"]

    def posterior(self):
        s = self.sizes
        idata = to_inferencedata(self.model, self.guide, self.test, num_draws=s["posterior_draws"],
                                 num_obs=s["posterior_obs"], seed=self.seed, device=self.device)
        atomic_write_file(self.dir / "posterior.nc", lambda tmp: idata.to_netcdf(tmp))
        self.report["files"].append("posterior.nc")

    def training(self):
        path = self.dir / SUMMARY
        if path.is_file():
            summary = json.loads(path.read_text())
            self.report["training"] = {"train_seconds": summary.get("train_seconds"),
                                       "steps": summary.get("step"), "terms": summary.get("terms")}
        else:
            self.skip("training time", f"no {SUMMARY}")
        self.curves()

    def curves(self):
        """``curves.png``: the logged terms, the KL weight and the objective's state against the step
        (:func:`~inference.pictures.training_curves` on ``metrics.jsonl``); part of :meth:`training`."""
        rows = read_metrics(self.dir / METRICS) if (self.dir / METRICS).is_file() else []
        if not rows:
            return self.skip("curves", f"no {METRICS} rows")
        training_curves(rows, self.dir / "curves.png", title=f"training of {self.config.get('model')}")
        self.report["files"].append("curves.png")


#: The sections of a report, in the order ``scripts/evaluate.py`` runs them. ``beta_vae`` is part of
#: ``factor_metrics``; alone (a sweep's choice) it is much cheaper.
SECTIONS = ("training", "pictures", "reconstruction", "factor_metrics", "beta_vae", "likelihood", "fid",
            "posterior")
ALL_SECTIONS = tuple(s for s in SECTIONS if s != "beta_vae")


@runlock.holds_run_folder  # one writer per run folder: the report and its pictures
def evaluate_run(run_dir, sections=ALL_SECTIONS, *, full: bool = False, device: str = "cpu",
                 seed: int = 0, sizes: dict | None = None, dci_importance: str = "gbt",
                 beta_vae_classifier: str = "logistic", fid: bool = True,
                 progress: bool = False, beta_vae_balanced: bool = False) -> dict:
    """Evaluate a run directory on ``sections`` (of :data:`SECTIONS`); write report.json and report.md.

    The one evaluation driver (``scripts/evaluate.py`` and every sweep trial). Each section's
    seconds go to ``report["seconds"]``; ``fid=False`` lists FID as skipped; ``sizes`` updates the
    quick or ``full`` sample sizes. Returns the report.
    """
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        raise ConfigError(f"unknown evaluation section(s) {bad}; expected some of {list(SECTIONS)}")
    read_run_config(run_dir)  # a bad run directory fails before anything is loaded
    t_all = time.perf_counter()
    ev = Evaluation(run_dir, full, device, seed, dci_importance=dci_importance,
                    beta_vae_classifier=beta_vae_classifier, sizes=sizes, beta_vae_balanced=beta_vae_balanced)
    ev.progress = progress
    run = {"fid": lambda: ev.fid(fid)}
    for name in tqdm(list(sections), desc="evaluate", unit="section", disable=not progress):
        t0 = time.perf_counter()
        with torch.no_grad() if name != "fid" else torch.enable_grad():
            run.get(name, getattr(ev, name))()
        ev.report["seconds"][name] = time.perf_counter() - t0
    ev.report["seconds"]["total"] = time.perf_counter() - t_all
    log_to_tensorboard(ev.report, ev.config, ev.run.step)
    atomic_write_text(run_dir / REPORT, json.dumps(ev.report, indent=2))
    atomic_write_text(run_dir / "report.md", markdown(ev.report))
    return ev.report


def log_to_tensorboard(report: dict, config: dict, step: int) -> None:
    """A run trained with a TensorBoard folder (``config["tensorboard"]``) gets the report's metrics
    in that run's ``evaluation`` sub-run at ``step`` (:func:`inference.tensorboard.log_evaluation`):
    TensorBoard's hparams table then shows them beside the run's config. Without the package, the
    report says so instead (``skipped``)."""
    folder = config.get("tensorboard")
    if not folder:
        return
    from .tensorboard import log_evaluation

    try:
        log_evaluation(folder, report, step)
        report["tensorboard"] = str(Path(folder) / "evaluation")
    except ConfigError as err:  # the tensorboard extra is missing
        report["skipped"].append(f"tensorboard: {err}")


def headline(report: dict) -> str:
    """MIG, FactorVAE score and DCI disentanglement of a report, those it has, on one line."""
    m = report["metrics"]
    return ", ".join(f"{k}={v:.3f}" for k, v in (
        ("mig", m.get("mig", {}).get("value")),
        ("factor_vae", m.get("factor_vae", {}).get("eval_accuracy")),
        ("dci_d", m.get("dci", {}).get("disentanglement"))) if v is not None)


#: How the markdown report names each metric option.
DCI_LABELS = {"gbt": "GBT", "forest": "random-forest"}


def _dci_rows(d):
    imp = DCI_LABELS.get(d.get("importance_model", "unnamed"), d.get("importance_model", "unnamed"))
    sz = f"{d['num_train']}/{d['num_test']} points"
    return [f"| DCI disentanglement ({imp} importances) | {d['disentanglement']:.3f} | {sz} |",
            f"| DCI completeness ({imp} importances) | {d['completeness']:.3f} | {sz} |",
            f"| DCI informativeness (test acc., {imp}) | {d['informativeness_test']:.3f} | {sz} |"]


def _beta_vae_rows(b):
    clf = BETA_VAE_LABELS.get(b.get("classifier", "logistic"), b.get("classifier"))
    draw = ", balanced over the factors" if b.get("balanced") else ""
    rows = [f"| β-VAE score (eval acc., {clf}) | {b['eval_accuracy']:.3f} | {b['num_train']}/"
            f"{b['num_eval']} points of {b['group_size']} pairs{draw} |"]
    if "train_accuracy" in b:
        fit = ("converged" if b.get("converged", True) else "NOT converged") + f" in ≤ {b.get('max_iter')} iterations"
        rows.append(f"| β-VAE classifier's train acc. | {b['train_accuracy']:.3f} | {fit} |")
    return rows


def _downstream_rows(a):
    acc = ", ".join(f"{k} {v:.2f}" for k, v in a["logistic"].items())
    return [f"| downstream accuracy (logistic) | {acc} | {a['num_train']}/{a['num_test']} |"]


#: the report's markdown rows, per metric of ``report["metrics"]``, in table order
METRIC_ROWS = {
    "mig": lambda g: [f"| MIG | {g['value']:.3f} | {g['num_points']} points, 20 bins |"],
    "factor_vae": lambda f: [f"| FactorVAE score (eval acc.) | {f['eval_accuracy']:.3f} | {f['num_train']}/"
                             f"{f['num_eval']} votes of {f['group_size']}, {f['num_active_dims']} active dims |"],
    "active_units": lambda a: [f"| active units (variance of the posterior mean > {a['threshold']:g}) | "
                               f"{a['count']} of {len(a['variance'])} | {a['num_points']} points: "
                               + (", ".join(f"z{j}" for j, on in enumerate(a["active"]) if on) or "none") + " |"],
    "beta_vae": _beta_vae_rows,
    "beta_vae_floor": lambda b: [f"| β-VAE score of an untrained encoder (the floor; init seed {b['init_seed']}) | "
                                 f"{b['eval_accuracy']:.3f} | the same points |"],
    "dci": _dci_rows,
    "sap": lambda sp: [f"| SAP continuous | {sp['continuous']:.3f} | {sp['num_train']} points |",
                       f"| SAP discrete | {sp['discrete']:.3f} | {sp['num_train']}/{sp['num_test']} points |"],
    "downstream_accuracy": _downstream_rows,
    "reconstruction": lambda r: [f"| reconstruction L1 / L2 (per pixel) | {r['l1']:.4f} / {r['l2']:.4f} | "
                                 f"{r['num_points']} test items |"],
    "log_likelihood": lambda ll: [f"| log p(x) (IWAE, nats) | {ll['mean']:.2f} ± {ll['std']:.2f} | "
                                  f"{ll['num_points']} test items × {ll['num_samples']} samples |"],
    "fid_kid": lambda fk: [f"| FID / KID (offline features, not Inception) | {fk['fid']:.2f} / "
                           f"{fk['kid']:.4f} | {fk['num_images'][0]} test vs {fk['num_images'][1]} prior |"],
}
BETA_VAE_LABELS = {"logistic": "logistic regression", "svm": "linear SVM, C = 0.01"}


def markdown(report: dict) -> str:
    m = report["metrics"]
    lines = [f"# Evaluation of `{report['run_dir']}`", "",
             f"model `{report['model']}` on `{report['data']}`, step {report['step']}, "
             f"latent site `{report['latent_site']}`, {report['mode']} sample sizes.", ""]
    t = report.get("training")
    if t:
        lines += [f"Training: {t['steps']} steps in {t['train_seconds']:.1f} s.", ""]
    lines += ["| metric | value | samples |", "|---|---|---|"]
    for key, rows in METRIC_ROWS.items():
        if key in m:
            lines += rows(m[key])
    if report["skipped"]:
        lines += ["", "Skipped:"] + [f"- {s}" for s in report["skipped"]]
    lines += ["", "Files: " + ", ".join(report["files"]), "",
              "Seconds per section: " + ", ".join(f"{k} {v:.1f}" for k, v in
                                                  report["seconds"].items())]
    return "\n".join(lines) + "\n"
