"""`corolla deploy resubmit RUN_DIR`: submit a run that a SuperLink restart failed again; it resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import yaml

FLOWER_RUN = "flower-run.json"  # written by the ServerApp (server/rundir.py)
CHECKPOINT_DIR = "checkpoints"


class ResubmitError(RuntimeError):
    """The run directory cannot be resubmitted (not a deployed run, still running, already complete)."""


def last_round(run_dir: Path) -> int:
    """Rounds recorded in metrics.jsonl (what the checkpoint covers)."""
    metrics = run_dir / "metrics.jsonl"
    if not metrics.exists():
        return 0
    rounds = [json.loads(line).get("round", 0) for line in metrics.read_text().splitlines() if line.strip()]
    return max(rounds, default=0)


def plan(run_dir: Path, status: str) -> tuple[str, str]:
    """(the --run-config to submit, the message saying what happens) for a run whose last status is `status`."""
    record = run_dir / FLOWER_RUN
    if not record.is_file():
        raise ResubmitError(f"{record} not found: only runs submitted with `flwr run` to a SuperLink record "
                            f"their Flower run id and overrides")
    data = json.loads(record.read_text())
    old = data["run_id"]
    if status in ("running", "pending", "starting") or status.startswith(("running", "pending", "starting")):
        raise ResubmitError(f"Flower run {old} is still {status}; stop it first (`flwr stop {old} <connection>`)")
    if status == "finished:completed" and (run_dir / "summary.json").exists():
        raise ResubmitError(f"Flower run {old} completed; nothing to resubmit")
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    done, total = last_round(run_dir), int(cfg["num_rounds"])
    overrides = str(data.get("overrides", ""))
    if '"' in overrides:
        raise ResubmitError(f"the recorded overrides contain a double quote: {overrides!r}")
    run_config = f'overrides="{overrides}" run-dir="{run_dir.resolve()}"'
    message = (f"Flower run {old} ended {status!r}: Flower 1.42 does not continue a run across a SuperLink "
               f"restart. Resubmitting it from {run_dir} (same overrides); it resumes after round {done} of "
               f"{total} from its checkpoint.")
    return run_config, message


def main(argv: list[str]) -> int:
    import argparse
    import subprocess

    parser = argparse.ArgumentParser(prog="corolla deploy resubmit", description=(
        "Submit again a run that a SuperLink crash or restart failed: the same overrides and run directory, "
        "so the ServerApp resumes after the last checkpointed round. Run it where the run directory is "
        "readable (the SuperLink host, or a shared mount), from the app's checkout."))
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--connection", default=None, help="the `flwr` connection (default: flwr's default)")
    parser.add_argument("--app", default=".", help="the Flower app to submit (default: .)")
    args = parser.parse_args(argv)
    flwr = shutil.which("flwr", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if flwr is None:
        print("corolla deploy resubmit: error: flwr not found", file=sys.stderr)
        return 2
    conn = [args.connection] if args.connection else []
    try:
        record = args.run_dir / FLOWER_RUN
        old = json.loads(record.read_text())["run_id"] if record.is_file() else None
        status = "unknown"
        if old is not None:
            out = subprocess.run([flwr, "ls", *conn, "--run-id", str(old), "--format", "json"], capture_output=True,
                                 text=True, timeout=120, check=False).stdout
            try:
                status = json.loads(out[out.index("{"):])["runs"][0]["status"]
            except (ValueError, KeyError, IndexError):
                status = "unknown (the SuperLink no longer lists it)"
        run_config, message = plan(args.run_dir, status)
    except ResubmitError as ex:
        print(f"corolla deploy resubmit: {ex}", file=sys.stderr)
        return 1
    print(message, flush=True)
    cmd = [flwr, "run", args.app, *conn, "--stream", "--run-config", run_config]
    os.execv(flwr, cmd)
    return 0  # not reached
