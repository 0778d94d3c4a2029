"""Small convolutional nets for 32×32 pose/appearance pairs (our choice for the CPU quick run).

The paper's nets are 256×256 U-Net-like (Esser et al. 2019, Fig. 4); the foundation has
conv nets for 64×64 only and an MLP, which at 32×32 learns pose too slowly for a CPU budget
(the MLP quick run reconstructs a blurred average figure after 1000 steps). These mirror
``Conv64Encoder``/``Conv64Decoder`` (4×4 stride-2 convolutions) with one stage fewer and
narrower channels, so a step of the six-variant ablation costs tens of milliseconds on one core.

``Conv32Encoder(pool=True)`` averages its last feature map over positions before the dense layer:
the appearance encoder E_α is then invariant to where the figure stands, as appearance is
(our choice; E_π keeps the spatial layout, which pose needs).
"""

from __future__ import annotations

from torch import nn

from guides.nets import GaussianHead

WIDTH = 32  # channels of the convolutions (the 64×64 nets use 32-32-64-64)
DENSE = 128


class Conv32Encoder(nn.Module):
    """x ``(..., C, 32, 32)`` -> (loc, scale) ``(..., d)``: three 4×4 stride-2 convs, dense, head."""

    def __init__(self, channels: int, latent_dim: int, pool: bool = False, width: int = WIDTH):
        super().__init__()
        self.pool = pool
        self.conv = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(width, width, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.ReLU())
        features = 2 * width if pool else 2 * width * 4 * 4
        self.dense = nn.Sequential(nn.Linear(features, DENSE), nn.ReLU())
        self.head = GaussianHead(DENSE, latent_dim)

    def forward(self, x):
        batch = x.shape[:-3]
        h = self.conv(x.reshape(-1, *x.shape[-3:]))
        h = h.mean((-2, -1)) if self.pool else h.flatten(1)
        loc, scale = self.head(self.dense(h))
        return loc.reshape(*batch, -1), scale.reshape(*batch, -1)


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
