"""Benchmark results in the JSON shape of docs/architecture.md ("Benchmark JSON"), and the table printed at the end of a bench."""

from __future__ import annotations

import json
import os
import platform
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable


def stat(values: Iterable[float]) -> dict[str, Any]:
    """{"mean", "std", "values"} of measured values (std 0 for a single value)."""
    vals = [float(v) for v in values]
    if not vals:
        return {"mean": None, "std": None, "values": []}
    return {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0, "values": vals}


def machine_info() -> dict[str, Any]:
    """Where the numbers were measured."""
    import torch

    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpus": os.cpu_count(), "torch": torch.__version__,
                            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        import flwr

        info["flwr"] = flwr.__version__
    except Exception:  # pragma: no cover
        pass
    try:
        with open("/proc/meminfo") as f:
            info["mem_gb"] = round(int(f.readline().split()[1]) / 1e6, 1)
    except OSError:
        pass
    return info


@dataclass
class BenchReport:
    """One benchmark's results: rows of (setting, variant, metrics)."""

    bench: str
    quick: bool
    setting: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    figures: list[Callable[[Path], Path]] = field(default_factory=list)   # each draws a PNG into the out dir

    def add(self, setting: str, variant: str, **metrics: Any) -> dict[str, Any]:
        """Add a row; list values become {"mean","std","values"}, scalars are kept as they are."""
        row: dict[str, Any] = {"setting": setting, "variant": variant}
        for key, value in metrics.items():
            row[key] = stat(value) if isinstance(value, (list, tuple)) else value
        self.rows.append(row)
        return row

    def to_json(self) -> dict[str, Any]:
        return {"bench": self.bench, "quick": self.quick, "setting": self.setting, "rows": self.rows,
                "machine": machine_info()}

    def write(self, out_dir: Path) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{self.bench}.json"
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        for draw in self.figures:
            draw(out_dir)
        return path

    def table(self, metrics: list[str] | None = None) -> str:
        """A fixed-width table: one line per row, mean ± std per metric."""
        if not self.rows:
            return "(no rows)"
        keys = metrics or [k for k in self.rows[0] if k not in ("setting", "variant")]
        header = ["setting", "variant", *keys]
        lines = [[row["setting"], row["variant"], *(_cell(row.get(k)) for k in keys)] for row in self.rows]
        widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
        out += [fmt.format(*line) for line in lines]
        return "\n".join(out)


def _cell(value: Any) -> str:
    if isinstance(value, dict) and "mean" in value:
        if value["mean"] is None:
            return "-"
        mean, std = value["mean"], value["std"]
        return f"{mean:.4g} ± {std:.2g}" if len(value["values"]) > 1 else f"{mean:.4g}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)
