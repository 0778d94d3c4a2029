"""Writes that fail (no space left, a read-only or removed folder): one line naming the path and the OS
error, a non-zero exit, no traceback; the last good checkpoint stays loadable; no temporary file left."""

import errno
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from inference import checkpoint, svi
from inference.checkpoint import load_checkpoint, save_checkpoint
from inference.cli import EXIT_WRITE_ERROR, run_main
from inference.errors import WriteError
from inference.svi import CHECKPOINT

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "scripts" / "train.py"
ARGV = ["--data", "digits", "--latent-dim", "2", "--batch-size", "8", "--log-every", "2",
        "--checkpoint-every", "2", "--device", "cpu", "--no-pictures"]


@pytest.fixture(scope="module")
def train_main():
    spec = importlib.util.spec_from_file_location("train_script_writes", TRAIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def temporaries(folder: Path):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def fail_from_step(monkeypatch, step: int, action):
    """Run ``action()`` just before step ``step`` (from inside fit's loop)."""
    real = svi.warmup_weight

    def weight(s, *args):
        if s == step:
            action()
        return real(s, *args)
    monkeypatch.setattr(svi, "warmup_weight", weight)


def failing(code):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    return fail


def test_a_full_disk_during_the_checkpoint_keeps_the_last_one(train_main, tmp_path, monkeypatch, capsys):
    """ENOSPC while the checkpoint is flushed to disk: one line naming checkpoint.pt and the OS error,
    exit 74, the step-2 checkpoint intact and loadable, no temporary file."""
    out = tmp_path / "run"
    fail_from_step(monkeypatch, 2, lambda: monkeypatch.setattr(checkpoint.os, "fsync", failing(errno.ENOSPC)))
    assert run_main(train_main, [*ARGV, "--steps", "6", "--out", str(out)]) == EXIT_WRITE_ERROR
    assert one_line(capsys).endswith(f": error: cannot write {out / CHECKPOINT}: "
                                     "No space left on device (ENOSPC)")
    monkeypatch.undo()
    assert load_checkpoint(out / CHECKPOINT)["step"] == 2
    assert temporaries(out) == []


def test_the_zip_writer_never_sees_the_disk(tmp_path, monkeypatch):
    """torch.save writes to memory; the disk write fails as the OS error itself, not as the zip
    writer's ``RuntimeError: [enforce fail at inline_container.cc]``."""
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            self.fh.write(bytes(data)[:100])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"step": 1, "params": {"w": torch.ones(3)}, "optimizer": {}, "rng": {}})
    monkeypatch.setattr(checkpoint.os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
    with pytest.raises(WriteError, match=r"cannot write .*ckpt.pt: No space left on device \(ENOSPC\)"):
        save_checkpoint(path, {"step": 2, "params": {"w": torch.zeros(10_000)}, "optimizer": {}, "rng": {}})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert temporaries(tmp_path) == []


def test_a_read_only_folder(train_main, tmp_path, monkeypatch, capsys):
    """The folder turns read-only mid-run (a remount: EROFS on creating the temporary file)."""
    out = tmp_path / "run"
    fail_from_step(monkeypatch, 2, lambda: monkeypatch.setattr(checkpoint.tempfile, "mkstemp",
                                                               failing(errno.EROFS)))
    assert run_main(train_main, [*ARGV, "--steps", "6", "--out", str(out)]) == EXIT_WRITE_ERROR
    assert one_line(capsys).endswith(f": error: cannot write {out / CHECKPOINT}: "
                                     "Read-only file system (EROFS)")
    monkeypatch.undo()
    assert load_checkpoint(out / CHECKPOINT)["step"] == 2
    assert temporaries(out) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a chmod-ed folder (see the slow test)")
def test_a_folder_without_write_permission(train_main, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    fail_from_step(monkeypatch, 2, lambda: out.chmod(0o555))
    try:
        assert run_main(train_main, [*ARGV, "--steps", "6", "--out", str(out)]) == EXIT_WRITE_ERROR
    finally:
        out.chmod(0o755)
    assert f"cannot write {out / CHECKPOINT}: Permission denied (EACCES)" in one_line(capsys)
    assert load_checkpoint(out / CHECKPOINT)["step"] == 2
    assert temporaries(out) == []


def test_a_folder_removed_mid_run_is_not_made_again(train_main, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    fail_from_step(monkeypatch, 2, lambda: shutil.rmtree(out))
    assert run_main(train_main, [*ARGV, "--steps", "6", "--out", str(out)]) == EXIT_WRITE_ERROR
    assert one_line(capsys).endswith(f": error: cannot write {out / CHECKPOINT}: "
                                     "No such file or directory (ENOENT)")
    assert not out.exists()


def _sandbox_works() -> bool:
    """Can this machine mount a small tmpfs in a user namespace (``unshare -rm``)?"""
    if shutil.which("unshare") is None:
        return False
    try:
        return subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


SANDBOX = """
set -u
mount -t tmpfs -o size=2m tmpfs "$DISK"
python=$1; shift
"$python" "$TRAIN" $ARGS --steps 2 --out "$DISK/run" || exit 90
cp "$DISK/run/checkpoint.pt" "$KEEP/step2.pt"
case "$CASE" in
  full) head -c 8m /dev/zero > "$DISK/filler" 2>/dev/null
        truncate -s -65536 "$DISK/filler" ;;
  readonly) mount -o remount,ro "$DISK" ;;
esac
"$python" "$TRAIN" $ARGS --steps 6 --resume --out "$DISK/run" 2> "$KEEP/stderr"
echo $? > "$KEEP/rc"
ls -a "$DISK/run" > "$KEEP/listing"
cp "$DISK/run/checkpoint.pt" "$KEEP/after.pt"
"""


@pytest.mark.slow
@pytest.mark.skipif(not _sandbox_works(), reason="needs unshare and a tmpfs in a user namespace")
@pytest.mark.parametrize("case, message, code", [
    ("full", f"cannot write {{disk}}/run/{CHECKPOINT}: No space left on device (ENOSPC)", EXIT_WRITE_ERROR),
    # caught before training (a file system with a file open for writing cannot be remounted
    # read-only, so a real one cannot turn read-only mid-run: test_a_read_only_folder injects that)
    ("readonly", "--out {disk}/run: {disk}/run is not writable", 2)])
def test_a_real_small_file_system(tmp_path, case, message, code):
    """A real 2 MB tmpfs, between two sessions filled up to its last 64 kB (the checkpoint is 320 kB)
    or remounted read-only."""
    disk, keep = tmp_path / "disk", tmp_path / "keep"
    disk.mkdir()
    keep.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "DISK": str(disk),
           "KEEP": str(keep), "TRAIN": str(TRAIN), "ARGS": " ".join(ARGV), "CASE": case}
    done = subprocess.run(["unshare", "-rm", "sh", "-c", SANDBOX, "sandbox", sys.executable], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    err = (keep / "stderr").read_text()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0] == "train.py: error: " + message.format(disk=disk)
    assert int((keep / "rc").read_text()) == code
    assert (keep / "after.pt").read_bytes() == (keep / "step2.pt").read_bytes()
    assert load_checkpoint(keep / "after.pt")["step"] == 2
    assert not [n for n in (keep / "listing").read_text().split() if n.endswith(".tmp")]


def test_an_atomic_write_has_the_mode_of_an_ordinary_file(tmp_path):
    # mkstemp creates 0600; a run on a shared cluster must be readable as any file the user writes is
    import os
    import stat

    from inference.checkpoint import atomic_write_text
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic_write_text(tmp_path / "atomic.txt", "x")
    assert stat.S_IMODE(os.stat(tmp_path / "atomic.txt").st_mode) == stat.S_IMODE(os.stat(plain).st_mode)


@pytest.mark.parametrize("what", ["figure", "grid", "netcdf", "sweep"])
def test_pictures_posteriors_and_sweep_tables_fail_without_touching_the_old_file(tmp_path, monkeypatch, what):
    """The other files a run or a sweep leaves (pictures, posterior.nc, sweep.csv) go through the
    same atomic writers: ENOSPC at the flush names the file, the old file is byte-identical and no
    temporary is left. First a write that succeeds, read back by an independent reader."""
    import arviz as az
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from inference.checkpoint import atomic_save_figure, atomic_write_file
    from inference.pictures import save_grid

    def write(seed):
        if what == "figure":
            fig, ax = plt.subplots()
            ax.plot(np.random.default_rng(seed).normal(size=5))
            atomic_save_figure(fig, tmp_path / "f.png", dpi=30)
            plt.close(fig)
            return tmp_path / "f.png"
        if what == "grid":
            return save_grid(torch.full((2, 1, 4, 4), seed / 10), tmp_path / "g.png", nrow=2)
        if what == "netcdf":
            idata = az.from_dict(posterior={"z": np.full((1, 3, 2), float(seed))})
            return atomic_write_file(tmp_path / "posterior.nc", lambda tmp: idata.to_netcdf(tmp))
        from inference.sweep import tables
        study = type("Study", (), {"trials": [], "evaluate": {"sections": []}, "name": "s"})()
        monkeypatch.setattr(tables, "aggregate", lambda study, rows: [])
        monkeypatch.setattr(tables, "group_key_names", lambda study: [])
        monkeypatch.setattr("inference.sweep.plots.plot", lambda *a: False)
        tables.write_tables(study, [{"name": f"t{seed}", "status": "ok"}], tmp_path)
        return tmp_path / "sweep.csv"

    path = write(1)
    if what in ("figure", "grid"):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if what == "grid":  # torchvision's own reader: the 4×4 images at 0.1 of 255
            from torchvision.io import read_image
            assert read_image(str(path))[:, 2:6, 2:6].unique().tolist() == [round(0.1 * 255)]
    elif what == "netcdf":
        assert float(az.from_netcdf(path).posterior["z"].mean()) == 1.0
    else:
        assert path.read_text().splitlines()[1].startswith("t1,")
    before = path.read_bytes()
    monkeypatch.setattr(checkpoint.os, "fsync", failing(errno.ENOSPC))
    with pytest.raises(WriteError, match=f"cannot write {path}: No space left on device"):
        write(2)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert temporaries(tmp_path) == []


def test_the_packages_write_files_only_through_the_atomic_writers():
    """A source scan: no package writes a result, picture or posterior in place (``write_text``,
    ``savefig``, ``to_netcdf``, ``torch.save``, ``save_image`` on a path); those calls appear only on
    the in-memory buffer or the temporary name that ``inference.checkpoint``'s writers hand them."""
    import re

    call = re.compile(r"\.write_text\(|\bsavefig\(|\.to_netcdf\(|\btorch\.save\(|\bsave_image\(")
    allowed = re.compile(r"\((?:fh|tmp)[,)]|, fh[,)]")
    found = []
    for package in ("ppl_data", "ppl_models", "guides", "inference"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#")[0]
                if call.search(code) and not allowed.search(code) and '"""' not in code and "``" not in code:
                    found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert found == []
