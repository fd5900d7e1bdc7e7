"""GGEUR's generation maths, free of Flower: noise from the class geometry around real samples.

A client generates x' = x + P sum_j eps_j sqrt(lambda_j) xi_j with eps ~ N(0, 1) (P: the reduction's
basis, the identity without one) until each class it holds reaches its target count.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, get_args

import numpy as np

from strategies.ggeur.geometry import random_basis

Noise = Literal["geometry", "isotropic", "none"]
NOISES: tuple[str, ...] = get_args(Noise)


@dataclass
class GeometryPayload:
    """The geometry as one client received it (see `protocol.parse_geometry`)."""

    classes: np.ndarray                  # (m,) int64: the classes this client gets eigenpairs of
    eigvals: np.ndarray                  # (m, k) float32
    eigvecs: np.ndarray                  # (m, r, k) float32
    targets: np.ndarray                  # (C,) int64
    noise: str
    reduce: str                          # none | random | pca
    dim: int                             # r
    seed: int                            # the random basis's seed (reduce=random)
    digest: str
    multi_domain: bool                   # prototypes take part in the generation
    basis: np.ndarray | None = None      # (d, r) float32, sent with reduce=pca
    prototypes: np.ndarray | None = None         # (p, d)
    prototype_classes: np.ndarray | None = None  # (p,) int64
    prototype_domains: list[str] | None = None   # (p,) each row's domain: sent under secagg, see `for_client`


def for_client(g: GeometryPayload, *, held: set[int], domain: str) -> GeometryPayload:
    """The part of a geometry sent to every client alike (secagg=true) that this client uses.

    The server that sees only sums cannot pick a client's part (its classes and the other domains'
    prototypes), so the client does what `geometry.select_for` does on the server otherwise:
    drops its own domain's prototypes and keeps the classes it holds or has prototypes of.
    """
    if g.prototype_domains is None:
        return g
    rows = np.array([dom != domain for dom in g.prototype_domains], dtype=bool)
    protos = g.prototypes[rows] if g.prototypes is not None else None
    proto_classes = g.prototype_classes[rows] if g.prototype_classes is not None else None
    wanted = set(held) | ({int(c) for c in proto_classes} if g.multi_domain and proto_classes is not None else set())
    keep = np.array([int(c) in wanted for c in g.classes], dtype=bool)
    return replace(g, classes=g.classes[keep], eigvals=g.eigvals[keep], eigvecs=g.eigvecs[keep],
                   prototypes=protos if protos is None or len(protos) else None,
                   prototype_classes=proto_classes if protos is not None and len(protos) else None,
                   prototype_domains=None)


def generate(x: np.ndarray, y: np.ndarray, geometry: GeometryPayload,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The generated samples (m, d) and labels of one client, from its real (x, y) and the geometry.

    Single domain: every class the client holds is filled to its target from its own samples.
    With prototypes (multi-domain: the other domains' class means; ``global_prototypes``: the
    pooled class means): the missing count of every class is split evenly between the client's
    own samples (if it holds the class) and each prototype of the class.
    """
    d = x.shape[1]
    g = geometry
    basis = None
    if g.reduce == "random":
        basis = random_basis(d, g.dim, g.seed).astype(np.float32)
    elif g.reduce == "pca":
        basis = g.basis
    multi = g.multi_domain
    protos = g.prototypes if multi and g.prototypes is not None else np.zeros((0, d))
    proto_classes = (g.prototype_classes if multi and g.prototype_classes is not None
                     else np.zeros(0, np.int64))
    xs = x.astype(np.float32)
    out_x, out_y = [], []
    for i, c in enumerate(g.classes):
        own = xs[y == c]
        m, target = len(own), int(g.targets[c])
        kw = {"basis": basis, "noise": g.noise}
        if not multi:
            new = expand_class(own, target, g.eigvals[i], g.eigvecs[i], rng, **kw)
        else:
            points = protos[proto_classes == c].astype(np.float32)
            sources = (1 if m else 0) + len(points)
            parts = split_evenly(target - m, sources)
            chunks = []
            if m:
                chunks.append(expand_class(own, m + parts[0], g.eigvals[i], g.eigvecs[i], rng, **kw))
                parts = parts[1:]
            for point, count in zip(points, parts):
                chunks.append(around_points(point[None], count, g.eigvals[i], g.eigvecs[i], rng, **kw))
            new = np.concatenate(chunks) if chunks else np.zeros((0, d))
        out_x.append(new.astype(np.float32))
        out_y.append(np.full(len(new), c, np.int64))
    if not out_x:
        return np.zeros((0, d), np.float32), np.zeros(0, np.int64)
    return np.concatenate(out_x), np.concatenate(out_y)


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
