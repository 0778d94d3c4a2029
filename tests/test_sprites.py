"""Procedural sprite pairs/triplets (ppl_data/sprites.py): ground truth, splits, rendering checks."""

import pytest
import torch

import ppl_data
from ppl_data import DataError, SpritePairs, Sprites
from ppl_data.sprites import BODY_COLOURS


@pytest.fixture(scope="module")
def sprites():
    return Sprites(32)


def test_registered_and_interface(sprites):
    s = ppl_data.load("sprites", resolution=32)
    assert isinstance(s, Sprites)
    assert len(s) == 216 * 54_000  # appearance × pose grid
    f = s.sample_factors(5, torch.Generator().manual_seed(0))
    assert torch.equal(s.factors_of(s.index_of(f)), f)
    x, f2 = s.batch(s.index_of(f))
    assert torch.equal(f2, f) and x.shape == (5, 3, 32, 32)
    assert x.min() >= 0 and x.max() <= 1


def test_triplet_ground_truth_is_appearance_of_x1_in_pose_of_x3(sprites):
    t = sprites.triplets(64, torch.Generator().manual_seed(1))
    k = sprites.n_app
    assert torch.equal(t.factors2[:, :k], t.factors1[:, :k])
    assert torch.equal(t.factors2[:, k:], t.factors3[:, k:])
    assert (t.factors1[:, :k] != t.factors3[:, :k]).any(1).all()  # other character
    assert (t.factors1[:, k:] != t.factors3[:, k:]).any(1).all()  # other pose
    # x2 is rendered exactly from the combined factors, not approximated
    assert torch.equal(t.x2, sprites.images(torch.cat([t.factors1[:, :k], t.factors3[:, k:]], 1)))


def test_pairs_share_appearance_differ_in_pose(sprites):
    p = sprites.pairs(64, torch.Generator().manual_seed(2))
    k = sprites.n_app
    assert torch.equal(p.factors1[:, :k], p.factors2[:, :k])
    assert (p.factors1[:, k:] != p.factors2[:, k:]).any(1).all()
    assert ((p.x1 - p.x2).abs().flatten(1).amax(1) > 0).all()


def test_test_characters_are_held_out(sprites):
    train, test = sprites.characters("train"), sprites.characters("test")
    assert len(set(train.tolist()) & set(test.tolist())) == 0
    assert sorted(train.tolist() + test.tolist()) == list(range(216))
    t = sprites.triplets(200, torch.Generator().manual_seed(3), split="test")
    sizes = torch.tensor(sprites.appearance_sizes)
    strides = torch.tensor([72, 12, 3, 1])  # C order over (3, 6, 4, 3)
    assert set((t.factors1[:, :4] * strides).sum(1).tolist()) <= set(test.tolist())
    assert sizes.prod() == 216


def test_translation_by_one_position_step_shifts_pixels():
    # pos_x steps are 0.06 of the width; at 50 pixels that is exactly 3 pixels.
    s = Sprites(50)
    f = torch.tensor([[1, 2, 0, 0, 2, 3, 1, 2, 1, 3, 2]])
    g = f.clone()
    g[0, 4] += 1
    a, b = s.images(f)[0], s.images(g)[0]
    assert a.sum() > 0
    differ = (b[:, :, 3:] != a[:, :, :-3]).any(0).sum()
    assert differ <= 3  # pixels whose centre sits on an edge may round either way
    assert b[:, :, :3].abs().sum() == 0


def test_plain_torso_centre_has_body_colour(sprites):
    f = torch.tensor([[0, c, 1, 0, 3, 3, 2, 2, 0, 0, 0] for c in range(6)])
    x = Sprites(64).images(f)
    pose = Sprites(64).pose_values(f)
    col = (pose["cx"] * 64).long()
    row = (pose["cy"] * 64).long()
    centre = x[torch.arange(6), :, row, col]
    assert torch.allclose(centre, torch.tensor(BODY_COLOURS))


def test_pair_data_is_a_fixed_function_of_the_index(sprites):
    data = SpritePairs(sprites)
    idx = torch.tensor([0, 5, 123_456, len(data) - 1])
    x, f = data.batch(idx)
    x_again, _ = data.batch(idx)
    assert torch.equal(x, x_again) and x.shape == (4, 2, 3, 32, 32)
    k, n = sprites.n_app, len(sprites.factor_sizes)
    f1, f2 = f[:, :n], f[:, n:]
    assert torch.equal(f1[:, :k], f2[:, :k]) and (f1[:, k:] != f2[:, k:]).any(1).all()
    assert torch.equal(x[:, 0], sprites.images(f1)) and torch.equal(x[:, 1], sprites.images(f2))


def test_bad_input_names_the_value(sprites):
    with pytest.raises(DataError, match="resolution"):
        Sprites(8)
    with pytest.raises(DataError, match="split"):
        sprites.pairs(4, split="validation")
    with pytest.raises(DataError, match="pattern"):
        sprites.images(torch.tensor([[0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]]))
