"""`corolla runs ls [DIR]` and `corolla runs compare DIR...|GLOB`: list run directories, put runs side by side."""

from __future__ import annotations

import argparse
import glob
import math
import statistics
from pathlib import Path
from typing import Any

import yaml

from server.rundir import read_metrics
from server.summary import read_summary
from server.tracking import flat_config

# Keys that say how a run was shown or where it went, not what it computed.
NOT_SETTINGS = ("seed", "out_dir", "resume", "progress", "verbose", "plots", "tracking.", "checkpoint_every")
METRICS = (("final accuracy", ("final", "accuracy")), ("final loss", ("final", "loss")),
           ("uplink MB", ("communication", "uplink_bytes")), ("wall s", ("timing", "wall_s")))


def find_runs(paths: list[str]) -> list[Path]:
    """Run directories (holding config.yaml) named by `paths`: directories, parents of runs, or globs."""
    found: list[Path] = []
    for arg in paths:
        matches = sorted(glob.glob(arg)) if any(c in arg for c in "*?[") else [arg]
        for match in map(Path, matches):
            if is_run_dir(match):
                found.append(match)
            elif match.is_dir():
                found += sorted(p.parent for p in match.rglob("config.yaml") if is_run_dir(p.parent))
    seen: set[Path] = set()
    return [p for p in found if not (p.resolve() in seen or seen.add(p.resolve()))]  # type: ignore[func-returns-value]


def is_run_dir(path: Path) -> bool:
    """A directory `corolla run` made: a resolved config.yaml (not conf/'s own, nor Hydra's copy)."""
    if path.name == ".hydra" or not (path / "config.yaml").is_file():
        return False
    try:
        cfg = yaml.safe_load((path / "config.yaml").read_text())
    except yaml.YAMLError:
        return False
    return isinstance(cfg, dict) and isinstance(cfg.get("strategy"), dict) and "num_rounds" in cfg


def run_info(run_dir: Path) -> dict[str, Any]:
    """What `runs ls` shows of one run directory."""
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    summary = read_summary(run_dir)
    records, _ = read_metrics(run_dir / "metrics.jsonl")
    done = [r for r in records if r.get("status", "completed") == "completed"]
    if summary is None:
        status = "incomplete"   # killed, or still running: `corolla run resume=<dir>` continues it
    else:
        status = summary.get("status", "completed")
    return {
        "dir": run_dir, "cfg": cfg, "summary": summary, "history": done, "status": status,
        "strategy": cfg.get("strategy", {}).get("name", "?"), "task": cfg.get("task", {}).get("name", "?"),
        "seed": cfg.get("seed", "?"), "num_rounds": cfg.get("num_rounds", "?"),
        "rounds": done[-1]["round"] if done else 0,
        "accuracy": (summary or {}).get("final", {}).get("accuracy") if summary else (done[-1].get("accuracy") if done else None),
        "wall_s": (summary or {}).get("timing", {}).get("wall_s"),
    }


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths)), *(fmt.format(*r) for r in rows)])


def ls(paths: list[str]) -> str:
    runs = [run_info(p) for p in find_runs(paths)]
    if not runs:
        return f"no run directories under {' '.join(paths)}"
    rows = [[str(r["dir"]), r["strategy"], r["task"], str(r["seed"]), f"{r['rounds']}/{r['num_rounds']}",
             _num(r["accuracy"]), r["status"], _num(r["wall_s"], 1)] for r in runs]
    return table(["dir", "strategy", "task", "seed", "rounds", "accuracy", "status", "wall s"], rows)


def differing_keys(configs: list[dict[str, Any]]) -> list[str]:
    """Config keys (dotted) whose values differ between runs, seeds and display options left out."""
    flats = [flat_config(c) for c in configs]
    keys = sorted(set().union(*flats))
    differ = [k for k in keys if not k.startswith(NOT_SETTINGS) and len({repr(f.get(k)) for f in flats}) > 1]
    named = {k.split(".")[0] for k in differ if k.endswith(".name") and k.count(".") == 1}
    # A key only some runs have follows from its section's name (strategy=fot has keys fedavg lacks).
    return [k for k in differ if not (k.split(".")[0] in named and not k.endswith(".name")
                                      and any(k not in f for f in flats))]


def group_runs(runs: list[dict[str, Any]]) -> tuple[list[str], dict[tuple[str, ...], list[dict[str, Any]]]]:
    keys = differing_keys([r["cfg"] for r in runs])
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for run in runs:
        flat = flat_config(run["cfg"])
        groups.setdefault(tuple(str(flat.get(k, "-")) for k in keys), []).append(run)
    return keys, groups


def _label(keys: list[str], values: tuple[str, ...]) -> str:
    if not keys:
        return "all runs"
    return " ".join(f"{k.removesuffix('.name')}={v}" for k, v in zip(keys, values))


def compare(paths: list[str], *, out: Path | None = None) -> tuple[str, Path | None]:
    """The comparison table (mean ± std over seeds of final metrics per group) and the curves' PNG."""
    runs = [r for r in (run_info(p) for p in find_runs(paths)) if r["summary"] is not None]
    if not runs:
        return f"no finished runs under {' '.join(paths)}", None
    keys, groups = group_runs(runs)
    header = [*(k.removesuffix(".name") for k in keys), "seeds", *(m for m, _ in METRICS)] if keys else \
        ["runs", "seeds", *(m for m, _ in METRICS)]
    rows = []
    for values, members in groups.items():
        cells = [_mean_std([_metric(r["summary"], path, scale=1e-6 if "MB" in name else 1.0) for r in members])
                 for name, path in METRICS]
        seeds = ",".join(str(r["seed"]) for r in sorted(members, key=lambda r: str(r["seed"])))
        rows.append([*(values if keys else ["all runs"]), seeds, *cells])
    text = table(header, rows)
    png = out or _common_parent([r["dir"] for r in runs]) / "compare.png"
    write_compare_plot(png, keys, groups)
    return text, png


def write_compare_plot(path: Path, keys: list[str], groups: dict[tuple[str, ...], list[dict[str, Any]]]) -> None:
    """One PNG: each group's mean test accuracy per round, shaded ± std over its seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for values, members in groups.items():
        per_round: dict[int, list[float]] = {}
        for run in members:
            for record in run["history"]:
                if record.get("accuracy") is not None:
                    per_round.setdefault(int(record["round"]), []).append(float(record["accuracy"]))
        rounds = sorted(per_round)
        means = [statistics.fmean(per_round[r]) for r in rounds]
        stds = [statistics.stdev(per_round[r]) if len(per_round[r]) > 1 else 0.0 for r in rounds]
        line, = ax.plot(rounds, means, marker="o", markersize=3, label=f"{_label(keys, values)} (n={len(members)})")
        ax.fill_between(rounds, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                        color=line.get_color(), alpha=0.2)
    tasks = sorted({run["task"] for members in groups.values() for run in members})
    ax.set(xlabel="round", ylabel="test accuracy", title=f"{', '.join(tasks)}: mean ± std over seeds")
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def print_comparison(run_dirs: list[Path]) -> None:
    """The end of a --multirun sweep: its runs side by side."""
    text, png = compare([str(p) for p in run_dirs])
    print(text)
    if png:
        print(f"curves: {png}", flush=True)


def _metric(summary: dict[str, Any], path: tuple[str, ...], *, scale: float = 1.0) -> float | None:
    node: Any = summary
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return None if node is None else float(node) * scale


def _mean_std(values: list[float | None]) -> str:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return "-"
    if len(vals) == 1:
        return _num(vals[0])
    return f"{_num(statistics.fmean(vals))} ± {_num(statistics.stdev(vals))}"


def _num(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _common_parent(dirs: list[Path]) -> Path:
    parts = [p.resolve().parent.parts for p in dirs]
    common = []
    for items in zip(*parts):
        if len(set(items)) > 1:
            break
        common.append(items[0])
    return Path(*common) if common else Path.cwd()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="corolla runs", description="List and compare run directories.")
    sub = parser.add_subparsers(dest="command", required=True)
    ls_parser = sub.add_parser("ls", help="one line per run: dir, strategy, task, seed, rounds, accuracy, status")
    ls_parser.add_argument("dirs", nargs="*", default=["runs"], help="directories holding runs (default: runs)")
    cmp_parser = sub.add_parser("compare", help="group runs by differing config keys: mean ± std over seeds")
    cmp_parser.add_argument("dirs", nargs="+", help="run directories, directories of runs, or globs")
    cmp_parser.add_argument("--out", type=Path, default=None, help="the PNG (default: <common parent>/compare.png)")
    args = parser.parse_args(argv)
    if args.command == "ls":
        print(ls(args.dirs))
        return 0
    text, png = compare(args.dirs, out=args.out)
    print(text)
    if png is None:
        return 1
    print(f"curves: {png}")
    return 0
