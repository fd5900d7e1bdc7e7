"""One resolved config for both doors: `corolla run` passes it as JSON, `flwr run .` as Hydra overrides."""

from __future__ import annotations

import json
import os
import shlex
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

CONF_DIR = Path(os.environ.get("COROLLA_CONF_DIR", Path(__file__).resolve().parents[1] / "conf"))

# Keys of Flower's run_config that carry corolla's config.
CONFIG_JSON_KEY = "config-json"
OVERRIDES_KEY = "overrides"
RUN_DIR_KEY = "run-dir"


def search_path_overrides(overrides: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Add plugin packages' config trees to Hydra's search path (unless the user set it)."""
    from strategies.registry import plugin_conf_dirs

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
