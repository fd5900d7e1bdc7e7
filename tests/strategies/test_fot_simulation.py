"""FOT through Flower's simulation engine: sketches at every task switch, a growing basis, continual metrics."""

from __future__ import annotations

import math
from pathlib import Path

from tests.simrun import read_metrics, read_summary, run_corolla, run_dir_of


def test_fot_on_permuted_digits_grows_its_basis_at_each_task_switch(tmp_path: Path) -> None:
    result = run_corolla(["run", "strategy=fot", "task=permuted-digits", "model=mlp", "model.bias=false",
                          "task.num_clients=6", "strategy.fraction_train=0.5", "num_rounds=10",
                          "progress=false", "plots=false", f"out_dir={tmp_path}/runs"])
    run_dir = run_dir_of(result)
    records = read_metrics(run_dir)
    assert [r["task"] for r in records] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    switches = {3, 5, 7, 9}  # the first round of tasks 1-4 starts with the sketch exchange
    dims = [r["fot_basis_dim"] for r in records]
    assert dims[:2] == [0, 0]
    for r, before in zip(records[1:], records):
        grew = r["fot_basis_dim"] > before["fot_basis_dim"]
        assert grew == (r["round"] in switches), dims
    for r in records:
        if r["round"] in switches:  # the 3 clients of the task's last round answered
            assert r["fot_sketch_clients"] == 3 and r["fot_sketch_bytes"] > 0
            # their sketches travel on top of the round's training uplink
            assert r["uplink_bytes"] >= records[0]["uplink_bytes"] + r["fot_sketch_bytes"]
        else:
            assert r["fot_sketch_bytes"] == 0
        assert r["server_s"] >= 0 and r["fot_eps"] == 0.96
    summary = read_summary(run_dir)
    continual = summary["continual"]
    assert 0.0 <= continual["acc"] <= 1.0 and math.isfinite(continual["fgt"])
    assert len(continual["matrix"]) == 5
    assert summary["fot"]["basis_dims"] and summary["fot"]["sketch_uplink_bytes"] > 0
