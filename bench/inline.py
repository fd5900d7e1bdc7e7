"""Many short runs for benches: engine=inline's `run_inline`, spread over worker processes.

`run_inline` (simulation/inline.py) runs one experiment on corolla's ServerApp and ClientApp code
in one process: the same messages, reply validation, byte metering, metrics.jsonl and summary.json
as `corolla run`, without Ray's start-up and polling per run, which would dominate a bench of many
short runs on 2 cores. Seconds per round measured here are the method's compute, not the transport.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import cells
from conf.errors import first_line
from simulation.inline import run_inline

__all__ = ["best_lr", "default_workers", "failures", "run_in_tempdir", "run_inline", "run_many"]


def default_workers() -> int:
    """Parallel runs of a bench: $COROLLA_BENCH_JOBS, else min(2, CPUs)."""
    return int(os.environ.get("COROLLA_BENCH_JOBS", str(min(2, os.cpu_count() or 1))))


def failures(results: dict[Any, Any], name: Callable[[Any], str] = str) -> dict[str, str]:
    """The failed runs of a `run_many` result, by name: exception type and message (2,000 chars)."""
    return {name(k): f"{type(v).__name__}: {str(v)[:2000]}" for k, v in results.items() if isinstance(v, BaseException)}


def best_lr(results: dict[Any, Any], variant: str) -> float:
    """The grid's lr with the best validation accuracy for a variant, from `run_many` results keyed
    (variant, lr) (failed trials never win)."""
    scored = [(res["accuracy"], lr) for (v, lr), res in results.items() if v == variant and isinstance(res, dict)]
    if not scored:
        raise RuntimeError(f"every lr trial of {variant} failed: {failures(results)}")
    return max(scored)[1]


def run_in_tempdir(overrides: list[str], prefix: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One `run_inline` run in a temporary run directory, removed after: (summary, metrics records)."""
    run_dir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        summary, records, _ = run_inline(overrides, run_dir)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return summary, records


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def run_many(fn: Callable[[list[str]], dict[str, float]], jobs: list[tuple[Any, list[str]]], *, workers: int,
             threads: int = 1, label: str = "bench", shown: tuple[str, ...] = ()) -> dict[Any, dict[str, float] | BaseException]:
    """fn(overrides) for every (key, overrides) job, `workers` at a time in spawned processes.

    `fn` must be importable (a module-level function). A failed run is reported and kept as its
    exception; the others go on. Within `cells.stored_in(dir)` finished runs are kept there and
    read back instead of re-run (bench/cells.py). Returns the results by key.
    """
    started = time.monotonic()
    results: dict[Any, dict[str, float] | BaseException] = {}
    todo = []
    for key, overrides in jobs:
        stored = cells.load(fn, overrides, threads)
        if stored is None:
            todo.append((key, overrides))
        else:
            results[key] = stored
            cells.read_back += 1
    if len(results):
        print(f"[{label}] {len(results)}/{len(jobs)} runs read back from {cells.current()}", flush=True)
    if not todo:
        return results
    unkept = False
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                                initargs=(threads,)) as pool:
        futures = {pool.submit(fn, overrides): (key, overrides) for key, overrides in todo}
        for future in cf.as_completed(futures):
            key, overrides = futures[future]
            try:
                results[key] = res = future.result()
                if not cells.save(fn, overrides, threads, res) and cells.current() is not None and not unkept:
                    unkept = True
                    print(f"[{label}] results of {fn.__qualname__} do not survive JSON unchanged: not kept "
                          "for a resume", flush=True)
                line = " ".join(f"{k}={res[k]:.4g}" for k in shown if k in res)
            except Exception as ex:  # noqa: BLE001 - a failed run is reported, the others go on
                results[key] = ex
                line = f"FAILED: {type(ex).__name__}: {first_line(ex)}"
            print(f"[{label}] {len(results)}/{len(jobs)} {key}: {line} ({time.monotonic() - started:.0f}s)",
                  flush=True)
    return results
