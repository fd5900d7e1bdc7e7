"""`corolla bench chaos`: SIGKILL real `corolla run` processes at random moments and resume each time.

A chain starts a run, kills it (its whole process group: Ray too) at a random moment — during
start-up, after a random round, or while a checkpoint is being written — and continues it with
`corolla run resume=<dir>` and nothing else, until the run completes. It then checks that the
final model is bit-identical to an uninterrupted run's and that metrics.jsonl holds each round once.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench.report import BenchReport
from server.checkpoints import FAULT_PAUSE_ENV, LAST, partial_checkpoint

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "simulation.cli", "run"]
MOMENTS = ("startup", "round", "checkpoint")
# The in-process engine when corolla has one (no Ray start-up per resume), else Ray.
ENGINE = "inline" if (REPO / "conf" / "engine" / "inline.yaml").exists() else "ray"
TINY = ["task=digits", "model=mlp", "task.num_clients=4", "strategy.fraction_train=0.5", "progress=false",
        "plots=false", f"engine={ENGINE}"]


def env(*, pause_checkpoint: float = 0.0) -> dict[str, str]:
    out = dict(os.environ)
    out["PYTHONPATH"] = os.pathsep.join([str(REPO), *([out["PYTHONPATH"]] if out.get("PYTHONPATH") else [])])
    out.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    out["PYTHONUNBUFFERED"] = "1"
    if pause_checkpoint:
        out[FAULT_PAUSE_ENV] = str(pause_checkpoint)
    return out


def run_to_end(args: list[str], *, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`corolla run <args>` to completion (killed by its process group on timeout)."""
    proc = subprocess.Popen([*CLI, *args], cwd=REPO, env=env(), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"corolla run {' '.join(args)} exited {proc.returncode}:\n{out[-2000:]}\n{err[-4000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def rounds_recorded(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return path.read_text().count("\n") if path.exists() else 0


def kill_once(args: list[str], run_dir: Path, moment: str, rng: random.Random, *, num_rounds: int,
              startup_s: float, timeout: float = 600) -> bool:
    """Start `corolla run <args>` and SIGKILL it at `moment`; False if it finished first."""
    # Held-open checkpoint writes: 3 s so a "checkpoint" kill lands inside one; 0.5 s under "round" so
    # that tiny runs (rounds of milliseconds) cannot run past the target round between two polls.
    pause = {"checkpoint": 3.0, "round": 0.5}.get(moment, 0.0)
    tmp = partial_checkpoint(run_dir)
    proc = subprocess.Popen([*CLI, *args], cwd=REPO, env=env(pause_checkpoint=pause), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    start_rounds = rounds_recorded(run_dir)
    target = rng.randint(start_rounds + 1, max(start_rounds + 1, num_rounds - 1))
    delay = rng.uniform(0, startup_s) if moment == "startup" else rng.uniform(0, 0.2)
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            # Start-up ends when this process records its first round: kill then at the latest, so a
            # slow start-up estimate cannot turn a "startup" kill into a late one that leaves no rounds.
            if moment == "startup" and (time.monotonic() - started >= delay or rounds_recorded(run_dir) > start_rounds):
                break
            if moment == "round" and rounds_recorded(run_dir) >= target:
                while tmp.exists() and proc.poll() is None:   # the round's checkpoint: let it finish
                    time.sleep(0.01)
                time.sleep(delay)
                break
            if moment == "checkpoint" and tmp.exists():
                time.sleep(rng.uniform(0, pause / 2))
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"no {moment} kill point within {timeout}s")
        return proc.poll() is None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        _kill_group(proc.pid)


def _kill_group(pgid: int) -> None:
    """Ray's processes of the killed run, if any outlived its leader."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def final_model(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / LAST, weights_only=False)["model"]


def identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@dataclass
class Chain:
    """One run killed `kills` times and resumed until it completed."""

    moments: list[str] = field(default_factory=list)
    restarts: int = 0    # kills that came before config.yaml existed: the run starts again
    identical: bool = False
    rounds_once: bool = False


def chain(base: list[str], run_dir: Path, reference: dict[str, torch.Tensor], *, kills: int, num_rounds: int,
          rng: random.Random, startup_s: float, moments: list[str] | None = None) -> Chain:
    """Kill a run `kills` times at random moments, resuming with `resume=<dir>` only; then finish it."""
    result = Chain()
    args = [*base, f"hydra.run.dir={run_dir}"]
    plan = list(moments) if moments else [rng.choice(MOMENTS) for _ in range(kills)]
    while len(result.moments) < kills:
        moment = plan[len(result.moments)]
        if kill_once(args, run_dir, moment, rng, num_rounds=num_rounds, startup_s=startup_s):
            result.moments.append(moment)
        elif not (run_dir / "summary.json").exists():
            raise RuntimeError(f"{run_dir}: the run ended without a kill and without a summary")
        else:
            break  # it completed before this kill: the chain ends with fewer kills
        # Killed before config.yaml existed (before round 1, no run dir printed): run it again, as a
        # person would; otherwise resume=<dir> and nothing else.
        started = (run_dir / "config.yaml").exists()
        result.restarts += not started
        args = [f"resume={run_dir}"] if started else [*base, f"hydra.run.dir={run_dir}"]
    run_to_end(args if not (run_dir / "config.yaml").exists() else [f"resume={run_dir}"])
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    result.rounds_once = [r["round"] for r in records] == list(range(1, num_rounds + 1))
    result.identical = identical(final_model(run_dir), reference)
    return result


def run(quick: bool = False) -> BenchReport:
    """20 kills on fedavg and fot (--quick: 4), each run resumed with resume=<dir> only."""
    kills_per_strategy = 4 if quick else 20
    num_rounds = 4 if quick else 6
    per_chain = 4
    rng = random.Random(int(os.environ.get("COROLLA_CHAOS_SEED", "0")))
    report = BenchReport(bench="chaos", quick=quick,
                         setting={"kills_per_strategy": kills_per_strategy, "num_rounds": num_rounds,
                                  "kills_per_chain": per_chain, "moments": list(MOMENTS),
                                  "run": " ".join(TINY), "engine": ENGINE, "signal": "SIGKILL (process group)"})
    work = Path(tempfile.mkdtemp(prefix="corolla-chaos-"))
    try:
        for strategy in ("fedavg", "fot"):
            base = [f"strategy={strategy}", *TINY, f"num_rounds={num_rounds}", "seed=1"]
            started = time.monotonic()
            full = work / f"{strategy}-full"
            run_to_end([*base, f"hydra.run.dir={full}"])
            startup_s = (time.monotonic() - started) / 2   # "startup" kills land in the first half
            reference = final_model(full)
            chains: list[Chain] = []
            while sum(len(c.moments) for c in chains) < kills_per_strategy:
                left = kills_per_strategy - sum(len(c.moments) for c in chains)
                chains.append(chain(base, work / f"{strategy}-{len(chains)}", reference, kills=min(per_chain, left),
                                    num_rounds=num_rounds, rng=rng, startup_s=startup_s))
                print(f"chaos {strategy}: chain {len(chains)}: kills at {chains[-1].moments}, "
                      f"identical={chains[-1].identical}, rounds once={chains[-1].rounds_once}", flush=True)
            survived = sum(len(c.moments) for c in chains if c.identical and c.rounds_once)
            report.add(f"{num_rounds} rounds", strategy, kills=survived,
                       kills_total=sum(len(c.moments) for c in chains),
                       identical=sum(c.identical and c.rounds_once for c in chains), chains=len(chains),
                       restarted_before_config=sum(c.restarts for c in chains),
                       moments={m: sum(c.moments.count(m) for c in chains) for m in MOMENTS},
                       wall_s=round(time.monotonic() - started, 1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report

