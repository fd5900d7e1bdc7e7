"""`corolla bench <name> [--quick] [--out DIR]`: run one side-by-side benchmark."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from bench import cells

# name -> "module:function"; each function takes (quick: bool) and returns a BenchReport.
BENCHES: dict[str, str] = {
    "sim-overhead": "bench.sim_overhead:run",
    "creamfl": "bench.creamfl:run",
    "ggeur": "bench.ggeur:run",
    "fot": "bench.fot:run",
    "chaos": "bench.chaos:run",
    "robust": "bench.robust:run",
    "privacy": "bench.privacy:run",
    "secagg": "bench.secagg:run",
    "system": "bench.system:run",
}

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="corolla bench", description="Run a side-by-side benchmark.")
    parser.add_argument("name", nargs="?", choices=sorted(BENCHES), help="the benchmark")
    parser.add_argument("--quick", action="store_true", help="fewer seeds/rounds/clients, same variants")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results directory (default {DEFAULT_OUT})")
    parser.add_argument("--fresh", action="store_true",
                        help="run every run again instead of reading back those a stopped run of the bench finished")
    parser.add_argument("--list", action="store_true", help="list the benchmarks")
    args = parser.parse_args(argv)
    if args.list or not args.name:
        print("\n".join(sorted(BENCHES)))
        return 0
    module, _, func = BENCHES[args.name].partition(":")
    # Finished runs are kept beside the results, so a bench stopped part-way resumes (bench/cells.py).
    store = args.out / ".runs" / (f"{args.name}-quick" if args.quick else args.name)
    read_before = cells.read_back
    with cells.stored_in(store, read=not args.fresh):
        report = getattr(importlib.import_module(module), func)(quick=args.quick)
    report.setting["runs_read_back"] = cells.read_back - read_before
    path = report.write(args.out)
    print(report.table())
    print(f"results: {path}")
    return 0
