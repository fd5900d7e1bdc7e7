"""sim-overhead: corolla's simulation against a bare sequential PyTorch loop doing the same work."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
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


def steady(records: list[dict]) -> list[float]:
    """Per-round seconds after the first round (which pays for start-up)."""
    return [float(r["wall_s"]) for r in records[1:]]


def run_bare(overrides: list[str]) -> tuple[list[dict], float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bare.json"
        # All cores as torch threads (a bare loop's default); passive OpenMP waiting so that a
        # busy machine does not turn spin-waits into 10x slowdowns.
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "PASSIVE"}
        subprocess.run([sys.executable, "-m", "bench.bare_loop", "--out", str(out), *overrides],
                       cwd=REPO, env=env, check=True, timeout=3600)
        result = json.loads(out.read_text())
    return result["metrics"], float(result["peak_rss_mb"])


def run(quick: bool) -> BenchReport:
    rounds = 3 if quick else 6
    report = BenchReport("sim-overhead", quick, setting={
        "rounds": rounds, "steady_rounds": rounds - 1, "local_epochs": 1, "strategy": "fedavg",
        "corolla": "Flower simulation engine, Ray backend, 1 CPU per virtual client (2 actors on 2 cores)",
        "bare": f"one process, sequential clients, torch intra-op threads = {os.cpu_count()}",
        "s_per_round": "steady-state wall seconds per round (rounds after the first), incl. server evaluation"})
    for name, overrides in SETTINGS.items():
        args = [*COMMON, *overrides, f"num_rounds={rounds}"]
        sim = run_corolla(args)
        bare_metrics, bare_rss = run_bare(args)
        clients = int(sim.metrics[-1]["num_replies"])
        sim_s, bare_s = steady(sim.metrics), steady(bare_metrics)
        ratio = statistics.fmean(sim_s) / statistics.fmean(bare_s)
        extra = {}
        if name.startswith("digits-mlp"):  # tiny work: the figure is the platform's own cost
            extra = {"ms_per_client_round": [1000 * s / clients for s in sim_s]}
        report.add(name, "corolla", s_per_round=sim_s, peak_rss_mb=sim.peak_rss_mb,
                   final_accuracy=sim.metrics[-1]["accuracy"], ratio_to_bare=ratio, **extra)
        bare_extra = {"ms_per_client_round": [1000 * s / clients for s in bare_s]} if extra else {}
        report.add(name, "bare", s_per_round=bare_s, peak_rss_mb=bare_rss,
                   final_accuracy=bare_metrics[-1]["accuracy"], ratio_to_bare=1.0, **bare_extra)
    clients = SCALE_CLIENTS[quick]
    scale = run_corolla([*COMMON, *SCALE, f"task.num_clients={clients}", f"strategy.fraction_train={10 / clients}",
                         "num_rounds=2" if quick else "num_rounds=3"], timeout=3600)
    report.add(f"fmnist-mlp/num_clients={clients}", "corolla", s_per_round=steady(scale.metrics),
               peak_rss_mb=scale.peak_rss_mb, first_round_s=scale.metrics[0]["wall_s"],
               run_wall_s=scale.wall_s, virtual_clients=clients)
    return report
