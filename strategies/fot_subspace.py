"""FOT's linear algebra: update projection, client sketches Y = R̂Q, and basis growth from ΣY."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

# Rows of Q for the next m columns of R: (m) -> (m, d') tensor.
QRows = Callable[[int], torch.Tensor]


def project_out(delta: torch.Tensor, basis: torch.Tensor | None) -> torch.Tensor:
    """Δ − Δ U Uᵀ for a weight update Δ of any shape whose first dim is the output (conv: out × C·kh·kw)."""
    if basis is None or basis.shape[1] == 0:
        return delta
    flat = delta.reshape(delta.shape[0], -1)
    u = basis.to(flat.dtype)
    return (flat - (flat @ u) @ u.T).reshape(delta.shape)


def gaussian_rows(generator: torch.Generator, cols: int, *, device: torch.device | str = "cpu") -> QRows:
    """Rows of a private Q with entries N(0, 1/d'), so that E[QQᵀ] = I and E[YYᵀ] = R̂R̂ᵀ."""
    scale = 1.0 / math.sqrt(cols)

    def draw(m: int) -> torch.Tensor:
        return (torch.randn((m, cols), generator=generator) * scale).to(device)

    return draw


class Sketch:
    """Streams column blocks of R (d × m each) into Y = R̂Q, ‖R‖²_F and ‖R̂‖²_F, with R̂ = R − UUᵀR.

    Only Y (d × d') is kept, so R never needs to fit in memory.
    """

    def __init__(self, d: int, cols: int, basis: torch.Tensor | None, q_rows: QRows,
                 *, device: torch.device | str = "cpu") -> None:
        self.basis = None if basis is None or basis.shape[1] == 0 else basis.to(device, torch.float32)
        self.q_rows = q_rows
        self.y = torch.zeros((d, cols), dtype=torch.float32, device=device)
        self.norm2 = 0.0
        self.resid2 = 0.0

    def add(self, block: torch.Tensor, scale: float = 1.0) -> None:
        """Add columns of R; `scale` reweights them (a subsample standing in for more columns)."""
        block = block.to(self.y.device, torch.float32)
        resid = block if self.basis is None else block - self.basis @ (self.basis.T @ block)
        self.norm2 += float(block.double().pow(2).sum())
        self.resid2 += float(resid.double().pow(2).sum())
        self.y += (resid * scale) @ self.q_rows(block.shape[1])

    @property
    def ratio(self) -> float:
        """r = ‖R̂‖_F / ‖R‖_F: how much of the data the basis leaves unexplained (1 with no basis)."""
        if self.basis is None:
            return 1.0
        return math.sqrt(self.resid2 / self.norm2) if self.norm2 > 0 else 0.0


def sketch_columns(blocks: Iterable[torch.Tensor], basis: torch.Tensor | None, q_rows: QRows,
                   cols: int) -> tuple[torch.Tensor, float]:
    """Y and r of the data given as column blocks (the whole data of one client, in order)."""
    sketch: Sketch | None = None
    for block in blocks:
        sketch = sketch or Sketch(block.shape[0], cols, basis, q_rows, device=block.device)
        sketch.add(block)
    if sketch is None:
        raise ValueError("no data to sketch")
    return sketch.y, sketch.ratio


def threshold(r_mean: float, eps: float) -> float:
    """ε' = (r̄ − (1 − ε)) / r̄: the share of the residual energy new directions must capture."""
    return (r_mean - (1.0 - eps)) / r_mean if r_mean > 0 else 0.0


def new_directions(y_sum: torch.Tensor, eps_prime: float, *, rel_tol: float = 1e-10) -> torch.Tensor:
    """The fewest left singular vectors of ΣY whose squared singular values reach ε' of the total."""
    y = y_sum.double()
    empty = y.new_zeros((y.shape[0], 0))
    if eps_prime <= 0:
        return empty
    u, s, _ = torch.linalg.svd(y, full_matrices=False)
    energy = s.pow(2)
    total = float(energy.sum())
    if total <= 0:
        return empty
    reached = torch.cumsum(energy, 0) >= min(eps_prime, 1.0) * total * (1 - 1e-12)
    k = int(reached.nonzero()[0]) + 1 if bool(reached.any()) else len(s)
    k = min(max(k, 1), int((energy > rel_tol * total).sum()))  # no directions made of rounding noise
    return u[:, :k]


def expand_basis(basis: torch.Tensor | None, directions: torch.Tensor, *, tol: float = 1e-4) -> torch.Tensor:
    """Orthonormal [U, V']: V's part outside span(U), orthonormalised, dropping dependent columns.

    U's columns are kept as they are (so updates already protected stay protected exactly).
    """
    v = directions.double()
    if basis is not None and basis.shape[1]:
        u = basis.double()
        for _ in range(2):  # twice is enough (Kahan-Parlett) for full orthogonality in floating point
            v = v - u @ (u.T @ v)
    else:
        u = v.new_zeros((v.shape[0], 0))
    if v.shape[1] == 0:
        return u
    w, s, _ = torch.linalg.svd(v, full_matrices=False)
    return torch.cat([u, w[:, s > tol]], dim=1)


def principal_angle_cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosines of the principal angles between span(a) and span(b) (orthonormal columns)."""
    return torch.linalg.svdvals(a.double().T @ b.double()).clamp(max=1.0)
