"""secagg=true in a deployment (TLS, node auth, 3 SuperNodes): a node dies after sharing, the round still sums right."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.e2e.harness import Federation, RunResult, read_jsonl, running_federation

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

NUM_NODES = 3
# With 3 nodes the Shamir threshold is 2 only when a third may drop (the default 0.2 needs all 3).
COMMON = f"strategy=fedavg task=digits model=mlp task.num_clients={NUM_NODES} strategy.fraction_train=1.0 num_rounds=1"
SECURE = f"{COMMON} secagg=true secure_aggregation.max_dropout=0.4 engine.timeout_s=150"


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    with running_federation(tmp_path_factory.mktemp("secagg"), NUM_NODES) as fed:
        yield fed


def _weights(run_dir: Path) -> dict[str, np.ndarray]:
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    return {k: np.asarray(v, dtype=np.float64) for k, v in state["model"].items()}


def _plain_without(partition: int, run_dir: Path) -> dict[str, np.ndarray]:
    """The same round in-process without secure aggregation, the partition's training reply lost."""
    from bench.inline import run_inline
    from simulation.inline import FIRST_NODE_ID, InlineGrid

    original = InlineGrid.send_and_receive

    def send_and_receive(self: Any, messages: Any, *, timeout: float | None = None) -> list[Any]:
        replies = list(original(self, messages, timeout=timeout))
        return [r for r in replies if not (r.metadata.message_type == "train"
                                           and r.metadata.src_node_id == FIRST_NODE_ID + partition)]

    InlineGrid.send_and_receive = send_and_receive  # type: ignore[method-assign]
    try:
        run_inline([*COMMON.split(), "progress=false", "plots=false"], run_dir)
    finally:
        InlineGrid.send_and_receive = original  # type: ignore[method-assign]
    return _weights(run_dir)


def test_secure_round_completes_with_the_right_sum_when_a_node_dies_after_sharing(fed: Federation,
                                                                                  tmp_path: Path) -> None:
    victim = fed.nodes[NUM_NODES]
    offset = len(victim.output())
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["result"] = fed.run(SECURE, tmp_path / "run", timeout=400)
        except BaseException as ex:  # surfaced below
            box["error"] = ex

    thread = threading.Thread(target=run)
    thread.start()
    try:
        # Keys and shares went first; the training message is the masking request: the node has
        # shared its mask secrets and dies before it sends its masked update.
        victim.wait_for(r"Receiving: query\.secagg_shares message", 180, after=offset)
        victim.wait_for(r"Receiving: train message", 120, after=offset)
    finally:
        fed.kill_node(NUM_NODES)
    thread.join(450)
    assert not thread.is_alive(), "flwr run did not finish"
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    result = box["result"]
    assert isinstance(result, RunResult)
    assert result.status == "finished:completed", f"run {result.run_id}: {result.status}\n{result.output[-4000:]}"
    records = read_jsonl(result.run_dir / "metrics.jsonl")
    assert len(records) == 1 and records[0]["secagg_survivors"] == 2 and records[0]["secagg_dropped"] == 1, records
    log = (result.run_dir / "run.log").read_text()
    assert re.search(r"secure sum: 1 of 3 clients dropped after sharing; their masks were removed", log), log
    # The unmasked mean is the plain mean of the two survivors' updates (within the quantisation
    # error and float noise between processes): a mask left in would be off by ~2^31 steps.
    secure = _weights(result.run_dir)
    plain = _plain_without(NUM_NODES - 1, tmp_path / "plain")
    assert max(np.abs(secure[k] - plain[k]).max() for k in plain) < 1e-3
