"""A bench's finished runs kept on disk, so a bench stopped part-way resumes where it stopped.

`bench/inline.run_many` stores each successful run's result under a key made of the function, its
overrides and a fingerprint of corolla's code (every source and config file of the packages a run
imports). Run the same bench again on the same code and finished runs are read back, not re-run;
change any of that code and every run is made afresh. Failed runs are never stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The packages a bench run executes; bench/results (the outputs) and tests are not code a run uses.
CODE_DIRS = ("bench", "client", "conf", "data", "models", "server", "simulation", "strategies")
SKIPPED = ("__pycache__", "results")

_store: Path | None = None
_read = True
read_back = 0  # runs read back instead of re-run in this process (the report says how many)


@lru_cache(maxsize=1)
def code_fingerprint(root: Path = ROOT) -> str:
    """sha256 over the path and bytes of every file in CODE_DIRS (not caches, results or tests)."""
    digest = hashlib.sha256()
    for top in CODE_DIRS:
        for path in sorted((root / top).rglob("*")):
            rel = path.relative_to(root)
            if not path.is_file() or any(part in SKIPPED for part in rel.parts) or path.suffix == ".pyc":
                continue
            if path.name.startswith("test_") or path.stem.endswith("_test"):
                continue
            digest.update(str(rel).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@contextlib.contextmanager
def stored_in(directory: Path | None, *, read: bool = True) -> Iterator[None]:
    """Within this block, run_many keeps finished runs in `directory` (None: keeps none) and, unless
    `read` is False (every run made afresh, replacing what was kept), reads them back."""
    global _store, _read
    previous = _store, _read
    _store, _read = directory, read
    try:
        yield
    finally:
        _store, _read = previous


def current() -> Path | None:
    """Where finished runs are kept now (None: nowhere)."""
    return _store


def _name(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def _key(fn: Callable[..., Any], overrides: list[str], threads: int) -> str:
    ident = {"fn": _name(fn), "overrides": list(overrides), "threads": threads, "code": code_fingerprint()}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]


def load(fn: Callable[..., Any], overrides: list[str], threads: int) -> dict[str, Any] | None:
    """A stored result of this run on this code, or None."""
    if _store is None or not _read:
        return None
    path = _store / f"{_key(fn, overrides, threads)}.json"
    try:
        return json.loads(path.read_text())["result"]
    except (OSError, ValueError, KeyError):
        return None  # absent, or cut off by a kill mid-write: run it again


def save(fn: Callable[..., Any], overrides: list[str], threads: int, result: Any) -> bool:
    """Store a finished run's result; False (not stored) when JSON would not give it back unchanged."""
    if _store is None:
        return False
    try:
        text = json.dumps({"fn": _name(fn), "overrides": list(overrides), "code": code_fingerprint(),
                           "result": result})
    except (TypeError, ValueError):
        return False
    if json.loads(text)["result"] != result:  # tuples, non-string keys, NaN: re-run rather than alter
        return False
    _store.mkdir(parents=True, exist_ok=True)
    path = _store / f"{_key(fn, overrides, threads)}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)  # atomic: a kill leaves the old file or none, never half of one
    return True
