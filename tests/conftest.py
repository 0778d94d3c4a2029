import os
import sys
from pathlib import Path

import pyro
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Two cores on CI: keep torch from oversubscribing them when pytest runs things in one process.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed_and_isolate(monkeypatch, tmp_path):
    """Each test starts from the same RNG state, an empty Pyro param store and a private cache folder."""
    torch.manual_seed(0)
    pyro.clear_param_store()
    monkeypatch.setenv("PYRO_DISENTANGLE_CACHE", str(tmp_path / "cache"))
    yield


@pytest.fixture
def one_thread():
    """Tiny nets: one thread is faster than two fighting over a shared machine (use per module)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
