"""Real SuperLink/SuperNode processes on 127.0.0.1 for end-to-end tests: started, timed, ended by PID."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
BIN = Path(sys.executable).parent
CONNECTION = "e2e"
# Every process in these tests gets a hard limit: longer than a module of tests sharing one federation.
PROCESS_LIMIT_S = 1800.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def corolla(*args: str) -> list[str]:
    return [PYTHON, "-m", "simulation.cli", *args]


def flower_env(flwr_home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "FLWR_HOME": str(flwr_home),
        "PATH": os.pathsep.join([str(BIN), env.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join([str(REPO), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]),
        "PYTHONUNBUFFERED": "1",
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "CUDA_VISIBLE_DEVICES": "",  # clients train on CPU: deterministic and light on a shared box
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    })
    return env


@dataclass
class Proc:
    """One long-running process in its own session, its output in a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    offset: int = 0  # where this process's output starts in a log shared with an earlier instance
    watchdog: threading.Timer | None = None

    def __post_init__(self) -> None:
        # A hard bound on every process, whatever happens to the test that started it.
        self.watchdog = threading.Timer(PROCESS_LIMIT_S, self.kill)
        self.watchdog.daemon = True
        self.watchdog.start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        """This process's output (not that of an earlier instance logged to the same file)."""
        if not self.log.exists():
            return ""
        with self.log.open("rb") as f:
            f.seek(self.offset)
            return f.read().decode(errors="replace")

    def tail(self, n: int = 4000) -> str:
        return f"--- {self.name} (pid {self.pid}, rc {self.popen.poll()}) log tail ---\n{self.output()[-n:]}"

    def wait_for(self, pattern: str, timeout: float, *, after: int = 0) -> float:
        """Seconds until `pattern` (a regex) appears in the log past offset `after`; fails on exit/timeout."""
        regex = re.compile(pattern)
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if regex.search(self.output()[after:]):
                return time.monotonic() - t0
            if self.popen.poll() is not None:
                if regex.search(self.output()[after:]):
                    return time.monotonic() - t0
                raise AssertionError(f"{self.name} exited before {pattern!r}\n{self.tail()}")
            time.sleep(0.05)
        raise AssertionError(f"{self.name}: no {pattern!r} within {timeout}s\n{self.tail()}")

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"{self.name} did not exit within {timeout}s\n{self.tail()}") from None

    def stop(self, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
        """End the process and everything it started (found by PID before signalling), by PID."""
        if self.watchdog is not None and threading.current_thread() is not self.watchdog:
            self.watchdog.cancel()
        tree = _tree(self.pid)
        for proc in tree:
            _signal(proc, sig)
        _, alive = psutil.wait_procs(tree, timeout=grace)
        for proc in alive:
            _signal(proc, signal.SIGKILL)
        psutil.wait_procs(alive, timeout=5)
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def kill(self) -> None:
        """A crash: SIGKILL to the process and its children, no grace."""
        self.stop(signal.SIGKILL, grace=0.0)


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _signal(proc: psutil.Process, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except psutil.NoSuchProcess:
        pass


def start(name: str, cmd: list[str], log_dir: Path, env: dict[str, str]) -> Proc:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    offset = log.stat().st_size if log.exists() else 0
    with log.open("ab") as out:
        out.write(f"$ {shlex.join(cmd)}\n".encode())
        out.flush()
        popen = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
    return Proc(name, popen, log, offset)


def run_bounded(cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a short command to completion in its own session; killed by PID (with its children) on timeout."""
    popen = subprocess.Popen(cmd, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, _ = popen.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for proc in _tree(popen.pid):
            _signal(proc, signal.SIGKILL)
        out, _ = popen.communicate()
        raise AssertionError(f"{shlex.join(cmd)} timed out after {timeout}s\n{out[-4000:]}") from None
    return subprocess.CompletedProcess(cmd, popen.returncode, out, "")


@dataclass
class RunResult:
    run_id: str
    output: str
    seconds: float
    status: str
    run_dir: Path


class Federation:
    """The deployment of deploy/README.md on 127.0.0.1, started through `corolla deploy`.

    A SuperLink on a loopback port (process isolation, authenticated Runtime API) with its
    ServerApp executor; the gateway (nginx) publishing its Fleet API to sites and its Control API
    to the operator's client certificate; the operator's forwarder, which `flwr` uses (connection
    `e2e`); SuperNodes (process isolation) with their ClientApp executors, connecting to the gateway.
    """

    def __init__(self, root: Path, num_keys: int = 3) -> None:
        self.root = root
        self.certs = root / "certs"
        self.flwr_home = root / "flwr-home"
        self.logs = root / "logs"
        self.database = root / "state" / "superlink.db"
        self.env = flower_env(self.flwr_home)
        self.link_port, self.port, self.control_port, self.operator_port = (free_port() for _ in range(4))
        self.link_address = f"127.0.0.1:{self.link_port}"   # the SuperLink itself (loopback only)
        self.address = f"127.0.0.1:{self.port}"             # the gateway's Fleet port: what sites reach
        self.control_address = f"127.0.0.1:{self.control_port}"
        self.operator_address = f"127.0.0.1:{self.operator_port}"
        self.superlink: Proc | None = None
        self.serverapp: Proc | None = None
        self.gateway: Proc | None = None
        self.operator: Proc | None = None
        self.nodes: dict[int, Proc] = {}
        self.executors: dict[int, Proc] = {}
        self.node_ports: dict[int, int] = {}
        self.killed_at: dict[int, float] = {}  # site -> time.monotonic() of its last crash
        self.others: list[Proc] = []
        self.timings: dict[str, float] = {}
        self.flwr_home.mkdir(parents=True)
        self.check(corolla("certs", str(self.certs), "--supernodes", str(num_keys)), 60)
        self.check(corolla("deploy", "connection", CONNECTION, "--superlink", self.operator_address,
                           "--operator", "--default"), 60)

    # processes ---------------------------------------------------------------------------
    def start_superlink(self, name: str = "superlink", isolation: str = "process") -> float:
        """Start the SuperLink on its database (and its executor, gateway, operator forwarder once).

        Returns the seconds until the SuperLink serves TLS.
        """
        cmd = corolla("deploy", "superlink", "--certs", str(self.certs), "--database", str(self.database),
                      "--host", "127.0.0.1", "--port", str(self.link_port), "--isolation", isolation)
        self.superlink = start(name, cmd, self.logs, self.env)
        seconds = self.superlink.wait_for(r"Uvicorn running on https://127\.0\.0\.1", 60)
        if isolation == "process" and (self.serverapp is None or self.serverapp.popen.poll() is not None):
            self.serverapp = start("serverapp-executor", corolla(
                "deploy", "superexec", "--runtime-api-address", self.link_address, "--ca",
                str(self.certs / "ca.crt"), "--secret", str(self.certs / "superexec.secret")), self.logs, self.env)
        if self.gateway is None:
            self.gateway = start("gateway", corolla(
                "deploy", "gateway", "--certs", str(self.certs), "--superlink", self.link_address,
                "--fleet", self.address, "--control", self.control_address, "--dir", str(self.root / "gateway")),
                self.logs, self.env)
            self.operator = start("operator", corolla(
                "deploy", "operator", "--certs", str(self.certs), "--gateway", self.control_address,
                "--listen", self.operator_address, "--dir", str(self.root / "operator")), self.logs, self.env)
            for proc in (self.gateway, self.operator):
                proc.wait_for(r"start worker process", 30)
        return seconds

    def register(self, index: int) -> str:
        out = self.check([str(BIN / "flwr"), "supernode", "register", str(self.certs / f"supernode-{index}.pub"),
                          CONNECTION], 60)
        match = re.search(r"SuperNode (\d+) registered", out)
        assert match, out
        return match.group(1)

    def start_node(self, index: int, partition_id: int, num_partitions: int, *, key: str | None = None,
                   extra: list[str] | None = None, name: str | None = None, wait: bool = True,
                   env: dict[str, str] | None = None, timeout: float = 60, certs: Path | None = None) -> Proc:
        """Start SuperNode `index` (its key supernode-<index>.key) for one partition, with its executor.

        `certs`: the site's own copy of ca.crt and its key and secret (default: the operator's directory).
        """
        certs = certs or self.certs
        port = self.node_ports.setdefault(index, free_port()) if name is None else free_port()
        if name is None:  # one instance per site: a still-running earlier one stops first
            for old in (self.executors.get(index), self.nodes.get(index)):
                if old is not None and old.popen.poll() is None:
                    old.stop()
        cmd = corolla("deploy", "supernode", "--certs", str(certs), "--key", key or str(index),
                      "--superlink", self.address, "--partition-id", str(partition_id),
                      "--num-partitions", str(num_partitions), "--host", "127.0.0.1", "--port", str(port),
                      *(extra or []))
        proc = start(name or f"supernode-{index}", cmd, self.logs, self.env)
        executor = start(f"{name or f'supernode-{index}'}-executor", corolla(
            "deploy", "superexec", "--runtime-api-address", f"127.0.0.1:{port}", "--insecure",
            "--secret", str(certs / f"supernode-{key or index}.secret")), self.logs, env or self.env)
        if name is None:
            self.nodes[index] = proc
            self.executors[index] = executor
        else:
            self.others += [proc, executor]
        if wait:
            proc.wait_for(r"SuperNode ID: \d+", timeout)
        return proc

    def kill_node(self, index: int) -> None:
        """A site crashes: its SuperNode and its executor, SIGKILL."""
        self.nodes[index].kill()
        self.executors[index].kill()
        self.killed_at[index] = time.monotonic()

    def start_other(self, name: str, cmd: list[str]) -> Proc:
        proc = start(name, cmd, self.logs, self.env)
        self.others.append(proc)
        return proc

    def stop_all(self) -> None:
        procs = [*self.others, *self.executors.values(), *self.nodes.values(), self.serverapp, self.superlink,
                 self.operator, self.gateway]
        for proc in procs:
            if proc is not None:
                proc.stop()

    # flwr CLI ------------------------------------------------------------------------------
    def check(self, cmd: list[str], timeout: float) -> str:
        result = run_bounded(cmd, self.env, timeout)
        assert result.returncode == 0, f"{shlex.join(cmd)} exited {result.returncode}\n{result.stdout[-4000:]}"
        return result.stdout

    def run(self, overrides: str, run_dir: Path, timeout: float = 300) -> RunResult:
        """`flwr run . e2e --stream` with corolla's overrides; waits for the run to finish."""
        config = f'overrides="{overrides} progress=false plots=false" run-dir="{run_dir}"'
        cmd = [str(BIN / "flwr"), "run", ".", CONNECTION, "--stream", "--run-config", config]
        t0 = time.monotonic()
        try:
            result = run_bounded(cmd, self.env, timeout)
        except AssertionError:  # timed out: the run may still hold the nodes; the next test starts clean
            self.abandon_runs()
            raise
        seconds = time.monotonic() - t0
        match = re.search(r"Successfully started run (\d+)", result.stdout)
        assert result.returncode == 0 and match, (f"flwr run exited {result.returncode}\n{result.stdout[-6000:]}\n"
                                                  f"{self.diagnostics()}")
        run_id = match.group(1)
        return RunResult(run_id, result.stdout, seconds, self.run_status(run_id), run_dir)

    def abandon_runs(self) -> None:
        """Stop every unfinished run (`flwr stop`) and kill the ServerApp processes left running, so a
        run that hung fails its own test only, not the next one on this federation."""
        try:
            out = self.check([str(BIN / "flwr"), "ls", CONNECTION, "--format", "json"], 60)
            runs = json.loads(out[out.index("{"):])["runs"]
            for run in runs:
                if not str(run["status"]).startswith("finished"):
                    run_bounded([str(BIN / "flwr"), "stop", str(run["run-id"]), CONNECTION], self.env, 60)
        except (AssertionError, ValueError, KeyError):
            pass  # the SuperLink may be the part that hangs; killing the ServerApps below still helps
        if self.serverapp is not None:
            for proc in _tree(self.serverapp.pid)[1:]:
                _signal(proc, signal.SIGKILL)

    def run_status(self, run_id: str) -> str:
        out = self.check([str(BIN / "flwr"), "ls", CONNECTION, "--run-id", run_id, "--format", "json"], 60)
        data = json.loads(out[out.index("{"):])
        return str(data["runs"][0]["status"])

    def diagnostics(self) -> str:
        procs = [p for p in [self.superlink, self.serverapp, self.gateway, *self.nodes.values(),
                             *self.executors.values(), *self.others] if p is not None]
        return "\n".join(p.tail(2500) for p in procs)


@contextmanager
def running_federation(root: Path, num_nodes: int) -> Iterator[Federation]:
    """A SuperLink and `num_nodes` registered, connected SuperNodes (node i: partition i-1); all stopped by PID after."""
    fed = Federation(root, num_keys=num_nodes)
    try:
        fed.start_superlink()
        for i in range(1, num_nodes + 1):
            fed.register(i)
            fed.start_node(i, partition_id=i - 1, num_partitions=num_nodes)
        yield fed
    finally:
        fed.stop_all()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
