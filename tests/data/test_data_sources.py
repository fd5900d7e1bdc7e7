"""Tests of the offline sources: IDX reader, Fashion-MNIST, digits, mnist5k, animals, generators."""

from __future__ import annotations

import gzip
import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest

from data import DatasetNotInstalled, check_task_config, load_task
from data.cache import cached_arrays
from data.generated import _make_synth, blend_backgrounds, font_paths
from data.idx import read_idx, read_idx_shape, write_idx
from data.sources import (
    FMNIST_DIR,
    FMNIST_FILES,
    animals_images,
    digits_images,
    fmnist_source,
    mnist5k_images,
)


def _idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding written out by hand (independent of data.idx.write_idx)."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_fake_fmnist(root: Path, n_train: int = 30, n_test: int = 10) -> None:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28)),
        "y_train": np.arange(n_train) % 10,
        "x_test": rng.integers(0, 256, (n_test, 28, 28)),
        "y_test": np.arange(n_test) % 10,
    }
    for key, stem in FMNIST_FILES.items():
        (root / f"{stem}.gz").write_bytes(gzip.compress(_idx_bytes(arrays[key])))


def test_idx_reader_on_a_tiny_file(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "x.gz").write_bytes(gzip.compress(_idx_bytes(images)))
    (tmp_path / "x").write_bytes(_idx_bytes(images))
    for name in ("x.gz", "x"):
        got = read_idx(tmp_path / name)
        assert got.dtype == np.uint8 and got.shape == (2, 3, 4)
        assert np.array_equal(got, images)
        assert read_idx_shape(tmp_path / name) == (2, 3, 4)


def test_idx_writer_round_trips_wider_types(tmp_path: Path) -> None:
    values = np.array([[1, -2], [300000, 4]], dtype=np.int32)
    write_idx(tmp_path / "v.gz", values)
    assert np.array_equal(read_idx(tmp_path / "v.gz"), values)


def test_idx_reader_rejects_garbage(tmp_path: Path) -> None:
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(_idx_bytes(np.zeros((4, 4), np.uint8))[:-3])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "short")


def test_fmnist_from_a_user_directory(tmp_path: Path) -> None:
    _write_fake_fmnist(tmp_path)
    source = fmnist_source(str(tmp_path))
    assert source.x_train.shape == (30, 1, 28, 28) and source.x_train.dtype == np.uint8
    assert source.x_test.shape == (10, 1, 28, 28)
    assert source.y_train.dtype == np.int64 and set(source.y_train) == set(range(10))
    # The whole task pipeline runs on the user's copy.
    cfg = {"name": "fmnist", "data_dir": str(tmp_path), "num_clients": 3, "val_fraction": 0.0}
    check_task_config(cfg)
    bundle = load_task(cfg, seed=0)
    assert sum(bundle.client_size(c) for c in range(3)) == 30
    assert len(bundle.test()) == 10


def test_missing_fmnist_names_the_fix(tmp_path: Path) -> None:
    cfg = {"name": "fmnist-dirichlet", "data_dir": str(tmp_path / "nowhere")}
    for call in (lambda: check_task_config(cfg), lambda: load_task(cfg, seed=0)):
        with pytest.raises(DatasetNotInstalled) as err:
            call()
        assert "apt-get install dataset-fashion-mnist" in str(err.value)
        assert "task.data_dir=" in str(err.value)
        assert isinstance(err.value, RuntimeError)


@pytest.mark.skipif(not FMNIST_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fmnist_sizes() -> None:
    source = fmnist_source()
    assert source.x_train.shape == (60000, 1, 28, 28)
    assert source.x_test.shape == (10000, 1, 28, 28)
    assert source.x_train.dtype == np.uint8 and source.x_train.max() == 255
    assert np.bincount(source.y_train).tolist() == [6000] * 10


def test_digits_and_mnist5k() -> None:
    x, y = digits_images()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == np.uint8
    assert x.max() == 255 and set(np.unique(y)) == set(range(10))
    x, y = mnist5k_images()
    assert x.shape == (5000, 1, 28, 28) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [500] * 10


def test_animals_loader() -> None:
    if importlib.util.find_spec("animal_mnist") is None:
        pytest.skip("animal-mnist not installed")
    x, y = animals_images()
    assert x.shape == (10000, 1, 28, 28) and x.dtype == np.uint8
    assert y.dtype == np.int64 and set(np.unique(y)) == set(range(10))
    assert x.max() > 0


def test_missing_animals_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "animal_mnist" else real_find_spec(name, *a),
    )
    from data.sources import animals_dir

    with pytest.raises(DatasetNotInstalled, match="pip install --no-deps animal-mnist"):
        animals_dir()


def test_synth_digits_are_deterministic_from_seed() -> None:
    a, b, c = _make_synth(30, seed=3), _make_synth(30, seed=3), _make_synth(30, seed=4)
    assert a["x"].shape == (30, 3, 28, 28) and a["x"].dtype == np.uint8
    assert np.array_equal(a["x"], b["x"]) and np.array_equal(a["y"], b["y"])
    assert not np.array_equal(a["x"], c["x"])
    assert np.bincount(a["y"]).tolist() == [3] * 10
    # Rendered, not blank: every image has a foreground and a background colour.
    assert all(img.std() > 10 for img in a["x"].astype(float))
    assert len(font_paths()) >= 4


def test_mnistm_blends_are_deterministic_from_seed() -> None:
    digits = mnist5k_images()[0][::500]
    a, b, c = (blend_backgrounds(digits, s) for s in (1, 1, 2))
    assert a.shape == (10, 3, 28, 28) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # The digit strokes change the background: blends of different digits on one seed differ.
    assert not np.array_equal(a, blend_backgrounds(digits[::-1].copy(), 1))


def test_disk_cache_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COROLLA_CACHE", str(tmp_path))
    calls = []

    def make() -> dict[str, np.ndarray]:
        calls.append(1)
        return {"x": np.arange(5)}

    first = cached_arrays("k", make)
    second = cached_arrays("k", make)
    assert np.array_equal(first["x"], second["x"]) and len(calls) == 1
    assert (tmp_path / "generated" / "k.npz").is_file()
