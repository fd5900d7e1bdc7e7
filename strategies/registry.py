"""Strategy registry: built-in strategies by name, third-party ones via the `corolla.strategies` entry points."""

from __future__ import annotations

import importlib
import inspect
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from strategies.base import StrategyDef

ENTRY_POINT_GROUP = "corolla.strategies"

BUILTIN: dict[str, str] = {
    "fedavg": "strategies.fedavg:STRATEGY",
    "fedprox": "strategies.fedprox:STRATEGY",
    "fot": "strategies.fot:STRATEGY",
    "ggeur": "strategies.ggeur:STRATEGY",
    "creamfl": "strategies.creamfl:STRATEGY",
}

# Config keys that configure corolla itself, not the server half's constructor.
RESERVED_KEYS = frozenset({"name", "client"})


class StrategyConfigError(ValueError):
    """A strategy config that cannot work; the message names the key and the fix."""


def _load(target: str) -> StrategyDef:
    module_name, _, attr = target.partition(":")
    obj = getattr(importlib.import_module(module_name), attr or "STRATEGY")
    if not isinstance(obj, StrategyDef):
        raise TypeError(f"{target} is a {type(obj).__name__}, expected a strategies.StrategyDef")
    return obj


@cache
def _plugin_targets() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_strategies() -> dict[str, str]:
    """Every strategy name mapped to where it comes from (built-in, or the plugin's target)."""
    found = {name: "built-in" for name in BUILTIN}
    for name, target in _plugin_targets().items():
        found.setdefault(name, f"plugin {target}")
    return dict(sorted(found.items()))


@cache
def get_strategy(name: str) -> StrategyDef:
    """The strategy registered under `name`."""
    target = BUILTIN.get(name) or _plugin_targets().get(name)
    if target is None:
        raise StrategyConfigError(
            f"unknown strategy.name={name!r}; valid choices: {', '.join(available_strategies())} "
            f"(third-party strategies register under the {ENTRY_POINT_GROUP!r} entry-point group)"
        )
    definition = _load(target)
    if definition.name != name:
        raise StrategyConfigError(f"{target} registers as {name!r} but its StrategyDef is named {definition.name!r}")
    return definition


def server_kwargs(strategy_cfg: dict[str, Any]) -> dict[str, Any]:
    """The server half's constructor arguments: the strategy config minus corolla's own keys."""
    return {k: v for k, v in strategy_cfg.items() if k not in RESERVED_KEYS}


def parse_strategy_config(strategy_cfg: dict[str, Any]) -> Any:
    """The strategy section as the strategy's typed config (None for a strategy without one)."""
    definition = get_strategy(str(strategy_cfg.get("name")))
    if definition.config is None:
        return None
    return definition.config.parse(strategy_cfg, prefix="strategy")


def check_strategy_config(strategy_cfg: dict[str, Any]) -> StrategyDef:
    """Fail before any work when the strategy is unknown or its config has keys it cannot take."""
    definition = get_strategy(str(strategy_cfg.get("name")))
    if definition.config is not None:
        parse_strategy_config(strategy_cfg)
        return definition
    accepted, takes_any = _accepted_keys(definition.server)
    valid = sorted(accepted)
    for key in server_kwargs(strategy_cfg):
        if not takes_any and key not in accepted:
            raise StrategyConfigError(
                f"strategy.{key} is not a parameter of {definition.server.__name__} "
                f"(strategy {definition.name!r}); valid keys: {', '.join(valid)}"
            )
    return definition


def _accepted_keys(cls: type) -> tuple[set[str], bool]:
    """Keyword arguments a class's constructor accepts, following **kwargs up the MRO."""
    accepted: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass is object:
            continue
        params = inspect.signature(vars(klass)["__init__"]).parameters
        accepted.update(k for k, p in params.items() if k != "self" and p.kind not in
                        (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL))
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return accepted, False
    return accepted, True


def build_server_strategy(strategy_cfg: dict[str, Any]) -> Any:
    """Construct the server half from its config (keyword arguments)."""
    definition = check_strategy_config(strategy_cfg)
    if definition.config is not None:
        return definition.server(config=parse_strategy_config(strategy_cfg))
    return definition.server(**server_kwargs(strategy_cfg))


def all_message_types() -> set[str]:
    """Every message type some registered strategy's client half handles."""
    types: set[str] = set()
    for name in available_strategies():
        try:
            types.update(get_strategy(name).client.message_types)
        except Exception:  # a broken plugin must not take the built-ins down with it
            continue
    return types


def plugin_conf_dirs() -> list[Path]:
    """Config trees shipped by plugin packages (a `conf/strategy/<name>.yaml` beside their module)."""
    dirs: list[Path] = []
    for target in _plugin_targets().values():
        try:
            module = importlib.import_module(target.partition(":")[0])
        except Exception:
            continue
        here = Path(module.__file__ or "").resolve().parent
        for candidate in (here / "conf", here.parent / "conf"):
            if (candidate / "strategy").is_dir() and candidate not in dirs:
                dirs.append(candidate)
                break
    return dirs
