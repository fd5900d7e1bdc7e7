"""sim-overhead: corolla's engines (ray, inline) against a bare sequential PyTorch loop doing the same work."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import BenchReport
from bench.runs import REPO, run_corolla

# setting -> Hydra overrides (both variants get exactly these)
SETTINGS: dict[str, list[str]] = {
    "fmnist-cnn/clients_per_round=10": ["task=fmnist", "model=cnn", "task.num_clients=100",
                                        "strategy.fraction_train=0.1"],
    "fmnist-cnn/clients_per_round=100": ["task=fmnist", "model=cnn", "task.num_clients=100",
                                         "strategy.fraction_train=1.0"],
    "digits-mlp/clients_per_round=100": ["task=digits", "model=mlp", "task.num_clients=100",
                                         "strategy.fraction_train=1.0"],
}
# How many virtual clients fit: 10 sampled per round out of many. --quick uses fewer.
SCALE_CLIENTS = {False: 10000, True: 1000}
SCALE = ["task=fmnist", "model=mlp", "task.min_partition_size=1"]
COMMON = ["strategy=fedavg", "train.epochs=1", "seed=0"]
# A researcher's small run, start-up included: the default digits task with the mlp, 2 rounds.
STARTUP = ["task=digits", "model=mlp", "num_rounds=2"]


def steady(records: list[dict]) -> list[float]:
    """Per-round seconds after the first round (which pays for start-up)."""
    return [float(r["wall_s"]) for r in records[1:]]


def run_bare(overrides: list[str]) -> tuple[list[dict], float, dict]:
    """The bare loop in its own process: (per-round records, peak RSS MB, {startup_s, wall_s})."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bare.json"
        # All cores as torch threads (a bare loop's default); passive OpenMP waiting so that a
        # busy machine does not turn spin-waits into 10x slowdowns.
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "PASSIVE"}
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "bench.bare_loop", "--out", str(out), *overrides],
                       cwd=REPO, env=env, check=True, timeout=3600)
        wall = time.monotonic() - started
        result = json.loads(out.read_text())
    return result["metrics"], float(result["peak_rss_mb"]), {"startup_s": result["startup_s"], "wall_s": wall}


def startup_rows(report: BenchReport, repeats: int) -> None:
    """startup/digits-mlp: a whole 2-round run's wall time and its start-up, per engine."""
    args = [*COMMON, *STARTUP]
    walls: dict[str, list[float]] = {"corolla": [], "corolla-inline": [], "bare": []}
    startups: dict[str, list[float]] = {k: [] for k in walls}
    for _ in range(repeats):
        for variant, engine in (("corolla", "engine=ray"), ("corolla-inline", "engine=inline")):
            out = run_corolla([*args, engine])
            walls[variant].append(out.wall_s)
            startups[variant].append(float(out.summary["timing"]["startup_s"]))
        _, _, times = run_bare(args)
        walls["bare"].append(times["wall_s"])
        startups["bare"].append(times["startup_s"])
    ray_wall = statistics.fmean(walls["corolla"])
    for variant in walls:
        report.add("startup/digits-mlp", variant, startup_s=startups[variant], wall_s=walls[variant],
                   wall_ratio_to_corolla=statistics.fmean(walls[variant]) / ray_wall)


def run(quick: bool) -> BenchReport:
    rounds = 3 if quick else 6
    report = BenchReport("sim-overhead", quick, setting={
        "rounds": rounds, "steady_rounds": rounds - 1, "local_epochs": 1, "strategy": "fedavg",
        "corolla": "engine=ray: Flower simulation engine, Ray backend, 1 CPU per virtual client (2 actors on 2 cores)",
        "corolla-inline": "engine=inline: the same ServerApp and ClientApp in one process, clients in turn, 1 torch thread each",
        "startup": "startup/digits-mlp: `corolla run task=digits model=mlp num_rounds=2` as a process; wall_s = the "
                   "whole process, startup_s = summary timing.startup_s (engine start to round 1; bare: loop start "
                   "to round 1)",
        "bare": f"one process, sequential clients, torch intra-op threads = {os.cpu_count()}",
        "s_per_round": "steady-state wall seconds per round (rounds after the first), incl. server evaluation"})
    for name, overrides in SETTINGS.items():
        args = [*COMMON, *overrides, f"num_rounds={rounds}"]
        bare_metrics, bare_rss, _ = run_bare(args)
        bare_s = steady(bare_metrics)
        clients = 0
        tiny = name.startswith("digits-mlp")  # tiny work: the figure is the platform's own cost
        for variant, engine in (("corolla", "engine=ray"), ("corolla-inline", "engine=inline")):
            sim = run_corolla([*args, engine])
            clients = int(sim.metrics[-1]["num_replies"])
            sim_s = steady(sim.metrics)
            extra = {"ms_per_client_round": [1000 * s / clients for s in sim_s]} if tiny else {}
            report.add(name, variant, s_per_round=sim_s, peak_rss_mb=sim.peak_rss_mb,
                       final_accuracy=sim.metrics[-1]["accuracy"],
                       ratio_to_bare=statistics.fmean(sim_s) / statistics.fmean(bare_s), **extra)
        bare_extra = {"ms_per_client_round": [1000 * s / clients for s in bare_s]} if tiny and clients else {}
        report.add(name, "bare", s_per_round=bare_s, peak_rss_mb=bare_rss,
                   final_accuracy=bare_metrics[-1]["accuracy"], ratio_to_bare=1.0, **bare_extra)
    startup_rows(report, repeats=1 if quick else 3)
    clients = SCALE_CLIENTS[quick]
    scale = run_corolla([*COMMON, *SCALE, f"task.num_clients={clients}", f"strategy.fraction_train={10 / clients}",
                         "num_rounds=2" if quick else "num_rounds=3"], timeout=3600)
    report.add(f"fmnist-mlp/num_clients={clients}", "corolla", s_per_round=steady(scale.metrics),
               peak_rss_mb=scale.peak_rss_mb, first_round_s=scale.metrics[0]["wall_s"],
               run_wall_s=scale.wall_s, virtual_clients=clients)
    return report
