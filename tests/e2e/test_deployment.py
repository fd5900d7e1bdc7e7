"""SuperLink + 3 SuperNodes with TLS and node auth on 127.0.0.1: a real run, refusals and faults."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import BIN, Federation, RunResult, corolla, free_port, read_jsonl, run_bounded

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

NUM_NODES = 3
# FedAvg on digits with every node in every round.
FEDAVG = f"strategy=fedavg task=digits model=mlp task.num_clients={NUM_NODES} strategy.fraction_train=1.0"
# A killed SuperNode's message gets Flower's "Node Unavailable" error reply once the node misses its
# heartbeats (30 s interval, patience 2: at most ~60 s); the engine timeout is only a backstop.
FAULT_TIMEOUT_S = 150


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """Certificates, a SuperLink, 3 registered SuperNodes (partitions 0..2); all ended by PID after."""
    fed = Federation(tmp_path_factory.mktemp("deploy"), num_keys=NUM_NODES + 1)  # key 4: never registered
    try:
        fed.timings["superlink start s"] = fed.start_superlink()
        for i in range(1, NUM_NODES + 1):
            fed.register(i)
        t0 = time.monotonic()
        for i in range(1, NUM_NODES + 1):
            fed.start_node(i, partition_id=i - 1, num_partitions=NUM_NODES, wait=False)
        for i in range(1, NUM_NODES + 1):
            fed.nodes[i].wait_for(r"SuperNode ID: \d+", 60)
            fed.timings[f"supernode-{i} start -> connected s"] = time.monotonic() - t0
        fed.timings["3 supernodes connected s"] = time.monotonic() - t0
        yield fed
    finally:
        fed.stop_all()
        report = json.dumps({k: round(v, 2) for k, v in fed.timings.items()}, indent=1)
        (fed.root / "timings.json").write_text(report)
        print(f"\ndeployment timings ({fed.root / 'timings.json'}):\n{report}")


def _check(fed: Federation, result: RunResult) -> list[dict]:
    assert result.status == "finished:completed", f"run {result.run_id}: {result.status}\n{result.output[-4000:]}"
    for name in ("config.yaml", "metrics.jsonl", "summary.json"):
        assert (result.run_dir / name).is_file(), f"{name} missing in {result.run_dir}\n{result.output[-3000:]}"
    return read_jsonl(result.run_dir / "metrics.jsonl")


def test_fedavg_two_rounds_over_tls_with_node_auth(fed: Federation, tmp_path: Path) -> None:
    result = fed.run(f"{FEDAVG} num_rounds=2", tmp_path / "run")
    fed.timings["2-round run s (flwr run to finish)"] = result.seconds
    records = _check(fed, result)
    assert [r["round"] for r in records] == [1, 2]
    assert all(r["num_replies"] == NUM_NODES and r["num_failures"] == 0 for r in records), records
    for r in records:
        fed.timings[f"round {r['round']} s"] = r["wall_s"]
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["strategy"] == "fedavg" and summary["num_clients"] == NUM_NODES and summary["rounds"] == 2
    assert 0.0 <= summary["final"]["accuracy"] <= 1.0
    assert summary["final"]["accuracy"] > 0.5, summary  # 2 FedAvg rounds of an MLP on digits learn something
    assert (result.run_dir / "checkpoints").is_dir()


def test_supernode_without_the_ca_is_refused(fed: Federation) -> None:
    """No --root-certificates: the system trust store does not know the federation's CA."""
    cmd = [str(BIN / "flower-supernode"), "--superlink", fed.address, "--auth-supernode-private-key",
           str(fed.certs / "supernode-1.key"), "--node-config", "partition-id=0 num-partitions=3",
           "--host", "127.0.0.1", "--port", str(free_port()), "--max-retries", "1"]
    proc = fed.start_other("supernode-no-ca", cmd)
    rc = proc.wait_exit(60)
    out = proc.output()
    assert rc != 0, out
    assert "CERTIFICATE_VERIFY_FAILED" in out and "unable to get local issuer certificate" in out, out


def test_unregistered_supernode_is_refused(fed: Federation) -> None:
    before = len(fed.superlink.output()) if fed.superlink else 0
    proc = fed.start_node(NUM_NODES + 1, partition_id=0, num_partitions=NUM_NODES, name="supernode-unregistered",
                          extra=["--max-retries", "1"], wait=False)
    rc = proc.wait_exit(60)
    out = proc.output()
    assert rc != 0, out
    assert "Failed to activate SuperNode" in out and "SuperNode ID:" not in out, out
    assert fed.superlink is not None
    fed.superlink.wait_for(r"No SuperNode found with the given public key", 10, after=before)


def test_superlink_certificate_without_matching_san_is_refused(fed: Federation) -> None:
    """A SuperLink whose certificate names only superlink.invalid, reached at 127.0.0.1."""
    bad = fed.root / "bad-san"
    fed.check(corolla("certs", str(bad / "certs"), "--no-loopback", "--san-dns", "superlink.invalid",
                      "--supernodes", "1"), 60)
    port = free_port()
    link = fed.start_other("superlink-bad-san", corolla(
        "deploy", "superlink", "--certs", str(bad / "certs"), "--database", str(bad / "superlink.db"),
        "--host", "127.0.0.1", "--port", str(port)))
    link.wait_for(r"Uvicorn running on https://", 60)
    node = fed.start_other("supernode-bad-san", corolla(
        "deploy", "supernode", "--certs", str(bad / "certs"), "--key", "1", "--superlink", f"127.0.0.1:{port}",
        "--partition-id", "0", "--num-partitions", "3", "--host", "127.0.0.1", "--port", str(free_port()),
        "--max-retries", "1"))
    rc = node.wait_exit(60)
    out = node.output()
    assert rc != 0, out
    assert "CERTIFICATE_VERIFY_FAILED" in out and "not valid for '127.0.0.1'" in out, out
    # The flwr CLI is refused the same way.
    result = run_bounded([str(BIN / "flwr"), "ls", "--format", "json"], _env_with_connection(fed, port, bad), 60)
    reply = json.loads(result.stdout[result.stdout.index("{"):])
    assert reply["success"] is False and "Connection to the SuperLink is unavailable" in reply["error-message"], reply
    link.stop()


def _env_with_connection(fed: Federation, port: int, bad: Path) -> dict[str, str]:
    home = bad / "flwr-home"
    env = dict(fed.env, FLWR_HOME=str(home))
    run_bounded(corolla("deploy", "connection", "bad", "--superlink", f"127.0.0.1:{port}", "--certs",
                        str(bad / "certs"), "--default"), env, 60)
    return env


def test_supernode_killed_mid_run_round_completes(fed: Federation, tmp_path: Path) -> None:
    victim = fed.nodes[NUM_NODES]
    offset = len(victim.output())
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["result"] = fed.run(f"{FEDAVG} num_rounds=1 engine.timeout_s={FAULT_TIMEOUT_S}", tmp_path / "run")
        except BaseException as ex:  # surfaced below
            box["error"] = ex

    thread = threading.Thread(target=run)
    thread.start()
    try:
        victim.wait_for(r"Receiving: train message", 120, after=offset)
    finally:
        victim.kill()  # crash mid-round: it holds its train message and never replies
    thread.join(300)
    assert not thread.is_alive(), "flwr run did not finish"
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    result = box["result"]
    assert isinstance(result, RunResult)
    records = _check(fed, result)
    assert len(records) == 1 and records[0]["num_replies"] == NUM_NODES - 1, records
    assert records[0]["num_failures"] == 1, records
    fed.timings["round with a killed node s"] = records[0]["wall_s"]
    fed.timings["killed node reported unavailable by the SuperLink (1=yes)"] = float(
        "Node Unavailable" in result.output)


def test_killed_supernode_restarts_and_rejoins_next_run(fed: Federation, tmp_path: Path) -> None:
    t0 = time.monotonic()
    fed.start_node(NUM_NODES, partition_id=NUM_NODES - 1, num_partitions=NUM_NODES)
    fed.timings["supernode restart -> connected s"] = time.monotonic() - t0
    result = fed.run(f"{FEDAVG} num_rounds=1", tmp_path / "run")
    fed.timings["1-round run after the SuperNode restart s"] = result.seconds
    records = _check(fed, result)
    assert records[0]["num_replies"] == NUM_NODES and records[0]["num_failures"] == 0, records


def test_superlink_restarts_on_its_database_and_supernodes_reconnect(fed: Federation, tmp_path: Path) -> None:
    assert fed.superlink is not None and fed.database.is_file()
    fed.superlink.kill()  # a crash, not a clean shutdown
    fed.timings["superlink restart s"] = fed.start_superlink(name="superlink-restarted")
    # Each SuperNode keeps polling and reconnects by itself (retrying while the SuperLink is down);
    # the run below gets replies from all of them only if they did.
    # Registrations live in the database: no `flwr supernode register` again.
    result = fed.run(f"{FEDAVG} num_rounds=1", tmp_path / "run")
    fed.timings["1-round run after the SuperLink restart s"] = result.seconds
    records = _check(fed, result)
    assert records[0]["num_replies"] == NUM_NODES and records[0]["num_failures"] == 0, (records, fed.diagnostics())
    assert all(p.popen.poll() is None for p in fed.nodes.values()), fed.diagnostics()
