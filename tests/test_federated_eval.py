"""Federated evaluation: clients' own test splits, the distribution per round, config refusals."""

from __future__ import annotations

import numpy as np
import pytest

from conf.errors import ConfigError
from data import load_task
from server.federated import FederatedEvaluation, check_evaluate_config, summarise, summary_section
from tests.data.makers import image_folder
from tests.simrun import REPO, read_metrics, read_summary, run_corolla, run_dir_of


def test_summary_weights_by_examples_and_keeps_the_distribution() -> None:
    out = summarise({0: (1.0, 0.1, 30), 1: (0.5, 0.9, 10), 2: (0.0, 2.0, 10)}, failures=1)
    assert out["accuracy"] == pytest.approx(35 / 50) and out["loss"] == pytest.approx((3 + 9 + 20) / 50)
    assert out["mean"] == pytest.approx(0.5) and out["worst"] == 0.0
    assert out["p10"] == pytest.approx(np.percentile([1.0, 0.5, 0.0], 10))
    assert out["per_client"] == {"0": 1.0, "1": 0.5, "2": 0.0} and out["num_failures"] == 1
    assert summarise({})["accuracy"] is None
    history = [{"round": 1, "clients": out}, {"round": 2}]
    assert summary_section(history)["round"] == 1


def test_every_and_the_last_round() -> None:
    fed = FederatedEvaluation({"evaluate": {"where": "clients", "every": 3}, "num_rounds": 7})
    assert [r for r in range(1, 8) if fed.due(r)] == [3, 6, 7]
    assert not fed.on_server and FederatedEvaluation({"evaluate": {"where": "both"}, "num_rounds": 1}).on_server


@pytest.mark.parametrize("cfg, match", [
    ({"evaluate": {"where": "sites"}}, "evaluate.where='sites' is not one of server, clients, both"),
    ({"evaluate": {"where": "clients", "every": 0}}, "evaluate.every=0 must be an integer >= 1"),
    ({"evaluate": {"where": "clients"}, "task": {"name": "permuted-digits", "continual": {"kind": "permuted"}}},
     "continual tasks keep server evaluation"),
    ({"evaluate": {"where": "both"}, "strategy": {"name": "creamfl"}}, "CreamFL keeps server evaluation"),
    ({"evaluate": {"where": "clients"}, "task": {"name": "digits", "local_test_fraction": 0.0}},
     "set task.local_test_fraction"),
])
def test_refusals_name_the_key(cfg: dict, match: str) -> None:
    full = {"strategy": {"name": "fedavg"}, "task": {"name": "digits", "local_test_fraction": 0.2}, **cfg}
    with pytest.raises(ConfigError, match=match):
        check_evaluate_config(full)


def test_local_test_splits_are_disjoint_from_training_and_seeded() -> None:
    a = load_task({"name": "digits", "local_test_fraction": 0.25}, seed=3)
    b = load_task({"name": "digits", "local_test_fraction": 0.25}, seed=3)
    for c in range(a.num_clients):
        train, local = a.tasks[0].clients[c], a.tasks[0].local_tests[c]
        assert len(local) and not np.intersect1d(train, local).size
        assert np.array_equal(local, b.tasks[0].local_tests[c])
        assert len(a.client_test(c)) == len(local)
    assert len(load_task({"name": "digits"}, seed=3).client_test(0)) == 0  # default: none


def test_clients_evaluate_a_custom_model_under_fot_and_the_server_needs_no_test_split(tmp_path) -> None:
    root = image_folder(tmp_path / "images", per_class=30)
    result = run_corolla(
        ["run", "task=imagefolder", f"task.data_dir={root}", "strategy=fot", "model=custom",
         "model.factory=my_models.nets:make_net", "evaluate.where=clients", "evaluate.every=2",
         "num_rounds=3", "progress=false", "plots=false", f"out_dir={tmp_path / 'runs'}"],
        timeout=420, extra_pythonpath=[REPO / "examples" / "custom-model"])
    run_dir = run_dir_of(result)
    rounds = read_metrics(run_dir)
    assert [("clients" in r) for r in rounds] == [False, True, True]  # every=2, and the last round
    assert rounds[0]["accuracy"] is None  # no server evaluation at all
    last = rounds[-1]["clients"]
    assert set(last["per_client"]) == {"0", "1", "2"} and last["num_clients"] == 3
    assert last["worst"] <= last["p10"] <= last["mean"] and rounds[-1]["accuracy"] == last["accuracy"]
    summary = read_summary(run_dir)
    assert summary["final"]["split"] == "clients" and summary["clients"]["round"] == 3
    assert summary["final"]["accuracy"] == last["accuracy"] > 0.4  # chance: 0.2
