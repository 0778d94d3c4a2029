"""A basis of the CPA velocity-field space that every machine builds bit for bit the same.

CPAB (Freifeld et al. 2015, §3): a continuous piecewise-affine velocity field is v(p) = A_c (p, 1) in
cell c; stacking the cells' A_c gives a ∈ R^{6·nC}. Continuity across shared edges and zero velocity on
the boundary are linear constraints L a = 0, so the fields form null(L), and θ are the coordinates of
a in a basis B of it: a = B θ. Any basis of null(L) gives the same *space*; which one is used decides
which field a given θ means, so a model's θ only means something together with its B.

libcpab takes B from an SVD of L. Inside null(L) the SVD's rotation is arbitrary and depends on the
LAPACK kernels the CPU selects, so the same θ warps differently on another machine. Here B is built
without floating-point linear algebra whose rounding depends on the machine:

1. :func:`rational_matrix` — L's entries are vertex coordinates k/n and (2k+1)/(2n) of the
   tessellation (and 0, ±1); each float entry is recovered as that exact fraction.
2. :func:`exact_null_space` — Gauss–Jordan elimination in ``fractions.Fraction`` gives the reduced row
   echelon form (RREF) of L, which is unique for L's row space (so it does not depend on the order of
   L's rows either). One null vector per free column f, in increasing f: 1 at f, −R[i, f] at pivot i.
3. :func:`orthonormalise` — modified Gram–Schmidt in that fixed order, twice ("twice is enough",
   Giraud et al. 2005), in float64 with correctly rounded sums (``math.fsum``) and IEEE products, so
   every IEEE-754 machine gets the same bits.

References
[1] Freifeld, Hauberg, Batmanghelich & Fisher. Highly-expressive spaces of well-behaved
    transformations: keeping it simple. ICCV 2015, §3.
[2] Giraud, Langou, Rozložník & van den Eshof. Rounding error analysis of the classical Gram-Schmidt
    orthogonalization process. Numer. Math. 101 (2005).
"""

from __future__ import annotations

import hashlib
import math
from fractions import Fraction

import numpy as np
import torch

def rational_matrix(matrix, max_denominator: int, tol: float = 1e-12) -> list[dict[int, Fraction]]:
    """Each float entry as the nearest fraction with denominator ≤ ``max_denominator`` (sparse rows).

    Raises ``ValueError`` if an entry is further than ``tol`` from that fraction (then it was not a
    tessellation coordinate, and the exact null space would be of a different matrix).
    """
    rows = []
    for i, row in enumerate(np.asarray(matrix, dtype=np.float64)):
        out = {}
        for j in np.flatnonzero(row):
            x = float(row[j])
            q = Fraction(x).limit_denominator(int(max_denominator))
            if abs(float(q) - x) > tol:
                raise ValueError(f"constraint entry L[{i}, {j}] = {x!r} is not a fraction with "
                                 f"denominator <= {max_denominator} (nearest {q})")
            out[int(j)] = q
        rows.append(out)
    return rows


def _subtract(row: dict, factor: Fraction, other: dict) -> None:
    """row -= factor · other, in place, dropping entries that become exactly 0."""
    for col, value in other.items():
        new = row.get(col, 0) - factor * value
        if new:
            row[col] = new
        else:
            row.pop(col, None)


def rref(rows: list[dict[int, Fraction]]) -> list[tuple[int, dict[int, Fraction]]]:
    """Reduced row echelon form of sparse rational rows: ``[(pivot column, row)]`` by pivot column.

    Each returned row has 1 at its pivot and 0 in every other pivot column (exact arithmetic).
    """
    pivots: dict[int, dict[int, Fraction]] = {}
    for source in rows:
        row = dict(source)
        # The pivot rows are kept fully reduced, so subtracting one never brings in another pivot.
        for col in [c for c in row if c in pivots]:
            if col in row:
                _subtract(row, row[col], pivots[col])
        if not row:
            continue
        col = min(row)
        lead = row[col]
        row = {c: v / lead for c, v in row.items()}
        for other in pivots.values():
            if col in other:
                _subtract(other, other[col], row)
        pivots[col] = row
    return sorted(pivots.items())


def exact_null_space(rows: list[dict[int, Fraction]], n_cols: int) -> list[list[Fraction]]:
    """Basis of {a : L a = 0} from the RREF of L: one vector per free column, in increasing order."""
    echelon = rref(rows)
    pivot_cols = {c for c, _ in echelon}
    basis = []
    for free in range(n_cols):
        if free in pivot_cols:
            continue
        vec = [Fraction(0)] * n_cols
        vec[free] = Fraction(1)
        for col, row in echelon:
            if free in row:
                vec[col] = -row[free]
        basis.append(vec)
    return basis


def orthonormalise(vectors: list[list[float]]) -> list[list[float]]:
    """Modified Gram–Schmidt in the given order, two passes, float64 with ``math.fsum`` dot products."""
    out: list[list[float]] = []
    for vec in vectors:
        w = [float(a) for a in vec]
        for _ in range(2):
            for q in out:
                c = math.fsum(a * b for a, b in zip(q, w))
                w = [a - c * b for a, b in zip(w, q)]
        norm = math.sqrt(math.fsum(a * a for a in w))
        if not norm > 0:
            raise ValueError("vectors are linearly dependent")
        out.append([a / norm for a in w])
    return out


def velocity_basis(constraints, max_denominator: int) -> torch.Tensor:
    """Orthonormal basis B ``(D, d)`` (float64) of null(L) for a float constraint matrix L ``(m, D)``.

    Deterministic: the same L gives the same bits on every IEEE-754 machine (see the module docstring).
    """
    constraints = np.asarray(constraints, dtype=np.float64)
    rows = rational_matrix(constraints, max_denominator)
    null = exact_null_space(rows, constraints.shape[1])
    if not null:
        return torch.zeros(constraints.shape[1], 0, dtype=torch.float64)
    return torch.tensor(orthonormalise(null), dtype=torch.float64).T.contiguous()


def basis_digest(basis: torch.Tensor) -> str:
    """sha256 of the basis as contiguous float64 bytes (C order): names a basis in logs and reports."""
    data = basis.detach().to("cpu", torch.float64).contiguous().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()
