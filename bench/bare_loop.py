"""The same federated work as a corolla run, as a bare sequential PyTorch loop in one process.

It reproduces corolla's choices exactly (sampled partitions, per-client seeds, example-weighted
averaging, central evaluation), so the two give the same model; only the platform differs.
Usage: python -m bench.bare_loop --out FILE.json <hydra overrides>
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import time
from pathlib import Path
from typing import Any

import torch

from conf.compose import compose
from models.training import TrainConfig, evaluate, train_local
from data import load_task
from models import build_model
from strategies.base import derive_seed


def fedavg_rounds(cfg: dict[str, Any], timing: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """Run cfg's FedAvg rounds sequentially; one record (accuracy, wall_s) per round.

    timing (when given) gets startup_s: seconds from the call (data loading, model) to round 1.
    """
    begun = time.perf_counter()
    seed = int(cfg["seed"])
    task = load_task(cfg["task"], seed=seed)
    torch.manual_seed(derive_seed(seed, "init"))
    global_model = build_model(cfg["model"], task.input_shape, task.num_classes)
    global_state = {k: v.clone() for k, v in global_model.state_dict().items()}
    train_cfg = TrainConfig.from_mapping(cfg["train"])
    device = torch.device("cpu")
    n = task.num_clients
    per_round = max(int(n * float(cfg["strategy"]["fraction_train"])), min(int(cfg["strategy"].get("min_train_nodes", 2)), n))
    model = build_model(cfg["model"], task.input_shape, task.num_classes)
    test = task.test(0)
    records = []
    if timing is not None:
        timing["startup_s"] = time.perf_counter() - begun
    for rnd in range(1, int(cfg["num_rounds"]) + 1):
        started = time.perf_counter()
        random.seed(derive_seed(seed, rnd, "sample"))
        clients = sorted(random.sample(range(n), per_round))
        total, acc_state = 0, None
        for cid in clients:
            model.load_state_dict(global_state)
            split = task.client_train(cid, 0)
            result = train_local(model, split.x, split.y, train_cfg, device=device,
                                 seed=derive_seed(seed, rnd, cid, "train"))
            state = model.state_dict()
            weight = result.num_examples
            total += weight
            if acc_state is None:
                acc_state = {k: v.double() * weight for k, v in state.items()}
            else:
                for k, v in state.items():
                    acc_state[k] += v.double() * weight
        assert acc_state is not None
        global_state = {k: (v / total).to(global_state[k].dtype) for k, v in acc_state.items()}
        global_model.load_state_dict(global_state)
        res = evaluate(global_model, test.x, test.y, device=device, batch_size=int(cfg["evaluate"]["batch_size"]))
        records.append({"round": rnd, "accuracy": res.accuracy, "wall_s": time.perf_counter() - started})
    return records


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    args, overrides = parser.parse_known_args()
    timing: dict[str, float] = {}
    records = fedavg_rounds(compose(overrides), timing)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    args.out.write_text(json.dumps({"metrics": records, "peak_rss_mb": peak_mb, **timing}))


if __name__ == "__main__":
    main()
