"""strategies/npy.py: Flower's Array conversion with cached headers gives Flower's bytes and arrays."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from flwr.app import Array

from strategies import npy

ARRAYS = [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.ones((2, 3, 4), dtype=np.float64),
    np.array(3.5, dtype=np.float32),                       # 0-d
    np.zeros((0, 5), dtype=np.int64),                      # empty
    np.arange(6, dtype=np.int16).reshape(2, 3).T,          # Fortran order: Flower's own path
    np.arange(10, dtype=">f4"),                            # big-endian
    np.array([True, False]),
    np.arange(20, dtype=np.uint8)[::2],                    # non-contiguous view
]


@pytest.fixture
def flower_and_fast() -> Iterator[None]:
    npy.install()
    yield
    npy.uninstall()


def _flower(arr: np.ndarray) -> Array:
    npy.uninstall()
    try:
        return Array(arr)
    finally:
        npy.install()


@pytest.mark.parametrize("arr", ARRAYS, ids=lambda a: f"{a.dtype.str}{a.shape}")
def test_same_bytes_and_arrays_as_flower(arr: np.ndarray, flower_and_fast: None) -> None:
    for _ in range(2):  # the second time from the cached header
        fast, reference = Array(arr), _flower(arr)
        assert fast.data == reference.data
        assert (fast.dtype, tuple(fast.shape), fast.stype) == (reference.dtype, tuple(reference.shape), reference.stype)
        back = fast.numpy()
        assert back.dtype == arr.dtype and back.shape == arr.shape and np.array_equal(back, arr)
        assert back.flags.writeable and back.flags.owndata or back.base is not None and back.base.flags.owndata


def test_malformed_data_raises_as_flower_does(flower_and_fast: None) -> None:
    good = Array(np.arange(8, dtype=np.float32))
    truncated = Array(dtype=good.dtype, shape=good.shape, stype=good.stype, data=good.data[:-4])
    with pytest.raises(ValueError):
        truncated.numpy()
    garbage = Array(dtype=good.dtype, shape=good.shape, stype=good.stype, data=b"\x93NUMPY\x01\x00\x10\x00{'descr': 1}    ")
    with pytest.raises(Exception):
        garbage.numpy()
