"""The typed root of corolla's config: top-level keys and the shared train/evaluate/failures/tracking sections.

The strategy, task, model and engine sections are checked by their own owners (registry, data,
models, engine); this module refuses unknown or mistyped keys everywhere else, e.g. Hydra's
`+num_round=3` or `num_rounds=abc`.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Mapping

from conf.errors import ConfigError
from conf.typed import Section, between

# Top-level keys whose sections are checked elsewhere.
OWNED = frozenset({"strategy", "task", "model", "engine", "tuned", "attack", "system", "privacy"})  # attack: strategies.attacks; system: server/system/config.py; privacy: strategies.privacy


@dataclass(frozen=True)
class TrainSection(Section):
    IGNORED: ClassVar[frozenset[str]] = frozenset()
    epochs: int = field(metadata=between(1))
    batch_size: int = field(metadata=between(1))
    lr: float = field(metadata=between(0, lo_open=True))
    momentum: float = field(metadata=between(0))
    weight_decay: float = field(metadata=between(0))
    optimizer: Literal["sgd", "adam", "adamw"]
    max_steps: int | None = field(default=None, metadata=between(1))


@dataclass(frozen=True)
class EvaluateSection(Section):
    IGNORED: ClassVar[frozenset[str]] = frozenset()
    batch_size: int = field(metadata=between(1))
    split: Literal["test", "val"]
    where: Literal["server", "clients", "both"]
    every: int = field(metadata=between(1))


@dataclass(frozen=True)
class FailuresSection(Section):
    IGNORED: ClassVar[frozenset[str]] = frozenset({"bounds"})  # server/bounds.py parses and checks it
    max_fraction: float = field(metadata=between(0, 1))
    max_num_examples: int = field(metadata=between(1))


@dataclass(frozen=True)
class TrackingSection(Section):
    IGNORED: ClassVar[frozenset[str]] = frozenset()
    tensorboard: bool
    mlflow: bool
    mlflow_uri: str | None = None
    mlflow_experiment: str = "corolla"


@dataclass(frozen=True)
class RootConfig(Section):
    IGNORED: ClassVar[frozenset[str]] = OWNED
    seed: int = field(metadata=between(0))
    num_rounds: int = field(metadata=between(1))
    out_dir: str
    resume: str | None
    device: Literal["auto", "cpu", "cuda"]
    train: Mapping[str, Any]
    evaluate: Mapping[str, Any]
    failures: Mapping[str, Any]
    tracking: Mapping[str, Any]
    secagg: bool
    secure_aggregation: Mapping[str, Any]   # parsed by strategies.secagg.config when secagg=true
    progress: bool
    verbose: bool
    plots: bool
    checkpoint_every: int = field(metadata=between(1))


SECTIONS: dict[str, type[Section]] = {"train": TrainSection, "evaluate": EvaluateSection,
                                      "failures": FailuresSection, "tracking": TrackingSection}


def check_root(cfg: Mapping[str, Any]) -> None:
    """Refuse unknown, missing or mistyped keys outside the strategy/task/model/engine sections."""
    fields = {f.name for f in dataclasses.fields(RootConfig)}
    for key in cfg:
        if key not in fields and key not in OWNED:
            raise ConfigError(f"{key} is not a corolla setting{_did_you_mean(key, fields | OWNED)}; "
                              f"remove it (top-level keys: {', '.join(sorted(fields))})", key=key)
    try:
        RootConfig.parse(cfg, prefix="")
    except ConfigError as err:  # top-level keys have no section prefix: ".seed" -> "seed"
        key = (err.key or "").lstrip(".")
        raise ConfigError(str(err).lstrip("."), key=key) from None
    for name, section in SECTIONS.items():
        section.parse(cfg[name], prefix=name)


def _did_you_mean(key: str, names: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(names), n=1)
    return f" (did you mean {close[0]}?)" if close else ""
