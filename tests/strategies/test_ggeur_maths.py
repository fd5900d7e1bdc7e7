"""GGEUR's maths (no Flower): pooled statistics, geometry, reductions and generation."""

from __future__ import annotations

import numpy as np
import pytest

from strategies.ggeur import augment
from strategies.ggeur import geometry as geo


def _clients_data(rng: np.random.Generator, d: int = 6, classes: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    """Three clients with different label mixes and class-dependent means."""
    means = rng.normal(0, 5, (classes, d))
    out = []
    for n, probs in ((50, [0.8, 0.2, 0.0]), (120, [0.1, 0.3, 0.6]), (7, [0.0, 0.0, 1.0])):
        y = rng.choice(classes, size=n, p=probs)
        x = means[y] + rng.normal(0, 1, (n, d)) @ rng.normal(0, 1, (d, d))
        out.append((x, y))
    return out


# ---- math ----------------------------------------------------------------------------------------

def test_pooled_covariance_from_sums_equals_covariance_of_pooled_data() -> None:
    rng = np.random.default_rng(0)
    data = _clients_data(rng)
    sums = [geo.class_sums(x, y, 3) for x, y in data]
    # what goes on the wire: upper triangles, unpacked on the server
    for s in sums:
        assert np.array_equal(geo.unpack_sym(geo.pack_sym(s.s2), 6), s.s2)
    pooled = sums[0] + sums[1] + sums[2]
    mean, cov = geo.pooled_moments(pooled)
    x_all = np.concatenate([x for x, _ in data])
    y_all = np.concatenate([y for _, y in data])
    for c in range(3):
        xc = x_all[y_all == c]
        assert pooled.n[c] == len(xc)
        np.testing.assert_allclose(mean[c], xc.mean(0), atol=1e-6)
        np.testing.assert_allclose(cov[c], np.cov(xc, rowvar=False, bias=True), atol=1e-6)
    # with a reduction, the second moments give P^T Sigma P exactly
    basis = geo.random_basis(6, 3, seed=1)
    reduced = [geo.class_sums(x, y, 3, basis) for x, y in data]
    _, cov_r = geo.pooled_moments(reduced[0] + reduced[1] + reduced[2], basis)
    for c in range(3):
        xc = x_all[y_all == c]
        np.testing.assert_allclose(cov_r[c], basis.T @ np.cov(xc, rowvar=False, bias=True) @ basis, atol=1e-6)


def _covariance(d: int, rng: np.random.Generator, eigvals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return q @ np.diag(eigvals) @ q.T, q


def test_generated_samples_have_the_global_covariance_in_expectation() -> None:
    """x' - x ~ N(0, Sigma): the sample covariance of 40,000 draws is Sigma within 6 standard errors.

    The standard error of a sample covariance entry is sqrt((S_ii S_jj + S_ij^2) / n).
    """
    rng = np.random.default_rng(0)
    d, n = 5, 40_000
    sigma, _ = _covariance(d, rng, np.array([4.0, 2.0, 1.0, 0.5, 0.1]))
    w, v = geo.eigen_geometry(sigma[None])
    centres = rng.normal(0, 3, (4, d))  # four real samples of the class on this client
    new = augment.expand_class(centres, 4 + n, w[0], v[0], np.random.default_rng(1))
    assert new.shape == (n, d)
 # every real sample is a centre equally often (shuffled round-robin): the mean is theirs
    offsets = new - centres.mean(0)
    assert np.allclose(offsets.mean(0), 0, atol=6 * np.sqrt(np.diag(sigma).max() / n))
    # around one known centre, the draws' covariance is Sigma
    one = augment.expand_class(centres[:1], 1 + n, w[0], v[0], np.random.default_rng(2)) - centres[0]
    emp = one.T @ one / n  # the mean is known (0): no Bessel correction
    se = np.sqrt((np.outer(np.diag(sigma), np.diag(sigma)) + sigma**2) / n)
    assert np.all(np.abs(emp - sigma) < 6 * se), np.abs(emp - sigma) / se
    # isotropic control: the same total variance, spread equally
    iso = augment.sample_noise(n, w[0], v[0], np.random.default_rng(3), noise="isotropic")
    assert abs(np.trace(iso.T @ iso / n) - np.trace(sigma)) < 0.05 * np.trace(sigma)
    assert np.allclose(np.cov(iso, rowvar=False), np.trace(sigma) / d * np.eye(d), atol=0.05)
    # oversampling control: copies of real samples
    dup = augment.expand_class(centres, 10, w[0], v[0], np.random.default_rng(4), noise="none")
    assert all(any(np.array_equal(row, c) for c in centres) for row in dup)


def test_top_k_truncation_and_negative_eigenvalues_clamped() -> None:
    rng = np.random.default_rng(0)
    d = 6
    cov, q = _covariance(d, rng, np.array([5.0, 3.0, 1.0, 0.5, 0.2, -0.3]))  # not PSD (noisy estimate)
    w_all, _ = geo.eigen_geometry(cov[None])
    assert w_all.shape == (1, d) and np.all(np.diff(w_all[0]) <= 0) and w_all[0, -1] == 0.0
    w, v = geo.eigen_geometry(cov[None], top_k=2)
    assert w.shape == (1, 2) and v.shape == (1, d, 2)
    np.testing.assert_allclose(w[0], [5.0, 3.0], atol=1e-9)
    np.testing.assert_allclose(np.abs(v[0].T @ q[:, :2]), np.eye(2), atol=1e-9)
    noise = augment.sample_noise(1000, w[0], v[0], rng)
    outside = noise - noise @ v[0] @ v[0].T  # nothing outside the top-2 span
    assert np.abs(outside).max() < 1e-9
    amp, _ = geo.eigen_geometry(cov[None], top_k=4, amplify=5.0, amplify_top=2)
    np.testing.assert_allclose(amp[0], [25.0, 3.0, 1.0, 0.5], atol=1e-9)  # the largest are scaled
    with pytest.raises(ValueError, match="top_k"):
        geo.eigen_geometry(cov[None], top_k=7)


def test_pca_sketch_recovers_the_principal_subspace() -> None:
    rng = np.random.default_rng(0)
    d, r = 40, 4
    basis_true, _ = np.linalg.qr(rng.normal(size=(d, r)))
    x = rng.normal(0, 1, (3000, r)) * np.array([10, 8, 6, 4]) @ basis_true.T + rng.normal(0, 0.1, (3000, d)) + 3.0
    omega = geo.sketch_matrix(d, r + 6, seed=5)
    parts = [geo.sketch_sums(chunk, omega) for chunk in np.array_split(x, 3)]  # three clients
    n = sum(p[0] for p in parts)
    basis = geo.nystrom_basis(n, sum(p[1] for p in parts), sum(p[2] for p in parts), omega, r)
    # the subspaces coincide: singular values of B^T B_true are all ~1
    s = np.linalg.svd(basis.T @ basis_true, compute_uv=False)
    assert s.min() > 0.999


def test_guided_subset_takes_the_largest_clients_up_to_the_fraction() -> None:
    counts = np.array([[50, 0], [30, 5], [20, 5]])
    mask = geo.guided_subset(counts, 0.8)
    assert mask[:, 0].tolist() == [True, True, False]  # 50 + 30 >= 80
    assert mask[:, 1].tolist() == [False, True, True]
