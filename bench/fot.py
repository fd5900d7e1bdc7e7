"""fot: FOT against FedAvg and FedProx on continual tasks (`corolla bench fot`).

Settings (5 tasks each, 20 clients, 10 sampled per round, 4 rounds per task; `--quick` shrinks
clients, rounds and local steps, and keeps every setting and variant):
- `permuted-digits` and `permuted-fmnist`, IID and non-IID (2 label shards per client), bias-free
  MLP 64-200-200-10 / 784-200-200-10;
- `split-fmnist`, task-incremental (per-task heads: the classes of each task, not projected) and
  class-incremental (one shared head), bias-free MLP and bias-free small CNN.
Variants: `fedavg`, `fedprox`, `fot`; on the headline setting (`permuted-fmnist/iid`) also FOT
with other sketch configurations (`fot/sketch=...`), to show what each uplink reduction costs.

Every run is corolla's own ServerApp and ClientApp code on bench/inline.py's in-process grid:
the same messages (the sketch round included), validation, byte metering, metrics.jsonl and
summary.json as `corolla run`, without Ray's start-up per run; a run gives the same numbers as `corolla run` with the same overrides
(checked on the headline FedAvg run). Runs are spread over `COROLLA_BENCH_JOBS` worker processes
(default: 2, one torch thread each); each run is deterministic on its own.

Metrics per (setting, variant), over seeds, on the test split: `acc`, `fgt`, `plasticity` (from
the accuracy matrix, docs/architecture.md), `extra_uplink` (FOT's sketch bytes in % of the training uplink of
the same run), `server_s_per_round` (the strategy's own seconds per round: aggregation, and for
FOT also projection and the basis update at task switches). Learning rates (and FedProx's mu,
FOT's epsilon) come from conf/bench/fot.yaml, chosen on the validation split only with the same
number of trials per method (`python -m bench.fot_tuning`); the bench prints them.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from bench import inline
from bench.report import BenchReport

CONF = Path(__file__).resolve().parents[1] / "conf" / "bench" / "fot.yaml"

MLP = ["model=mlp", "model.hidden=[200,200]", "model.bias=false"]
CNN = ["model=cnn", "model.bias=false"]
NON_IID = ["task.partition=shard", "task.shards_per_client=2"]
TIL = ["task.continual.scenario=task-incremental"]
CIL = ["task.continual.scenario=class-incremental"]
# setting -> Hydra overrides (every variant of a setting gets exactly these)
SETTINGS: dict[str, list[str]] = {
    "permuted-digits/iid": ["task=permuted-digits", *MLP],
    "permuted-digits/non-iid": ["task=permuted-digits", *NON_IID, *MLP],
    "permuted-fmnist/iid": ["task=permuted-fmnist", *MLP],
    "permuted-fmnist/non-iid": ["task=permuted-fmnist", *NON_IID, *MLP],
    "split-fmnist/task-il/mlp": ["task=split-fmnist", *TIL, *MLP],
    "split-fmnist/class-il/mlp": ["task=split-fmnist", *CIL, *MLP],
    "split-fmnist/task-il/cnn": ["task=split-fmnist", *TIL, *CNN],
    "split-fmnist/class-il/cnn": ["task=split-fmnist", *CIL, *CNN],
}
HEADLINE = "permuted-fmnist/iid"
METHODS = ("fedavg", "fedprox", "fot")
# FOT with other sketch configurations (headline setting only). `fot` itself runs
# conf/strategy/fot.yaml's sketch defaults: the clients of the task's last round, float32, d' = d.
SKETCH_VARIANTS: dict[str, list[str]] = {
    # the official code's configuration: every client sketches, float32, d' = d
    "fot/sketch=all": ["strategy.sketch_clients=all"],
    "fot/sketch=fp16": ["strategy.sketch_dtype=float16"],
    "fot/sketch=fp16-cols128": ["strategy.sketch_dtype=float16", "strategy.sketch_cols=128"],
}
COMMON = ["progress=false", "plots=false", "checkpoint_every=100000"]
METRICS = ["acc", "fgt", "plasticity", "extra_uplink", "server_s_per_round"]


# ---- configuration ------------------------------------------------------------------------------

def load_conf(path: Path = CONF) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def method_overrides(method: str, params: dict[str, Any]) -> list[str]:
    """A method's chosen hyperparameters as Hydra overrides: `lr` -> train.lr, the rest -> strategy.*."""
    out = [f"strategy={method}"]
    for key, value in params.items():
        out.append(f"train.{key}={value}" if key == "lr" else f"strategy.{key}={_hydra(value)}")
    return out


def _hydra(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def size_overrides(conf: dict[str, Any], setting: str, quick: bool) -> list[str]:
    """Clients, sampling, rounds and local training of a setting (the same for every variant)."""
    mode = "quick" if quick else "full"
    base = conf[mode]
    extra = ((conf.get("sizes") or {}).get(setting) or {}).get(mode) or {}
    size = {**base, **extra, "train": {**base.get("train", {}), **extra.get("train", {})}}
    out = [f"task.num_clients={size['num_clients']}", f"strategy.fraction_train={size['fraction_train']}",
           f"num_rounds={5 * int(size['rounds_per_task'])}"]
    out += [f"train.{k}={_hydra(v)}" for k, v in size.get("train", {}).items()]
    return out


def chosen(conf: dict[str, Any], setting: str, method: str) -> dict[str, Any]:
    """The method's hyperparameters for a setting (conf's per-setting value, else its default)."""
    params = dict(conf["defaults"][method])
    params.update(((conf.get("settings", {}).get(setting) or {}).get("methods") or {}).get(method) or {})
    return params


def plan(conf: dict[str, Any], quick: bool, settings: Iterable[str] | None = None,
         variants: Iterable[str] | None = None) -> list[tuple[str, str, list[str]]]:
    """(setting, variant, overrides without the seed) of every run of the bench, in table order."""
    wanted = set(variants) if variants else None
    jobs = []
    for setting in settings or SETTINGS:
        base = [*SETTINGS[setting], *COMMON, *size_overrides(conf, setting, quick)]
        names: list[tuple[str, list[str]]] = [(m, method_overrides(m, chosen(conf, setting, m))) for m in METHODS]
        if setting == HEADLINE:
            fot = method_overrides("fot", chosen(conf, setting, "fot"))
            names += [(name, [*fot, *extra]) for name, extra in SKETCH_VARIANTS.items()]
        for name, overrides in names:
            if wanted is None or name in wanted:
                jobs.append((setting, name, [*base, *overrides]))
    return jobs


# ---- one run, in this process ---------------------------------------------------------------------

def run_inline(overrides: list[str], workdir: Path | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One experiment on bench.inline's in-process grid: (summary, metrics.jsonl records)."""
    run_dir = Path(tempfile.mkdtemp(prefix="corolla-fot-", dir=workdir))
    try:
        summary, records, _ = inline.run_inline(overrides, run_dir)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return summary, records


def run_metrics(summary: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, float]:
    """One run's row values: continual metrics, FOT's extra uplink in %, server seconds per round."""
    continual = summary["continual"]
    sketch = int((summary.get("fot") or {}).get("sketch_uplink_bytes", 0))
    uplink = int(summary["communication"]["uplink_bytes"])
    training = uplink - sketch
    out = {
        "acc": float(continual["acc"]),
        "fgt": float(continual["fgt"]),
        "plasticity": float(continual["plasticity"]),
        "extra_uplink": 100.0 * sketch / training if training > 0 else 0.0,
        "server_s_per_round": statistics.fmean(float(r.get("server_s", 0.0)) for r in records),
        "sketch_mb": sketch / 1e6,
        "training_uplink_mb": training / 1e6,
        "wall_s": float(summary["timing"]["wall_s"]),
    }
    if "fot" in summary:
        out["basis_dim"] = float(sum(summary["fot"]["basis_dims"].values()))
    return out


def _one(overrides: list[str]) -> dict[str, float]:
    summary, records = run_inline(overrides)
    return run_metrics(summary, records)


def run_many(jobs: list[tuple[Any, list[str]]], *, workers: int, label: str = "fot bench") -> dict[Any, dict[str, float] | BaseException]:
    """Every (key, overrides) job through `_one`, `workers` at a time; results (or exceptions) by key."""
    return inline.run_many(_one, jobs, workers=workers, label=label,
                           shown=("acc", "fgt", "plasticity", "extra_uplink"))


# ---- the bench ----------------------------------------------------------------------------------

class FotReport(BenchReport):
    """The table, then the hyperparameters each method ran with and the issue's headline targets."""

    def table(self, metrics: list[str] | None = None) -> str:
        lines = [super().table(metrics or METRICS)]
        lines += ["", "extra_uplink: FOT's sketch bytes in % of the run's training uplink; "
                      "server_s_per_round: the strategy's own seconds per round (mean)",
                  "hyperparameters (chosen on the validation split, conf/bench/fot.yaml):"]
        for setting, methods in self.setting.get("hyperparameters", {}).items():
            shown = "; ".join(f"{m} " + ", ".join(f"{k}={v}" for k, v in p.items()) for m, p in methods.items())
            lines.append(f"  {setting}: {shown}")
        targets = self.setting.get("targets")
        if targets:
            lines.append(f"targets on {HEADLINE}: " + ", ".join(f"{k}={v}" for k, v in targets.items()))
        return "\n".join(lines)


def add_rows(report: BenchReport, setting: str, variant: str, runs: list[dict[str, float]]) -> dict[str, Any]:
    """A row from the runs of every seed: the contract's metrics first, then the extras."""
    keys = [*METRICS, *(k for k in runs[0] if k not in METRICS)]
    return report.add(setting, variant, **{k: [r[k] for r in runs] for k in keys if all(k in r for r in runs)})


def targets(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The issue's targets on the headline setting: FGT(fot) <= 0.25 FGT(fedavg), ACC(fot) >= ACC(fedavg) + 0.03."""
    by = {row["variant"]: row for row in rows if row["setting"] == HEADLINE}
    if "fot" not in by or "fedavg" not in by:
        return None
    fot, avg = by["fot"], by["fedavg"]
    ratio = fot["fgt"]["mean"] / avg["fgt"]["mean"] if avg["fgt"]["mean"] > 0 else float("inf")
    gain = fot["acc"]["mean"] - avg["acc"]["mean"]
    return {"fgt_ratio": round(ratio, 4), "fgt_ratio_met": ratio <= 0.25,
            "acc_gain": round(gain, 4), "acc_gain_met": gain >= 0.03}


def run(quick: bool, *, settings: list[str] | None = None, variants: list[str] | None = None,
        seeds: list[int] | None = None, workers: int | None = None) -> FotReport:
    conf = load_conf()
    seeds = seeds if seeds is not None else list(conf["quick" if quick else "full"]["seeds"])
    workers = workers or inline.default_workers()
    runs = plan(conf, quick, settings, variants)
    chosen_settings = list(dict.fromkeys(s for s, _, _ in runs))
    report = FotReport("fot", quick, setting={
        "seeds": seeds,
        "size": conf["quick" if quick else "full"],
        "settings": {s: SETTINGS[s] for s in chosen_settings},
        "sketch_variants": SKETCH_VARIANTS,
        "engine": "in-process grid (corolla's ServerApp + ClientApp code, no Ray)",
        "hyperparameters": {s: {m: chosen(conf, s, m) for m in METHODS} for s in chosen_settings},
        "selection": "validation split only, the same number of trials per method (python -m bench.fot_tuning)",
        "metric_units": {"extra_uplink": "% of training uplink", "server_s_per_round": "s"},
    })
    jobs = [((setting, variant, seed), [*overrides, f"seed={seed}"])
            for setting, variant, overrides in runs for seed in seeds]
    started = time.monotonic()
    results = run_many(jobs, workers=workers)
    failed = inline.failures(results, lambda k: f"{k[0]} {k[1]} seed={k[2]}")
    for setting, variant, _ in runs:
        good = [results[(setting, variant, s)] for s in seeds if not isinstance(results[(setting, variant, s)], BaseException)]
        if good:
            add_rows(report, setting, variant, good)  # type: ignore[arg-type]
    report.setting["failed_runs"] = failed
    report.setting["targets"] = targets(report.rows)
    report.setting["wall_s"] = round(time.monotonic() - started, 1)
    report.setting["workers"] = workers
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fot")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--settings", default=None, help="comma-separated subset of settings")
    parser.add_argument("--variants", default=None, help="comma-separated subset of variants")
    parser.add_argument("--seeds", default=None)
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    report = run(args.quick, settings=args.settings.split(",") if args.settings else None,
                 variants=args.variants.split(",") if args.variants else None,
                 seeds=[int(s) for s in args.seeds.split(",")] if args.seeds else None, workers=args.jobs)
    print(report.table())
    if args.out:
        print(f"results: {report.write(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
