"""The damped pendulum of MS-VAE appendix C: a noiseless simulator S: (L, M, B) → θ₀..θ_T.

Nazari et al., *Multi-Stage Modelling* (``papers/msvae-multi-stage-modelling.txt``), appendix C:

    d²θ/dt² = −(b / m) dθ/dt − (g / L) sin θ,

with fixed initial displacement and velocity, T = 100 and θ_i ∈ [−π, π]. The mass acts only
through the damping term b/m. :func:`simulate` integrates a whole batch of (L, M, B) at once with
classical RK4 (a loop over time steps, none over the batch) on the device of its inputs.

:class:`Pendulum` puts (L, M, B) on a grid (factors are grid indices, as for the other
ground-truth data) and renders θ; :class:`PendulumPairs` precomputes the paired data the three
training steps of appendix C need — Y0 (undamped), Y1 (damped with M = 1) and θ — and serves them
as one packed record ``[L, B, y0, y1, θ]`` per item (see ``ppl_models.pendulum.unpack``).
"""

from __future__ import annotations

import math

import torch

from .base import Data, DataError, GroundTruthData, host_values, to_device

GRAVITY = 9.81
STEPS = 100  # appendix C: θ := {θ0, ..., θT}, T = 100
DT = 0.05  # seconds between recorded θ_t (ours: 5 s, 1.4–2.5 periods over L ∈ [1, 3])
SUBSTEPS = 5  # RK4 steps per recorded interval (h = 0.01 s)
THETA0, OMEGA0 = 1.0, 0.0  # appendix C: "the initial angular displacement/velocity are constant"
LENGTH_RANGE = (1.0, 3.0)  # fig. 15a traverses l from 1.0 to 3.0
MASS_RANGE = (0.1, 2.0)  # fig. 15c traverses m from .1 to 2.0
DAMPING_RANGE = (0.1, 2.0)  # fig. 15b traverses b from .1 to 2.0


def wrap_angle(theta: torch.Tensor) -> torch.Tensor:
    """θ mapped into [−π, π]."""
    return torch.atan2(torch.sin(theta), torch.cos(theta))


def simulate(length, mass, damping, steps: int = STEPS, dt: float = DT, substeps: int = SUBSTEPS,
             theta0: float = THETA0, omega0: float = OMEGA0) -> torch.Tensor:
    """θ₀..θ_steps (N, steps + 1) for tensors ``length``, ``mass``, ``damping`` of shape (N,).

    RK4 on (θ, ω) with ω' = −(b/m) ω − (g/L) sin θ (appendix C), ``substeps`` steps per ``dt``.
    """
    length, mass, damping = torch.broadcast_tensors(*(torch.as_tensor(v) for v in (length, mass, damping)))
    # Checked on the host (a device input is read back once, in a user's call; Pendulum.render,
    # whose values come from valid grid factors, integrates without this check).
    if (not (host_values(length) > 0).all() or not (host_values(mass) > 0).all()
            or (host_values(damping) < 0).any()):
        raise DataError("the pendulum needs length > 0, mass > 0 and damping >= 0")
    if steps < 1 or substeps < 1 or not dt > 0:
        raise DataError(f"steps and substeps must be >= 1 and dt > 0, got {steps}, {substeps}, {dt}")
    return _integrate(length, mass, damping, steps, dt, substeps, theta0, omega0)


def _integrate(length, mass, damping, steps, dt, substeps, theta0, omega0) -> torch.Tensor:
    """:func:`simulate` without its checks, for values known to be valid."""
    dtype = length.dtype if length.is_floating_point() else torch.float32
    k, w0 = (damping / mass).to(dtype), (GRAVITY / length).to(dtype)
    theta = torch.full_like(k, theta0)
    omega = torch.full_like(k, omega0)
    h = dt / substeps

    def deriv(th, om):
        return om, -k * om - w0 * torch.sin(th)

    out = [theta]
    for _ in range(steps):
        for _ in range(substeps):
            a1, b1 = deriv(theta, omega)
            a2, b2 = deriv(theta + 0.5 * h * a1, omega + 0.5 * h * b1)
            a3, b3 = deriv(theta + 0.5 * h * a2, omega + 0.5 * h * b2)
            a4, b4 = deriv(theta + h * a3, omega + h * b3)
            theta = theta + h / 6 * (a1 + 2 * a2 + 2 * a3 + a4)
            omega = omega + h / 6 * (b1 + 2 * b2 + 2 * b3 + b4)
        out.append(theta)
    return wrap_angle(torch.stack(out, dim=-1))


class Pendulum(GroundTruthData):
    """(L, M, B) on an evenly spaced ``grid``³ over the appendix-C ranges; ``images`` are θ (N, T+1)."""

    factor_names = ("length", "mass", "damping")

    def __init__(self, grid: int = 20, steps: int = STEPS):
        if grid < 2:
            raise DataError(f"the pendulum grid needs >= 2 values per factor, got {grid}")
        self.grid, self.steps = grid, steps
        self.factor_sizes = (grid, grid, grid)
        self.data_shape = (steps + 1,)
        self.ranges = (LENGTH_RANGE, MASS_RANGE, DAMPING_RANGE)

    def values(self, factors: torch.Tensor) -> torch.Tensor:
        """Physical (L, M, B) (N, 3) of grid indices ``factors`` (N, 3)."""
        return self._values(self.check_factors(factors))

    def _values(self, factors: torch.Tensor) -> torch.Tensor:
        lo = to_device(torch.tensor([r[0] for r in self.ranges]), factors.device)
        hi = to_device(torch.tensor([r[1] for r in self.ranges]), factors.device)
        return lo + (hi - lo) * factors.float() / (self.grid - 1)

    def render(self, factors: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        """θ (N, T+1) of valid grid indices ``factors``; ``images`` checks them first."""
        length, mass, damping = self._values(factors).double().unbind(-1)
        return _integrate(length, mass, damping, self.steps, DT, SUBSTEPS, THETA0, OMEGA0).to(dtype)


class PendulumPairs(Data):
    """Every grid item as a packed record ``[L, B, y0, y1, θ]`` (N, 2 + 3(T+1)); factors are the grid indices.

    y0 = S(L, ·, B = 0) (undamped), y1 = S(L, M = 1, B), θ = S(L, M, B): appendix C's paired data
    {Lᵢ, y0ᵢ}, {bᵢ, y0ᵢ, y1ᵢ}, {y1ᵢ, xᵢ}. M is in the factors only, never in the record.
    """

    def __init__(self, grid: int = 20, steps: int = STEPS):
        self.sim = Pendulum(grid, steps)
        self.factor_names, self.factor_sizes = self.sim.factor_names, self.sim.factor_sizes
        self.factors = self.sim.factors_of(torch.arange(len(self.sim)))
        self.params = self.sim.values(self.factors)  # (N, 3): L, M, B
        length, mass, damping = self.params.double().unbind(-1)
        y0 = simulate(length, torch.ones_like(mass), torch.zeros_like(damping), steps)
        y1 = simulate(length, torch.ones_like(mass), damping, steps)
        theta = simulate(length, mass, damping, steps)
        self.records = torch.cat([length[:, None], damping[:, None], y0, y1, theta], -1).float()
        self.data_shape = (self.records.shape[1],)
        self.steps = steps

    def __len__(self) -> int:
        return len(self.records)

    def batch(self, index, device=None, dtype=torch.float32):
        index = index.cpu()
        x, f = self.records[index].to(dtype), self.factors[index]
        return to_device(x, device), to_device(f, device)

    def mass(self, index) -> torch.Tensor:
        """The hidden M of items ``index`` (for checking what Z learned)."""
        return self.params[torch.as_tensor(index).cpu(), 1]


def period(length: float) -> float:
    """Small-angle period 2π√(L/g)."""
    return 2 * math.pi * math.sqrt(length / GRAVITY)
