"""On-disk cache of generated arrays under ``$COROLLA_CACHE`` (default ``~/.cache/corolla``)."""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np


def cache_dir() -> Path:
    """The root of corolla's cache; ``COROLLA_CACHE`` overrides it."""
    root = os.environ.get("COROLLA_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "corolla"


def cached_arrays(
    key: str, make: Callable[[], dict[str, np.ndarray]], subdir: str = "generated"
) -> dict[str, np.ndarray]:
    """Load the arrays stored under ``key``, or make them and store them.

    The cache is best effort: an unwritable or corrupt cache only costs recomputation.
    """
    path = cache_dir() / subdir / f"{key}.npz"
    try:
        with np.load(path) as stored:
            return {name: stored[name] for name in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        pass
    arrays = make()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write to a temporary file and rename, so concurrent Ray actors never read a half file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:
        pass
    return arrays
