"""The topology of deploy/'s compose and Kubernetes files, as local processes: --isolation process."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.e2e.harness import Federation, corolla, read_jsonl

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

NUM_NODES = 3


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """SuperLink and SuperNodes that start no apps themselves, each with its own executor process."""
    fed = Federation(tmp_path_factory.mktemp("process-isolation"), num_keys=NUM_NODES)
    try:
        fed.timings["superlink start s"] = fed.start_superlink(isolation="process")
        # The ServerApp executor: TLS to the SuperLink's one port, as the compose/k8s sidecar.
        fed.start_other("serverapp-executor", corolla("deploy", "superexec", "--runtime-api-address", fed.address,
                                                      "--ca", str(fed.certs / "ca.crt")))
        for i in range(1, NUM_NODES + 1):
            fed.register(i)
            fed.start_node(i, partition_id=i - 1, num_partitions=NUM_NODES, extra=["--isolation", "process"])
            fed.start_other(f"clientapp-executor-{i}", corolla(
                "deploy", "superexec", "--runtime-api-address", f"127.0.0.1:{fed.node_ports[i]}", "--insecure"))
        yield fed
    finally:
        fed.stop_all()
        print(f"\nprocess-isolation timings: { {k: round(v, 2) for k, v in fed.timings.items()} }")


def test_one_round_with_separate_app_executors(fed: Federation, tmp_path_factory: pytest.TempPathFactory) -> None:
    t0 = time.monotonic()
    result = fed.run("strategy=fedavg task=digits model=mlp task.num_clients=3 strategy.fraction_train=1.0 "
                     "num_rounds=1", tmp_path_factory.mktemp("run") / "run")
    fed.timings["1-round run s"] = time.monotonic() - t0
    assert result.status == "finished:completed", result.output[-4000:] + fed.diagnostics()
    records = read_jsonl(result.run_dir / "metrics.jsonl")
    assert records[0]["num_replies"] == NUM_NODES and records[0]["num_failures"] == 0, records
    assert (result.run_dir / "summary.json").is_file() and (result.run_dir / "config.yaml").is_file()
    # The SuperLink and SuperNodes ran no app themselves: the executors did.
    assert fed.superlink is not None and "Starting Flower SuperExec" not in fed.superlink.output()
    assert all("Starting Flower SuperExec" not in p.output() for p in fed.nodes.values())
