"""Flower's Array <-> numpy conversion with the .npy header parsed once per shape, same bytes and arrays.

Flower serialises every Array with `np.save` and reads it back with `np.load`, which parses the
header text with `ast.literal_eval` each time: for small models that is most of a client-round's
record conversion. Headers repeat (the same model's shapes every message), so `install()` makes
`Array.from_numpy_ndarray` and `Array.numpy` reuse each header's encoding and parsed form. Results
are identical to Flower's (tested); anything unusual (object dtypes, truncated or malformed data,
non-contiguous arrays) goes through Flower's own code, which raises as before.
"""

from __future__ import annotations

import math
from io import BytesIO
from typing import Any

import numpy as np
from flwr.app import Array

_ORIGINAL_FROM = Array.from_numpy_ndarray.__func__  # type: ignore[attr-defined]
_ORIGINAL_NUMPY = Array.numpy
_MAX_CACHED = 4096
_HEADERS: dict[tuple[str, tuple[int, ...]], bytes] = {}          # (dtype.str, shape) -> npy header
_PARSED: dict[bytes, tuple[np.dtype, tuple[int, ...], bool]] = {}  # npy header -> dtype, shape, fortran


def _npy_bytes(ndarray: np.ndarray) -> bytes | None:
    """np.save's bytes for a C-contiguous plain array, None when Flower's own path must do it."""
    if ndarray.dtype.hasobject or not ndarray.flags.c_contiguous:
        return None
    key = (ndarray.dtype.str, ndarray.shape)
    header = _HEADERS.get(key)
    if header is None:
        buffer = BytesIO()
        np.save(buffer, ndarray, allow_pickle=False)
        data = buffer.getvalue()
        if len(_HEADERS) < _MAX_CACHED:
            _HEADERS[key] = data[: len(data) - ndarray.nbytes]
        return data
    return header + ndarray.tobytes()


def _header_end(data: bytes) -> int | None:
    """Offset of the array data after an .npy header (format 1.0, 2.0 or 3.0), None if not .npy."""
    if len(data) < 10 or data[:6] != b"\x93NUMPY":
        return None
    if data[6] == 1:
        return 10 + int.from_bytes(data[8:10], "little")
    if data[6] in (2, 3) and len(data) >= 12:
        return 12 + int.from_bytes(data[8:12], "little")
    return None


def _parsed(header: bytes) -> tuple[np.dtype, tuple[int, ...], bool] | None:
    found = _PARSED.get(header)
    if found is None:
        try:
            stream = BytesIO(header)
            version = np.lib.format.read_magic(stream)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(stream)
        except Exception:  # noqa: BLE001 - a malformed header: Flower's np.load raises the real error
            return None
        found = (dtype, tuple(shape), bool(fortran))
        if len(_PARSED) < _MAX_CACHED:
            _PARSED[header] = found
    return found


def from_numpy_ndarray(cls: type[Array], ndarray: Any) -> Array:
    data = _npy_bytes(ndarray) if isinstance(ndarray, np.ndarray) else None
    if data is None:
        return _ORIGINAL_FROM(cls, ndarray)
    return Array(dtype=str(ndarray.dtype), shape=tuple(ndarray.shape), stype="numpy.ndarray", data=data)


def numpy(self: Array) -> np.ndarray:
    data = self.data
    end = _header_end(data) if self.stype == "numpy.ndarray" else None
    parsed = _parsed(bytes(data[:end])) if end is not None else None
    if parsed is None:
        return _ORIGINAL_NUMPY(self)
    dtype, shape, fortran = parsed
    count = math.prod(shape)
    if dtype.hasobject or len(data) - end != count * dtype.itemsize:
        return _ORIGINAL_NUMPY(self)
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=end).copy()  # writable, as np.load's
    return flat.reshape(shape[::-1]).transpose() if fortran else flat.reshape(shape)


def install() -> None:
    """Patch Flower's Array conversion with the cached-header one (idempotent)."""
    cls: Any = Array
    cls.from_numpy_ndarray = classmethod(from_numpy_ndarray)
    cls.numpy = numpy


def uninstall() -> None:
    """Back to Flower's own conversion (for tests that compare the two)."""
    cls: Any = Array
    cls.from_numpy_ndarray = classmethod(_ORIGINAL_FROM)
    cls.numpy = _ORIGINAL_NUMPY
