"""MS-FLOW (MS-VAE appendix D): C → Y a Gaussian mixture, (Y, Z) → X a conditional coupling flow.

Nazari et al. (``papers/msvae-multi-stage-modelling.txt``), appendix D::

    c ~ Categorical(π)                       site "c"   (10 components, fig. 18)
    y = μ_c  (or y ~ N(μ_c, diag σ_c²))      site "y"   stage one's mean (D.1: means or samples)
    z ~ N(0, I)                              the flow's base variable
    x = f⁻¹(z; y)                            site "x"   conditional affine couplings (Dinh et al. 2016)

so log p(x | y) = log N(f(x; y); 0, I) + log |det ∂f/∂x|. The flow is Pyro's
``conditional_affine_coupling`` (context = y) with a fixed permutation between couplings, ending in
x = y + s ⊙ u: the couplings model the residual of X from Y in units of ``s`` (a fixed per-pixel
scale, e.g. the residual's standard deviation on the training data), so an untrained flow is
already a Gaussian around Y — ours, in the spirit of MS-VAE's residual stage two.
Densities of the whole model: the mixture alone, log Σ_c π_c N(x; μ_c, σ_c²), and after the flow,
log Σ_c π_c p_flow(x | y = μ_c) (the paper's −1585 → −1356 on MNIST).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from torch import nn
from .registration import pyro_module

COMPONENTS = 10  # appendix D: "a mixture of 10 Gaussians"


class GaussianMixture(nn.Module):
    """Diagonal Gaussian mixture over flat vectors: weights π (K,), means μ (K, D), scales σ (K, D)."""

    def __init__(self, weights: torch.Tensor, means: torch.Tensor, scales: torch.Tensor):
        super().__init__()
        if means.shape != scales.shape or weights.shape != means.shape[:1]:
            raise ValueError(f"mixture shapes disagree: weights {tuple(weights.shape)}, "
                             f"means {tuple(means.shape)}, scales {tuple(scales.shape)}")
        self.register_buffer("weights", weights)
        self.register_buffer("means", means)
        self.register_buffer("scales", scales)

    @classmethod
    def fit(cls, x: torch.Tensor, components: int = COMPONENTS, seed: int = 0, reg: float = 1e-4):
        """EM fit (scikit-learn, diagonal covariances, ``reg`` added to each variance) to ``x`` (N, D)."""
        from sklearn.mixture import GaussianMixture as SkMixture

        sk = SkMixture(components, covariance_type="diag", reg_covar=reg, random_state=seed, max_iter=200)
        sk.fit(x.detach().double().cpu().numpy())
        as_t = lambda a: torch.as_tensor(a, dtype=torch.float32, device=x.device)  # noqa: E731
        return cls(as_t(sk.weights_), as_t(sk.means_), as_t(sk.covariances_).sqrt())

    def components(self):
        return dist.Normal(self.means, self.scales).to_event(1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log Σ_c π_c N(x; μ_c, σ_c²) for x (N, D)."""
        return torch.logsumexp(self.weights.log() + self.components().log_prob(x[:, None, :]), -1)

    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """p(c | x) (N, K)."""
        joint = self.weights.log() + self.components().log_prob(x[:, None, :])
        return torch.softmax(joint, -1)

    def y_of(self, c: torch.Tensor, sample: bool = False) -> torch.Tensor:
        """Y for components ``c`` (N,): the mean μ_c, or a draw of N(μ_c, σ_c²) (appendix D.1)."""
        loc = self.means[c]
        return torch.normal(loc, self.scales[c]) if sample else loc


class ConditionalCouplingFlow(nn.Module):
    """p(x | y): ``layers`` conditional affine couplings (Pyro) on N(0, I), reversed order between them."""

    def __init__(self, dim: int, context_dim: int, layers: int = 8, hidden: int = 256,
                 residual_scale: torch.Tensor | None = None):
        super().__init__()
        if dim < 2 or layers < 1:
            raise ValueError(f"a coupling flow needs dim >= 2 and layers >= 1, got {dim}, {layers}")
        if residual_scale is not None and context_dim != dim:
            raise ValueError(f"x = y + s ⊙ u needs context_dim == dim, got {context_dim} and {dim}")
        self.dim = dim
        self.register_buffer("residual_scale", residual_scale)
        self.couplings = nn.ModuleList(T.conditional_affine_coupling(dim, context_dim, [hidden, hidden])
                                       for _ in range(layers))
        self.register_buffer("loc", torch.zeros(dim), persistent=False)
        self.register_buffer("scale", torch.ones(dim), persistent=False)
        self.register_buffer("reverse", torch.arange(dim - 1, -1, -1), persistent=False)

    def conditional(self, y: torch.Tensor):
        """The distribution p(x | y) for a batch of contexts ``y`` (N, context_dim)."""
        base = dist.Normal(self.loc, self.scale).expand(y.shape[:-1] + (self.dim,)).to_event(1)
        transforms = []
        for k, coupling in enumerate(self.couplings):
            if k:
                transforms.append(T.Permute(self.reverse))
            transforms.append(coupling.condition(y))
        if self.residual_scale is not None:
            transforms.append(T.AffineTransform(y, self.residual_scale, event_dim=1))
        return dist.TransformedDistribution(base, transforms)

    def log_prob(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.conditional(y).log_prob(x)

    def forward_map(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x = f⁻¹(z; y): base sample to data."""
        for t in self.conditional(y).transforms:
            z = t(z)
        return z

    def inverse_map(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """z = f(x; y): data to base."""
        for t in reversed(self.conditional(y).transforms):
            x = t.inv(x)
        return x


class MSFlowModel(nn.Module):
    """Pyro model ``model(x=None, n=None)`` of appendix D: sites ``c``, ``y`` (deterministic), ``x``."""

    def __init__(self, mixture: GaussianMixture, flow: ConditionalCouplingFlow):
        super().__init__()
        self.mixture, self.flow = mixture, flow

    def forward(self, x: torch.Tensor | None = None, n: int | None = None):
        pyro_module(self)
        n = x.shape[0] if x is not None else n
        with pyro.plate("data", n):
            c = pyro.sample("c", dist.Categorical(self.mixture.weights))
            y = pyro.deterministic("y", self.mixture.y_of(c), event_dim=1)
            return pyro.sample("x", self.flow.conditional(y), obs=x)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = log Σ_c π_c p_flow(x | μ_c), exact (K flow passes)."""
        k = len(self.mixture.weights)
        xs = x.repeat_interleave(k, 0)
        ys = self.mixture.means.repeat(x.shape[0], 1)
        cond = self.flow.log_prob(xs, ys).reshape(x.shape[0], k)
        return torch.logsumexp(self.mixture.weights.log() + cond, -1)

    def flow_loss(self, x: torch.Tensor, sample_y: bool = False) -> torch.Tensor:
        """−E_{c ~ p(c|x)} log p_flow(x | y(c)) (mean over the batch); y the mean or a draw (D.1)."""
        with torch.no_grad():
            c = torch.multinomial(self.mixture.responsibilities(x), 1)[:, 0]
            y = self.mixture.y_of(c, sample=sample_y)
        return -self.flow.log_prob(x, y).mean()


__all__ = ["COMPONENTS", "GaussianMixture", "ConditionalCouplingFlow", "MSFlowModel"]
