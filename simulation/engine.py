"""Starts the configured engine for one resolved config: Flower's Ray backend (loopback or a cluster) or inline."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from conf.compose import to_run_config

log = logging.getLogger("corolla")
APP_DIR = Path(__file__).resolve().parents[1]


def backend_config(engine: dict[str, Any]) -> dict[str, Any]:
    """Flower's Ray backend config: client resources, and ray.init arguments.

    Without `engine.ray_address` a private Ray instance starts on 127.0.0.1 with no dashboard;
    with it, the simulation attaches to that existing cluster.
    """
    init_args: dict[str, Any] = dict(engine.get("init_args") or {})
    address = engine.get("ray_address")
    if address:
        init_args["address"] = str(address)
    else:
        init_args.setdefault("_node_ip_address", "127.0.0.1")
        init_args.setdefault("include_dashboard", False)
    init_args.setdefault("logging_level", "warning")
    init_args.setdefault("log_to_driver", True)
    resources = {k: v for k, v in dict(engine.get("client_resources") or {}).items() if v is not None}
    return {"client_resources": resources, "init_args": init_args}


def simulate(cfg: dict[str, Any], run_dir: Path, *, verbose: bool = False, keep_ray: bool = False) -> None:
    """Run the experiment in `cfg` on its engine (engine.name); raises if the ServerApp failed.

    keep_ray: leave Ray running after the run for the next one (the jobs of one --multirun).
    """
    if cfg["engine"]["name"] == "inline":
        from simulation.inline import simulate_inline

        simulate_inline(cfg, run_dir, verbose=verbose)
        return
    if keep_ray:
        ray_kept_for(backend_config(cfg["engine"])["init_args"])
    simulate_ray(cfg, run_dir, verbose=verbose)


_KEPT: dict[str, Any] = {}


def ray_kept_for(init_args: dict[str, Any]) -> None:
    """Keep one Ray instance between runs of this process; shut it down at exit.

    Flower's RayBackend shuts Ray down after every run, and the next run pays its start-up again.
    Here it ends only the run's actors; Ray stays up for the next run with the same ray.init
    arguments (other arguments get a fresh instance) and stops when the process exits.
    """
    import atexit

    import ray
    from flwr.server.superlink.fleet.vce.backend.raybackend import RayBackend

    if not _KEPT:
        def terminate(self: RayBackend) -> None:
            if self.pool:
                self.pool.terminate_all_actors()

        RayBackend.terminate = terminate  # type: ignore[method-assign]
        atexit.register(ray.shutdown)
    elif _KEPT.get("init_args") != init_args and ray.is_initialized():
        ray.shutdown()
    elif ray.is_initialized():
        log.info("ray: reusing the instance the previous job started")
    _KEPT["init_args"] = init_args


def simulate_ray(cfg: dict[str, Any], run_dir: Path, *, verbose: bool = False) -> None:
    """Run the experiment in `cfg` through Flower's simulation engine; raises if the ServerApp failed."""
    from flwr.app import Context, RecordDict
    from flwr.common.constant import RUN_ID_NUM_BYTES, SUPERLINK_NODE_ID, TASK_ID_NUM_BYTES
    from flwr.server.superlink.linkstate.utils import generate_rand_int_from_bytes
    from flwr.simulation.run_simulation import _run_simulation
    from flwr.supercore.constant import NOOP_FEDERATION_ID
    from flwr.supercore.run import Run
    from flwr.supercore.task_identity import TaskIdentity
    from flwr.supercore.telemetry import EventType

    from simulation import linkstate_index

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    linkstate_index.install()  # O(own messages) lookups: 10,000 virtual clients do not stall
    run_config = to_run_config(cfg, run_dir)
    run_id = generate_rand_int_from_bytes(RUN_ID_NUM_BYTES)
    # The same set-up as flwr.simulation.run_simulation, except that the run carries
    # corolla's config: run_simulation() would hand the apps an empty run_config.
    run = replace(Run.create_empty(run_id=run_id), override_config=run_config)
    run.primary_task_id = generate_rand_int_from_bytes(TASK_ID_NUM_BYTES)
    run.federation_id = NOOP_FEDERATION_ID
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = run_id
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    context = Context(run_id=run_id, node_id=0, node_config={}, state=RecordDict(), run_config=dict(run_config))
    _run_simulation(
        num_supernodes=int(cfg["task"]["num_clients"]),
        exit_event=EventType.PYTHON_API_RUN_SIMULATION_LEAVE,
        server_app_attr="server.app:app",
        client_app_attr="client.app:app",
        backend_name="ray",
        backend_config=backend_config(cfg["engine"]),
        server_app_context=context,
        app_dir=str(APP_DIR),
        run=run,
        verbose_logging=verbose,
        is_app=True,
    )
