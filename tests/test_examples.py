"""Every example runs, with quick settings, and its numbers say what it promises."""

import importlib.util
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _example(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_custom_pair_fits_with_every_elbo(one_thread):
    results = _example("custom_pair").main(steps=15)
    assert set(results) == {"elbo", "beta", "capacity", "betatc", "factor", "dip1", "dip2", "info"}
    for name, terms in results.items():
        assert {"loss", "recon", "kl"} <= set(terms) and all(math.isfinite(v) for v in terms.values()), name
    # each ELBO logged its own terms: β-TCVAE's decomposition, the discriminator, DIP, MMD, C(t)
    assert {"mi", "tc", "dim_kl"} <= set(results["betatc"])
    assert {"tc", "discriminator"} <= set(results["factor"])
    assert "dip" in results["dip1"] and "mmd" in results["info"]
    assert results["capacity"]["capacity"] > 0  # C(t) rose: the schedule advanced in loss_and_grads
