"""Reader and writer for the (optionally gzipped) IDX format of MNIST-style files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import IO

import numpy as np

# The third byte of the magic number encodes the element type.
_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx_shape(path: str | Path) -> tuple[int, ...]:
    """Return the array shape stored in an IDX file, reading only its header."""
    with _open(Path(path)) as f:
        _, ndim = _read_magic(f.read(4), path)
        return struct.unpack(f">{ndim}I", f.read(4 * ndim))


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or plain) into a native-endian numpy array."""
    with _open(Path(path)) as f:
        raw = f.read()
    dtype, ndim = _read_magic(raw[:4], path)
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    offset = 4 + 4 * ndim
    count = int(np.prod(shape)) if shape else 1
    if len(raw) - offset < count * dtype.itemsize:
        raise ValueError(f"{path}: truncated IDX file (header says shape {shape})")
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
    return data.reshape(shape).astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write an array as an IDX file, gzipped when the path ends in ``.gz``."""
    code = next(
        (
            c
            for c, dt in _DTYPES.items()
            if (dt.kind, dt.itemsize) == (array.dtype.kind, array.dtype.itemsize)
        ),
        None,
    )
    if code is None:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    big = _DTYPES[code]
    header = struct.pack(">BBBB", 0, 0, code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=big).tobytes()
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(payload)


def _read_magic(magic: bytes, path: str | Path) -> tuple[np.dtype, int]:
    if len(magic) != 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _DTYPES:
        raise ValueError(f"{path}: not an IDX file (magic {magic!r})")
    return _DTYPES[magic[2]], magic[3]
