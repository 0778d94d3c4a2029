"""The benchmark datasets read from their official files (issue 26, part 1).

Each test writes a small file in exactly the official layout (the same keys, dtypes and factor
order, on a reduced grid) whose images encode their own factor indices, so a wrong index order,
a dropped factor or a misplaced channel shows as a decoded factor that differs from the one asked for.
"""

from __future__ import annotations

import math
import pickle
import runpy
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

import ppl_data
from inference.cli import run_main
from ppl_data import DataError
from ppl_data import files as F
from ppl_data import mapped as M

ROOT = Path(__file__).resolve().parents[1]
DSPRITES_GRID = (3, 2, 3, 2, 4)  # shape, scale, orientation, pos_x, pos_y (the file's 3, 6, 40, 32, 32)
SHAPES3D_GRID = (2, 3, 2, 2, 4, 3)
MPI3D_GRID = (2, 3, 2, 1, 3, 2, 2)


def enumeration(sizes) -> np.ndarray:
    """Factor rows of every grid item in C order (last factor fastest), via numpy's own unravel."""
    return np.stack(np.unravel_index(np.arange(math.prod(sizes)), sizes), 1).astype(np.int64)


def dsprites_images(classes: np.ndarray) -> np.ndarray:
    """Binary (N, 64, 64) images: row 2k has factor k's value + 1 leading ones; a sprite block below."""
    imgs = np.zeros((len(classes), 64, 64), np.uint8)
    for k in range(classes.shape[1]):
        cols = np.arange(64)[None, :] <= classes[:, k][:, None]
        imgs[:, 2 * k] = cols
    imgs[:, 30:50, 20:44] = 1  # the sprite: what the derived variants colour, or invert
    return imgs


def decode_dsprites(x: torch.Tensor) -> torch.Tensor:
    rows = x[:, 0, 0:10:2]  # (n, 5, 64)
    return rows.sum(-1).round().long() - 1


def write_dsprites(path: Path, sizes=DSPRITES_GRID, **override) -> Path:
    classes = enumeration(sizes)
    arrays = {"imgs": dsprites_images(classes),
              "latents_classes": np.concatenate([np.zeros((len(classes), 1), np.int64), classes], 1),
              "latents_values": np.concatenate([np.ones((len(classes), 1)), classes * 0.5], 1),
              "metadata": np.array({"latents_sizes": np.array((1, *sizes))}, dtype=object)}
    arrays.update(override)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:  # the official file is compressed, with a pickled 'metadata'
        np.savez_compressed(fh, **arrays)
    return path


def colour_images(classes: np.ndarray) -> np.ndarray:
    """uint8 (N, 64, 64, 3): pixel (0, k) of channel c holds 10·(factor k's index) + 5 + c."""
    imgs = np.zeros((len(classes), 64, 64, 3), np.uint8)
    for c in range(3):
        imgs[:, 0, :classes.shape[1], c] = classes * 10 + 5 + c  # channel c offset by c
    return imgs


def decode_colour(x: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` factors of channel-first images; checks that the channels kept their order."""
    px = (x[:, :, 0, :k] * 255).round().long()  # (n, 3, k)
    assert torch.equal(px[:, 1:] - px[:, :1], torch.tensor([1, 2])[None, :, None].expand(len(px), 2, k))
    return (px[:, 0] - 5) // 10


def write_shapes3d(path: Path, sizes=SHAPES3D_GRID, images=None, labels=None, drop=()) -> Path:
    classes = enumeration(sizes)
    values = [np.arange(10) / 10, np.arange(10) / 10, np.arange(10) / 10, np.linspace(0.75, 1.25, 8),
              np.arange(4.0), np.linspace(-30, 30, 15)]  # the official label values
    arrays = {"images": colour_images(classes) if images is None else images,
              "labels": np.stack([values[k][classes[:, k]] for k in range(6)], 1) if labels is None else labels}
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for key, arr in arrays.items():
            if key not in drop:
                f.create_dataset(key, data=arr)
    return path


def write_mpi3d(path: Path, sizes=MPI3D_GRID, compressed=True, **arrays) -> Path:
    arrays = arrays or {"images": colour_images(enumeration(sizes))}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:  # a handle: numpy would add ".npz" to another suffix
        (np.savez_compressed if compressed else np.savez)(fh, **arrays)
    return path


def decoded_ok(data, decode, n=40, seed=0):
    f = data.sample_factors(n, generator=torch.Generator().manual_seed(seed))
    return torch.equal(decode(data.images(f)), f)


# -- every factor maps to its image -------------------------------------------------------------------
def test_dsprites_file_items_are_the_grid_in_c_order(tmp_path):
    path = write_dsprites(tmp_path / F.DSPRITES_FILE)
    data = ppl_data.load("dsprites_file", root=tmp_path, factor_sizes=DSPRITES_GRID, cache_dir=tmp_path / "c")
    assert data.factor_names == ("shape", "scale", "orientation", "pos_x", "pos_y")
    assert data.data_shape == (1, 64, 64) and len(data) == math.prod(DSPRITES_GRID)
    assert decoded_ok(data, decode_dsprites)
    index = torch.tensor([0, 5, len(data) - 1, 17])
    x, f = data.batch(index)
    assert torch.equal(f, torch.from_numpy(enumeration(DSPRITES_GRID)[index.numpy()]))
    assert torch.equal(decode_dsprites(x), f) and set(x.unique().tolist()) == {0.0, 1.0}
    assert isinstance(data.pixels, np.memmap)
    assert ppl_data.load("dsprites_file", root=path, factor_sizes=DSPRITES_GRID,  # the file itself
                         cache_dir=tmp_path / "c").path == path


def test_shapes3d_file_items_are_the_grid_in_c_order(tmp_path):
    write_shapes3d(tmp_path / "3dshapes" / F.SHAPES3D_FILE)  # disentanglement_lib's sub-folder
    data = ppl_data.load("shapes3d", root=tmp_path, factor_sizes=SHAPES3D_GRID, cache_dir=tmp_path / "c")
    assert data.factor_names == ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    assert data.data_shape == (3, 64, 64)
    assert decoded_ok(data, lambda x: decode_colour(x, len(data.factor_sizes)))


@pytest.mark.parametrize("compressed", [True, False])
def test_mpi3d_file_mapped_in_place_or_through_one_cache(tmp_path, compressed):
    write_mpi3d(tmp_path / "mpi3d_real.npz", compressed=compressed)
    cache = tmp_path / "cache"
    data = ppl_data.load("mpi3d", root=tmp_path, factor_sizes=MPI3D_GRID, cache_dir=cache)
    assert data.variant == "real" and len(data.factor_sizes) == 7
    assert decoded_ok(data, lambda x: decode_colour(x, len(data.factor_sizes)))
    made = sorted(cache.glob("*.npy")) if cache.exists() else []
    if compressed:  # converted once, then mapped: the second load writes nothing
        assert len(made) == 1 and made[0].name.startswith("mpi3d_real.npz.images.")
        before = made[0].stat().st_mtime_ns
        again = ppl_data.load("mpi3d_real", root=tmp_path, factor_sizes=MPI3D_GRID, cache_dir=cache)
        assert made[0].stat().st_mtime_ns == before and decoded_ok(again, lambda x: decode_colour(x, 7), seed=1)
    else:  # np.savez stores the array uncompressed: mapped where it lies in the zip
        assert made == [] and Path(data.pixels.filename) == (tmp_path / "mpi3d_real.npz").resolve()


def test_cache_streams_in_chunks_and_follows_a_changed_source(tmp_path, monkeypatch):
    monkeypatch.setattr(M, "CHUNK_BYTES", 64 * 64 * 3 * 5 + 7)  # many chunks, not aligned to items
    path = write_mpi3d(tmp_path / "mpi3d_toy.npz")
    expected = np.load(path)["images"]
    with M.NpzArchive(path) as archive:
        arr = archive.mapped("images", tmp_path)
    assert np.array_equal(arr, expected) and not list(tmp_path.glob("*.tmp"))
    first = M.cache_path(path, "images", tmp_path)
    write_mpi3d(path, images=expected[::-1].copy())  # the user replaces the file
    with M.NpzArchive(path) as archive:
        arr = archive.mapped("images", tmp_path)
    assert np.array_equal(arr, expected[::-1]) and not first.exists()  # the stale cache is gone
    assert len(list(tmp_path.glob("mpi3d_toy.npz.images.*.npy"))) == 1


def test_cache_location_read_only_folder_and_environment(tmp_path, monkeypatch):
    src = tmp_path / "data" / "x.npz"
    src.parent.mkdir()
    src.write_bytes(b"")
    monkeypatch.delenv(M.CACHE_ENV, raising=False)
    assert M.cache_folder(src) == src.parent  # beside the file
    monkeypatch.setattr(M.os, "access", lambda path, mode: False)  # a read-only data folder
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert M.cache_folder(src) == tmp_path / "xdg" / "ppl_data"
    monkeypatch.setenv(M.CACHE_ENV, str(tmp_path / "env"))
    assert M.cache_folder(src) == tmp_path / "env"
    assert M.cache_folder(src, tmp_path / "arg") == tmp_path / "arg"


def test_datasets_pickle_by_path_not_by_pixels(tmp_path):
    write_mpi3d(tmp_path / "mpi3d_toy.npz", compressed=False)
    data = ppl_data.load("mpi3d", root=tmp_path, factor_sizes=MPI3D_GRID)
    blob = pickle.dumps(data)
    assert len(blob) < data.pixels.nbytes // 4
    assert decoded_ok(pickle.loads(blob), lambda x: decode_colour(x, 7))


# -- derived variants: disentanglement_lib's definitions, computed independently ---------------------
def reference_colour(obs, colour):
    """ColorDSprites: repeat (n, 64, 64, 1) to 3 channels, times one colour per item."""
    return np.repeat(obs, 3, axis=3) * colour[:, None, None, :]


def reference_noisy(obs, noise):
    return np.minimum(np.repeat(obs, 3, axis=3) + noise, 1.0)


def reference_scream(obs, scream, rows, cols, offsets):
    out = np.repeat(obs, 3, axis=3).astype(np.float64)
    for i in range(len(out)):  # disentanglement_lib's loop over items
        background = (scream[rows[i]:rows[i] + 64, cols[i]:cols[i] + 64] + offsets[i]) / 2.0
        mask = out[i] == 1
        background[mask] = 1 - background[mask]
        out[i] = background
    return out


@pytest.fixture
def dsprites_root(tmp_path):
    write_dsprites(tmp_path / F.DSPRITES_FILE)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (300, 500, 3), dtype=np.uint8)).save(tmp_path / F.SCREAM_FILE)
    return tmp_path


@pytest.mark.parametrize("name", ["color_dsprites", "noisy_dsprites", "scream_dsprites"])
def test_derived_dsprites_follow_disentanglement_lib(dsprites_root, name):
    data = ppl_data.load(name, root=dsprites_root, factor_sizes=DSPRITES_GRID)
    base = ppl_data.load("dsprites_file", root=dsprites_root, factor_sizes=DSPRITES_GRID)
    f = data.sample_factors(12, generator=torch.Generator().manual_seed(3))
    x = data.images(f, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    draws = {k: v.double().numpy() if v.is_floating_point() else v.numpy()
             for k, v in data.draw(12, torch.Generator().manual_seed(7)).items()}
    obs = base.images(f).permute(0, 2, 3, 1).double().numpy()  # disentanglement_lib's (n, 64, 64, 1)
    assert x.shape == (12, 3, 64, 64) and data.data_shape == (3, 64, 64)
    if name == "color_dsprites":
        assert ((draws["colour"] >= 0.5) & (draws["colour"] < 1)).all()
        want = reference_colour(obs, draws["colour"])
    elif name == "noisy_dsprites":
        noise = draws["noise"].transpose(0, 2, 3, 1)
        assert ((noise >= 0) & (noise < 1)).all() and noise.std() > 0.25
        want = reference_noisy(obs, noise)
    else:
        scream = data.scream.double().numpy()
        h, w = scream.shape[:2]
        assert (w, h) == (350, 210)  # 500×300 fitted into 350×274, aspect kept
        assert (draws["row"] < h - 64).all() and (draws["col"] < w - 64).all()
        want = reference_scream(obs, scream, draws["row"], draws["col"], draws["offset"])
    assert np.allclose(x.permute(0, 2, 3, 1).numpy(), want, atol=1e-6)
    # seeded: the same generator repeats the images, the next call draws new ones
    assert torch.equal(data.images(f, generator=torch.Generator().manual_seed(7), dtype=torch.float64), x)
    seeded = ppl_data.load(name, root=dsprites_root, factor_sizes=DSPRITES_GRID, seed=5)
    twin = ppl_data.load(name, root=dsprites_root, factor_sizes=DSPRITES_GRID, seed=5)
    first = seeded.images(f)
    assert torch.equal(first, twin.images(f)) and not torch.equal(first, seeded.images(f))
    xb, fb = seeded.batch(torch.arange(4))
    assert xb.shape == (4, 3, 64, 64) and torch.equal(fb, seeded.factors_of(torch.arange(4)))


def test_scream_needs_its_image(tmp_path):
    write_dsprites(tmp_path / F.DSPRITES_FILE)
    with pytest.raises(DataError, match="needs the Scream image"):
        ppl_data.load("scream_dsprites", root=tmp_path, factor_sizes=DSPRITES_GRID)
    (tmp_path / "small.png").parent.mkdir(exist_ok=True)
    Image.new("RGB", (60, 200)).save(tmp_path / "small.png")
    with pytest.raises(DataError, match="small.png: the Scream image must exceed 64"):
        ppl_data.load("scream_dsprites", root=tmp_path, factor_sizes=DSPRITES_GRID,
                      scream=tmp_path / "small.png")


# -- the metrics run end to end ------------------------------------------------------------------------
def test_metrics_run_end_to_end_on_a_file_dataset(tmp_path):
    from inference import metrics

    write_mpi3d(tmp_path / "mpi3d_toy.npz")
    data = ppl_data.load("mpi3d_toy", root=tmp_path, factor_sizes=MPI3D_GRID)
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 64 * 64, 4))

    def represent(x):
        with torch.no_grad():
            return encoder(x)

    codes, factors = metrics.sample_codes(data, represent, 200, torch.Generator().manual_seed(0))
    assert codes.shape == (200, 4) and np.isfinite(metrics.mig(codes, factors))
    fvae = metrics.compute_factor_vae(data, represent, torch.Generator().manual_seed(1), num_train=20,
                                      num_eval=10, batch_size=8, num_variance_estimate=100)
    assert 0.0 <= fvae["eval_accuracy"] <= 1.0

    def exact(x):  # a code that is the factors themselves scores MIG near 1 (factor sizes > 1)
        return decode_colour(x, 7).double()

    codes, factors = metrics.sample_codes(data, exact, 500, torch.Generator().manual_seed(2))
    assert metrics.mig(codes[:, [0, 1, 2, 4, 5, 6]], factors[:, [0, 1, 2, 4, 5, 6]]) > 0.9


# -- bad files: one line naming the file and what is wrong ---------------------------------------------
def truncated(path: Path) -> Path:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return path


BAD_FILES = {
    "missing key": (lambda d: write_dsprites(d / F.DSPRITES_FILE, latents_classes=None),
                    "dsprites_file", "no array 'latents_classes'"),
    "wrong shape": (lambda d: write_dsprites(d / F.DSPRITES_FILE, imgs=np.zeros((48, 32, 32), np.uint8)),
                    "dsprites_file", r"'imgs' is shaped \(48, 32, 32\), expected \(N, 64, 64\)"),
    "wrong dtype": (lambda d: write_mpi3d(d / "mpi3d_toy.npz", images=np.zeros((144, 64, 64, 3), np.float32)),
                    "mpi3d", "'images' has dtype float32, expected uint8"),
    "wrong count": (lambda d: write_mpi3d(d / "mpi3d_toy.npz", images=np.zeros((143, 64, 64, 3), np.uint8)),
                    "mpi3d", "holds 143 items, expected 144"),
    "wrong order": (lambda d: write_dsprites(d / F.DSPRITES_FILE, latents_classes=np.concatenate(
        [np.zeros((144, 1), np.int64), enumeration(DSPRITES_GRID)[::-1]], 1)),
                    "dsprites_file", "not the dSprites grid in C order"),
    "truncated npz": (lambda d: truncated(write_mpi3d(d / "mpi3d_toy.npz")), "mpi3d", "not a readable .npz"),
    "truncated h5": (lambda d: truncated(write_shapes3d(d / F.SHAPES3D_FILE)), "shapes3d",
                     "not a readable HDF5 file"),
    "directory": (lambda d: (d / F.SHAPES3D_FILE).mkdir(), "shapes3d", "is a directory"),
    "no file": (lambda d: None, "shapes3d", "no file 3dshapes.h5 in the folder"),
    "dSprites file as MPI3D": (lambda d: write_dsprites(d / "mpi3d_toy.npz"), "mpi3d",
                               "no array 'images'.*looks like the dSprites"),
    "Shapes3D file as MPI3D": (lambda d: write_shapes3d(d / "mpi3d_toy.npz"), "mpi3d",
                               "not an MPI3D file; it looks like the Shapes3D"),
    "MPI3D file as Shapes3D": (lambda d: write_mpi3d(d / F.SHAPES3D_FILE, sizes=SHAPES3D_GRID), "shapes3d",
                               "no array 'labels'.*looks like the MPI3D"),
    "labels off the grid": (lambda d: write_shapes3d(d / F.SHAPES3D_FILE, labels=np.zeros((288, 6))),
                            "shapes3d", "'labels' column 0 .floor_hue. takes 1 values, expected 2"),
}
GRIDS = {"dsprites_file": DSPRITES_GRID, "mpi3d": MPI3D_GRID, "shapes3d": SHAPES3D_GRID}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_is_one_line_naming_file_and_fault(tmp_path, case):
    write, name, message = BAD_FILES[case]
    write(tmp_path)
    with pytest.raises(DataError, match=message) as err:
        ppl_data.load(name, root=tmp_path, factor_sizes=GRIDS[name], cache_dir=tmp_path / "c")
    text = str(err.value)
    assert "\n" not in text and str(tmp_path) in text


def test_damaged_member_fails_with_one_line_and_leaves_no_cache(tmp_path):
    path = write_mpi3d(tmp_path / "mpi3d_toy.npz")
    with zipfile.ZipFile(path) as z:
        start = z.getinfo("images.npy").header_offset + 30 + len("images.npy") + 200
    raw = bytearray(path.read_bytes())
    raw[start:start + 40] = bytes(40)  # corrupt the compressed stream, keep the archive readable
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"mpi3d_toy.npz: array 'images' is damaged"):
        ppl_data.load("mpi3d", root=tmp_path, factor_sizes=MPI3D_GRID, cache_dir=tmp_path / "c")
    assert not [p for p in (tmp_path / "c").glob("*") if p.suffix in (".npy", ".tmp")]


def test_train_cli_reads_a_file_dataset_and_refuses_a_bad_one(tmp_path, monkeypatch, capsys):
    main = runpy.run_path(str(ROOT / "scripts" / "train.py"))["main"]
    write_mpi3d(tmp_path / "data" / "mpi3d_toy.npz", images=np.zeros((5, 64, 64, 3), np.uint8))
    argv = ["--data", "mpi3d", "--data-root", str(tmp_path / "data"), "--steps", "1",
            "--batch-size", "4", "--device", "cpu", "--no-pictures", "--out", str(tmp_path / "run")]
    assert run_main(main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "mpi3d_toy.npz: 'images' holds 5 items, expected 1036800" in err
    assert not (tmp_path / "run").exists()
    # the CLI reads the official grid; here the module's grid is the test file's reduced one
    write_mpi3d(tmp_path / "data" / "mpi3d_toy.npz")
    monkeypatch.setattr(F, "MPI3D_FACTORS", dict(zip(F.MPI3D_FACTORS, MPI3D_GRID)))
    monkeypatch.setenv(M.CACHE_ENV, str(tmp_path / "cache"))
    assert run_main(main, argv) == 0, capsys.readouterr().err
    assert "trained vae on mpi3d" in capsys.readouterr().out


@pytest.mark.slow
def test_train_then_evaluate_the_full_protocol_on_a_file_dataset(tmp_path, monkeypatch):
    """scripts/train.py on an MPI3D-layout file, then every factor metric of the evaluation."""
    from inference.report import evaluate_run

    main = runpy.run_path(str(ROOT / "scripts" / "train.py"))["main"]
    grid = (2,) * 7  # every factor varies: each metric's classifiers see two classes at least
    write_mpi3d(tmp_path / "data" / "mpi3d_real.npz", sizes=grid)
    monkeypatch.setattr(F, "MPI3D_FACTORS", dict(zip(F.MPI3D_FACTORS, grid)))
    monkeypatch.setenv(M.CACHE_ENV, str(tmp_path / "cache"))
    run = tmp_path / "run"
    assert run_main(main, ["--data", "mpi3d_real", "--data-root", str(tmp_path / "data"), "--steps", "3",
                           "--batch-size", "8", "--device", "cpu", "--no-pictures", "--out", str(run)]) == 0
    tiny = {"codes_train": 300, "codes_test": 100, "dci_train": 300, "sap_train": 300,
            "factor_vae_train": 20, "factor_vae_eval": 10, "factor_vae_variance": 200,
            "beta_vae_train": 30, "beta_vae_eval": 20, "group_size": 8}
    report = evaluate_run(run, ["factor_metrics", "beta_vae"], sizes=tiny)
    assert report["data"] == "mpi3d_real"
    names = " ".join(report["metrics"])
    for metric in ("mig", "factor_vae", "beta_vae", "dci", "sap"):
        assert metric in names, (metric, sorted(report["metrics"]), report["skipped"])
