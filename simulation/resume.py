"""`corolla run resume=<dir>`: the run's own config, the overrides a resume may take, and its crash state."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conf.errors import ConfigError
from server.checkpoints import load_checkpoint, reconcile_metrics
from server.rundir import load_run_config
from server.summary import read_summary

# Keys a resumed run may take from the command line: they do not change the rounds already run.
DISPLAY = ("progress", "verbose", "plots", "tracking", "checkpoint_every", "engine")
IGNORED = ("resume", "hydra")


@dataclass
class ResumePlan:
    """What a resume will do: its config, whether it extends the run, and what it found on disk."""

    run_dir: Path
    cfg: dict[str, Any]
    extended_from: int | None = None     # the run's num_rounds before num_rounds=M extended it
    done_round: int = 0                  # the last checkpointed round
    complete: bool = False               # finished already: nothing to run
    notes: list[str] = field(default_factory=list)


def override_keys(overrides: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    """(key, override text) of each command-line override, e.g. ("num_rounds", "num_rounds=8")."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return [(o.key_or_group.lstrip("+~"), o.input_line or o.key_or_group) for o in parsed]


def resumed_config(run_dir: Path, composed: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> ResumePlan:
    """The config of resuming `run_dir`: its config.yaml, plus the overrides a resume allows.

    `composed` is conf/ composed with the same overrides (where the overrides' values come from).
    Any other override is refused naming the key and the reason: it would change rounds already run.
    """
    saved = load_run_config(run_dir)
    cfg = copy.deepcopy(saved)
    for key, value in composed.items():  # settings added to corolla after the run was made
        if key not in cfg and key in DISPLAY:
            cfg[key] = copy.deepcopy(value)
    plan = ResumePlan(run_dir=run_dir, cfg=cfg)
    for key, text in override_keys(overrides):
        root = key.split(".")[0]
        if root in IGNORED:
            continue
        new, old = _get(composed, key), _get(saved, key)
        if root in DISPLAY:
            _set(cfg, key, copy.deepcopy(new))
        elif key == "num_rounds":
            _extend(plan, saved, int(new))
        elif new != old:
            shown = old.get("name", old) if isinstance(old, dict) else old
            raise ConfigError(
                f"{text}: a resumed run keeps the settings it started with ({key}={shown!r} in "
                f"{run_dir / 'config.yaml'}); changing it would change the rounds already run. Start a "
                f"new run for another {key}; a resume takes only num_rounds (to extend) and "
                f"{', '.join(DISPLAY)}", key=key)
    return plan


def _extend(plan: ResumePlan, saved: dict[str, Any], num_rounds: int) -> None:
    old = int(saved["num_rounds"])
    if num_rounds == old:
        return
    if num_rounds < old:
        raise ConfigError(f"num_rounds={num_rounds}: a resume can extend a run, not shorten it "
                          f"(it has num_rounds={old}); start a new run for fewer rounds", key="num_rounds")
    if (saved.get("task") or {}).get("continual"):
        raise ConfigError(f"num_rounds={num_rounds}: a continual run cannot be extended (each task's "
                          f"share of rounds would change from what rounds 1..{old} used); start a new run",
                          key="num_rounds")
    plan.cfg["num_rounds"] = num_rounds
    plan.extended_from = old


def inspect_run(plan: ResumePlan) -> ResumePlan:
    """Read the run's crash state: its last checkpoint, metrics.jsonl (reconciled to it), its summary."""
    state = load_checkpoint(plan.run_dir)
    plan.done_round = int(state["round"]) if state else 0
    plan.notes += reconcile_metrics(plan.run_dir, state)
    num_rounds = int(plan.cfg["num_rounds"])
    if state is None:
        plan.notes.append(f"{plan.run_dir}: no checkpoint yet; starting from round 1")
    summary = read_summary(plan.run_dir) or {}
    plan.complete = (plan.done_round >= num_rounds and summary.get("status") == "completed"
                     and int(summary.get("rounds", -1)) == plan.done_round)
    if plan.extended_from is not None:
        plan.notes.append(f"extending from {plan.extended_from} to {num_rounds} rounds (config.yaml updated)")
    elif 0 < plan.done_round < num_rounds:
        plan.notes.append(f"continuing after round {plan.done_round} of {num_rounds}")
    return plan


def complete_message(plan: ResumePlan) -> str:
    n = plan.done_round
    return f"resume: {plan.run_dir} is complete at round {n}; pass num_rounds=M (M > {n}) to extend it"


def _get(cfg: dict[str, Any], key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set(cfg: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = cfg
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
