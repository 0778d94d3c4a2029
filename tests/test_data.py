import gzip
import struct

import numpy as np
import pytest
import torch

import ppl_data
from ppl_data import DataError


def write_idx(path, array: np.ndarray, gz=False):
    codes = {np.dtype(np.uint8): 0x08}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    raw = header + array.tobytes()
    (gzip.open if gz else open)(path, "wb").write(raw)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_loader_reads_what_was_written(tmp_path, gz):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, (7,), dtype=np.uint8)
    suffix = ".gz" if gz else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images, gz)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels, gz)
    data = ppl_data.load("mnist", root=str(tmp_path))
    assert len(data) == 7 and data.data_shape == (1, 28, 28)
    x, f = data.batch(torch.tensor([0, 6]))
    assert torch.allclose(x[:, 0], torch.from_numpy(images[[0, 6]]).float() / 255)
    assert f[:, 0].tolist() == labels[[0, 6]].tolist()
    assert data.factor_names == ("digit",) and data.factor_sizes == (10,)


def test_mnist_errors_name_the_path(tmp_path):
    with pytest.raises(DataError, match="not found.*nowhere"):
        ppl_data.load("mnist", root=str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        ppl_data.load("mnist", root=str(tmp_path))
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 5)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        ppl_data.load("mnist", root=str(tmp_path))


def test_image_folder_loader(tmp_path):
    from PIL import Image

    (tmp_path / "sub").mkdir()
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    for i, c in enumerate(colours):
        Image.new("RGB", (40, 30), c).save(tmp_path / ("sub" if i else ".") / f"img{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    data = ppl_data.load("image_folder", root=str(tmp_path), size=16)
    assert len(data) == 3 and data.data_shape == (3, 16, 16)
    x, f = data.all()
    assert f.shape == (3, 0)
    # Sorted paths: img0.png, then sub/img1.png, sub/img2.png.
    means = x.mean((2, 3))
    assert torch.allclose(means, torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]), atol=1e-6)
    with pytest.raises(DataError, match="not found.*missing_dir"):
        ppl_data.load("image_folder", root=str(tmp_path / "missing_dir"))


def test_image_folder_empty_folder(tmp_path):
    with pytest.raises(DataError, match="holds no"):
        ppl_data.image_folder(tmp_path)


def test_two_moons_shape_and_labels():
    data = ppl_data.load("two_moons", n=1000, noise=0.0, seed=1)
    x, f = data.all()
    assert x.shape == (1000, 2) and (x >= 0).all() and (x <= 1).all()
    assert f[:, 0].sum() == 500
    # Noiseless: the outer moon lies on a circle of radius 1 around its centre.
    lo, span = torch.tensor([-1.5, -1.0]), torch.tensor([4.0, 2.5])
    pts = x.double() * span + lo
    outer = pts[f[:, 0] == 0]
    assert torch.allclose(outer.norm(dim=1), torch.ones(500, dtype=torch.float64), atol=1e-5)
    again = ppl_data.load("two_moons", n=1000, noise=0.0, seed=1)
    assert torch.equal(again.images, data.images)


def test_digits_offline():
    data = ppl_data.load("digits")
    x, f = data.all()
    assert x.shape == (1797, 1, 8, 8) and x.min() >= 0 and x.max() <= 1
    assert sorted(f[:, 0].unique().tolist()) == list(range(10))


def test_unknown_dataset_lists_known_names():
    with pytest.raises(DataError, match="unknown dataset 'celeba'.*dsprites.*shapes3d.*two_moons"):
        ppl_data.load("celeba")


def test_nan_data_refused():
    with pytest.raises(DataError, match="NaN"):
        ppl_data.TensorData(torch.tensor([[0.0, float("nan")]]))
