"""deploy/docker-compose.yml for real: the image builds and the compose set-up runs 2 FedAvg rounds.

Runs only where a Docker engine answers (`docker info`) and as root (the keys are handed to the
containers' uid 49999); skipped elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import flwr
import pytest

from tests.e2e.harness import BIN, REPO, corolla, flower_env, run_bounded

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(3600)]

DEPLOY = REPO / "deploy"
COMPOSE = ["docker", "compose", "-f", str(DEPLOY / "docker-compose.yml"), "-p", f"corolla-e2e-{os.getpid()}"]
CONTAINER_UID = 49999


def _docker_ready() -> str | None:
    """Why the test cannot run here, or None."""
    if not shutil.which("docker"):
        return "no docker command"
    if subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode != 0:
        return "no Docker engine here (`docker info` fails)"
    if os.geteuid() != 0:
        return "needs root to hand the 0600 keys to the containers' uid 49999"
    if not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists():
        return "no nginx for the operator's forwarder (apt-get install nginx-light)"
    return None


def _sh(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(cmd)} exited {result.returncode}\n{result.stdout[-3000:]}\n" \
                                   f"{result.stderr[-3000:]}"
    return result.stdout


def _online(env: dict[str, str]) -> int:
    out = _sh([str(BIN / "flwr"), "supernode", "list", "compose", "--format", "json"], 60, env)
    return sum(n.get("status") == "online" for n in json.loads(out[out.index("{"):]).get("nodes", []))


@pytest.fixture()
def compose_up(tmp_path: Path) -> Iterator[dict[str, str]]:
    reason = _docker_ready()
    if reason:
        pytest.skip(reason)
    secrets, state = tmp_path / "secrets", tmp_path / "state"  # outside the checkout, as the README says
    env = dict(flower_env(tmp_path / "flwr-home"), COROLLA_SECRETS=str(secrets), COROLLA_STATE=str(state))
    forwarder = None
    try:
        _sh(corolla("certs", str(secrets), "--san-dns", "superlink", "--supernodes", "3"), 120, env)
        state.mkdir()
        for path in [state, *secrets.glob("*.key"), *secrets.glob("*.secret")]:
            os.chown(path, CONTAINER_UID, CONTAINER_UID)
        _sh([*COMPOSE, "config", "--quiet"], 120, env)
        _sh(["docker", "build", "-f", "deploy/Dockerfile", "-t", "corolla-app:0.1.0", "."], 3600)
        probe = "import torch, flwr, client.app; assert not torch.version.cuda; print(flwr.__version__)"
        assert _sh(["docker", "run", "--rm", "--entrypoint", "python", "corolla-app:0.1.0", "-c", probe], 300).strip() \
            == flwr.__version__
        _sh([*COMPOSE, "up", "-d"], 1200, env)
        forwarder = subprocess.Popen(corolla("deploy", "operator", "--certs", str(secrets), "--gateway",
                                             "127.0.0.1:9095", "--listen", "127.0.0.1:19095", "--dir",
                                             str(tmp_path / "operator")), cwd=REPO, env=env, start_new_session=True)
        _sh(corolla("deploy", "connection", "compose", "--superlink", "127.0.0.1:19095", "--operator",
                    "--default"), 60, env)
        deadline = time.monotonic() + 120
        while run_bounded([str(BIN / "flwr"), "ls", "compose"], env, 60).returncode != 0:
            assert time.monotonic() < deadline, "the SuperLink container did not come up"
            time.sleep(2)
        for i in (1, 2, 3):
            _sh([str(BIN / "flwr"), "supernode", "register", str(secrets / f"supernode-{i}.pub"),
                 "compose"], 60, env)
        deadline = time.monotonic() + 300  # the SuperNodes exit until registered; compose restarts them
        while _online(env) < 3:
            assert time.monotonic() < deadline, "the SuperNode containers did not connect"
            time.sleep(3)
        yield env
    finally:
        if forwarder is not None:
            forwarder.terminate()
            forwarder.wait(30)
        subprocess.run([*COMPOSE, "logs", "--no-color", "--tail", "200"], cwd=REPO, env=env, timeout=120)
        subprocess.run([*COMPOSE, "down", "-v", "--remove-orphans"], cwd=REPO, env=env, timeout=600)


def test_compose_runs_two_fedavg_rounds(compose_up: dict[str, str]) -> None:
    config = ('overrides="strategy=fedavg task=digits model=mlp task.num_clients=3 strategy.fraction_train=1.0 '
              'num_rounds=2 progress=false plots=false" run-dir="/app/runs/e2e"')
    out = _sh([str(BIN / "flwr"), "run", ".", "compose", "--stream", "--run-config", config], 1200, compose_up)
    assert "Successfully started run" in out, out
    metrics = _sh([*COMPOSE, "exec", "-T", "serverapp", "cat", "/app/runs/e2e/metrics.jsonl"], 120, compose_up)
    records = [json.loads(line) for line in metrics.splitlines() if line.strip()]
    assert [r["round"] for r in records] == [1, 2] and all(r["num_replies"] == 3 for r in records), records
    _sh([*COMPOSE, "exec", "-T", "serverapp", "test", "-f", "/app/runs/e2e/summary.json"], 120, compose_up)
