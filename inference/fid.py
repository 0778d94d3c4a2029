"""FID and KID with an offline feature extractor, and L1 / L2 reconstruction error.

**This is not Inception FID.** Inception-v3 weights would have to be downloaded, and its features
describe natural photographs, not 64×64 binary shapes or 8×8 digits. Instead a small CNN is
trained here, on demand, to predict the generating factors of our procedural dSprites (shape,
scale, orientation, x, y) and the class of scikit-learn's digits; its 128-d penultimate layer is
the feature space. Numbers are comparable between runs that use the same feature net (same
``FEATURE_NET_VERSION`` and training steps), never with published Inception FIDs.

The trained net is cached as ``feature_net-v<version>-<steps>.pt`` in ``$PYRO_DISENTANGLE_CACHE``
(default ``~/.cache/pyro-disentangle``); the first call trains it (600 steps: one to a few minutes on a CPU).

References
[1] Heusel et al. GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
    Equilibrium. NeurIPS 2017, eq. 6 (the Fréchet distance of two Gaussians).
[2] Bińkowski et al. Demystifying MMD GANs. ICLR 2018, §4 and eq. 4 (KID: unbiased MMD² with
    the kernel k(x, y) = (xᵀy / d + 1)³).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import atomic_write_bytes
from .posterior import encode_batched

CACHE_ENV = "PYRO_DISENTANGLE_CACHE"
FEATURE_NET_VERSION = 1
FEATURE_STEPS = 600
INPUT_SIZE = 32
FEATURE_DIM = 128
DSPRITES_HEADS = (3, 6, 40, 32, 32)  # shape, scale, orientation, pos_x, pos_y
DIGIT_CLASSES = 10


def cache_dir() -> Path:
    """``$PYRO_DISENTANGLE_CACHE`` or ``~/.cache/pyro-disentangle``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "pyro-disentangle")


class FeatureNet(nn.Module):
    """Images of any size and channel count -> 128-d features (grey, resized to 32×32)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(64, 128, 4, 2, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(128 * 4 * 4, FEATURE_DIM), nn.ReLU())
        self.dsprites_heads = nn.ModuleList(nn.Linear(FEATURE_DIM, k) for k in DSPRITES_HEADS)
        self.digit_head = nn.Linear(FEATURE_DIM, DIGIT_CLASSES)

    @staticmethod
    def prepare(images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4:
            raise ValueError(f"expected images shaped (N, C, H, W), got {tuple(images.shape)}")
        x = images.float().mean(1, keepdim=True)
        if x.shape[-1] >= INPUT_SIZE and x.shape[-2] >= INPUT_SIZE:
            return F.adaptive_avg_pool2d(x, INPUT_SIZE)  # box filter: 64 -> 32 averages 2×2 blocks
        return F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="nearest")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(self.prepare(images))


def train_feature_net(steps: int = FEATURE_STEPS, batch_size: int = 64, seed: int = 0,
                      device="cpu") -> FeatureNet:
    """Fit the heads: half of each step on fresh dSprites renders, half on digits."""
    from ppl_data import DSprites, digits

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    shapes, dig = DSprites(), digits()
    dig_x, dig_y = dig.all()
    net = FeatureNet().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(steps):
        f = shapes.sample_factors(batch_size, generator=gen).to(device)
        h = net(shapes.images(f))
        loss = sum(F.cross_entropy(head(h), f[:, k]) for k, head in enumerate(net.dsprites_heads))
        i = torch.randint(len(dig_x), (batch_size,), generator=gen)
        loss = loss + F.cross_entropy(net.digit_head(net(dig_x[i].to(device))), dig_y[i, 0].to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def feature_net(steps: int = FEATURE_STEPS, device="cpu") -> FeatureNet:
    """The cached feature net, trained and cached first if it is not there."""
    path = cache_dir() / f"feature_net-v{FEATURE_NET_VERSION}-{steps}.pt"
    net = FeatureNet()
    if path.is_file():
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return net.to(device).eval()
    net = train_feature_net(steps, device=device)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.cpu() for k, v in net.state_dict().items()}
    atomic_write_bytes(path, lambda fh: torch.save(state, fh))
    return net


@torch.no_grad()
def features(images: torch.Tensor, net: FeatureNet, batch_size: int = 512) -> np.ndarray:
    """``(N, 128)`` features of ``(N, C, H, W)`` images in [0, 1], as float64."""
    device = next(net.parameters()).device
    return encode_batched(lambda x: net(x.to(device)).cpu(), images, batch_size).double().numpy()


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^{1/2})  (Heusel et al. eq. 6).

    tr (Σ1 Σ2)^{1/2} = Σ √λ_i with λ the eigenvalues of Σ1^{1/2} Σ2 Σ1^{1/2} (symmetric PSD, so
    no complex square root is needed).
    """
    w, v = np.linalg.eigh(np.asarray(cov1, np.float64))
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    lam = np.linalg.eigvalsh(root1 @ np.asarray(cov2, np.float64) @ root1)
    tr_sqrt = np.sqrt(np.clip(lam, 0, None)).sum()
    diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * tr_sqrt)


def fid_from_features(fa: np.ndarray, fb: np.ndarray) -> float:
    return frechet_distance(fa.mean(0), np.cov(fa, rowvar=False), fb.mean(0), np.cov(fb, rowvar=False))


def kid_from_features(fa: np.ndarray, fb: np.ndarray, num_subsets: int = 10,
                      subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Mean and std over subsets of the unbiased MMD² with k(x, y) = (xᵀy/d + 1)³ (Bińkowski eq. 4)."""
    rng = np.random.default_rng(seed)
    m = min(subset_size, len(fa), len(fb))
    if m < 2:
        raise ValueError("KID needs at least 2 images in each set")
    d = fa.shape[1]
    vals = []
    for _ in range(num_subsets):  # a handful of subsets, each fully vectorised
        a = fa[rng.choice(len(fa), m, replace=False)]
        b = fb[rng.choice(len(fb), m, replace=False)]
        kaa, kbb, kab = ((a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3)
        off = (kaa.sum() - np.trace(kaa) + kbb.sum() - np.trace(kbb)) / (m * (m - 1))
        vals.append(off - 2 * kab.mean())
    return float(np.mean(vals)), float(np.std(vals))


def fid_kid(images_a: torch.Tensor, images_b: torch.Tensor, net: FeatureNet | None = None,
            **kid_kw) -> dict:
    """FID and KID (mean, std) between two image sets in the feature net's space."""
    net = net or feature_net()
    fa, fb = features(images_a, net), features(images_b, net)
    kid, kid_std = kid_from_features(fa, fb, **kid_kw)
    return {"fid": fid_from_features(fa, fb), "kid": kid, "kid_std": kid_std,
            "num_images": [len(fa), len(fb)], "feature_net": f"v{FEATURE_NET_VERSION}"}

