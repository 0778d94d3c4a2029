"""FID and KID with an offline feature extractor, its calibration, and L1 / L2 reconstruction error.

**This is not Inception FID.** Inception-v3 weights would have to be downloaded, and its features
describe natural photographs, not 32×32 procedural shapes or 8×8 digits. Instead a small CNN is
trained here, on demand, from a seed, on our own procedural data: its 128-d penultimate layer is the
feature space. Its heads predict

* every generating factor of the textured shapes (:class:`ppl_data.TexturedShapes`: shape, colour,
  scale, orientation, position, texture, frequency, phase, background) and of dSprites, and the
  class of scikit-learn's digits, so the features see what the data are made of;
* a self-supervised auxiliary: whether an image is clean, blurred (a Gaussian of random width
  σ ∈ [0.3, 1.5] px) or noisy (Gaussian noise of random σ ∈ [0.02, 0.12]), on every dataset, so the
  features also see the fine detail that a blurry reconstruction lacks. (Version 1 predicted the
  dSprites factors and digits only, on grey images: a 3×3 blur of the textured shapes scored 2.4×
  the distance between two samples of the data, too little to tell a sharp model from a blurry one.)

Colour images are read in colour, grey ones repeated over three channels; every image is resized to
32×32 (a box filter from larger sizes). Numbers are comparable between runs that use the same
feature net (same ``FEATURE_NET_VERSION`` and training steps), never with published Inception FIDs.
:func:`fid_calibration` measures what a distance means in this space: two samples of the data, a
3×3 blur, noise, and each factor's distribution changed.

The reference net (``FEATURE_NET_VERSION``, ``FEATURE_STEPS``) ships with the package
(``inference/assets/``, sha256 :data:`FEATURE_NET_SHA256`), so every machine scores in the same
feature space: a net retrained elsewhere would differ in its last bits with the CPU's kernels, and so
would every FID. Other step counts are trained on the CPU at first use, deterministically from the
seed on one thread, and cached as ``feature_net-v<version>-<steps>.pt`` in ``$PYRO_DISENTANGLE_CACHE``
(default ``~/.cache/pyro-disentangle``).

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
FEATURE_NET_VERSION = 2
FEATURE_STEPS = 600
#: The shipped reference weights (trained by :func:`train_feature_net` with FEATURE_STEPS) and their hash.
FEATURE_NET_ASSET = Path(__file__).resolve().parent / "assets" / f"feature_net-v{FEATURE_NET_VERSION}-{FEATURE_STEPS}.pt"
FEATURE_NET_SHA256 = "47de4444f47fc165cfd3512822b96bba137afaf634859bb88dde1b768704806a"
FEATURE_BATCH = 32  # images per dataset per step (three datasets)
INPUT_SIZE = 32
FEATURE_DIM = 128
WIDTH = 16  # channels of the first (stride-1, 3×3) layer, doubled at each of three stride-2 layers
TEXTURED_HEADS = (3, 4, 4, 6, 6, 6, 2, 3, 4, 4)  # ppl_data.TexturedShapes.factor_sizes
DSPRITES_HEADS = (3, 6, 40, 32, 32)  # shape, scale, orientation, pos_x, pos_y
DIGIT_CLASSES = 10
DEGRADATIONS = ("clean", "blurred", "noisy")  # the auxiliary head's classes
BLUR_SIGMA = (0.3, 1.5)  # px, uniform: the auxiliary's Gaussian blurs
NOISE_STD = (0.02, 0.12)  # uniform: the auxiliary's Gaussian noise
BLUR_RADIUS = 3  # taps either side of the Gaussian kernel (7 taps)


def cache_dir() -> Path:
    """``$PYRO_DISENTANGLE_CACHE`` or ``~/.cache/pyro-disentangle``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "pyro-disentangle")


class FeatureNet(nn.Module):
    """Images of any size and channel count -> 128-d features (RGB, resized to 32×32).

    ``steps``: the training steps of its weights (set by :func:`train_feature_net` and
    :func:`feature_net`; None for an untrained or hand-made net), so records can name the net.
    """

    def __init__(self):
        super().__init__()
        self.steps: int | None = None
        w = WIDTH
        self.body = nn.Sequential(
            nn.Conv2d(3, w, 3, 1, 1), nn.ReLU(),  # stride 1: keeps the finest detail
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(4 * w, 8 * w, 4, 2, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(8 * w * 4 * 4, FEATURE_DIM), nn.ReLU())
        self.textured_heads = nn.ModuleList(nn.Linear(FEATURE_DIM, k) for k in TEXTURED_HEADS)
        self.dsprites_heads = nn.ModuleList(nn.Linear(FEATURE_DIM, k) for k in DSPRITES_HEADS)
        self.digit_head = nn.Linear(FEATURE_DIM, DIGIT_CLASSES)
        self.degradation_head = nn.Linear(FEATURE_DIM, len(DEGRADATIONS))

    @staticmethod
    def prepare(images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4:
            raise ValueError(f"expected images shaped (N, C, H, W), got {tuple(images.shape)}")
        x = images.float()
        if x.shape[1] != 3:  # grey (or any other channel count): its mean, on all three channels
            x = x.mean(1, keepdim=True).expand(-1, 3, -1, -1)
        if x.shape[-1] >= INPUT_SIZE and x.shape[-2] >= INPUT_SIZE:
            return F.adaptive_avg_pool2d(x, INPUT_SIZE)  # box filter: 64 -> 32 averages 2×2 blocks
        return F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="nearest")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(self.prepare(images))


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, radius: int = BLUR_RADIUS) -> torch.Tensor:
    """Each image of ``(N, C, H, W)`` blurred by a separable Gaussian of its own width ``sigma[n]`` (px),
    truncated at ``radius`` taps, edges repeated (one grouped convolution per axis, no loop)."""
    n, c, h, w = images.shape
    t = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    k = torch.exp(-t[None] ** 2 / (2 * sigma.to(images)[:, None] ** 2))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (N·C, 2r + 1)
    x = F.pad(images.reshape(1, n * c, h, w), (radius,) * 4, mode="replicate")
    x = F.conv2d(x, k[:, None, None, :], groups=n * c)
    x = F.conv2d(x, k[:, None, :, None], groups=n * c)
    return x.reshape(n, c, h, w)


def box_blur3(images: torch.Tensor) -> torch.Tensor:
    """The 3×3 box blur of the calibration: each pixel the mean of its 3×3 neighbourhood, edges repeated."""
    return F.avg_pool2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), 3, stride=1)


def degrade(images: torch.Tensor, generator: torch.Generator):
    """``(images', labels)``: each image kept, blurred or made noisy (label 0, 1, 2) at random."""
    n = len(images)
    kind = torch.randint(len(DEGRADATIONS), (n,), generator=generator)
    sigma = BLUR_SIGMA[0] + (BLUR_SIGMA[1] - BLUR_SIGMA[0]) * torch.rand(n, generator=generator)
    std = NOISE_STD[0] + (NOISE_STD[1] - NOISE_STD[0]) * torch.rand(n, generator=generator)
    noisy = (images + std[:, None, None, None] * torch.randn(images.shape, generator=generator)).clamp(0, 1)
    k = kind[:, None, None, None]
    return torch.where(k == 1, gaussian_blur(images, sigma), torch.where(k == 2, noisy, images)), kind


def train_feature_net(steps: int = FEATURE_STEPS, batch_size: int = FEATURE_BATCH, seed: int = 0) -> FeatureNet:
    """Fit the heads on the CPU from ``seed``: each step a fresh batch of textured shapes, of dSprites
    and of digits, each image kept, blurred or made noisy at random; the loss sums the cross-entropies
    of every factor head and of the degradation head. One thread, whatever the caller's setting: the
    sums then run in one order, so the same seed gives the same weights on a given machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(steps, batch_size, seed)
    finally:
        torch.set_num_threads(threads)


def _train(steps: int, batch_size: int, seed: int) -> FeatureNet:
    from ppl_data import DSprites, TexturedShapes, digits

    gen = torch.Generator().manual_seed(seed)
    textured, shapes = TexturedShapes(INPUT_SIZE), DSprites(INPUT_SIZE)
    dig_x, dig_y = digits().all()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = FeatureNet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(steps):
        ft = textured.sample_factors(batch_size, generator=gen)
        fd = shapes.sample_factors(batch_size, generator=gen)
        i = torch.randint(len(dig_x), (batch_size,), generator=gen)
        batches = [degrade(x, gen) for x in (textured.images(ft), shapes.images(fd).expand(-1, 3, -1, -1),
                                             F.interpolate(dig_x[i], size=(INPUT_SIZE,) * 2).expand(-1, 3, -1, -1))]
        (ht, kt), (hd, kd), (hg, kg) = [(net(x), kind) for x, kind in batches]
        loss = sum(F.cross_entropy(head(ht), ft[:, j]) for j, head in enumerate(net.textured_heads))
        loss = loss + sum(F.cross_entropy(head(hd), fd[:, j]) for j, head in enumerate(net.dsprites_heads))
        loss = loss + F.cross_entropy(net.digit_head(hg), dig_y[i, 0])
        loss = loss + sum(F.cross_entropy(net.degradation_head(h), kind) for h, kind in ((ht, kt), (hd, kd), (hg, kg)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.steps = steps
    return net.eval()


def feature_net(steps: int = FEATURE_STEPS, device="cpu") -> FeatureNet:
    """The cached feature net, trained (on the CPU, seed 0) and cached first if it is not there."""
    path = cache_dir() / f"feature_net-v{FEATURE_NET_VERSION}-{steps}.pt"
    if steps == FEATURE_STEPS:  # the reference: the shipped weights, the same on every machine
        path = FEATURE_NET_ASSET
    net = FeatureNet()
    if path.is_file():
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        net.steps = steps
        return net.to(device).eval()
    net = train_feature_net(steps)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.cpu() for k, v in net.state_dict().items()}
    atomic_write_bytes(path, lambda fh: torch.save(state, fh))
    return net.to(device).eval()


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
    """FID of two feature sets: each set's mean and (unbiased) covariance, :func:`frechet_distance`."""
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


def narrowed_factor(factors: torch.Tensor, k: int, sizes) -> torch.Tensor:
    """``factors`` with factor ``k`` moved to the lower half of its values (v -> v // 2): the same data
    with one factor's distribution changed (uniform over ⌈size/2⌉ values instead of size)."""
    out = factors.clone()
    out[:, k] = factors[:, k] // 2
    return out


def fid_calibration(data, n: int = 1000, seed: int = 0, net: FeatureNet | None = None,
                    noise_std: float = 0.05, factors: bool = True) -> dict:
    """What a distance means in the feature space: FID against ``n`` images of ``data`` (a simulator
    with ``sample_factors`` / ``images``) of

    * ``sample``: ``n`` more images of the data, drawn independently (the floor: sampling noise);
    * ``blur3x3``: those images under a 3×3 box blur (:func:`box_blur3`);
    * ``noise``: those images plus Gaussian noise of std ``noise_std``, clipped to [0, 1];
    * ``factor:<name>`` (``factors``): those images with one factor's distribution changed
      (:func:`narrowed_factor`), one row per factor.

    Returns ``{"rows": {name: FID}, "blur_over_sample": ..., "n", "seed", "noise_std", "feature_net"}``.
    """
    net = net or feature_net()
    gen = torch.Generator().manual_seed(seed)
    reference = data.images(data.sample_factors(n, generator=gen))
    f_other = data.sample_factors(n, generator=gen)
    other = data.images(f_other)
    noisy = (other + noise_std * torch.randn(other.shape, generator=gen)).clamp(0, 1)
    fa = features(reference, net)
    rows = {"sample": other, "blur3x3": box_blur3(other), "noise": noisy}
    if factors:
        for k, name in enumerate(data.factor_names):
            rows[f"factor:{name}"] = data.images(narrowed_factor(f_other, k, data.factor_sizes))
    fids = {name: fid_from_features(fa, features(images, net)) for name, images in rows.items()}
    return {"rows": fids, "blur_over_sample": fids["blur3x3"] / fids["sample"], "n": n, "seed": seed,
            "noise_std": noise_std, "feature_net": feature_net_name(net)}


def feature_net_name(net: FeatureNet) -> str:
    """``v<version>-<steps>`` (``-untrained`` when its weights were not trained here)."""
    return f"v{FEATURE_NET_VERSION}-{net.steps if net.steps is not None else 'untrained'}"


def calibration_markdown(cal: dict) -> str:
    """The calibration as a markdown table: each row's FID and its multiple of the sample row."""
    base = cal["rows"]["sample"]
    lines = [f"FID calibration (offline feature net {cal['feature_net']}, not Inception; {cal['n']} vs "
             f"{cal['n']} images, seed {cal['seed']}):", "", "| against the data | FID | × sample |",
             "|---|---|---|"]
    labels = {"sample": "a second sample of the data", "blur3x3": "that sample, 3×3 box blur",
              "noise": f"that sample, Gaussian noise σ = {cal['noise_std']:g}"}
    for name, value in cal["rows"].items():
        label = labels.get(name) or f"{name.split(':', 1)[1]} narrowed to half its values"
        lines.append(f"| {label} | {value:.3f} | {value / base:.1f} |")
    return "\n".join(lines) + "\n"

