"""`corolla run <hydra overrides>`: check the config, compose or resume the run, simulate, print a summary."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from conf.compose import CONF_DIR, compose, search_path_overrides
from conf.errors import ConfigError, first_line
from server.config_check import check_config
from server.rundir import prepare_run_dir, read_metrics, write_config
from server.summary import START_ENV, build_summary, read_summary, write_summary
from simulation.preflight import check_writable, composition_error, known_keys, plan_overrides
from simulation.resume import ResumePlan, complete_message, inspect_run, resumed_config

log = logging.getLogger("corolla")
runlog = logging.getLogger("corolla.runlog")   # run.log only: full tracebacks stay off the console

def _process_start() -> float:
    try:
        import psutil

        return float(psutil.Process(os.getpid()).create_time())
    except Exception:  # pragma: no cover - psutil is a dependency; keep timing best-effort
        return time.time()


_PROCESS_T0 = _process_start()    # timing.startup_s counts interpreter start and imports too
_JOBS: list[Path] = []           # run directories of this process's jobs (a --multirun sweep)
_CHECKED = {"done": False}       # the command line passed preflight: its notes are printed already


def _run_dir_resolver(resume: Any, default: str) -> str:
    """hydra.run.dir: the resumed run's own directory, else a fresh one."""
    return str(resume) if resume else default


def job_config(composed: dict[str, Any], overrides: list[str]) -> tuple[dict[str, Any], ResumePlan | None]:
    """The config a job runs with (the run's own for resume=<dir>); ConfigError naming the key if it cannot run."""
    plan = None
    if composed.get("resume"):
        plan = resumed_config(Path(str(composed["resume"])), composed, overrides)
        cfg = plan.cfg
    else:
        cfg = composed
    try:
        check_config(cfg)
        from data import check_client_data

        check_client_data(cfg["task"])  # simulated clients read the data the config names
    except ConfigError:
        raise
    except ValueError as err:  # a component's own refusal (task, model, strategy): same meaning
        raise ConfigError(str(err)) from err
    if plan is None:
        check_writable(str(cfg["out_dir"]))
    return cfg, plan


def preflight(argv: list[str]) -> int | None:
    """Check every job of the command line before Hydra makes a directory; an exit code to stop with."""
    from hydra.errors import HydraException

    try:
        jobs = plan_overrides(argv)
    except HydraException as err:
        print(f"corolla run: {first_line(err)}", file=sys.stderr)
        return 2
    if jobs is None:
        return None
    for overrides in jobs:
        try:
            try:
                composed = compose(overrides)
            except HydraException as err:
                raise composition_error(err, known_keys(compose([]))) from None
            cfg, plan = job_config(composed, overrides)
            if plan is not None:
                inspect_run(plan)
                for note in plan.notes:
                    print(f"resume: {note}", file=sys.stderr, flush=True)
                if plan.complete and len(jobs) == 1:
                    print(complete_message(plan), flush=True)
                    return 0
        except ConfigError as err:
            print(f"corolla run: {err}", file=sys.stderr, flush=True)
            return 2
    _CHECKED["done"] = True
    return None


def run_job(cfg: DictConfig) -> dict[str, Any]:
    """One Hydra job: the body of `corolla run` (also each job of --multirun)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from simulation.engine import simulate
    from simulation.report import print_summary

    t0 = _PROCESS_T0 if not _JOBS else time.time()
    os.environ[START_ENV] = str(t0)    # timing.startup_s / wall_s count from here
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    composed: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    resolved, plan = job_config(composed, list(hydra_cfg.overrides.task))
    if plan is not None:
        run_dir = plan.run_dir
        inspect_run(plan)
        if not _CHECKED["done"]:
            for note in plan.notes:
                print(f"resume: {note}", file=sys.stderr, flush=True)
        if plan.complete:
            print(complete_message(plan), flush=True)
            return read_summary(run_dir) or {}
    _JOBS.append(run_dir)
    prepare_run_dir(run_dir, resolved)
    if plan is not None and plan.extended_from is not None:
        write_config(run_dir, resolved)
    verbose = bool(resolved.get("verbose", False))
    _setup_logs(run_dir, verbose=verbose)
    # A sweep's jobs run one after another in this process: they share one Ray instance.
    in_process_sweep = hydra_cfg.mode == RunMode.MULTIRUN and hydra_cfg.launcher._target_.endswith(".BasicLauncher")
    try:
        simulate(resolved, run_dir, verbose=verbose, keep_ray=in_process_sweep)
    except (KeyboardInterrupt, SystemExit) as err:
        if isinstance(err, SystemExit) and err.code != signal.SIGTERM:  # Ray's SIGTERM handler exits 15
            raise
        _record_end(run_dir, resolved, t0, status="interrupted", reason="interrupted (SIGINT or SIGTERM)")
        print(f"corolla run: interrupted; continue with: corolla run resume={run_dir}", file=sys.stderr)
        print(f"run dir: {run_dir.resolve()}", flush=True)
        raise SystemExit(130)
    except Exception as err:
        reason = f"{type(err).__name__}: {first_line(err)}"
        runlog.error("the run failed: %s\n%s%s", reason, traceback.format_exc(),
                     f"\nfirst client error:\n{err.details}" if getattr(err, "details", None) else "")
        _record_end(run_dir, resolved, t0, status="failed", reason=reason)
        print(f"corolla run: failed: {reason}\n  full tracebacks: {run_dir / 'run.log'}", file=sys.stderr)
        print(f"run dir: {run_dir.resolve()}", flush=True)
        raise SystemExit(1)
    summary = print_summary(run_dir)
    print(f"run dir: {run_dir.resolve()}", flush=True)
    return summary


def _record_end(run_dir: Path, cfg: dict[str, Any], t0: float, *, status: str, reason: str) -> None:
    """summary.json for a run that did not complete, unless the server already wrote this session's."""
    path = run_dir / "summary.json"
    if path.exists() and path.stat().st_mtime >= t0 and (read_summary(run_dir) or {}).get("status") == status:
        return
    history, _ = read_metrics(run_dir / "metrics.jsonl")
    wall = time.time() - t0
    summary = build_summary(cfg, history, status=status, reason=reason,
                            num_clients=int(cfg["task"]["num_clients"]),
                            uplink_bytes=sum(int(r.get("uplink_bytes", 0)) for r in history),
                            downlink_bytes=sum(int(r.get("downlink_bytes", 0)) for r in history),
                            startup_s=wall if not history else 0.0, wall_s=wall)
    write_summary(run_dir, summary)


def _setup_logs(run_dir: Path | None, *, verbose: bool) -> None:
    """Console: warnings, one line per failed client and a progress bar; run.log: everything, tracebacks too."""
    import flwr.common.logger  # noqa: F401  (Flower's console handler exists from its import on)

    level = logging.INFO if verbose else logging.WARNING
    flwr_logger = logging.getLogger("flwr")
    flwr_logger.setLevel(level)
    flwr_logger.propagate = False  # Flower has its own console handler; Hydra's root would repeat it
    for handler in list(flwr_logger.handlers):
        if getattr(handler, "_corolla_run_log", False):
            flwr_logger.removeHandler(handler)
            handler.close()
            continue
        filters = [f for f in handler.filters if isinstance(f, _ConsoleFilter)]
        if filters:
            filters[0].verbose = verbose
        else:
            handler.addFilter(_ConsoleFilter(verbose=verbose))
    logging.getLogger("corolla").setLevel(logging.INFO if verbose else logging.WARNING)
    if run_dir is None:
        return
    file_handler = logging.FileHandler(run_dir / "run.log")
    file_handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] %(message)s"))
    file_handler._corolla_run_log = True  # type: ignore[attr-defined]
    flwr_logger.addHandler(file_handler)
    for handler in list(runlog.handlers):
        runlog.removeHandler(handler)
        handler.close()
    runlog.addHandler(file_handler)
    runlog.propagate = False
    runlog.setLevel(logging.INFO)
    logging.getLogger("corolla").setLevel(logging.INFO if verbose else logging.WARNING)


class _ConsoleFilter(logging.Filter):
    """Keep Flower's console to what a person needs; client tracebacks go to run.log only."""

    EXPECTED = ("fraction_evaluate is set to 0.0",)  # corolla evaluates centrally

    def __init__(self, *, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        if not self.verbose and any(expected in text for expected in self.EXPECTED):
            return False
        # Flower logs each failed ClientApp (and a failed ServerApp) with its traceback; corolla
        # prints one line per failed client and the run's reason instead.
        path = record.pathname.replace(os.sep, "/")
        return not (record.levelno >= logging.ERROR and ("/fleet/vce/" in path or "/flwr/simulation/" in path))


def main(argv: list[str]) -> int:
    """Check the command line, then hand it to Hydra (which also handles --multirun, --cfg job, --help)."""
    import hydra

    if not OmegaConf.has_resolver("corolla_run_dir"):
        OmegaConf.register_new_resolver("corolla_run_dir", _run_dir_resolver)
    _setup_logs(None, verbose=any(a in ("verbose=true", "verbose=True") for a in argv))  # before the checks
    stop = preflight(argv)
    if stop is not None:
        return stop
    signal.signal(signal.SIGTERM, _interrupt)
    task = hydra.main(config_path=str(CONF_DIR), config_name="config", version_base=None)(run_job)
    # A resumed run keeps its own record: Hydra must not write the default-composed .hydra/ over it.
    keep = ["hydra.output_subdir=null"] if any(a.startswith("resume=") for a in argv) else []
    sys.argv = ["corolla run", *argv, *search_path_overrides(argv), *keep]
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
    if len(_JOBS) > 1 and any(a in ("--multirun", "-m") for a in argv):
        from simulation.runs import print_comparison

        print_comparison(_JOBS)
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
