"""Checkpoints of a run: written atomically, the last two kept, and the newest readable one loaded."""

from __future__ import annotations

import io
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from server.rundir import fsync_dir, read_metrics, write_metrics

log = logging.getLogger("corolla")

LAST = "checkpoints/last.pt"
PREVIOUS = "checkpoints/previous.pt"
FAULT_PAUSE_ENV = "COROLLA_FAULT_CHECKPOINT_PAUSE_S"   # tests only: seconds to hold a checkpoint write open


def partial_checkpoint(run_dir: Path) -> Path:
    """The temporary file a checkpoint is written to before its rename to last.pt."""
    last = run_dir / LAST
    return last.parent / f".{last.name}.tmp"


def save_checkpoint(run_dir: Path, payload: dict[str, Any]) -> None:
    """Write checkpoints/last.pt and keep the one before it as previous.pt.

    The new checkpoint is written whole to a temporary file (fsync) before the renames, so a kill
    at any moment leaves at least one complete checkpoint of the last two rounds.
    """
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    last, previous = run_dir / LAST, run_dir / PREVIOUS
    last.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_checkpoint(run_dir)
    with tmp.open("wb") as f:
        f.write(buffer.getvalue())
        f.flush()
        os.fsync(f.fileno())
    pause = os.environ.get(FAULT_PAUSE_ENV)
    if pause:  # fault injection for the kill tests: hold the write open so a kill lands inside it
        time.sleep(float(pause))
    if last.exists():
        last.replace(previous)
    tmp.replace(last)
    fsync_dir(last.parent)


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The newest complete checkpoint of a run directory, or None before its first one."""
    best: dict[str, Any] | None = None
    for leftover in (run_dir / LAST).parent.glob(".*.tmp"):  # a kill mid-write; the rename never came
        leftover.unlink(missing_ok=True)
    for name in (LAST, PREVIOUS):
        path = run_dir / name
        if not path.exists():
            continue
        try:
            state = torch.load(path, weights_only=False)
        except Exception as err:  # written atomically, so only outside damage gets here
            log.warning("%s cannot be read (%s); trying the one before it", path, err)
            continue
        if best is None or int(state["round"]) > int(best["round"]):
            best = state
    return best


def reconcile_metrics(run_dir: Path, state: dict[str, Any] | None) -> list[str]:
    """Make metrics.jsonl hold exactly the rounds of checkpoint `state`; return what was changed.

    A kill can leave a half-written last line, records of rounds after the last checkpoint (they
    run again) or, with an older checkpoint format, fewer records than the checkpoint has rounds.
    """
    path = run_dir / "metrics.jsonl"
    records, torn = read_metrics(path)
    notes: list[str] = []
    if torn:
        notes.append(f"{path}: dropped a half-written last line (the run was killed while writing it)")
    if state is None:
        if records or torn:
            notes.append(f"{path}: reset (no checkpoint yet, so the run starts again from round 1)")
            path.unlink()
        return notes
    last_round = int(state["round"])
    saved = state.get("recorder", {}).get("history")
    kept = list(saved) if saved is not None else [r for r in records if int(r["round"]) <= last_round]
    file_rounds = [int(r["round"]) for r in records]
    ahead = [r for r in file_rounds if r > last_round]
    if ahead:
        notes.append(f"{path}: dropped round(s) {_span(ahead)} recorded after the last checkpoint "
                     f"(round {last_round}); they run again")
    missing = sorted({int(r["round"]) for r in kept} - set(file_rounds))
    if missing:
        notes.append(f"{path}: restored round(s) {_span(missing)} from the checkpoint")
    if notes or [r for r in file_rounds if r <= last_round] != [int(r["round"]) for r in kept]:
        write_metrics(path, kept)
    return notes


def _span(rounds: list[int]) -> str:
    return str(rounds[0]) if len(rounds) == 1 else f"{rounds[0]}-{rounds[-1]}"
