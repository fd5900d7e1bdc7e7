"""The ServerApp: composes the config (either door), then runs the federation into a run directory."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from conf.compose import OVERRIDES_KEY, RUN_DIR_KEY, config_from_run_config
from server.coordinator import run_federation
from server.grid import is_deployed, poll_faster_in_simulation
from server.progress import RoundProgress
from server.rundir import prepare_run_dir, record_flower_run

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = config_from_run_config(context.run_config)
    poll_faster_in_simulation(grid)
    run_dir = str(context.run_config.get(RUN_DIR_KEY, "") or "")
    path = Path(run_dir) if run_dir else Path(cfg["out_dir"]) / time.strftime("%Y%m%d-%H%M%S-flwr")
    prepare_run_dir(path, cfg)
    # On a SuperLink (`flwr run`; not `corolla run` or the benches): Flower's run id and a log in the run dir.
    log_handler = None if not is_deployed(grid) else record_flower_run(
        path, context.run_id, str(context.run_config.get(OVERRIDES_KEY, "")))
    progress = RoundProgress(int(cfg["num_rounds"]), label=cfg["strategy"]["name"]) if cfg.get("progress", True) else None
    try:
        summary = run_federation(grid, cfg, path, progress=progress)
    finally:
        if progress:
            progress.close()
        if log_handler is not None:
            logging.getLogger("corolla").removeHandler(log_handler)
            log_handler.close()
    if not run_dir:  # `corolla run` prints its own summary; this is the `flwr run .` door
        print(f"final accuracy: {summary['final']['accuracy']}")
        print(f"run dir: {path.resolve()}")
