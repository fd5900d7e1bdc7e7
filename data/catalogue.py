"""The catalogue of image sources by name, each with its fixed train/test split."""

from __future__ import annotations

import functools
import math

import numpy as np

from data.bundle import Normalisation
from data.generated import SYNTH_SIZE, mnistm_digits, synth_digits
from data.idx import read_idx
from data.sources import (
    TEST_FRACTION,
    Source,
    animals_dir,
    animals_images,
    digits_images,
    fixed_test_split,
    fmnist_paths,
    fmnist_source,
    fmnist_train_size,
    mnist5k_images,
)

SOURCE_NAMES: tuple[str, ...] = ("digits", "fmnist", "mnist5k", "animals", "synth", "mnistm")
# Generated sources use a fixed generator seed: the images never depend on the run's seed.
GENERATOR_SEED = 0


@functools.lru_cache(maxsize=8)
def load_source(name: str, data_dir: str | None = None) -> Source:
    """Load a source by name; ``data_dir`` points at a user copy of the files (fmnist only)."""
    if name == "fmnist":
        return fmnist_source(data_dir)
    loaders = {
        "digits": digits_images,
        "mnist5k": mnist5k_images,
        "animals": animals_images,
        "synth": lambda: synth_digits(seed=GENERATOR_SEED),
        # Same labels and length as mnist5k, so the fixed test split holds out the same digits.
        "mnistm": lambda: mnistm_digits(seed=GENERATOR_SEED),
    }
    if name not in loaders:
        raise KeyError(f"unknown source {name!r}; known: {', '.join(SOURCE_NAMES)}")
    x, y = loaders[name]()
    return fixed_test_split(name, x, y)


def ensure_installed(name: str, data_dir: str | None = None) -> None:
    """Raise DatasetNotInstalled (naming the fix) when a source's files are missing."""
    if name == "fmnist":
        fmnist_paths(data_dir)
    elif name == "animals":
        animals_dir()


def train_labels(name: str, data_dir: str | None = None) -> np.ndarray:
    """The training labels of a source, reading as little as possible (for config checks)."""
    if name == "fmnist":
        return read_idx(fmnist_paths(data_dir)["y_train"]).astype(np.int64)
    return load_source(name, data_dir).y_train


@functools.lru_cache(maxsize=8)
def source_normalisation(name: str, data_dir: str | None = None) -> Normalisation:
    """Per-channel mean/std of a source's whole training split (fixed: seed-independent)."""
    return Normalisation.of(load_source(name, data_dir).x_train)


# Sizes of the sources whose size is fixed, so config checks need not load them.
_TOTAL_SIZES = {"digits": 1797, "mnist5k": 5000, "animals": 10000, "mnistm": 5000}


def train_size(name: str, data_dir: str | None = None) -> int:
    """Number of training images of a source (after its fixed test split), loading nothing big."""
    if name == "fmnist":
        return fmnist_train_size(data_dir)
    total = SYNTH_SIZE if name == "synth" else _TOTAL_SIZES[name]
    return total - math.ceil(TEST_FRACTION * total)
