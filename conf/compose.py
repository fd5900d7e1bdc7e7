"""One resolved config for both doors: `corolla run` passes it as JSON, `flwr run .` as Hydra overrides."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Mapping

import yaml

# The config tree is this package's own directory (config.yaml and the strategy/, task/, ... groups).
CONF_DIR = Path(os.environ.get("COROLLA_CONF_DIR", Path(__file__).resolve().parent))

# The entry-point group third-party strategies register under (the registry reads it too).
STRATEGY_ENTRY_POINTS = "corolla.strategies"

# Keys of Flower's run_config that carry corolla's config.
CONFIG_JSON_KEY = "config-json"
OVERRIDES_KEY = "overrides"
RUN_DIR_KEY = "run-dir"


def search_path_overrides(overrides: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Add plugin packages' config trees to Hydra's search path (unless the user set it)."""
    if any(o.lstrip("+").startswith("hydra.searchpath") for o in overrides):
        return []
    dirs = plugin_conf_dirs()
    return [f"hydra.searchpath=[{','.join('file://' + str(d) for d in dirs)}]"] if dirs else []


def compose(overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Compose conf/ with Hydra overrides into a plain, resolved dict (no `hydra` section)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    overrides = [*overrides, *search_path_overrides(overrides)]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None, job_name="corolla"):
        cfg = hydra_compose(config_name="config", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def plugin_conf_dirs() -> list[Path]:
    """Config trees shipped by plugin packages (a `conf/strategy/<name>.yaml` beside their module).

    Found from the entry points' module files without importing the strategy modules.
    """
    dirs: list[Path] = []
    for ep in entry_points(group=STRATEGY_ENTRY_POINTS):
        try:
            spec = importlib.util.find_spec(ep.value.partition(":")[0])
        except (ImportError, ValueError):
            continue
        if spec is None or not spec.origin:
            continue
        here = Path(spec.origin).resolve().parent
        for candidate in (here / "conf", here.parent / "conf"):
            if (candidate / "strategy").is_dir() and candidate not in dirs:
                dirs.append(candidate)
                break
    return dirs


def strategy_yaml(name: str) -> dict[str, Any]:
    """The keys of `conf/strategy/<name>.yaml` (a plugin's own tree included; {} if there is none).

    Entries of the file's Hydra `defaults` list that name files of the same group come first,
    as Hydra composes them (fedprox.yaml starts from fedavg.yaml).
    """
    for root in (CONF_DIR, *plugin_conf_dirs()):
        path = root / "strategy" / f"{name}.yaml"
        if path.is_file():
            loaded = yaml.safe_load(path.read_text()) or {}
            keys: dict[str, Any] = {}
            for entry in loaded.pop("defaults", None) or []:
                if isinstance(entry, str) and entry != "_self_":
                    keys.update(strategy_yaml(entry))
            return {**keys, **loaded}
    return {}


@lru_cache(maxsize=8)
def _from_json(text: str) -> dict[str, Any]:
    return json.loads(text)


@lru_cache(maxsize=8)
def _from_overrides(text: str) -> dict[str, Any]:
    return compose(shlex.split(text))


def config_from_run_config(run_config: Mapping[str, Any]) -> dict[str, Any]:
    """corolla's resolved config from a Flower run_config (cached: clients call this per message).

    Callers must not mutate the returned dict.
    """
    text = str(run_config.get(CONFIG_JSON_KEY, "") or "")
    if text:
        return _from_json(text)
    return _from_overrides(str(run_config.get(OVERRIDES_KEY, "") or ""))


def to_run_config(cfg: Mapping[str, Any], run_dir: Path) -> dict[str, str]:
    """The run_config entries that carry a resolved config to the ServerApp and ClientApps."""
    return {CONFIG_JSON_KEY: json.dumps(cfg, sort_keys=True), OVERRIDES_KEY: "", RUN_DIR_KEY: str(run_dir)}
