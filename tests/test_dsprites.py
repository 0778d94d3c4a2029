import pytest
import torch

import ppl_data
from ppl_data import DataError, DSprites


@pytest.fixture(scope="module")
def ds():
    return DSprites()


def factors(shape=0, scale=5, orientation=0, x=16, y=16):
    return torch.tensor([[shape, scale, orientation, x, y]])


def test_grid_matches_dsprites(ds):
    assert ds.factor_names == ("shape", "scale", "orientation", "pos_x", "pos_y")
    assert ds.factor_sizes == (3, 6, 40, 32, 32)
    assert len(ds) == 737_280
    assert ds.data_shape == (1, 64, 64)


def test_index_round_trip_and_c_order(ds):
    index = torch.randint(0, len(ds), (5000,))
    assert torch.equal(ds.index_of(ds.factors_of(index)), index)
    # Last factor fastest, as in the dSprites file: index 1 is pos_y = 1, index 32 is pos_x = 1.
    assert ds.factors_of(torch.tensor([1]))[0].tolist() == [0, 0, 0, 0, 1]
    assert ds.factors_of(torch.tensor([32]))[0].tolist() == [0, 0, 0, 1, 0]
    assert ds.factors_of(torch.tensor([len(ds) - 1]))[0].tolist() == [2, 5, 39, 31, 31]
    # Brute force over a corner of the grid: enumeration in C order.
    sizes = ds.factor_sizes
    for i in (0, 1, 37, 1024, 40 * 1024 + 5, 6 * 40 * 1024 + 999):
        rem, digits = i, []
        for s in reversed(sizes):
            digits.append(rem % s)
            rem //= s
        assert ds.factors_of(torch.tensor([i]))[0].tolist() == digits[::-1]


def test_sample_factors_in_range_and_seeded(ds):
    g1 = torch.Generator().manual_seed(3)
    g2 = torch.Generator().manual_seed(3)
    f1, f2 = ds.sample_factors(2000, generator=g1), ds.sample_factors(2000, generator=g2)
    assert torch.equal(f1, f2)
    assert f1.dtype == torch.long and f1.shape == (2000, 5)
    for k, size in enumerate(ds.factor_sizes):
        assert f1[:, k].min() == 0 and f1[:, k].max() == size - 1


def test_images_binary_and_deterministic(ds):
    f = ds.sample_factors(300, generator=torch.Generator().manual_seed(0))
    a, b = ds.images(f), ds.images(f)
    assert a.shape == (300, 1, 64, 64) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    assert (a.sum((1, 2, 3)) > 0).all()  # every shape is visible
    u8 = ds.images(f, dtype=torch.uint8)
    assert u8.dtype == torch.uint8 and torch.equal(u8.float(), a)
    # A batch renders each item as it would alone.
    single = torch.cat([ds.images(f[i:i + 1]) for i in range(0, 300, 37)])
    assert torch.equal(single, a[::37])


def test_area_grows_with_scale(ds):
    for shape in range(3):
        areas = [ds.images(factors(shape, s)).sum().item() for s in range(6)]
        assert all(b > a for a, b in zip(areas, areas[1:])), (shape, areas)
        # Area grows like scale²: the largest over the smallest ≈ (1 / 0.5)² = 4.
        assert 3.0 < areas[-1] / areas[0] < 5.0


def centroid(img):
    img = img[0, 0]
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    return (img * xs).sum() / img.sum(), (img * ys).sum() / img.sum()


def test_centroid_moves_with_position(ds):
    xs = [centroid(ds.images(factors(0, 3, 0, x=p, y=10)))[0].item() for p in (0, 10, 20, 31)]
    ys = [centroid(ds.images(factors(0, 3, 0, x=10, y=p)))[1].item() for p in (0, 10, 20, 31)]
    assert all(b > a for a, b in zip(xs, xs[1:])) and all(b > a for a, b in zip(ys, ys[1:]))
    # pos_x moves the centroid along columns only.
    cx0, cy0 = centroid(ds.images(factors(0, 3, 0, x=0, y=10)))
    cx1, cy1 = centroid(ds.images(factors(0, 3, 0, x=31, y=10)))
    assert abs(cy1 - cy0) < 0.5 and cx1 - cx0 > 30


def test_shapes_differ(ds):
    sq, el, he = (ds.images(factors(s)) for s in range(3))
    for a, b in ((sq, el), (sq, he), (el, he)):
        assert (a != b).sum() > 20


def test_each_orientation_step_changes_the_image(ds):
    for shape in range(3):
        imgs = ds.images(torch.tensor([[shape, 5, o, 16, 16] for o in range(40)]))
        diffs = (imgs[1:] != imgs[:-1]).flatten(1).sum(1)
        assert (diffs > 0).all(), (shape, diffs)
    # A quarter turn maps the centred square onto itself (up to pixel rounding), not the ellipse.
    sq0, sq10 = ds.images(factors(0, 5, 0)), ds.images(factors(0, 5, 10))
    el0, el10 = ds.images(factors(1, 5, 0)), ds.images(factors(1, 5, 10))
    assert (sq0 != sq10).sum() < 0.1 * sq0.sum()
    assert (el0 != el10).sum() > 0.5 * el0.sum()


def test_batch_and_getitem(ds):
    idx = torch.tensor([0, 12345, len(ds) - 1])
    x, f = ds.batch(idx)
    assert torch.equal(f, ds.factors_of(idx))
    assert torch.equal(x, ds.images(f))
    img, fac = ds[12345]
    assert torch.equal(img, x[1]) and torch.equal(fac, f[1])


def test_bad_factors_are_named(ds):
    with pytest.raises(DataError, match="orientation.*40"):
        ds.images(torch.tensor([[0, 0, 40, 0, 0]]))
    with pytest.raises(DataError, match=r"\(n, 5\)"):
        ds.images(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(DataError, match="indices"):
        ds.factors_of(torch.tensor([len(ds)]))


def test_split_is_seeded_and_disjoint(ds):
    tr, te = ds.split(test_fraction=0.01, seed=4)
    tr2, te2 = ds.split(test_fraction=0.01, seed=4)
    assert torch.equal(te.indices, te2.indices)
    assert len(tr) + len(te) == len(ds)
    assert not set(te.indices[:500].tolist()) & set(tr.indices[:50000].tolist())
    x, f = te.batch(torch.arange(4))
    assert torch.equal(x, ds.images(ds.factors_of(te.indices[:4])))
    assert te.factor_sizes == ds.factor_sizes and te.sample_factors(3).shape == (3, 5)


def test_the_mean_pixel_the_pages_state_is_the_renderers():
    """The 64×64 page names a deviation from the dSprites file: our objects cover MEAN_PIXEL_64 of the
    image on average (20,000 uniform draws here; binomial-like spread well under 0.0005)."""
    from ppl_data import dsprites

    d = ppl_data.load("dsprites", resolution=64)
    x, _ = d.batch(torch.randint(len(d), (20_000,), generator=torch.Generator().manual_seed(0)))
    assert abs(x.float().mean().item() - dsprites.MEAN_PIXEL_64) < 5e-4
    assert dsprites.MEAN_PIXEL_64 / dsprites.DSPRITES_FILE_MEAN_PIXEL < 0.65  # about 61% of the file's
