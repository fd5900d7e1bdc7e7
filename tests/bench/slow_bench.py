"""A bench of slow, cheap runs for tests/bench/test_cells.py: each run logs that it ran."""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench import inline
from bench.report import BenchReport

RUNS = 6


def one(overrides: list[str]) -> dict[str, float]:
    """A run: `x=<int>` gives x squared, after $SLOW_BENCH_DELAY seconds; appends x to $SLOW_BENCH_LOG."""
    args = dict(o.split("=", 1) for o in overrides)
    time.sleep(float(os.environ.get("SLOW_BENCH_DELAY", "0")))
    with open(os.environ["SLOW_BENCH_LOG"], "a") as log:
        log.write(args["x"] + "\n")
    return {"value": float(int(args["x"]) ** 2)}


def run(quick: bool = False) -> BenchReport:
    jobs = [(x, [f"x={x}"]) for x in range(RUNS)]
    results = inline.run_many(one, jobs, workers=1, label="slow")
    report = BenchReport("slow", quick=quick)
    report.add("all", "squares", value=[results[x]["value"] for x in range(RUNS)])
    return report


def ran(log: Path) -> list[int]:
    """The runs that ran, in the order they finished."""
    return [int(line) for line in log.read_text().split()] if log.exists() else []
