"""Task configs: the catalogue of named tasks, their defaults, and validation into TaskConfig."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from data.captioned_config import CAPTIONED, CAPTIONED_DEFAULTS, CaptionedConfig, parse_captioned_config
from data.catalogue import SOURCE_NAMES
from data.errors import ConfigError
from data.features import FEATURE_ENCODERS, NO_FEATURES
from data.partition import PARTITION_SCHEMES

DIGIT_DOMAINS = "digit-domains"
DATASETS: tuple[str, ...] = (*SOURCE_NAMES, DIGIT_DOMAINS)
CONTINUAL_KINDS: tuple[str, ...] = ("permuted", "split")
SCENARIOS: dict[str, tuple[str, ...]] = {
    "permuted": ("domain-incremental",),
    "split": ("task-incremental", "class-incremental"),
}
NUM_CLASSES = 10  # every source here has 10 classes

_BASE: dict[str, Any] = {
    "name": None,
    "dataset": "digits",
    "num_clients": 10,
    "partition": "iid",
    "alpha": 0.5,
    "shards_per_client": 2,
    "min_partition_size": 2,
    "val_fraction": 0.1,
    "features": NO_FEATURES,
    "data_dir": None,
    "continual": None,
}
_PERMUTED = {"kind": "permuted", "num_tasks": 5, "scenario": "domain-incremental"}

# The catalogue; conf/task/<name>.yaml mirrors these exactly (a test keeps them in sync).
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    name: {**_BASE, "name": name, **overrides}
    for name, overrides in {
        "digits": {},
        "digits-dirichlet": {"partition": "dirichlet", "alpha": 0.5},
        "fmnist": {"dataset": "fmnist", "num_clients": 20},
        "fmnist-dirichlet": {
            "dataset": "fmnist",
            "num_clients": 20,
            "partition": "dirichlet",
            "alpha": 0.3,
        },
        "permuted-digits": {"num_clients": 20, "continual": _PERMUTED},
        "permuted-fmnist": {"dataset": "fmnist", "num_clients": 20, "continual": _PERMUTED},
        "split-fmnist": {
            "dataset": "fmnist",
            "num_clients": 20,
            "continual": {"kind": "split", "num_tasks": 5, "scenario": "task-incremental"},
        },
        DIGIT_DOMAINS: {"dataset": DIGIT_DOMAINS, "num_clients": 4},
    }.items()
}
TASK_DEFAULTS[CAPTIONED] = CAPTIONED_DEFAULTS  # paired image-caption data (data/captioned.py)
TASK_NAMES: tuple[str, ...] = tuple(TASK_DEFAULTS)


@dataclass(frozen=True)
class ContinualConfig:
    """How a dataset becomes a stream of tasks."""

    kind: str
    num_tasks: int
    scenario: str


@dataclass(frozen=True)
class TaskConfig:
    """A validated, hashable task config (the key of load_task's cache)."""

    name: str
    dataset: str
    num_clients: int
    partition: str
    alpha: float
    shards_per_client: int
    min_partition_size: int | None
    val_fraction: float
    features: str
    data_dir: str | None
    continual: ContinualConfig | None


def parse_task_config(cfg: Mapping[str, Any]) -> TaskConfig | CaptionedConfig:
    """Validate a task config (keys missing from it take the named task's defaults).

    Raises ConfigError naming the key and its valid choices. Checks nothing that needs data.
    """
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"task: expected a mapping of task keys, got {type(cfg).__name__}")
    name = cfg.get("name")
    if name not in TASK_DEFAULTS:
        raise ConfigError(
            f"task.name: unknown task {name!r}; choose one of: {', '.join(TASK_NAMES)}"
        )
    if name == CAPTIONED:
        return parse_captioned_config(cfg)
    unknown = sorted(set(cfg) - set(_BASE))
    if unknown:
        raise ConfigError(f"task.{unknown[0]}: unknown key; valid keys: {', '.join(_BASE)}")
    merged = {**TASK_DEFAULTS[name], **dict(cfg)}

    dataset = _choice(merged, "dataset", DATASETS)
    num_clients = _int(merged, "num_clients", minimum=1)
    if dataset == DIGIT_DOMAINS and num_clients % 4:
        raise ConfigError(
            f"task.num_clients: {DIGIT_DOMAINS} has 4 domains, so num_clients must be a multiple "
            f"of 4 (one client group per domain), got {num_clients}"
        )
    alpha = _number(merged, "alpha")
    if not alpha > 0:
        raise ConfigError(f"task.alpha: the Dirichlet concentration must be > 0, got {alpha}")
    val_fraction = _number(merged, "val_fraction")
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"task.val_fraction: must be in [0, 1), got {val_fraction}")
    features = merged["features"]
    if features not in FEATURE_ENCODERS:
        raise ConfigError(
            f"task.features: unknown encoder {features!r}; "
            f"registered: {', '.join(FEATURE_ENCODERS)}"
        )
    min_size = merged["min_partition_size"]
    data_dir = merged["data_dir"]
    if data_dir is not None and not isinstance(data_dir, str):
        raise ConfigError(f"task.data_dir: expected a directory path or null, got {data_dir!r}")
    continual = _continual(merged["continual"], TASK_DEFAULTS[name]["continual"], dataset)
    if continual and continual.kind == "permuted" and features != NO_FEATURES:
        raise ConfigError(
            "task.features: permuted tasks permute pixels, so they need features=none"
        )
    return TaskConfig(
        name=name,
        dataset=dataset,
        num_clients=num_clients,
        partition=_choice(merged, "partition", PARTITION_SCHEMES),
        alpha=alpha,
        shards_per_client=_int(merged, "shards_per_client", minimum=1),
        min_partition_size=None if min_size is None else _int(merged, "min_partition_size", 0),
        val_fraction=val_fraction,
        features=features,
        data_dir=data_dir,
        continual=continual,
    )


def _continual(
    value: Any, default: Mapping[str, Any] | None, dataset: str
) -> ContinualConfig | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(f"task.continual: expected null or a mapping, got {value!r}")
    value = dict(value)
    if default and value.get("kind", default["kind"]) == default["kind"]:
        value = {**default, **value}
    if dataset == DIGIT_DOMAINS:
        raise ConfigError(f"task.continual: {DIGIT_DOMAINS} is multi-domain; set continual: null")
    unknown = sorted(set(value) - {"kind", "num_tasks", "scenario"})
    if unknown:
        raise ConfigError(
            f"task.continual.{unknown[0]}: unknown key; valid keys: kind, num_tasks, scenario"
        )
    kind = _choice(value, "kind", CONTINUAL_KINDS, prefix="task.continual.")
    merged = {"num_tasks": 5, "scenario": SCENARIOS[kind][0], **value}
    num_tasks = _int(merged, "num_tasks", minimum=1, prefix="task.continual.")
    if kind == "split" and num_tasks > NUM_CLASSES:
        raise ConfigError(
            f"task.continual.num_tasks: split tasks need at least one class each; at most "
            f"{NUM_CLASSES}, got {num_tasks}"
        )
    scenario = _choice(merged, "scenario", SCENARIOS[kind], prefix="task.continual.")
    return ContinualConfig(kind, num_tasks, scenario)


def _choice(
    cfg: Mapping[str, Any], key: str, choices: tuple[str, ...], prefix: str = "task."
) -> str:
    value = cfg.get(key)
    if value not in choices:
        raise ConfigError(
            f"{prefix}{key}: unknown value {value!r}; choose one of: {', '.join(choices)}"
        )
    return value


def _int(cfg: Mapping[str, Any], key: str, minimum: int, prefix: str = "task.") -> int:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{prefix}{key}: must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _number(cfg: Mapping[str, Any], key: str) -> float:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"task.{key}: must be a number, got {value!r}")
    return float(value)
