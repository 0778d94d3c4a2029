"""Every example runs as a script, with quick settings, and prints what it promises."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# (script, arguments, strings its output must contain) — add a row per example.
EXAMPLES = [
    ("examples/custom_pair.py", ["--steps", "15"],
     ("betatc", "dim_kl=", "tc=", "mmd=", "dip=", "capacity=", "discriminator=")),
]


@pytest.mark.parametrize("script,args,expect", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_example_runs(script, args, expect):
    out = subprocess.run([sys.executable, str(ROOT / script), *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=600, env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                                                      "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    for text in expect:
        assert text in out.stdout, text
