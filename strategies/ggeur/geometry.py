"""GGEUR's math, free of Flower: class statistics as sums, pooled geometry, reduction, generation.

Notation: d is the feature dimension, r the dimension the second moments live in (r = d without a
reduction; otherwise the columns of an orthonormal basis P, d x r), C the number of classes.

- A client sends, per class c, n_c, the sum of its features s1_c = sum x (length d) and the sum of
  outer products of the reduced features s2_c = sum z z^T with z = P^T x (r x r, sent as its upper
  triangle). Sums, not means: pooled statistics are their plain sums, so secure aggregation could
  hide each client's own.
- The server pools: mu_c = S1_c / N_c, Sigma_c = S2_c / N_c - (P^T mu_c)(P^T mu_c)^T, clamps
  negative eigenvalues to 0 and keeps the top-k eigenpairs (lambda, xi) of every class.
- A client generates x' = x + P sum_j eps_j sqrt(lambda_j) xi_j with eps ~ N(0, 1).

Reductions that keep the payload bounded (r << d):
- ``random``: P is a random orthonormal basis drawn from a seed both sides know (no bytes).
- ``pca``: P spans the top-r principal directions of the pooled (class-agnostic) covariance,
  estimated from a single-pass Nystrom sketch: each client sends n, sum x and (sum x x^T) Omega for
  a shared Gaussian Omega (d x s), all sums again; the server computes P and sends it once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NOISES = ("geometry", "isotropic", "none")


# ---- packing of symmetric matrices ------------------------------------------------------------

def pack_sym(m: np.ndarray) -> np.ndarray:
    """Upper triangles (row-major) of symmetric matrices (..., r, r) -> (..., r(r+1)/2)."""
    r = m.shape[-1]
    iu = np.triu_indices(r)
    return m[..., iu[0], iu[1]]


def unpack_sym(v: np.ndarray, r: int) -> np.ndarray:
    """Inverse of pack_sym: (..., r(r+1)/2) -> symmetric (..., r, r)."""
    if v.shape[-1] != r * (r + 1) // 2:
        raise ValueError(f"packed length {v.shape[-1]} does not fit r={r}")
    out = np.zeros((*v.shape[:-1], r, r), dtype=v.dtype)
    iu = np.triu_indices(r)
    out[..., iu[0], iu[1]] = v
    out[..., iu[1], iu[0]] = v
    return out


# ---- client side: statistics ------------------------------------------------------------------

@dataclass
class ClassSums:
    """Per-class sufficient statistics as sums: counts (C,), s1 (C, d), s2 (C, r, r)."""

    n: np.ndarray
    s1: np.ndarray
    s2: np.ndarray

    def __add__(self, other: "ClassSums") -> "ClassSums":
        return ClassSums(self.n + other.n, self.s1 + other.s1, self.s2 + other.s2)

    @staticmethod
    def zeros(num_classes: int, d: int, r: int) -> "ClassSums":
        return ClassSums(np.zeros(num_classes, np.int64), np.zeros((num_classes, d)),
                         np.zeros((num_classes, r, r)))


def class_sums(x: np.ndarray, y: np.ndarray, num_classes: int,
               basis: np.ndarray | None = None) -> ClassSums:
    """n_c, sum x and sum z z^T (z = P^T x, or x itself without a basis) of every class, in float64."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y, dtype=np.int64)
    z = x if basis is None else x @ basis
    n = np.bincount(y, minlength=num_classes).astype(np.int64)
    s1 = np.zeros((num_classes, x.shape[1]))
    s2 = np.zeros((num_classes, z.shape[1], z.shape[1]))
    for c in np.flatnonzero(n):
        mask = y == c
        s1[c] = x[mask].sum(0)
        zc = z[mask]
        s2[c] = zc.T @ zc
    return ClassSums(n, s1, s2)


def sketch_sums(x: np.ndarray, omega: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """(n, sum x, (sum x x^T) Omega) of all local samples: the PCA reduction's sketch."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return len(x), x.sum(0), x.T @ (x @ omega)


# ---- shared randomness ------------------------------------------------------------------------

def random_basis(d: int, r: int, seed: int) -> np.ndarray:
    """A random orthonormal basis (d, r) from a seed: the same on the server and every client."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, r)))
    return q


def sketch_matrix(d: int, s: int, seed: int) -> np.ndarray:
    """The shared Gaussian test matrix Omega (d, s) of the PCA sketch."""
    return np.random.default_rng(seed).standard_normal((d, s))


def nystrom_basis(n: float, s1: np.ndarray, y_sum: np.ndarray, omega: np.ndarray, r: int) -> np.ndarray:
    """Top-r principal directions (d, r) of the pooled covariance from pooled sketch sums.

    With M = sum x x^T the pooled covariance is C = M / n - mu mu^T, so C Omega = Y / n -
    mu (mu^T Omega) follows from the sums. The single-pass Nystrom approximation
    C ~ (C Omega)(Omega^T C Omega)^+ (C Omega)^T (Tropp et al., 2017, with a small shift for
    stability) then gives the eigenvectors.
    """
    mu = s1 / n
    y = y_sum / n - np.outer(mu, mu @ omega)
    nu = np.sqrt(y.shape[0]) * np.finfo(np.float64).eps * np.linalg.norm(y)
    y_nu = y + nu * omega
    b = omega.T @ y_nu
    b = (b + b.T) / 2
    try:
        chol = np.linalg.cholesky(b)
    except np.linalg.LinAlgError:  # rank-deficient: fall back on an eigen-decomposition
        w, v = np.linalg.eigh(b)
        chol = v * np.sqrt(np.clip(w, 1e-12 * max(w.max(), 1e-300), None))
    z = np.linalg.solve(chol, y_nu.T).T  # y_nu chol^{-T}
    u, _, _ = np.linalg.svd(z, full_matrices=False)
    return u[:, :r]


# ---- server side: pooled geometry -------------------------------------------------------------

def pooled_moments(sums: ClassSums, basis: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pooled class means (C, d) and covariances (C, r, r): Sigma = S2/N - mu_r mu_r^T.

    Classes nobody holds get zeros. mu_r is the mean in the space of the second moments
    (P^T mu with a basis).
    """
    n = sums.n.astype(np.float64)
    safe = np.maximum(n, 1.0)
    mean = sums.s1 / safe[:, None]
    mean_r = mean if basis is None else mean @ basis
    cov = sums.s2 / safe[:, None, None] - mean_r[:, :, None] * mean_r[:, None, :]
    cov = (cov + np.swapaxes(cov, 1, 2)) / 2
    cov[n == 0] = 0.0
    return mean, cov


def eigen_geometry(cov: np.ndarray, top_k: int | None = None, *, amplify: float = 1.0,
                   amplify_top: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (C, k), descending and clamped to >= 0, and eigenvectors (C, r, k).

    ``top_k`` None keeps all r (the official code). ``amplify`` > 1 scales the ``amplify_top``
    largest eigenvalues by linspace(amplify, 1) (the official code meant this, but scaled the
    smallest: numpy's eigh sorts ascending).
    """
    r = cov.shape[-1]
    k = r if top_k is None else int(top_k)
    if not 1 <= k <= r:
        raise ValueError(f"top_k must lie in [1, {r}], got {top_k}")
    w, v = np.linalg.eigh(cov)  # ascending
    w, v = w[:, ::-1][:, :k], v[:, :, ::-1][:, :, :k]
    w = np.clip(w, 0.0, None)
    if amplify != 1.0 and amplify_top > 0:
        m = min(amplify_top, k)
        w = w.copy()
        w[:, :m] *= np.linspace(amplify, 1.0, m)
    return np.ascontiguousarray(w), np.ascontiguousarray(v)


def guided_subset(counts: np.ndarray, fraction: float) -> np.ndarray:
    """The official "client-guided set": per class, the largest clients until they hold >=
    ``fraction`` of the class. counts (K clients, C) -> mask (K, C) of the clients whose sums count.
    """
    mask = np.zeros(counts.shape, dtype=bool)
    for c in range(counts.shape[1]):
        total = counts[:, c].sum()
        if total == 0:
            continue
        order = np.argsort(-counts[:, c], kind="stable")
        acc = 0
        for k in order:
            if counts[k, c] == 0 or acc >= fraction * total:
                break
            mask[k, c] = True
            acc += counts[k, c]
    return mask


# ---- client side: generation ------------------------------------------------------------------

def sample_noise(count: int, eigvals: np.ndarray, eigvecs: np.ndarray, rng: np.random.Generator,
                 *, basis: np.ndarray | None = None, noise: str = "geometry",
                 dim: int | None = None) -> np.ndarray:
    """``count`` draws (count, d) of the class's noise.

    geometry: P sum_j eps_j sqrt(lambda_j) xi_j, covariance P V diag(lambda) V^T P^T;
    isotropic: N(0, sigma^2 I_d) with sigma^2 = sum(lambda) / d (the same total variance);
    none: zeros (plain oversampling).
    """
    d = dim if dim is not None else (basis.shape[0] if basis is not None else eigvecs.shape[0])
    dtype = np.float32 if eigvecs.dtype == np.float32 else np.float64
    if noise == "none" or count == 0:
        return np.zeros((count, d), dtype)
    if noise == "isotropic":
        sigma = np.sqrt(max(float(eigvals.sum()), 0.0) / d)
        return (sigma * rng.standard_normal((count, d), dtype=dtype)).astype(dtype)
    if noise != "geometry":
        raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")
    eps = rng.standard_normal((count, len(eigvals)), dtype=dtype)
    z = (eps * np.sqrt(eigvals).astype(dtype)) @ eigvecs.T.astype(dtype)  # (count, r)
    return z if basis is None else z @ basis.T.astype(dtype)


def expand_class(x: np.ndarray, target: int, eigvals: np.ndarray, eigvecs: np.ndarray,
                 rng: np.random.Generator, *, basis: np.ndarray | None = None,
                 noise: str = "geometry") -> np.ndarray:
    """New samples (target - m, d) around the class's m real samples ``x``; none if m >= target.

    Every real sample serves as a centre equally often (a shuffled round-robin), so no sample
    is favoured the way truncating per-sample batches would favour the first ones.
    """
    m = len(x)
    need = int(target) - m
    if m == 0 or need <= 0:
        return np.zeros((0, x.shape[1] if x.ndim == 2 else 0))
    reps = -(-need // m)
    centres = np.concatenate([rng.permutation(m) for _ in range(reps)])[:need]
    return x[centres] + sample_noise(need, eigvals, eigvecs, rng, basis=basis, noise=noise, dim=x.shape[1])


def around_points(points: np.ndarray, count: int, eigvals: np.ndarray, eigvecs: np.ndarray,
                  rng: np.random.Generator, *, basis: np.ndarray | None = None,
                  noise: str = "geometry") -> np.ndarray:
    """``count`` samples (count, d) spread evenly over ``points`` (e.g. other domains' prototypes)."""
    if count <= 0 or len(points) == 0:
        return np.zeros((0, points.shape[1]))
    centres = np.arange(count) % len(points)
    return points[centres] + sample_noise(count, eigvals, eigvecs, rng, basis=basis, noise=noise,
                                          dim=points.shape[1])


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` integers that differ by at most one (the first ones larger)."""
    if parts <= 0:
        return []
    base, extra = divmod(max(int(total), 0), parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]
