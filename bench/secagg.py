"""secagg: what secure aggregation costs (`corolla bench secagg`): accuracy, uplink and seconds per round.

Settings (each with and without secure aggregation, at 0 % and 20 % dropout after sharing):
- `fedavg/fmnist-dirichlet`: the default experiment (FedAvg, Fashion-MNIST, Dirichlet 0.3, the small
  CNN, 20 clients, 10 sampled per round);
- `fot/permuted-fmnist`: FOT's headline continual setting (its tuned config), whose task-end
  sketches go through a second secure sum;
- `ggeur/digit-domains`: GGEUR on digit-domains (effnet-lite0 features, PCA to 128 dimensions, the
  `domains` family of conf/bench/ggeur.yaml) with 12 clients, three per domain (with one client per
  domain its prototypes would be that client's class means, which secure aggregation cannot hide),
  whose statistics phase goes through two secure sums (the PCA sketch, then the class sums);
- `fedavg/100-clients`: 100 clients sampled in one round (digits, MLP), for the uplink ratio at that
  size (SecAgg+'s k-neighbour graph, k = 21).
Dropout: the chosen clients (20 % of each round's training messages, seeded) compute their reply
and never send it, i.e. they leave after the share step; plain runs lose the same clients.
`--quick`: fewer rounds and one seed, every setting and variant.

Metrics per row: `accuracy` (final test accuracy; FOT: the continual ACC), `uplink_per_client`
(bytes a sampled client sends per round, every protocol step included), `lost_replies` (training
replies the dropout removed, over the run), `s_per_round` (wall
seconds per round on the in-process grid: clients run one after another, so this is the sum of
every client's and the server's time). Rows of `secagg` add `uplink_ratio` (to the plain run of
the same setting and seed) and `extra_s_per_round`.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

from bench import inline
from bench.report import BenchReport

SETTINGS: dict[str, list[str]] = {
    "fedavg/fmnist-dirichlet": ["strategy=fedavg", "task=fmnist-dirichlet", "model=cnn"],
    "fot/permuted-fmnist": ["strategy=fot", "task=permuted-fmnist"],
    "ggeur/digit-domains": ["strategy=ggeur", "task=digit-domains", "task.num_clients=12",
                            "task.features=effnet-lite0", "model=linear", "strategy.reduce=pca",
                            "strategy.reduce_dim=128", "train.lr=0.03", "train.batch_size=128",
                            "num_rounds=10"],
    "fedavg/100-clients": ["strategy=fedavg", "task=digits", "model=mlp", "task.num_clients=100",
                           "strategy.fraction_train=1.0", "num_rounds=1"],
}
QUICK: dict[str, list[str]] = {
    "fedavg/fmnist-dirichlet": ["num_rounds=3"],
    "fot/permuted-fmnist": ["num_rounds=10"],
    "ggeur/digit-domains": ["num_rounds=3"],
    "fedavg/100-clients": [],
}
DROPOUTS = (0, 20)
VARIANTS = {"plain": [], "secagg": ["secagg=true"]}
COMMON = ["progress=false", "plots=false", "checkpoint_every=100000"]


def one_run(overrides: list[str]) -> dict[str, float]:
    """One run (in a worker process) with `bench.dropout=<percent>` honoured; its metrics."""
    percent = next((int(o.split("=", 1)[1]) for o in overrides if o.startswith("bench.dropout=")), 0)
    overrides = [o for o in overrides if not o.startswith("bench.dropout=")]
    seed = next((int(o.split("=", 1)[1]) for o in overrides if o.startswith("seed=")), 0)
    restore = _drop_train_replies(percent, seed) if percent else None
    try:
        with tempfile.TemporaryDirectory(prefix="corolla-secagg-") as tmp:
            started = time.perf_counter()
            summary, records, _ = inline.run_inline(overrides, Path(tmp) / "run")
            wall = time.perf_counter() - started
    finally:  # a worker process runs the next job too: its grid must be the plain one again
        if restore is not None:
            restore()
    rounds = len(records)
    sampled = sum(float(r.get("num_replies", 0)) + float(r.get("num_failures", 0)) for r in records) or 1.0
    accuracy = (summary.get("continual") or {}).get("acc", summary["final"]["accuracy"])
    return {"accuracy": float(accuracy),
            "uplink_per_client": float(summary["communication"]["uplink_bytes"]) / sampled,
            "s_per_round": wall / max(rounds, 1),
            "lost_replies": float(sum(r.get("num_failures", 0) for r in records))}


def _drop_train_replies(percent: int, seed: int) -> Callable[[], None]:
    """Clients chosen per round (seeded) compute their training reply and never send it; returns the undo."""
    from strategies.base import derive_seed  # noqa: PLC0415 - worker-only patch
    from simulation.inline import InlineGrid  # noqa: PLC0415

    original = InlineGrid.send_and_receive

    def send_and_receive(self: Any, messages: Any, *, timeout: float | None = None) -> list[Any]:
        messages = list(messages)
        replies = list(original(self, messages, timeout=timeout))
        train = [m for m in messages if m.metadata.message_type == "train"]
        if not train:
            return replies
        rnd = int(train[0].content["config"].get("server-round", 0))
        ranked = sorted(train, key=lambda m: derive_seed(seed, rnd, m.metadata.dst_node_id, "bench-dropout"))
        gone = {m.metadata.dst_node_id for m in ranked[: round(len(train) * percent / 100)]}
        return [r for r in replies if r.metadata.src_node_id not in gone]

    InlineGrid.send_and_receive = send_and_receive  # type: ignore[method-assign]

    def restore() -> None:
        InlineGrid.send_and_receive = original  # type: ignore[method-assign]

    return restore


def run(quick: bool) -> BenchReport:
    seeds = [0] if quick else [0, 1, 2]
    jobs = []
    for setting, overrides in SETTINGS.items():
        extra = QUICK[setting] if quick else []
        for percent in DROPOUTS:
            for variant, flags in VARIANTS.items():
                for seed in seeds:
                    jobs.append(((setting, percent, variant, seed),
                                 [*overrides, *extra, *flags, *COMMON, f"seed={seed}", f"bench.dropout={percent}"]))
    results = inline.run_many(one_run, jobs, workers=inline.default_workers(), label="secagg",
                              shown=("accuracy", "uplink_per_client", "s_per_round"))
    report = BenchReport("secagg", quick, setting={
        "engine": "inline (corolla's ServerApp/ClientApp on an in-process grid, clients one after another)",
        "seeds": seeds, "dropout": "the chosen clients leave after sharing; plain runs lose the same clients",
        "failures": inline.failures(results)})
    for setting in SETTINGS:
        for percent in DROPOUTS:
            plain = [results.get((setting, percent, "plain", s)) for s in seeds]
            for variant in VARIANTS:
                got = [results.get((setting, percent, variant, s)) for s in seeds]
                ok = [g for g in got if isinstance(g, dict)]
                row: dict[str, Any] = {k: [g[k] for g in ok] for k in ("accuracy", "uplink_per_client", "s_per_round",
                                                                      "lost_replies")}
                if variant == "secagg":
                    pairs = [(g, p) for g, p in zip(got, plain) if isinstance(g, dict) and isinstance(p, dict)]
                    row["uplink_ratio"] = [g["uplink_per_client"] / p["uplink_per_client"] for g, p in pairs]
                    row["extra_s_per_round"] = [g["s_per_round"] - p["s_per_round"] for g, p in pairs]
                    row["accuracy_gap"] = [g["accuracy"] - p["accuracy"] for g, p in pairs]
                report.add(f"{setting}/drop={percent}", variant, **row)
    return report


def main() -> None:  # python -m bench.secagg [--quick]
    import sys

    report = run(quick="--quick" in sys.argv)
    print(report.table())
    print(json.dumps({"rows": len(report.rows)}))


if __name__ == "__main__":
    main()
