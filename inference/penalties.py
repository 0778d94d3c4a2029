"""Penalties of the regularised ELBOs as plain functions of tensors.

Each function takes the latent sample ``z``, the diagonal-Normal posterior parameters ``loc`` and
``scale`` of a minibatch (all shaped ``(M, D)``: M data points, D latent dimensions) or sample sets,
and returns a scalar (a per-data-point quantity). Nothing here touches Pyro; the ELBOs in
:mod:`inference.elbos` wire them to sites.

References
[1] Chen, Li, Grosse, Duvenaud. Isolating Sources of Disentanglement in VAEs. NeurIPS 2018.
    arXiv:1802.04942 (eq. 2 decomposition; Appendix C.1 MWS, C.2 MSS).
[2] Kumar, Sattigeri, Balakrishnan. Variational Inference of Disentangled Latent Concepts from
    Unlabeled Observations (DIP-VAE). ICLR 2018. arXiv:1711.00848 (eq. 6: DIP-I; DIP-II in the
    ICLR version: Cov_q(z) = Cov(μ) + E diag σ²).
[3] Gretton et al. A Kernel Two-Sample Test. JMLR 2012 (eq. 3, unbiased MMD²); Zhao, Song, Ermon.
    InfoVAE. AAAI 2019 (MMD form of the objective); Tolstikhin et al. WAE, ICLR 2018 (IMQ kernel,
    C = 2·D·σ²).
[4] Burgess et al. Understanding disentangling in β-VAE. arXiv:1804.03599 (eq. 8, capacity C).
[5] Sugiyama, Suzuki, Kanamori. Density Ratio Estimation in Machine Learning. CUP 2012 (§4,
    probabilistic classification); Kim & Mnih. FactorVAE. ICML 2018 (eq. 3).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch.nn import functional as F

_LOG_2PI = math.log(2 * math.pi)


def _check_batch(z, loc, scale):
    if z.ndim != 2 or loc.shape != z.shape or scale.shape != z.shape:
        raise ValueError(f"z, loc and scale must all be shaped (M, D); got {tuple(z.shape)}, "
                         f"{tuple(loc.shape)}, {tuple(scale.shape)}")


def pairwise_log_density(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """log N(z_i,d; loc_j,d, scale_j,d) for every pair (i, j) and dimension d: shape (M, M, D)."""
    diff = (z.unsqueeze(1) - loc.unsqueeze(0)) / scale.unsqueeze(0)
    return -0.5 * diff.square() - scale.log().unsqueeze(0) - 0.5 * _LOG_2PI


def mss_log_weights(batch_size: int, dataset_size: int, device=None, dtype=torch.float32):
    """log of the (M, M) importance weights of minibatch-stratified sampling ([1], Appendix C.2).

    Row i estimates q(z_i) = (1/N) Σ_n q(z_i | n) from the batch, z_i ~ q(z | n_i). With the other
    M' = M − 1 batch members as the sample: the point itself gets 1/N (it is known exactly), one
    other member (by convention the next one, i+1 mod M) stands for the N − M' points outside the
    batch with weight (N − M')/(N·M'), and the remaining M' − 1 members get 1/M'. Every row sums
    to 1, and the estimate of q(z_i) is unbiased when the batch is drawn uniformly.
    """
    m, n = int(batch_size), int(dataset_size)
    if m < 2:
        raise ValueError(f"minibatch-stratified sampling needs a batch of at least 2, got {m}")
    others = m - 1
    if n < others:
        raise ValueError(f"minibatch-stratified sampling needs dataset_size >= batch size - 1, "
                         f"got dataset_size={n} for a batch of {m}")
    w = torch.full((m, m), 1.0 / others, dtype=torch.float64)
    rows = torch.arange(m)
    w[rows, (rows + 1) % m] = (n - others) / (n * others)
    w[rows, rows] = 1.0 / n
    return w.log().to(device=device, dtype=dtype)


class TCDecomposition(NamedTuple):
    """Batch means of the three terms of [1] eq. 2 (their sum is E[log q(z|n) − log p(z)])."""

    mi: torch.Tensor       # index-code mutual information  E[log q(z|n) − log q(z)]
    tc: torch.Tensor       # total correlation              E[log q(z) − Σ_d log q(z_d)]
    dim_kl: torch.Tensor   # dimension-wise KL               E[Σ_d log q(z_d) − log p(z)]


def _log_aggregate(z, loc, scale, dataset_size, estimator):
    """(log q(z_i), Σ_d log q(z_i,d)) under the minibatch estimator, each shaped (M,)."""
    _check_batch(z, loc, scale)
    m = z.shape[0]
    pair = pairwise_log_density(z, loc, scale)  # (M, M, D)
    if estimator == "mws":
        # [1] eq. (C.1), minibatch-weighted sampling: q(z_i) ≈ 1/(N·M) Σ_j q(z_i | n_j).
        log_w = torch.full((m, m), -math.log(dataset_size * m), dtype=z.dtype, device=z.device)
    elif estimator == "mss":
        log_w = mss_log_weights(m, dataset_size, z.device, z.dtype)
    else:
        raise ValueError(f"estimator must be 'mws' or 'mss', got {estimator!r}")
    log_qz = torch.logsumexp(pair.sum(-1) + log_w, dim=1)
    log_qz_dims = torch.logsumexp(pair + log_w.unsqueeze(-1), dim=1).sum(-1)
    return log_qz, log_qz_dims


def total_correlation(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, dataset_size: int,
                      estimator: str = "mss") -> torch.Tensor:
    """Minibatch estimate of TC(q(z)) = KL(q(z) ‖ Π_d q(z_d)) ([1] eq. 2, Appendix C).

    :param z: (M, D) draws, z_i ~ N(loc_i, diag(scale_i²)).
    :param loc, scale: (M, D) posterior parameters of the same batch.
    :param dataset_size: N, the number of data points the batch was drawn from.
    :param estimator: ``"mss"`` (minibatch-stratified sampling, consistent) or ``"mws"``
        (minibatch-weighted sampling, with the paper's log(N·M) normaliser: it exceeds the true TC
        by about (D − 1)·log N when the posteriors overlap; this function returns it uncorrected).
    :returns: scalar, the batch mean of log q(z_i) − Σ_d log q(z_i,d). Memory O(M²·D).
    """
    log_qz, log_qz_dims = _log_aggregate(z, loc, scale, dataset_size, estimator)
    return (log_qz - log_qz_dims).mean()


def tc_decomposition(z, loc, scale, log_pz: torch.Tensor, dataset_size: int,
                     estimator: str = "mss") -> TCDecomposition:
    """Index-code MI, total correlation and dimension-wise KL of [1] eq. 2, as batch means.

    :param log_pz: (M,) log p(z_i) under the prior (summed over dimensions). For a prior that
        factorises over dimensions the third term is the dimension-wise KL Σ_d KL(q(z_d) ‖ p(z_d));
        for any other prior it is E[Σ_d log q(z_d) − log p(z)], so the three terms always add up to
        the Monte Carlo KL E[log q(z|n) − log p(z)].
    Shapes and ``estimator`` as in :func:`total_correlation` (MWS terms uncorrected).
    """
    log_qz, log_qz_dims = _log_aggregate(z, loc, scale, dataset_size, estimator)
    log_qz_x = (-0.5 * ((z - loc) / scale).square() - scale.log() - 0.5 * _LOG_2PI).sum(-1)
    return TCDecomposition((log_qz_x - log_qz).mean(), (log_qz - log_qz_dims).mean(),
                           (log_qz_dims - log_pz).mean())


def mws_offsets(latent_dim: int, dataset_size: int) -> TCDecomposition:
    """What MWS adds to (mi, tc, dim_kl) when posteriors overlap: (log N, (D−1)·log N, −D·log N)."""
    log_n = math.log(dataset_size)
    return TCDecomposition(log_n, (latent_dim - 1) * log_n, -latent_dim * log_n)


def covariance(x: torch.Tensor) -> torch.Tensor:
    """Batch covariance E[x xᵀ] − E[x] E[x]ᵀ of (M, D) rows (divisor M): shape (D, D)."""
    centred = x - x.mean(0, keepdim=True)
    return centred.T @ centred / x.shape[0]


def dip_covariance(loc: torch.Tensor, scale: torch.Tensor, kind: str = "i") -> torch.Tensor:
    """The matrix DIP-VAE pushes to the identity ([2]), shape (D, D).

    kind ``"i"``: Cov(μ) over the batch ([2] eq. 6). kind ``"ii"``: Cov(μ) + mean of diag(σ²), the
    covariance of z under the aggregate posterior by the law of total covariance ([2] eq. 5).
    """
    if kind == "i":
        return covariance(loc)
    if kind == "ii":
        return covariance(loc) + torch.diag_embed(scale.square().mean(0))
    raise ValueError(f"DIP kind must be 'i' or 'ii', got {kind!r}")


def dip_matrix_penalty(cov: torch.Tensor, lambda_od: float, lambda_d: float) -> torch.Tensor:
    """λ_od Σ_{i≠j} C_ij² + λ_d Σ_i (C_ii − 1)² ([2] eq. 6) for a (D, D) matrix C."""
    diag = torch.diagonal(cov)
    off = cov.square().sum() - diag.square().sum()
    return lambda_od * off + lambda_d * (diag - 1).square().sum()


def dip_covariance_penalty(loc: torch.Tensor, scale: torch.Tensor, kind: str = "i",
                           lambda_od: float = 10.0, lambda_d: float | None = None) -> torch.Tensor:
    """DIP-VAE penalty of a batch ([2] eq. 6), scalar.

    :param loc, scale: (M, D) encoder means and scales.
    :param kind: ``"i"`` (covariance of the means) or ``"ii"`` (plus the batch mean of diag σ²).
    :param lambda_d: defaults to 10·λ_od for DIP-I and λ_od for DIP-II (the paper's settings).
    """
    if lambda_d is None:
        lambda_d = 10.0 * lambda_od if kind == "i" else lambda_od
    return dip_matrix_penalty(dip_covariance(loc, scale, kind), lambda_od, lambda_d)


def kernel_matrix(a: torch.Tensor, b: torch.Tensor, kernel: str = "imq", scale: float = 1.0):
    """k(a_i, b_j) for (n, D) and (m, D) sets: (n, m). IMQ C/(C + ‖x−y‖²), RBF exp(−‖x−y‖²/C); C = 2·D·scale²."""
    c = 2.0 * a.shape[-1] * scale ** 2
    sq = torch.cdist(a, b).square()
    if kernel == "imq":
        return c / (c + sq)
    if kernel == "rbf":
        return torch.exp(-sq / c)
    raise ValueError(f"kernel must be 'imq' or 'rbf', got {kernel!r}")


def mmd(a: torch.Tensor, b: torch.Tensor, kernel: str = "imq", scale: float = 1.0) -> torch.Tensor:
    """Unbiased MMD² between sample sets ``a`` (n, D) and ``b`` (m, D) ([3], Gretton eq. 3).

    1/(n(n−1)) Σ_{i≠j} k(a_i, a_j) + 1/(m(m−1)) Σ_{i≠j} k(b_i, b_j) − 2/(nm) Σ_{i,j} k(a_i, b_j).
    Can be slightly negative; its expectation is 0 exactly when the distributions are equal.
    """
    n, m = a.shape[0], b.shape[0]
    if n < 2 or m < 2:
        raise ValueError(f"unbiased MMD needs at least 2 samples in each set, got {n} and {m}")
    kaa = kernel_matrix(a, a, kernel, scale)
    kbb = kernel_matrix(b, b, kernel, scale)
    kab = kernel_matrix(a, b, kernel, scale)
    within_a = (kaa.sum() - torch.diagonal(kaa).sum()) / (n * (n - 1))
    within_b = (kbb.sum() - torch.diagonal(kbb).sum()) / (m * (m - 1))
    return within_a + within_b - 2.0 * kab.mean()


def capacity_schedule(step: int, c_max: float, c_stop: int) -> float:
    """C(t) of β-VAE-B ([4] §5): linear from 0 at step 0 to ``c_max`` nats at ``c_stop``, then flat."""
    if c_stop <= 0:
        return float(c_max)
    return float(c_max) * min(max(step, 0), c_stop) / c_stop


def capacity_penalty(kl: torch.Tensor, step: int, gamma: float, c_max: float,
                     c_stop: int) -> torch.Tensor:
    """γ·|KL − C(t)| ([4] eq. 8) for the batch-mean KL ``kl`` (scalar, nats per data point)."""
    return gamma * (kl - capacity_schedule(step, c_max, c_stop)).abs()


def density_ratio_loss(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """Logistic loss of a classifier telling draws of p from draws of q ([5]), scalar.

    −E_p log σ(l) − E_q log(1 − σ(l)) = mean softplus(−l_p) + mean softplus(l_q), with ``logits_p``
    the classifier's logits l on draws of p and ``logits_q`` on draws of q (each set averaged on its
    own). Its minimiser is l = log p/q, the log density ratio. A two-class head — logits shaped
    ``(N, 2)``, class 0 for p — is the same classifier with l = l₀ − l₁; its loss is computed as the
    cross-entropy of the two classes (log-softmax), which equals the above up to rounding. FactorVAE's
    discriminator (p = q(z), q = Π_j q(z_j); two classes), the MS-GAN discriminator and the
    robust-disentangling classifiers T, T′ (one logit) all train on it.
    """
    if logits_p.ndim == 2 and logits_p.shape[-1] == 2:
        p_label = torch.zeros(logits_p.shape[0], dtype=torch.long, device=logits_p.device)
        q_label = torch.ones(logits_q.shape[0], dtype=torch.long, device=logits_q.device)
        return F.cross_entropy(logits_p, p_label) + F.cross_entropy(logits_q, q_label)
    return F.softplus(-logits_p).mean() + F.softplus(logits_q).mean()
