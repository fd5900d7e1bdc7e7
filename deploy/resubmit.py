"""`corolla deploy resubmit RUN_DIR`: submit a run that a SuperLink restart failed again; it resumes from its checkpoint."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import shutil
import sys
import time
from pathlib import Path

import yaml

FLOWER_RUN = "flower-run.json"  # written by the ServerApp (server/rundir.py)
CHECKPOINT_DIR = "checkpoints"


class ResubmitError(RuntimeError):
    """The run directory cannot be resubmitted (not a deployed run, still running)."""


class AlreadyComplete(ResubmitError):
    """The run finished after all (its ServerApp outlived the restart): nothing to do."""

ACTIVE = ("running", "pending", "starting")


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
    if status.startswith(ACTIVE):
        raise ResubmitError(f"Flower run {old} is still {status}; stop it first (`flwr stop {old} <connection>`)")
    if status == "finished:completed" and (run_dir / "summary.json").exists():
        raise AlreadyComplete(f"Flower run {old} completed (its ServerApp carried on across the restart); "
                              f"nothing to resubmit")
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


def parser() -> argparse.ArgumentParser:
    """The parser of `corolla deploy resubmit`."""
    parser = argparse.ArgumentParser(prog="corolla deploy resubmit", description=(
        "Submit again a run that a SuperLink crash or restart failed: the same overrides and run directory, "
        "so the ServerApp resumes after the last checkpointed round. Run it where the run directory is "
        "readable (the SuperLink host, or a shared mount), from the app's checkout."))
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--connection", default=None, help="the `flwr` connection (default: flwr's default)")
    parser.add_argument("--app", default=".", help="the Flower app to submit (default: .)")
    parser.add_argument("--wait", type=float, default=600.0,
                        help="seconds to wait for a run the SuperLink still lists as running to end: after a "
                             "restart its ServerApp either fails or carries on (default: 600)")
    return parser


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    flwr = shutil.which("flwr", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if flwr is None:
        print("corolla deploy resubmit: error: flwr not found", file=sys.stderr)
        return 2
    conn = [args.connection] if args.connection else []
    try:
        record = args.run_dir / FLOWER_RUN
        old = json.loads(record.read_text())["run_id"] if record.is_file() else None
        status = "unknown"

        def current() -> str:
            out = subprocess.run([flwr, "ls", *conn, "--run-id", str(old), "--format", "json"], capture_output=True,
                                 text=True, timeout=120, check=False).stdout
            try:
                return str(json.loads(out[out.index("{"):])["runs"][0]["status"])
            except (ValueError, KeyError, IndexError):
                return "unknown (the SuperLink does not list it)"

        if old is not None:
            status = current()
            deadline = time.monotonic() + args.wait
            if status.startswith(ACTIVE):
                print(f"Flower run {old} is still listed as {status!r}; waiting up to {args.wait:.0f} s for it "
                      f"to end", flush=True)
            while status.startswith(ACTIVE) and time.monotonic() < deadline:
                time.sleep(5)
                status = current()
        run_config, message = plan(args.run_dir, status)
    except AlreadyComplete as ex:
        print(f"corolla deploy resubmit: {ex}")
        return 0
    except ResubmitError as ex:
        print(f"corolla deploy resubmit: {ex}", file=sys.stderr)
        return 1
    print(message, flush=True)
    cmd = [flwr, "run", args.app, *conn, "--stream", "--run-config", run_config]
    os.execv(flwr, cmd)
    return 0  # not reached
