"""Task configs: the named tasks of conf/task/*.yaml (their one source of defaults) into TaskConfig."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import conf
from conf.errors import ConfigError
from data.adapters.config import ADAPTERS, AdapterConfig, parse_adapter_config
from data.captioned_config import CAPTIONED, CaptionedConfig, parse_captioned_config
from data.catalogue import SOURCE_NAMES
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

TASK_DIR = Path(conf.__file__).resolve().parent / "task"
TASK_NAMES: tuple[str, ...] = tuple(sorted(p.stem for p in TASK_DIR.glob("*.yaml")))
# The keys every catalogue task (not captioned, not an adapter) has in its YAML file.
_KEYS = ("name", "dataset", "num_clients", "partition", "alpha", "shards_per_client",
         "min_partition_size", "val_fraction", "local_test_fraction", "features", "data_dir", "continual")
# Sources whose files task.data_dir can replace (the others are bundled or generated).
READS_DATA_DIR = ("fmnist",)


@functools.lru_cache(maxsize=None)
def task_defaults(name: str) -> dict[str, Any]:
    """The defaults of a named task: its conf/task/<name>.yaml minus Hydra's defaults list."""
    if name not in TASK_NAMES:
        raise ConfigError(
            f"task.name: unknown task {name!r}; choose one of: {', '.join(TASK_NAMES)}", key="task.name"
        )
    values = yaml.safe_load((TASK_DIR / f"{name}.yaml").read_text()) or {}
    values.pop("defaults", None)
    return values


def reads_data_dir(task_cfg: Mapping[str, Any]) -> bool:
    """True when the task reads task.data_dir (a node's data-dir is passed on only to such tasks)."""
    name = task_cfg.get("name")
    dataset = task_cfg.get("dataset") or (task_defaults(name).get("dataset") if name in TASK_NAMES else None)
    return dataset in (*READS_DATA_DIR, "imagefolder")


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
    local_test_fraction: float
    features: str
    data_dir: str | None
    continual: ContinualConfig | None


def parse_task_config(cfg: Mapping[str, Any]) -> TaskConfig | CaptionedConfig | AdapterConfig:
    """Validate a task config (keys missing from it take the named task's YAML defaults).

    Raises ConfigError naming the key and its valid choices. Checks nothing that needs data.
    """
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"task: expected a mapping of task keys, got {type(cfg).__name__}")
    name = cfg.get("name")
    defaults = task_defaults(name)
    if name == CAPTIONED:
        return parse_captioned_config(cfg)
    merged = {**defaults, **dict(cfg)}
    if merged.get("dataset") in ADAPTERS:
        return parse_adapter_config(merged)
    unknown = sorted(set(cfg) - set(_KEYS))
    if unknown:
        raise ConfigError(f"task.{unknown[0]}: unknown key; valid keys: {', '.join(_KEYS)}",
                          key=f"task.{unknown[0]}")

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
    if data_dir is not None and dataset not in READS_DATA_DIR:
        raise ConfigError(
            f"task.data_dir={data_dir!r}: task {name} ({dataset}) does not read files, so this "
            "directory would be ignored; remove task.data_dir, or bring your own data with "
            "task=imagefolder task.data_dir=<root with one folder per class> (or task=tabular, task=hf)",
            key="task.data_dir")
    continual = _continual(merged["continual"], defaults["continual"], dataset)
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
        local_test_fraction=_fraction(merged, "local_test_fraction"),
        features=features,
        data_dir=data_dir,
        continual=continual,
    )


def _fraction(cfg: Mapping[str, Any], key: str) -> float:
    value = _number(cfg, key)
    if not 0 <= value < 1:
        raise ConfigError(f"task.{key}: must be in [0, 1), got {value}", key=f"task.{key}")
    return value


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
