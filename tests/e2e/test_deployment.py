"""The deployment (gateway, SuperLink, 3 SuperNodes, executors) on 127.0.0.1: a real run, refusals and faults."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import BIN, CONNECTION, Federation, RunResult, corolla, free_port, read_jsonl, run_bounded

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

NUM_NODES = 3
# FedAvg on digits with every node in every round.
FEDAVG = f"strategy=fedavg task=digits model=mlp task.num_clients={NUM_NODES} strategy.fraction_train=1.0"
# A killed SuperNode's message gets Flower's "Node Unavailable" error reply once the node misses its
# heartbeats (30 s interval, patience 2: at most ~60 s); the engine timeout is only a backstop.
FAULT_TIMEOUT_S = 150
# A site is killed this long at most after its train message arrives: here its reply takes ~20-50 s, so
# some kills land before the reply and some after (the test holds for both).
KILL_WINDOW_S = 45.0
# A crashed site is restarted this long at most after the crash: past the up to 60 s in which the
# SuperLink still counts it online (heartbeats every 30 s, patience 2) and refuses its activation.
RESTART_WINDOW_S = 90.0
ONLINE_AFTER_CRASH_MAX_S = 60.0


def _random_delay(variable: str, high: float) -> float:
    """Uniform in [0, high]; the environment variable, when set, replays a moment a failed run printed."""
    return float(os.environ.get(variable) or random.Random().uniform(0.0, high))


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
    # The run dir names Flower's run id and keeps a log.
    assert json.loads((result.run_dir / "flower-run.json").read_text())["run_id"] == int(result.run_id)
    assert f"Flower run {result.run_id}" in (result.run_dir / "run.log").read_text()
    # Process isolation everywhere: the SuperLink and SuperNodes ran no app themselves, the executors did.
    assert fed.superlink is not None and "Starting Flower SuperExec" not in fed.superlink.output()
    assert all("Starting Flower SuperExec" not in p.output() for p in fed.nodes.values())


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
    # The refusal is logged on the SuperLink's side too, with the peer and the reason.
    assert fed.gateway is not None
    fed.gateway.wait_for(r"SSL_do_handshake\(\) failed .*unknown ca.* client: 127\.0\.0\.1", 10)


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
    _assert_refusals_name_the_peer(fed, link_after=before, gate_after=0)


def _assert_refusals_name_the_peer(fed: Federation, *, link_after: int, gate_after: int,
                                   path: str = "activate-node") -> None:
    """The SuperLink's access lines for refused Fleet requests (next to Flower's reason) name the site's own
    address and port, the same the gateway logged for those requests, not the gateway's upstream port."""
    assert fed.superlink is not None and fed.gateway is not None
    request = rf'"POST /v1/fleet/{path} HTTP/1\.1"'
    link = set(re.findall(rf"(\d+\.\d+\.\d+\.\d+:\d+) - {request} (4\d\d)", fed.superlink.output()[link_after:]))
    assert link, fed.superlink.output()[link_after:][-3000:]
    deadline = time.monotonic() + 10  # nginx writes its line once the response is sent
    while True:
        gate = set(re.findall(rf"peer=(\S+) port=\d+ {request} status=(4\d\d)", fed.gateway.output()[gate_after:]))
        if link <= gate or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert link <= gate, (link, gate)


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


SITE = "site"  # a site's view: the gateway's public port, the federation's public CA, no client certificate


@pytest.fixture(scope="module")
def site_env(fed: Federation) -> dict[str, str]:
    """A `flwr` home with what a site holds: the gateway's public address and ca.crt."""
    home = fed.root / "site-home"
    env = dict(fed.env, FLWR_HOME=str(home))
    for name, address in ((SITE, fed.address), ("site-control", fed.control_address)):
        result = run_bounded(corolla("deploy", "connection", name, "--superlink", address, "--certs",
                                     str(fed.certs)), env, 60)
        assert result.returncode == 0, result.stdout
    return env


def _refused(result: object, *codes: int) -> None:
    out = getattr(result, "stdout")
    assert getattr(result, "returncode") != 0 or "success\": false" in out.replace(" ", ""), out
    assert any(f"Status/{code}" in out or f"{code} " in out for code in codes), out


@pytest.mark.parametrize("connection,codes", [(SITE, (403,)), ("site-control", (400,))])
def test_site_cannot_register_unregister_or_submit(fed: Federation, site_env: dict[str, str], connection: str,
                                                   codes: tuple[int, ...]) -> None:
    """Through the Fleet port (403: not a Fleet path) or the Control port without the operator's certificate
    (400: no client certificate), a site's register, unregister, submit and list are all refused."""
    flwr = str(BIN / "flwr")
    rogue = fed.certs / f"supernode-{NUM_NODES + 1}.pub"  # a key the operator never registered
    node_ids = _json(fed.check([flwr, "supernode", "list", CONNECTION, "--format", "json"], 60))
    victim = str(node_ids["nodes"][0]["node-id"])
    attempts = {
        "register": [flwr, "supernode", "register", str(rogue), connection],
        "unregister": [flwr, "supernode", "unregister", victim, connection],
        "submit": [flwr, "run", ".", connection, "--run-config", 'overrides="num_rounds=1"'],
        "list runs": [flwr, "ls", connection],
    }
    for what, cmd in attempts.items():
        result = run_bounded(cmd, site_env, 120)
        try:
            _refused(result, *codes)
        except AssertionError as ex:
            raise AssertionError(f"{what}: {ex}") from None
    # Nothing changed: the operator still sees exactly the registered nodes.
    after = _json(fed.check([flwr, "supernode", "list", CONNECTION, "--format", "json"], 60))
    assert sorted(n["node-id"] for n in after["nodes"]) == sorted(n["node-id"] for n in node_ids["nodes"])
    assert fed.gateway is not None
    log = fed.gateway.output()
    assert re.search(r'peer=127\.0\.0\.1:\d+ port=\d+ "POST /v1/control/register-node HTTP/1\.1" status=(403|400)', log)
    if connection != SITE:
        assert re.search(r"client sent no required SSL certificate .*client: 127\.0\.0\.1", log), log[-3000:]


def test_operator_registers_and_unregisters(fed: Federation) -> None:
    """The operator (client certificate, through its forwarder) may; the key is gone afterwards."""
    flwr = str(BIN / "flwr")
    node_id = fed.register(NUM_NODES + 1)
    out = fed.check([flwr, "supernode", "unregister", node_id, CONNECTION], 60)
    assert "unregistered successfully" in out, out
    nodes = _json(fed.check([flwr, "supernode", "list", CONNECTION, "--format", "json"], 60))["nodes"]
    states = {str(n["node-id"]): n["status"] for n in nodes}
    assert states.get(node_id) in (None, "unregistered"), states


def test_runtime_api_refuses_requests_without_the_superexec_secret(fed: Federation) -> None:
    """AcquireTask without the SuperExec's signature: refused by the SuperLink (401), not even routed by the
    gateway (403), refused by a SuperNode's local Runtime API (401)."""
    ctx = ssl.create_default_context(cafile=str(fed.certs / "ca.crt"))
    targets = {
        "superlink": (f"https://{fed.link_address}", 401),
        "gateway": (f"https://{fed.address}", 403),
        "supernode": (f"http://127.0.0.1:{fed.node_ports[1]}", 401),
    }
    for name, (base, code) in targets.items():
        request = urllib.request.Request(f"{base}/v1/runtime/acquire-task", data=b"", method="POST",
                                         headers={"content-type": "application/protobuf"})
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, context=ctx if base.startswith("https") else None, timeout=30)
        assert caught.value.code == code, (name, caught.value.code, caught.value.read()[:300])


def _json(out: str) -> dict:
    return json.loads(out[out.index("{"):])


def test_supernode_killed_at_a_random_moment_of_the_round(fed: Federation, tmp_path: Path) -> None:
    """Site 3 crashes (SIGKILL) at a random moment from its train message's arrival to past its reply: the
    round completes either way; a reply sent before the crash counts, otherwise the round has exactly one
    failure, attributed to the killed node's id (Flower's synthetic reply carries the SuperLink's)."""
    victim = fed.nodes[NUM_NODES]
    offset = len(victim.output())
    victim_id = re.findall(r"SuperNode ID: (\d+)", victim.output())[-1]
    delay = _random_delay("COROLLA_E2E_KILL_DELAY_S", KILL_WINDOW_S)
    print(f"\nkilling supernode-{NUM_NODES} {delay:.2f} s after its train message (COROLLA_E2E_KILL_DELAY_S)")
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
        time.sleep(delay)
    finally:
        fed.kill_node(NUM_NODES)
    log = victim.output()[offset:]
    after_train = log[log.index("Receiving: train message"):]
    sending = after_train.find("Sending: train message")
    sent = sending >= 0 and "Sent successfully" in after_train[sending:]
    thread.join(300)
    assert not thread.is_alive(), "flwr run did not finish"
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    result = box["result"]
    assert isinstance(result, RunResult)
    records = _check(fed, result)
    assert len(records) == 1, records
    record, run_log = records[0], (result.run_dir / "run.log").read_text()
    assert record["num_replies"] + record["num_failures"] == NUM_NODES, record
    if sent:  # it replied before dying: the round has its reply
        assert record["num_replies"] == NUM_NODES and record["num_failures"] == 0, (delay, record)
    elif sending < 0:  # it died holding its train message
        assert record["num_replies"] == NUM_NODES - 1 and record["num_failures"] == 1, (delay, record)
    # (killed while sending: either outcome, as long as it is counted once)
    failed = re.findall(r"round 1: node (\d+) (?:\(partition [^)]*\) )?failed: ", run_log)
    assert failed == [victim_id] * record["num_failures"], (victim_id, failed, run_log)
    fed.timings["supernode killed, s after its train message"] = delay
    fed.timings["killed supernode had replied (1) or not (0)"] = float(sent)
    fed.timings["round with a killed node s"] = record["wall_s"]
    fed.timings["killed node reported unavailable by the SuperLink (1=yes)"] = float(
        "Node Unavailable" in result.output)


def test_poisoning_site_is_refused_and_the_round_still_learns(fed: Federation, tmp_path: Path) -> None:
    """Site 3 sends weights x -50 with num-examples 1e7 (its executor runs a patched ClientApp): the
    ServerApp leaves its reply out, names it, counts it, and the round learns as a clean one does."""
    victim = NUM_NODES  # killed by the test before; it comes back as an attacker
    node_id = re.findall(r"SuperNode ID: (\d+)", fed.nodes[victim].output())[-1]
    poison = dict(fed.env, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent / "poison"), fed.env["PYTHONPATH"]]))
    try:
        fed.start_node(victim, partition_id=victim - 1, num_partitions=NUM_NODES, env=poison, timeout=240)
        result = fed.run(f"{FEDAVG} num_rounds=1", tmp_path / "run")
    finally:
        fed.kill_node(victim)  # a crash; the next test restarts it at once
    records = _check(fed, result)
    assert records[0]["num_replies"] == NUM_NODES - 1 and records[0]["num_rejected"] == 1, records
    assert records[0]["num_failures"] == 1, records
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["final"]["accuracy"] > 0.5, summary  # the issue saw 0.028 with the poisoned reply averaged in
    log = (result.run_dir / "run.log").read_text()  # corolla's warnings; Flower's stream carries only its own
    assert re.search(rf"round 1: rejected reply from node {node_id}: .*(update norm|num-examples)", log), log
    fed.timings["1-round run with a poisoning site s"] = result.seconds


def test_killed_supernode_restarts_after_a_random_delay_and_rejoins_next_run(fed: Federation,
                                                                           tmp_path: Path) -> None:
    """Site 3 (crashed by the test before, or here when run alone) restarts a random 0-90 s after the crash:
    within the SuperLink's ~60 s it is still counted online and refused, and `corolla deploy supernode`
    starts it again with backoff; later it is accepted at once. Either way it takes part in the next run."""
    victim = NUM_NODES
    if fed.nodes[victim].popen.poll() is None:
        fed.kill_node(victim)
    delay = _random_delay("COROLLA_E2E_RESTART_DELAY_S", RESTART_WINDOW_S)
    print(f"\nrestarting supernode-{victim} {delay:.2f} s after its crash (COROLLA_E2E_RESTART_DELAY_S)")
    time.sleep(max(0.0, fed.killed_at[victim] + delay - time.monotonic()))
    since_crash = time.monotonic() - fed.killed_at[victim]
    assert fed.superlink is not None
    link_offset = len(fed.superlink.output())
    t0 = time.monotonic()
    proc = fed.start_node(victim, partition_id=victim - 1, num_partitions=NUM_NODES, timeout=240)
    connected_s = time.monotonic() - t0
    out = proc.output()
    node_id = re.findall(r"SuperNode ID: (\d+)", out)[-1]
    retries = len(re.findall(r"corolla deploy supernode: .* exited with", out))
    if since_crash > ONLINE_AFTER_CRASH_MAX_S + 5:  # its last heartbeat has lapsed: accepted at once
        assert retries == 0, (since_crash, out[-3000:])
    if retries:  # refused while still online: the SuperLink says so, naming the node
        fed.superlink.wait_for(rf"SuperNode with node ID {node_id} could not be activated", 10, after=link_offset)
    fed.timings["supernode restarted, s after its crash"] = since_crash
    fed.timings["supernode restart -> connected s"] = connected_s
    fed.timings["supernode restart: refusals before accepted"] = float(retries)
    result = fed.run(f"{FEDAVG} num_rounds=1", tmp_path / "run")
    fed.timings["1-round run after the SuperNode restart s"] = result.seconds
    records = _check(fed, result)
    assert records[0]["num_replies"] == NUM_NODES and records[0]["num_failures"] == 0, records


def test_revoked_site_is_refused_and_the_others_keep_working(fed: Federation, tmp_path: Path) -> None:
    """`corolla certs add-site` makes a new site's files; registered, its SuperNode connects. `corolla certs
    revoke --node-id` (the README's command) then unregisters it while it runs: the SuperLink drops it and
    refuses every restart (logged with the reason and the site's peer), and the other sites' next run is whole."""
    added = fed.check(corolla("certs", "add-site", str(fed.certs)), 60)
    index = int(re.search(r"supernode-(\d+)\.key", added).group(1))  # type: ignore[union-attr]
    site = tmp_path / "site-secrets"  # the site's own copy: revoke moves the operator's files only
    site.mkdir(mode=0o700)
    for name in ("ca.crt", f"supernode-{index}.key", f"supernode-{index}.secret"):
        shutil.copy2(fed.certs / name, site / name)
    node_id = fed.register(index)
    proc = fed.start_node(index, partition_id=0, num_partitions=NUM_NODES, name="supernode-revoked", certs=site,
                          timeout=120)
    assert fed.superlink is not None and fed.gateway is not None
    link_offset, gate_offset, node_offset = (len(p.output()) for p in (fed.superlink, fed.gateway, proc))
    out = fed.check(corolla("certs", "revoke", str(fed.certs), "--site", str(index), "--node-id", node_id,
                            "--connection", CONNECTION), 180)
    assert f"unregistered SuperNode {node_id}" in out, out
    assert not (fed.certs / f"supernode-{index}.key").exists()
    assert (fed.certs / "revoked" / f"supernode-{index}.key").is_file()
    assert (fed.certs / "supernode-1.key").is_file()  # no other site's files touched
    # Its next heartbeat is refused (401) and it exits; every restart is refused at activation.
    proc.wait_for(r"corolla deploy supernode: .* exited with", 120, after=node_offset)
    fed.superlink.wait_for(r"No SuperNode found with the given public key", 120, after=link_offset)
    assert "SuperNode ID:" not in proc.output()[node_offset:], proc.tail()
    _assert_refusals_name_the_peer(fed, link_after=link_offset, gate_after=gate_offset)
    nodes = _json(fed.check([str(BIN / "flwr"), "supernode", "list", CONNECTION, "--format", "json"], 60))["nodes"]
    states = {str(n["node-id"]): n["status"] for n in nodes}
    assert states.get(node_id) in (None, "unregistered"), states
    try:
        result = fed.run(f"{FEDAVG} num_rounds=1", tmp_path / "run")
    finally:
        executor = fed.others[fed.others.index(proc) + 1]
        for site_proc in (proc, executor):  # the former site goes away
            site_proc.stop()
    records = _check(fed, result)
    assert records[0]["num_replies"] == NUM_NODES and records[0]["num_failures"] == 0, records
    fed.timings["1-round run after a site was revoked s"] = result.seconds


def test_superlink_killed_mid_round_restarts_and_the_run_is_resubmitted(fed: Federation, tmp_path: Path) -> None:
    """The SuperLink crashes at a random moment of round 2 and restarts on its database; the SuperNodes and
    executors reconnect by themselves (no new registration); Flower fails the run in flight, and
    `corolla deploy resubmit` says so and submits it again from the run directory: it resumes after round 1."""
    assert fed.superlink is not None and fed.database.is_file()
    run_dir = tmp_path / "run"
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["result"] = fed.run(f"{FEDAVG} num_rounds=2", run_dir)
        except BaseException as ex:  # expected: the stream breaks when the SuperLink dies
            box["error"] = ex

    thread = threading.Thread(target=run)
    thread.start()
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not (metrics.exists() and read_jsonl(metrics)):
        assert time.monotonic() < deadline and thread.is_alive(), f"round 1 never finished\n{box}"
        time.sleep(0.5)
    # A random moment inside round 2, scaled to round 1's length: a fixed range fails on a fast, idle
    # machine, where round 2 can end before the kill.
    round_1_s = float(read_jsonl(metrics)[0]["wall_s"])
    offset = _random_delay("COROLLA_E2E_SUPERLINK_KILL_S", 0.5 * round_1_s)
    delay = 0.1 * round_1_s + offset
    print(f"\nkilling the SuperLink {delay:.2f} s into round 2 (COROLLA_E2E_SUPERLINK_KILL_S={offset:.2f})")
    time.sleep(delay)
    assert len(read_jsonl(metrics)) == 1, "round 2 finished before the crash; the test needs a mid-round kill"
    fed.superlink.kill()  # a crash, not a clean shutdown
    fed.timings["superlink killed, s into round 2"] = delay
    fed.timings["superlink restart s"] = fed.start_superlink(name="superlink-restarted")
    thread.join(300)
    assert not thread.is_alive()
    t0 = time.monotonic()
    out = fed.check(corolla("deploy", "resubmit", str(run_dir), "--connection", CONNECTION), 800)
    fed.timings["resubmit (waiting for the old run to end, then round 2) s"] = time.monotonic() - t0
    # Either Flower failed the run in flight (the usual case) and it was resubmitted, saying so, or its
    # ServerApp carried on across the restart; both end with the complete run in the same directory.
    resubmitted = "does not continue a run across a SuperLink restart" in out and "resumes after round 1 of 2" in out
    assert resubmitted or "carried on across the restart" in out, out
    records = read_jsonl(metrics)
    assert [r["round"] for r in records] == [1, 2], records
    assert records[1]["num_replies"] == NUM_NODES and records[1]["num_failures"] == 0, (records, fed.diagnostics())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["rounds"] == 2 and summary["final"]["accuracy"] > 0.5, summary
    ids = json.loads((run_dir / "flower-run.json").read_text())["run_ids"]
    assert len(ids) == (2 if resubmitted else 1) and fed.run_status(str(ids[-1])) == "finished:completed"
    fed.timings["superlink crash: run resubmitted (1) or carried on (0)"] = float(resubmitted)
    assert all(p.popen.poll() is None for p in fed.nodes.values()), fed.diagnostics()
