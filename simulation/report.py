"""The summary table printed at the end of `corolla run`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows of a summary.json."""
    rows = [("strategy", summary["strategy"]), ("task", summary["task"]), ("model", summary.get("model", "")),
            ("clients", summary["num_clients"]), ("rounds", summary["rounds"]),
            ("final accuracy", summary["final"]["accuracy"]), ("final loss", summary["final"]["loss"])]
    if "continual" in summary:
        c = summary["continual"]
        rows += [("continual ACC", c["acc"]), ("continual FGT", c["fgt"]), ("plasticity", c["plasticity"])]
    if "retrieval" in summary:
        rows += [("retrieval rsum", summary["retrieval"]["rsum"])]
    comm = summary["communication"]
    rows += [("uplink MB", comm["uplink_bytes"] / 1e6), ("downlink MB", comm["downlink_bytes"] / 1e6),
             ("failed replies", summary.get("failures", {}).get("total", 0)),
             ("wall time s", summary["timing"]["wall_s"])]
    return [(label, _fmt(value)) for label, value in rows]


def print_summary(run_dir: Path) -> dict[str, Any]:
    """Print summary.json as a two-column table and return it."""
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = summary_rows(summary)
    width = max(len(label) for label, _ in rows)
    rule = "-" * (width + 2 + max(len(v) for _, v in rows))
    print(rule)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    print(rule, flush=True)
    return summary
