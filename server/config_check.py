"""Validation of a resolved config before any work starts: each error names the key and the fix."""

from __future__ import annotations

from typing import Any

from conf.errors import ConfigError
from conf.root import check_root
from server.system.config import system_config
from strategies.privacy import check_privacy

__all__ = ["ConfigError", "check_config", "rounds_per_task"]


DEVICES = ("auto", "cpu", "cuda")
ENGINES = ("ray", "inline")


def check_config(cfg: dict[str, Any]) -> None:
    """Raise ConfigError (or the component's own ValueError) for a config that cannot run."""
    from data import check_task_config
    from models import check_model_config
    from strategies.registry import check_strategy_config

    for key in ("strategy", "task", "model", "engine", "train", "seed", "num_rounds"):
        if key not in cfg:
            raise ConfigError(f"the config has no '{key}' section; compose it from conf/ (corolla run ...)")
    check_root(cfg)  # types and ranges first: later checks may convert values
    definition = check_strategy_config(cfg["strategy"])
    if cfg.get("secagg"):
        _check_secagg(cfg, definition.server)
    check_attack(cfg)
    check_privacy(cfg)  # after the strategy: it names what a method sends outside the clipped update
    check_task_config(cfg["task"], seed=int(cfg["seed"]) if isinstance(cfg["seed"], int) else 0)
    if cfg["model"].get("name") == "custom":  # built and run on one batch of the task's shape
        from data import server_task

        task = server_task(cfg["task"], seed=int(cfg["seed"]) if isinstance(cfg["seed"], int) else 0)
        check_model_config(cfg["model"], task.input_shape, task.num_classes)
    else:
        check_model_config(cfg["model"])
    system_config(cfg)  # the `system` group (server/system/config.py)
    _check_number(cfg, "num_rounds", int(cfg["num_rounds"]) >= 1, "must be >= 1")
    _check_number(cfg, "seed", isinstance(cfg["seed"], int), "must be an integer")
    fraction = float(cfg["failures"]["max_fraction"])
    _check_number(cfg, "failures.max_fraction", 0.0 <= fraction <= 1.0, "must lie in [0, 1]")
    train = cfg["train"]
    _check_number(cfg, "train.epochs", int(train["epochs"]) >= 1, "must be >= 1")
    _check_number(cfg, "train.batch_size", int(train["batch_size"]) >= 1, "must be >= 1")
    _check_number(cfg, "train.lr", float(train["lr"]) > 0, "must be > 0")
    from server.federated import check_evaluate_config

    check_evaluate_config(cfg)
    if cfg["evaluate"].get("split", "test") not in ("test", "val"):
        raise ConfigError(f"evaluate.split={cfg['evaluate']['split']!r} is not one of test, val")
    if cfg.get("device", "auto") not in DEVICES:
        raise ConfigError(f"device={cfg['device']!r} is not one of {', '.join(DEVICES)}")
    if cfg["engine"].get("name") not in ENGINES:
        raise ConfigError(f"engine={cfg['engine'].get('name')!r} is unknown; valid choices: {', '.join(ENGINES)}")
    threads = cfg["engine"].get("client_threads")
    if threads is not None and not (isinstance(threads, int) and threads >= 1):
        raise ConfigError(f"engine.client_threads={threads!r} must be an integer >= 1, or null for the process's own")
    continual = cfg["task"].get("continual")
    if continual:
        tasks = int(continual["num_tasks"])
        if int(cfg["num_rounds"]) % tasks:
            raise ConfigError(
                f"num_rounds={cfg['num_rounds']} must be a multiple of task.continual.num_tasks={tasks} "
                f"(each task gets num_rounds / num_tasks rounds), e.g. num_rounds={tasks * max(1, int(cfg['num_rounds']) // tasks)}"
            )


def _check_secagg(cfg: dict[str, Any], server_half: type) -> None:
    from strategies.secagg.config import SecAggConfig
    from strategies.secagg.strategy import refusal

    if cfg["secagg"] is not True:
        raise ConfigError(f"secagg: expected true or false, got {cfg['secagg']!r}", key="secagg")
    SecAggConfig.parse(cfg.get("secure_aggregation") or {}, prefix="secure_aggregation")
    why = refusal(server_half, dict(cfg["strategy"]))
    if why:
        raise ConfigError(f"secagg=true cannot run with strategy={cfg['strategy']['name']}: {why}", key="secagg")


def _check_number(cfg: dict[str, Any], key: str, ok: bool, why: str) -> None:
    if not ok:
        section = cfg
        for part in key.split(".")[:-1]:
            section = section[part]
        raise ConfigError(f"{key}={section[key.split('.')[-1]]!r} {why}")


def rounds_per_task(cfg: dict[str, Any]) -> int:
    """Rounds each continual task gets (all rounds for a single task)."""
    continual = cfg["task"].get("continual")
    return int(cfg["num_rounds"]) // int(continual["num_tasks"]) if continual else int(cfg["num_rounds"])


def check_attack(cfg: dict[str, Any]) -> None:
    """An attack needs a strategy whose clients send weights (the weights client applies it)."""
    from strategies.attacks import parse_attack
    from strategies.registry import get_strategy

    if not parse_attack(cfg.get("attack")).active:
        return
    strategy = cfg["strategy"]
    name = str(strategy.get("base") or strategy["name"]) if strategy["name"] == "ggeur" else str(strategy["name"])
    if not get_strategy(name).client.applies_attacks:
        raise ConfigError(f"attack={cfg['attack']['name']} acts on the model weights clients send, but "
                          f"strategy={strategy['name']} does not send them: use attack=none with it")
