"""Active units (Burda et al. 2016, "Importance Weighted Autoencoders", §5.2).

A latent u is *active* when its posterior mean moves with the data: A_u = Cov_x(E_{q(u|x)}[u]) exceeds
a threshold, 10⁻² in the paper. A collapsed latent's posterior is the prior for every x, so the decoder
gets only noise from it; its mean can still wiggle with x a little, and a histogram MI (MIG's, with 20
bins over the latent's own range) sees those wiggles. Reading the MI matrix beside the active units
tells a code the decoder uses from that artefact.
"""

from __future__ import annotations

import numpy as np

#: Burda et al. 2016, §5.2: "we define a unit to be active if A_u = Cov_x(E_{u~q(u|x)}[u]) > 10⁻²".
ACTIVE_AT = 1e-2


def active_units(codes, threshold: float = ACTIVE_AT) -> dict:
    """``codes`` (N, D): posterior means of N observations. Returns each latent's variance over the data
    (the population variance, ``ddof=0``, as Cov_x), which latents exceed ``threshold`` and how many."""
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2 or len(codes) < 2:
        raise ValueError(f"codes must be (N, D) with N ≥ 2, got shape {codes.shape}")
    variance = codes.var(axis=0)
    active = variance > threshold
    return {"variance": variance.tolist(), "active": active.tolist(), "count": int(active.sum()),
            "threshold": float(threshold)}
