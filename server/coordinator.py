"""Runs one experiment on a Flower grid: builds model, strategy and recorder, then Flower's rounds."""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Any, Callable

import torch
from flwr.app import ArrayRecord
from flwr.serverapp import Grid

from data import server_task
from models import build_model
from models.accel import pick_device
from conf.errors import ConfigError
from server.bounds import bounds_from_config, partition_size
from server.config_check import check_config, rounds_per_task
from server.federated import FederatedEvaluation
from server.grid import TrackedGrid, is_deployed
from server.guard import RoundGuard
from server.checkpoints import load_checkpoint, reconcile_metrics
from server.recorder import RunRecorder
from server.system import SystemModel, system_config
from server.tracking import open_sinks
from strategies import npy
from strategies.base import ServerEnv, derive_seed
from strategies.privacy import parse_privacy
from strategies.registry import build_server_strategy

log = logging.getLogger("corolla")


def run_federation(grid: Grid, cfg: dict[str, Any], run_dir: Path, *,
                   progress: Callable[[int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run every round of the configured experiment and return its summary."""
    check_config(cfg)
    npy.install()  # replies parsed with cached .npy headers: the same arrays, less time per reply
    run_dir.mkdir(parents=True, exist_ok=True)
    seed = int(cfg["seed"])
    task = server_task(cfg["task"], seed=seed)  # a task spec without samples when the sites hold the data

    def new_model() -> torch.nn.Module:
        return build_model(cfg["model"], task.input_shape, task.num_classes)

    env = ServerEnv(cfg=cfg, task=task, build_model=new_model, run_dir=run_dir,
                    rounds_per_task=rounds_per_task(cfg))
    torch.manual_seed(derive_seed(seed, "init"))
    arrays = ArrayRecord(new_model().state_dict())
    strategy = build_server_strategy(cfg["strategy"])
    if cfg.get("secagg"):
        from strategies.secagg.config import SecAggConfig
        from strategies.secagg.strategy import SecureAggregation

        strategy = SecureAggregation(strategy, config=SecAggConfig.parse(cfg["secure_aggregation"],
                                                                         prefix="secure_aggregation"))
    privacy = parse_privacy(cfg.get("privacy"))
    if privacy.active:  # Flower's DP wrapper around the server half (strategies/privacy/server.py)
        from strategies.privacy.server import PrivateAggregation

        strategy = PrivateAggregation(strategy, config=privacy)
    strategy.max_num_examples = int(cfg["failures"]["max_num_examples"])
    strategy.setup(env)
    arrays = strategy.initial_arrays(arrays)
    recorder = RunRecorder(run_dir, env, device=pick_device(str(cfg.get("device", "auto"))),
                           strategy=strategy, progress=progress)

    first_round = 1
    state = load_checkpoint(run_dir)
    if state is not None:
        arrays = ArrayRecord(state["model"])
        strategy.load_state_dict(state["strategy"])
        recorder.load_state(state["recorder"], last_round=int(state["round"]))
        first_round = int(state["round"]) + 1
        log.info("resuming %s after round %d", run_dir, state["round"])
    else:
        for note in reconcile_metrics(run_dir, None):
            log.warning("resume: %s", note)
    recorder.sinks = open_sinks(cfg, run_dir, first_round=first_round)

    num_rounds = int(cfg["num_rounds"])
    # Everything alive now (imported modules, the data, the models) lives for the whole run: frozen,
    # the collector's full passes skip it. They cost 0.1-0.25 s each on Ray's driver, one round in five.
    gc.freeze()
    try:
        if first_round <= num_rounds:
            tracked = TrackedGrid(grid)
            check_federation_size(tracked, task.num_clients)
            bounds = bounds_from_config(cfg, deployed=is_deployed(grid),
                                        declared=lambda node, rnd: partition_size(
                                            task, tracked.partition_of.get(node), env.task_of_round(rnd)))
            guard = RoundGuard(strategy, env=env, seed=seed, first_round=first_round,
                               max_failure_fraction=float(cfg["failures"]["max_fraction"]),
                               order_key=lambda node: tracked.partition_of.get(node, 1 << 62),
                               partition_of=tracked.partition_of.get, bounds=bounds, node_of=tracked.node_of,
                               system=SystemModel(system_config(cfg), seed=seed, num_clients=task.num_clients,
                                                  train=cfg["train"],
                                                  partition_of=lambda node: tracked.partition_of.get(node, 1 << 62)))
            recorder.attach(guard, tracked, strategy)
            if cfg.get("evaluate", {}).get("where", "server") != "server":
                guard.federated = recorder.federated = FederatedEvaluation(cfg)
            run = dict(grid=tracked, initial_arrays=arrays, num_rounds=num_rounds - first_round + 1,
                       timeout=float(cfg["engine"].get("timeout_s", 3600)), evaluate_fn=recorder.evaluate_fn)
            if getattr(strategy, "asynchronous", False):   # FedBuff: no synchronous rounds
                from server.system.asynchronous import run_async

                run_async(guard, **run, real_order=is_deployed(grid))
            else:
                guard.start(**run)
    except Exception as err:
        recorder.fail(err)
        raise
    finally:
        gc.unfreeze()  # a sweep's next job in this process must be able to collect this one
    return recorder.finish()


def check_federation_size(grid: TrackedGrid, num_clients: int) -> None:
    """Fail clearly when the SuperNodes hold partitions of a different split than the task's."""
    grid.get_node_ids()  # learns the partitions of the nodes connected now
    sizes = sorted(set(grid.num_partitions_of.values()))
    if sizes and sizes != [num_clients]:
        raise ConfigError(
            f"the SuperNodes split the data into {sizes} partitions but task.num_clients={num_clients}: "
            f"run one SuperNode per client (simulation: options.num-supernodes={num_clients}; "
            f"deployment: --node-config \"num-partitions={num_clients} partition-id=<i>\")"
        )
