"""The run directory: config.yaml written before the first round, atomic writes, metrics.jsonl reading."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from conf.errors import ConfigError

FLOWER_RUN = "flower-run.json"
RUN_LOG = "run.log"


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write `path` so that a kill at any moment leaves either the old file or the new one, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems do not sync directories
        pass
    finally:
        os.close(fd)


def prepare_run_dir(path: Path, cfg: dict[str, Any]) -> None:
    """Create the run directory and write config.yaml (kept as is when resuming)."""
    path.mkdir(parents=True, exist_ok=True)
    config_file = path / "config.yaml"
    if not config_file.exists():
        write_config(path, cfg)


def write_config(path: Path, cfg: dict[str, Any]) -> None:
    """(Re)write a run directory's config.yaml."""
    write_atomic(path / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))


def load_run_config(path: Path) -> dict[str, Any]:
    """The resolved config a run directory was made with."""
    config_file = path / "config.yaml"
    if not path.is_dir():
        raise ConfigError(f"resume={path}: no such directory; pass the run directory that "
                          f"`corolla run` printed (run dir: ...)", key="resume")
    if not config_file.exists():
        overrides = path / ".hydra" / "overrides.yaml"
        if overrides.exists():  # made by `corolla run`, killed before it wrote config.yaml
            args = " ".join(str(o) for o in (yaml.safe_load(overrides.read_text()) or []))
            raise ConfigError(f"resume={path}: the run stopped before it wrote config.yaml (before round 1); "
                              f"start it again: corolla run {args}", key="resume")
        raise ConfigError(f"resume={path}: no config.yaml there; is it a corolla run directory? "
                          f"(run directories are listed by `corolla runs ls`)", key="resume")
    cfg = yaml.safe_load(config_file.read_text())
    if not isinstance(cfg, dict):
        raise ConfigError(f"resume={path}: config.yaml is not a corolla config", key="resume")
    return cfg


def read_metrics(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The records of a metrics.jsonl, and whether a torn (half-written) last line was left out.

    Only the last line can be torn (a kill mid-append); a bad line elsewhere is real corruption.
    """
    if not path.exists():
        return [], False
    lines = path.read_text(errors="replace").split("\n")
    records: list[dict[str, Any]] = []
    torn = False
    body = [(i, line) for i, line in enumerate(lines) if line.strip()]
    for i, line in body:
        last = i == body[-1][0]
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if last:
                torn = True
                continue
            raise ValueError(f"{path}:{i + 1}: not a JSON record ({err.msg}); the file is damaged") from None
    return records, torn


def write_metrics(path: Path, records: list[dict[str, Any]]) -> None:
    """Replace metrics.jsonl with `records`, atomically."""
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in records))


def record_flower_run(path: Path, run_id: int, overrides: str = "") -> logging.Handler:
    """Note Flower's run id in flower-run.json (one entry per submission: a resumed run gets a new id)
    and copy corolla's log records (warnings, rejected replies, failures) into run.log; returns the
    log handler to remove when the run ends."""
    record = path / FLOWER_RUN
    data = json.loads(record.read_text()) if record.exists() else {"run_ids": []}
    data["run_ids"].append(int(run_id))
    data["run_id"] = int(run_id)
    data.setdefault("overrides", overrides)  # what `corolla deploy resubmit` submits again
    record.write_text(json.dumps(data, indent=1) + "\n")
    with (path / RUN_LOG).open("a") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} Flower run {run_id} writes to {path}\n")
    handler = logging.FileHandler(path / RUN_LOG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("corolla").addHandler(handler)  # at the logger's own level: warnings and up
    return handler
