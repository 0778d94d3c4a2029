"""The small convolutional decoder for 32×32 pose/appearance pairs (our choice for the CPU quick run).

The paper's nets are 256×256 U-Net-like (Esser et al. 2019, Fig. 4); the foundation has
conv nets for 64×64 only and an MLP, which at 32×32 learns pose too slowly for a CPU budget
(the MLP quick run reconstructs a blurred average figure after 1000 steps). These mirror
``Conv64Decoder`` (4×4 stride-2 transposed convolutions) with one stage fewer and narrower
channels, so a step of the six-variant ablation costs tens of milliseconds on one core. Its encoder
twin, :class:`guides.robust.Conv32Encoder`, sits with the guide.
"""

from __future__ import annotations

from torch import nn

WIDTH = 32  # channels of the convolutions (the 64×64 nets use 32-32-64-64)
DENSE = 128  # units of the dense layer (shared with guides.robust.Conv32Encoder)


class Conv32Decoder(nn.Module):
    """z ``(..., d)`` -> ``(..., C, 32, 32)``: dense to 2w×4×4, three 4×4 stride-2 transposed convs."""

    def __init__(self, latent_dim: int, channels: int = 3, width: int = WIDTH):
        super().__init__()
        self.channels, self.width = channels, width
        self.dense = nn.Sequential(nn.Linear(latent_dim, DENSE), nn.ReLU(),
                                   nn.Linear(DENSE, 2 * width * 4 * 4), nn.ReLU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(width, width, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(width, channels, 4, 2, 1))

    def forward(self, z):
        batch = z.shape[:-1]
        h = self.dense(z.reshape(-1, z.shape[-1])).reshape(-1, 2 * self.width, 4, 4)
        return self.deconv(h).reshape(*batch, self.channels, 32, 32)
