"""Seconds taken by MIG (10,000 codes × 10 dims), the FactorVAE score and DCI, against disent's
implementation of the same metric when it can be imported.

    .venv/bin/python benchmarks/metrics_speed.py [--dci-points 10000] [--skip-gbt]

disent is not a dependency. To compare with it without touching .venv (it needs `lightning`,
which in turn needs nothing new from torch), unpack it into a throwaway folder and put that on
PYTHONPATH:

    .venv/bin/pip install --no-deps --target /tmp/disent_pkg disent lightning lightning-utilities \
        torchmetrics pyyaml
    PYTHONPATH=/tmp/disent_pkg .venv/bin/python benchmarks/metrics_speed.py

The codes are synthetic (a noisy linear map of dSprites-sized factors), so only the metric's own
work is timed, never an encoder. The last line is ``mig_seconds=<s>`` (target ≤ 1 s). DCI's
default (GBT) importances at disentanglement_lib's full sizes are timed by benchmarks/dci_speed.py;
here only the random forest at ``--dci-points`` and GBT at ``--gbt-points``.
"""

from __future__ import annotations

import time

import torch

from inference.cli import OneLineParser, positive_int
from inference import metrics as M
from ppl_data import GroundTruthData


class LinearShapes(GroundTruthData):
    """dSprites' factor grid whose "image" is the factor vector itself."""

    factor_names = ("shape", "scale", "orientation", "pos_x", "pos_y")
    factor_sizes = (3, 6, 40, 32, 32)
    data_shape = (5,)

    def images(self, factors, dtype=torch.float32):
        return factors.to(dtype)


def representation(d: int = 10, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    mix = torch.randn(5, d, generator=gen)
    return lambda x: x @ mix + 0.5 * torch.randn(x.shape[0], d, generator=gen)


def best_of(fn, repeat: int = 3):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def disent():
    try:
        from disent.metrics import _dci, _mig
        return _mig, _dci
    except Exception as err:  # not installed, or its dependencies are missing
        print(f"disent not importable ({type(err).__name__}: {err}); timing ours only")
        return None, None


def main(argv=None):
    p = OneLineParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dci-points", type=positive_int, default=10_000)
    p.add_argument("--gbt-points", type=positive_int, default=1_000)
    p.add_argument("--skip-gbt", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    data, rep = LinearShapes(), representation()
    codes, factors = M.sample_codes(data, rep, 10_000, torch.Generator().manual_seed(1))
    test_codes, test_factors = M.sample_codes(data, rep, 5_000, torch.Generator().manual_seed(2))
    d_mig, d_dci = disent()

    mig_s, mig_v = best_of(lambda: M.mig(codes, factors))
    print(f"MIG, 10000 x 10 codes: ours {mig_s:.3f}s (value {mig_v:.4f})")
    if d_mig is not None:
        s, v = best_of(lambda: d_mig._compute_mig(codes.T, factors.T), repeat=1)
        print(f"MIG, 10000 x 10 codes: disent {s:.3f}s (value {v['mig.discrete_score']:.4f}; "
              f"|difference| {abs(v['mig.discrete_score'] - mig_v):.2e})")

    # FactorVAE with disentanglement_lib's full sizes: 10,000 + 5,000 votes of 64, 10,000 for
    # the variances; representation cost is a (n, 5) @ (5, 10) product.
    fv_s, fv = best_of(lambda: M.compute_factor_vae(data, rep, torch.Generator().manual_seed(3)),
                       repeat=1)
    print(f"FactorVAE score, 10000/5000 votes of 64: ours {fv_s:.3f}s "
          f"(eval accuracy {fv['eval_accuracy']:.3f}); disent's needs its own dataset "
          "wrapper, not timed")

    n = args.dci_points
    dci_s, dci_v = best_of(lambda: M.dci(codes[:n], factors[:n], test_codes, test_factors,
                                         model="forest"), repeat=1)
    print(f"DCI (random forest), {n} train / 5000 test: ours {dci_s:.3f}s "
          f"(D {dci_v['disentanglement']:.3f}, C {dci_v['completeness']:.3f}, "
          f"I {dci_v['informativeness_test']:.3f})")
    if not args.skip_gbt:
        g = args.gbt_points
        sub = (codes[:g], factors[:g], test_codes[:g // 2], test_factors[:g // 2])
        gbt_s, gbt_v = best_of(lambda: M.dci(*sub, model="gbt"), repeat=1)
        print(f"DCI (gradient-boosted trees), {g} train: ours {gbt_s:.3f}s "
              f"(D {gbt_v['disentanglement']:.3f}, C {gbt_v['completeness']:.3f})")
        if d_dci is not None:
            s, v = best_of(lambda: d_dci._compute_dci(sub[0].T, sub[1].T, sub[2].T, sub[3].T),
                           repeat=1)
            print(f"DCI (gradient-boosted trees), {g} train: disent {s:.3f}s "
                  f"(D {v['dci.disentanglement']:.3f}, C {v['dci.completeness']:.3f})")
    print(f"mig_seconds={mig_s:.4f}")


if __name__ == "__main__":
    main()
