"""Every built-in strategy runs a short experiment in deployment (TLS, node auth), its code unchanged."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from strategies.registry import available_strategies
from tests.e2e.harness import Federation, read_jsonl, running_federation

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

NUM_NODES = 3
BASE = f"task.num_clients={NUM_NODES} strategy.fraction_train=1.0"
# A short setting per strategy that exercises its own phases; a new strategy without a recipe
# gets the generic one (FedAvg-like methods need nothing else).
RECIPES = {
    "fedprox": f"strategy=fedprox task=digits model=mlp {BASE} num_rounds=1",
    # 2 tasks of 1 round: round 2 opens with the subspace-sketch exchange.
    "fot": f"strategy=fot task=permuted-digits task.continual.num_tasks=2 model=mlp model.bias=false {BASE} "
           "num_rounds=2",
    # The class-statistics phase, then one round of the base strategy.
    "ggeur": f"strategy=ggeur task=digits-dirichlet task.alpha=0.5 model=linear {BASE} num_rounds=1",
    # One client of each type; representations of a small public set travel, not weights.
    "creamfl": f"strategy=creamfl task=captioned task.clients.image=1 task.clients.text=1 "
               f"task.clients.image_text=1 task.public_size=100 task.private_size=300 task.val_size=60 "
               f"task.test_size=100 {BASE} num_rounds=1",
    # Asynchronous: replies taken in real arrival order; 2 server steps of every node's update.
    "fedbuff": f"strategy=fedbuff task=digits model=mlp task.num_clients={NUM_NODES} "
               f"strategy.concurrency={NUM_NODES} strategy.buffer_size={NUM_NODES} num_rounds=2",
}
GENERIC = "strategy={name} task=digits model=mlp " + BASE + " num_rounds=1"
STRATEGIES = sorted(n for n, origin in available_strategies().items() if origin == "built-in" and n != "fedavg")


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    with running_federation(tmp_path_factory.mktemp("strategies"), NUM_NODES) as fed:
        try:
            yield fed
        finally:
            print(f"\nstrategy run times: { {k: round(v, 1) for k, v in fed.timings.items()} }")


@pytest.mark.parametrize("name", STRATEGIES)
def test_strategy_runs_in_deployment(fed: Federation, name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    overrides = RECIPES.get(name, GENERIC.format(name=name))
    assert fed.superlink is not None
    link_log_at = len(fed.superlink.output())
    result = fed.run(overrides, tmp_path_factory.mktemp(name) / "run", timeout=600)
    time.sleep(2)   # a site still training would push its reply about now
    # No site is left working for a finished run (FedBuff's clients still in flight are waited for).
    assert "Run is finished" not in fed.superlink.output()[link_log_at:], fed.superlink.tail()
    fed.timings[f"{name} run s"] = result.seconds
    assert result.status == "finished:completed", result.output[-5000:]
    records = read_jsonl(result.run_dir / "metrics.jsonl")
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["strategy"] == name and len(records) == summary["rounds"], (summary, records)
    assert all(r["num_failures"] == 0 and r["num_replies"] == NUM_NODES for r in records), records
    if name == "fot":
        assert records[1]["fot_basis_dim"] > records[0]["fot_basis_dim"] == 0, records
        assert records[1]["fot_sketch_clients"] == NUM_NODES and records[1]["fot_sketch_bytes"] > 0
    if name == "fedbuff":
        assert all(len(r["staleness"]) == NUM_NODES for r in records), records
    if name == "ggeur":
        assert summary["ggeur"]["clients_used"] == NUM_NODES and summary["ggeur"]["clients_failed"] == 0
