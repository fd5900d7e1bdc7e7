"""GGEUR's statistics maths, free of Flower: class sums, reductions, the pooled class geometry.

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

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np


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


# ---- server side: from the clients' sums to the geometry --------------------------------------

@dataclass
class ClientStats:
    """One client's statistics as the server holds them: partition, domain and class sums."""

    partition: int
    domain: str
    sums: ClassSums


def small_classes(clients: list[ClientStats], minimum: int) -> list[tuple[int, int, int]]:
    """(partition, class, count) of every client class with 0 < count < ``minimum`` real samples."""
    return [(s.partition, c, int(s.sums.n[c])) for s in clients for c in range(len(s.sums.n))
            if 0 < s.sums.n[c] < minimum]


@dataclass
class Geometry:
    """The pooled class geometry (float32 eigenpairs per class; r = d without a reduction)."""

    eigvals: np.ndarray            # (C, k)
    eigvecs: np.ndarray            # (C, r, k)
    mean: np.ndarray               # (C, d) pooled class means
    counts: np.ndarray             # (C,) real samples per class over all clients
    targets: np.ndarray            # (C,) the count every client fills a class it holds to
    basis: np.ndarray | None       # (d, r) the reduction's basis, None without one
    prototypes: dict[str, np.ndarray] = field(default_factory=dict)        # domain -> (C, d) means
    prototype_counts: dict[str, np.ndarray] = field(default_factory=dict)  # domain -> (C,) counts

    def to_state(self) -> dict[str, Any]:
        """Plain arrays and dicts (what a checkpoint stores)."""
        return {"eigvals": self.eigvals, "eigvecs": self.eigvecs, "mean": self.mean,
                "counts": self.counts, "targets": self.targets, "basis": self.basis,
                "prototypes": self.prototypes, "prototype_counts": self.prototype_counts}

    @staticmethod
    def from_state(state: dict[str, Any]) -> "Geometry":
        """Inverse of `to_state`."""
        return Geometry(**state)


def pool_geometry(clients: list[ClientStats], *, num_classes: int, d: int, r: int,
                  basis: np.ndarray | None, top_k: int | None, amplify: float, amplify_top: int,
                  guided_fraction: float | None, target_count: int | str,
                  multi_domain: bool) -> Geometry:
    """Pool the clients' sums (in the order given) into each class's mean and top-k eigenpairs.

    ``guided_fraction`` keeps, per class, only the largest clients' sums (`guided_subset`);
    ``target_count`` is "global" (the class's count over all clients) or a fixed integer;
    ``multi_domain`` adds each domain's class means as prototypes.
    """
    C = num_classes
    counts = np.stack([s.sums.n for s in clients])  # (K, C)
    mask = guided_subset(counts, guided_fraction) if guided_fraction is not None else counts > 0
    pooled = ClassSums.zeros(C, d, r)
    for k, client in enumerate(clients):
        keep, s = mask[k], client.sums
        pooled = pooled + ClassSums(np.where(keep, s.n, 0), s.s1 * keep[:, None], s.s2 * keep[:, None, None])
    domains: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if multi_domain:
        for client in clients:
            dom, s = client.domain, client.sums
            n, s1 = domains.get(dom, (np.zeros(C), np.zeros((C, d))))
            domains[dom] = (n + s.n, s1 + s.s1)
    return geometry_from_sums(pooled, counts.sum(0), basis=basis, top_k=top_k, amplify=amplify,
                              amplify_top=amplify_top, target_count=target_count, domains=domains)


def geometry_from_sums(pooled: ClassSums, global_counts: np.ndarray, *, basis: np.ndarray | None,
                       top_k: int | None, amplify: float, amplify_top: int, target_count: int | str,
                       domains: dict[str, tuple[np.ndarray, np.ndarray]]) -> Geometry:
    """The geometry from pooled sums alone (what secure aggregation leaves the server).

    ``global_counts`` (C,) sets the "global" targets; ``domains`` maps a domain to its summed
    (counts (C,), s1 (C, d)), whose ratios become that domain's class prototypes.
    """
    C = len(global_counts)
    mean, cov = pooled_moments(pooled, basis)
    eigvals, eigvecs = eigen_geometry(cov, top_k, amplify=amplify, amplify_top=amplify_top)
    targets = (global_counts if target_count == "global" else np.full(C, int(target_count))).astype(np.int64)
    protos = {dom: s1 / np.maximum(n, 1)[:, None] for dom, (n, s1) in domains.items()}
    return Geometry(
        eigvals=eigvals.astype(np.float32), eigvecs=eigvecs.astype(np.float32),
        mean=mean.astype(np.float32), counts=global_counts.astype(np.int64), targets=targets,
        basis=None if basis is None else basis.astype(np.float32),
        prototypes={dom: p.astype(np.float32) for dom, p in protos.items()},
        prototype_counts={dom: n.astype(np.int64) for dom, (n, _) in domains.items()},
    )


def geometry_digest(geometry: Geometry, settings: str) -> str:
    """A short hash of the geometry and the generation ``settings``: equal digests, equal samples."""
    h = hashlib.sha256()
    for array in (geometry.eigvals, geometry.eigvecs, geometry.targets, geometry.mean):
        h.update(np.ascontiguousarray(array).tobytes())
    h.update(settings.encode())
    return h.hexdigest()[:16]


@dataclass
class Selection:
    """The part of the geometry one client gets: classes, and the prototypes that serve them."""

    classes: np.ndarray                     # (m,) int64, ascending
    prototypes: np.ndarray | None           # (p, d) float32, or None
    prototype_classes: np.ndarray | None    # (p,) int64
    prototype_domains: list[str] | None = None   # (p,) each row's domain (GLOBAL for pooled means)


GLOBAL = "*pooled*"  # the "domain" of the pooled class means used as prototypes


def select_for(geometry: Geometry, *, classes_held: list[int] | None, domain: str | None,
               multi_domain: bool, global_prototypes: bool) -> Selection:
    """What one client needs: the classes it holds (every held class if unknown: ``None``), the
    other domains' class means (multi-domain), the pooled means (``global_prototypes``), and
    every class those prototypes stand for."""
    held = geometry.counts > 0
    proto_rows, proto_classes, proto_domains = [], [], []
    if multi_domain:
        for dom, protos in sorted(geometry.prototypes.items()):
            if dom == domain:
                continue
            have = np.flatnonzero(geometry.prototype_counts[dom] > 0)
            proto_rows.append(protos[have])
            proto_classes.append(have)
            proto_domains += [dom] * len(have)
    if global_prototypes:  # every class's pooled mean is one more prototype
        have = np.flatnonzero(held)
        proto_rows.append(geometry.mean[have])
        proto_classes.append(have)
        proto_domains += [GLOBAL] * len(have)
    if classes_held is not None:
        wanted = set(classes_held)
        if multi_domain or global_prototypes:
            wanted |= {int(c) for cs in proto_classes for c in cs}
        classes = np.array(sorted(c for c in wanted if held[c]), dtype=np.int64)
    else:  # a client whose statistics never came (failed, or a resumed run): every class
        classes = np.flatnonzero(held).astype(np.int64)
    if not proto_rows:
        return Selection(classes, None, None)
    return Selection(classes, np.concatenate(proto_rows).astype(np.float32),
                     np.concatenate(proto_classes).astype(np.int64), proto_domains)
