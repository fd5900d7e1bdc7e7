"""The run directory: created with its resolved config.yaml before the first round."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def prepare_run_dir(path: Path, cfg: dict[str, Any]) -> None:
    """Create the run directory and write config.yaml (kept as is when resuming)."""
    path.mkdir(parents=True, exist_ok=True)
    config_file = path / "config.yaml"
    if not config_file.exists():
        config_file.write_text(yaml.safe_dump(cfg, sort_keys=False))


def load_run_config(path: Path) -> dict[str, Any]:
    """The resolved config a run directory was made with."""
    config_file = path / "config.yaml"
    if not config_file.exists():
        raise FileNotFoundError(f"resume={path}: no config.yaml there; is it a corolla run directory?")
    return yaml.safe_load(config_file.read_text())
