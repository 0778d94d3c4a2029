"""The conv64 nets against disentanglement_lib's (``methods/shared/architectures.py``): layer by layer,
parameter counts by hand, TF's initialisation and the log-variance head."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from guides.nets import Conv64DLEncoder, Conv64Encoder, make_encoder
from ppl_models.nets import Conv64Decoder, make_decoder, net_kind, tf_default_init_


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_conv64_dl_is_disentanglement_libs_conv_encoder_and_deconv_decoder():
    # conv_encoder, 1 channel, 10 latents: e1 4×4×1×32, e2 4×4×32×32, e3 2×2×32×64, e4 2×2×64×64 (each +bias),
    # e5 dense 1024→256, then the means and log_var heads 256→10 each
    encoder_by_hand = (16 * 1 * 32 + 32) + (16 * 32 * 32 + 32) + (4 * 32 * 64 + 64) + (4 * 64 * 64 + 64) \
        + (1024 * 256 + 256) + 2 * (256 * 10 + 10)
    # deconv_decoder: dense 10→256→1024, transposed convs 4×4 64→64, 64→32, 32→32, 32→1
    decoder_by_hand = (10 * 256 + 256) + (256 * 1024 + 1024) + (16 * 64 * 64 + 64) + (16 * 64 * 32 + 32) \
        + (16 * 32 * 32 + 32) + (16 * 32 * 1 + 1)
    encoder, decoder = make_encoder("conv64_dl", (1, 64, 64), 10), make_decoder("conv64_dl", 10, (1, 64, 64))
    assert isinstance(encoder, Conv64DLEncoder) and isinstance(decoder, Conv64Decoder)
    assert (_count(encoder), encoder_by_hand) == (309_204, 309_204) and _count(decoder) == decoder_by_hand == 381_313
    convs = [m for m in encoder.conv if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size, c.stride, c.padding) for c in convs] == [
        ((4, 4), (2, 2), (1, 1)), ((4, 4), (2, 2), (1, 1)), ((2, 2), (2, 2), (0, 0)), ((2, 2), (2, 2), (0, 0))]
    # the first nets (Burgess et al.'s 4×4 kernels, one softplus head) differ: more weights in e3, e4
    assert _count(Conv64Encoder(1, 10)) != encoder_by_hand
    x = torch.rand(3, 1, 64, 64)
    loc, scale = encoder(x)
    assert loc.shape == scale.shape == (3, 10) and decoder(loc).shape == (3, 1, 64, 64)
    # scale = exp(log_var / 2) of the log_var head (the reparameterisation of vae.py's sample_from_latent_distribution)
    with torch.no_grad():
        h = encoder.dense(encoder.conv(x).flatten(1))
        torch.testing.assert_close(scale, torch.exp(0.5 * encoder.log_var(h)))
        torch.testing.assert_close(loc, encoder.means(h))
    assert net_kind("auto", (1, 64, 64)) == "conv64"  # "auto" keeps the first nets: conv64_dl is asked for by name
    with pytest.raises(ValueError, match="needs \\(C, 64, 64\\)"):
        net_kind("conv64_dl", (1, 32, 32))


def test_tf_default_init_is_glorot_uniform_with_zero_biases():
    """TF 1's dense/conv defaults: weights U(±√(6/(fan_in + fan_out))), biases 0. For the 1024→256 dense
    layer the bound is √(6/1280); the sample variance of its 262,144 weights is bound²/3 within 1%."""
    torch.manual_seed(0)
    encoder = Conv64DLEncoder(1, 10)
    layers = [m for m in encoder.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert all(torch.count_nonzero(m.bias) == 0 for m in layers)
    for m in layers:
        rf = math.prod(m.weight.shape[2:]) if m.weight.ndim == 4 else 1
        bound = math.sqrt(6 / ((m.weight.shape[0] + m.weight.shape[1]) * rf))
        assert m.weight.abs().max().item() <= bound
    dense = encoder.dense[0].weight
    bound = math.sqrt(6 / (1024 + 256))
    assert dense.var().item() == pytest.approx(bound ** 2 / 3, rel=0.01)
    # a transposed conv's fans are swapped in torch's weight layout; the bound is symmetric in them
    deconv = tf_default_init_(nn.ConvTranspose2d(64, 32, 4, 2, 1))
    assert deconv.weight.abs().max().item() <= math.sqrt(6 / ((64 + 32) * 16)) and torch.count_nonzero(deconv.bias) == 0
