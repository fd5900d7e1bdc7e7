"""`corolla run <hydra overrides>`: compose conf/, validate, simulate, print a summary and the run dir."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from conf.compose import CONF_DIR, search_path_overrides
from server.config_check import check_config
from server.rundir import load_run_config, prepare_run_dir

log = logging.getLogger("corolla")


def _run_dir_resolver(resume: Any, default: str) -> str:
    """hydra.run.dir: the resumed run's own directory, else a fresh one."""
    return str(resume) if resume else default


def run_job(cfg: DictConfig) -> dict[str, Any]:
    """One Hydra job: the body of `corolla run` (also each job of --multirun)."""
    from hydra.core.hydra_config import HydraConfig

    from simulation.engine import simulate
    from simulation.report import print_summary

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    resolved: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    if resolved.get("resume"):
        run_dir = Path(str(resolved["resume"]))
        saved = load_run_config(run_dir)
        if saved.get("num_rounds") != resolved.get("num_rounds"):
            log.warning("resume: num_rounds=%s from the command line replaces %s", resolved["num_rounds"], saved["num_rounds"])
        saved["num_rounds"] = resolved["num_rounds"]
        saved["resume"] = str(run_dir)
        resolved = saved
    check_config(resolved)  # before Ray starts or any data is loaded
    prepare_run_dir(run_dir, resolved)
    _quiet_logs(verbose=bool(resolved.get("verbose", False)))
    simulate(resolved, run_dir, verbose=bool(resolved.get("verbose", False)))
    summary = print_summary(run_dir)
    print(f"run dir: {run_dir.resolve()}", flush=True)
    return summary


def _quiet_logs(verbose: bool) -> None:
    """Flower logs every step at INFO; corolla shows a progress bar instead unless verbose."""
    level = logging.INFO if verbose else logging.WARNING
    flwr_logger = logging.getLogger("flwr")
    flwr_logger.setLevel(level)
    flwr_logger.propagate = False  # Flower has its own console handler; Hydra's root would repeat it
    if not verbose:
        flwr_logger.addFilter(_ExpectedWarnings())
    logging.getLogger("corolla").setLevel(logging.INFO if verbose else logging.WARNING)


class _ExpectedWarnings(logging.Filter):
    """Drop Flower warnings about choices corolla makes on purpose."""

    EXPECTED = ("fraction_evaluate is set to 0.0",)  # corolla evaluates centrally

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in str(record.msg) for text in self.EXPECTED)


def main(argv: list[str]) -> int:
    """Hand argv to Hydra (which also handles --multirun, --cfg job, --help)."""
    import hydra

    if not OmegaConf.has_resolver("corolla_run_dir"):
        OmegaConf.register_new_resolver("corolla_run_dir", _run_dir_resolver)
    task = hydra.main(config_path=str(CONF_DIR), config_name="config", version_base=None)(run_job)
    sys.argv = ["corolla run", *argv, *search_path_overrides(argv)]
    try:
        task()
    except SystemExit as exit_:  # Hydra reports a failed job by sys.exit(1)
        code = exit_.code if isinstance(exit_.code, int) else 1
        if code:
            # Flower's ServerApp thread is not a daemon and may still wait for replies that
            # will never come: leave now instead of hanging at interpreter shutdown.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        raise
    return 0
