"""Strategy registry: built-in strategies by name, third-party ones via the `corolla.strategies` entry points."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from conf.compose import STRATEGY_ENTRY_POINTS as ENTRY_POINT_GROUP
from conf.compose import plugin_conf_dirs, strategy_yaml
from conf.errors import ConfigError, first_line

if TYPE_CHECKING:  # strategies.base imports this module; the registry needs ClientHalf only as a type
    from strategies.base import ClientHalf

BUILTIN: dict[str, str] = {
    "fedavg": "strategies.fedavg:STRATEGY",
    "fedprox": "strategies.fedprox:STRATEGY",
    "fot": "strategies.fot:STRATEGY",
    "ggeur": "strategies.ggeur:STRATEGY",
    "creamfl": "strategies.creamfl:STRATEGY",
    "fedbuff": "strategies.fedbuff:STRATEGY",
}
# Flower's own strategies, each under its Flower name (strategies/flower.py).
BUILTIN.update({name: f"strategies.flower:{name.upper()}" for name in (
    "fedadam", "fedyogi", "fedadagrad", "fedavgm", "qfedavg", "fedmedian", "fedtrimmedavg", "krum",
    "multikrum", "bulyan")})


@dataclass(frozen=True)
class StrategyDef:
    """A registered strategy: its name, server half class, client half class and typed config.

    With ``config`` (a `conf.typed.Section` dataclass) the registry parses the strategy's YAML
    section into it before any engine starts, the server half is built as ``server(config=parsed)``
    and the client half reads the same dataclass as ``env.strategy_config``. Without it (older
    plugins) the section's keys are the server half's keyword arguments.
    """

    name: str
    server: type
    client: type[ClientHalf]
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    config: type | None = None


# Config keys that configure corolla itself, not the server half's constructor.
RESERVED_KEYS = frozenset({"name", "client"})

__all__ = ["ENTRY_POINT_GROUP", "RESERVED_KEYS", "StrategyDef", "all_message_types", "available_strategies",
           "build_server_strategy", "check_strategy_config", "get_strategy", "parse_strategy_config",
           "plugin_conf_dirs", "refresh", "server_kwargs"]


def _load(target: str) -> StrategyDef:
    module_name, _, attr = target.partition(":")
    obj = getattr(importlib.import_module(module_name), attr or "STRATEGY")
    if not isinstance(obj, StrategyDef):
        raise TypeError(f"{target} is a {type(obj).__name__}, expected a strategies.StrategyDef")
    return obj


@cache
def _plugin_targets() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def refresh() -> None:
    """Forget discovered plugins and loaded definitions (after a plugin was installed in-process)."""
    _plugin_targets.cache_clear()
    get_strategy.cache_clear()


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
        raise ConfigError(
            f"unknown strategy.name={name!r}; valid choices: {', '.join(available_strategies())} "
            f"(third-party strategies register under the {ENTRY_POINT_GROUP!r} entry-point group)",
            key="strategy.name")
    definition = _load(target)
    if definition.name != name:
        raise ConfigError(f"{target} registers as {name!r} but its StrategyDef is named {definition.name!r}; "
                          "make the entry point's name and StrategyDef.name equal", key="strategy.name")
    return definition


def server_kwargs(strategy_cfg: dict[str, Any]) -> dict[str, Any]:
    """The server half's constructor arguments: the strategy config minus corolla's own keys."""
    return {k: v for k, v in strategy_cfg.items() if k not in RESERVED_KEYS}


def parse_strategy_config(strategy_cfg: dict[str, Any]) -> Any:
    """The strategy section as the strategy's typed config (None for a strategy without one).

    A composed config holds every key; a partial section (built in code, or the base section GGEUR
    passes on) takes the missing keys from the strategy's YAML file, the one place defaults live.
    """
    name = str(strategy_cfg.get("name"))
    definition = get_strategy(name)
    if definition.config is None:
        return None
    required = {f.name for f in dataclasses.fields(definition.config) if f.name != definition.config.EXTRA
                and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    if not required <= set(strategy_cfg):
        strategy_cfg = {**strategy_yaml(name), **strategy_cfg}
    return definition.config.parse(strategy_cfg, prefix="strategy")


def check_strategy_config(strategy_cfg: dict[str, Any]) -> StrategyDef:
    """Fail before any engine starts when the strategy is unknown or its config cannot work.

    A typed config is parsed (unknown keys, types, choices, ranges). A strategy without one has its
    keys checked against the server half's constructor, which is then built once, so that its own
    refusals (a value out of range) surface here too, not after the engine has started.
    """
    definition = get_strategy(str(strategy_cfg.get("name")))
    if definition.config is not None:
        parse_strategy_config(strategy_cfg)
        return definition
    _construct(definition, strategy_cfg)
    return definition


def _construct(definition: StrategyDef, strategy_cfg: dict[str, Any]) -> Any:
    """The server half of a strategy without a typed config, from its keys as keyword arguments."""
    accepted, takes_any = _accepted_keys(definition.server)
    valid = sorted(accepted)
    for key in server_kwargs(strategy_cfg):
        if not takes_any and key not in accepted:
            raise ConfigError(
                f"strategy.{key} is not a parameter of {definition.server.__name__} "
                f"(strategy {definition.name!r}); valid keys: {', '.join(valid)}", key=f"strategy.{key}")
    try:
        return definition.server(**server_kwargs(strategy_cfg))
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:
        raise ConfigError(f"strategy {definition.name!r}: {definition.server.__name__} refuses this config: "
                          f"{first_line(err)}; fix the strategy section "
                          f"(conf/strategy/{definition.name}.yaml or the overrides)", key="strategy") from err


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
    """Construct the server half: ``server(config=parsed)``, or from keyword arguments without a typed config."""
    definition = get_strategy(str(strategy_cfg.get("name")))
    if definition.config is not None:
        return definition.server(config=parse_strategy_config(strategy_cfg))
    return _construct(definition, strategy_cfg)


def all_message_types() -> set[str]:
    """Every message type some registered strategy's client half handles (and secure aggregation's)."""
    from strategies.secagg.client import MESSAGE_TYPES as SECAGG_TYPES

    types: set[str] = set(SECAGG_TYPES)
    for name in available_strategies():
        try:
            types.update(get_strategy(name).client.message_types)
        except Exception:  # a broken plugin must not take the built-ins down with it
            continue
    return types
