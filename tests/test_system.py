"""The `system` group: simulated availability, dropouts, stragglers and the simulated clock."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from simulation.inline import run_inline
from conf.compose import compose
from conf.errors import ConfigError
from server.config_check import check_config
from server.system import SystemModel, system_config, time_to_accuracy

TINY = ["task=digits", "model=mlp", "task.num_clients=6", "strategy.fraction_train=0.5",
        "progress=false", "plots=false"]
COMMON = ("round", "task", "accuracy", "loss", "num_replies", "num_failures", "num_rejected",
          "uplink_bytes", "downlink_bytes", "train_loss", "train_accuracy")


def _model(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints/last.pt", weights_only=False)["model"]


def _world(name: str, *extra: str, num_clients: int = 100) -> SystemModel:
    cfg = compose([f"system={name}", *extra])
    return SystemModel(system_config(cfg), seed=0, num_clients=num_clients, train=cfg["train"],
                       partition_of=lambda node: node)


def test_ideal_is_the_default_and_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert compose([])["system"]["name"] == "ideal"
    summary, records, run_dir = run_inline([*TINY, "num_rounds=2"], tmp_path / "ideal")
    # The same run without any system model in the guard: the code path before the group existed.
    monkeypatch.setattr("server.coordinator.SystemModel", lambda *a, **k: None)
    base_summary, base_records, base_dir = run_inline([*TINY, "num_rounds=2"], tmp_path / "base")
    assert [{k: r[k] for k in COMMON} for r in records] == [{k: r[k] for k in COMMON} for r in base_records]
    assert summary["final"] == base_summary["final"]
    model, base = _model(run_dir), _model(base_dir)
    assert all(torch.equal(model[k], base[k]) for k in base)
    # ... and the clock still runs: every client equally fast, the round lasts its slowest reply.
    assert [r["num_late"] for r in records] == [0, 0]
    assert 0 < records[0]["sim_time_s"] < records[1]["sim_time_s"]
    assert summary["timing"]["sim_time_s"] == records[-1]["sim_time_s"]
    assert "sim_time_s" not in {k for r in base_records for k in r} - {"sim_time_s"}


@pytest.mark.parametrize(("override", "key"), [
    ("system.availability=sometimes", "system.availability"),
    ("system.dropout=1.0", "system.dropout"),
    ("system.online_prob=0.5", "system.online_prob"),        # with availability=always: no effect
    ("system.slow_factor=0.5", "system.slow_factor"),
    ("system.deadline_s=0", "system.deadline_s"),
    ("system.tta_targets=[1.5]", "system.tta_targets"),
    ("+system.speedup=2", "system.speedup"),
    ("system.partial_work=true", "system.partial_work"),     # without a deadline: nothing to cut at
])
def test_bad_system_settings_are_refused_before_any_engine(override: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_config(compose([*TINY, override]))
    assert err.value.key.startswith(key) and key in str(err.value)


def test_the_world_is_seeded_per_client_and_round() -> None:
    flaky = _world("flaky")
    online = [[flaky.online(c, r) for c in range(100)] for r in range(1, 6)]
    again = _world("flaky")   # a resume builds its world anew: the same one
    assert online == [[again.online(c, r) for c in range(100)] for r in range(1, 6)]
    assert online[0] != online[1]
    share = sum(map(sum, online)) / 500
    assert 0.6 < share < 0.8   # online_prob 0.7
    drops = sum(flaky.drops_out(c, r) for c in range(100) for r in range(1, 6)) / 500
    assert 0.05 < drops < 0.15  # dropout 0.1
    stragglers = _world("stragglers")
    speeds = [stragglers.speed(c) for c in range(100)]
    assert speeds.count(0.1) == 10 and speeds.count(1.0) == 90   # exactly 10 % are 10x slower
    lognormal = _world("ideal", "system.speed=lognormal", "system.speed_sigma=0.5")
    assert len({lognormal.speed(c) for c in range(10)}) == 10
    diurnal = _world("ideal", "system.availability=diurnal", "system.online_prob=0.5",
                     "system.diurnal_amplitude=0.5", "system.diurnal_period=4")
    assert {round(diurnal.online_prob(3, r) - diurnal.online_prob(3, r + 4), 9) for r in range(8)} == {0.0}
    assert len({round(diurnal.online_prob(3, r), 6) for r in range(4)}) > 1


def test_a_client_round_costs_its_steps_and_its_bytes() -> None:
    world = _world("stragglers", "train.batch_size=10", "train.epochs=2", "system.bandwidth_mbps=8")
    slow = next(c for c in range(100) if world.speed(c) < 1)
    fast = next(c for c in range(100) if world.speed(c) == 1)
    # 2 epochs x 10 steps x 0.05 s, plus 2 MB at 1 MB/s
    assert world.duration(fast, num_examples=100, down_bytes=10**6, up_bytes=10**6) == pytest.approx(1.0 + 2.0)
    assert world.duration(slow, num_examples=100, down_bytes=0, up_bytes=0) == pytest.approx(10.0)


def test_time_to_accuracy() -> None:
    history = [{"accuracy": 0.3, "sim_time_s": 5.0}, {"accuracy": 0.6, "sim_time_s": 9.0}]
    assert time_to_accuracy(history, [0.2, 0.5, 0.9]) == {"0.2": 5.0, "0.5": 9.0, "0.9": None}


def test_stragglers_past_the_deadline_are_left_out_and_counted(tmp_path: Path) -> None:
    # half the clients 10x slower: their round takes > 0.5 s (the deadline), the others' well under
    args = [*TINY, "num_rounds=2", "system=stragglers", "system.slow_fraction=0.5",
            "system.deadline_s=0.5", "system.step_cost_s=0.01", "system.bandwidth_mbps=1000",
            "system.tta_targets=[0.01,0.999]", "failures.max_fraction=1.0", "strategy.fraction_train=1.0"]
    summary, records, _ = run_inline(args, tmp_path / "run")
    for r in records:
        assert r["num_late"] == 3 and r["num_replies"] == 3 and r["num_failures"] == 3
    assert [r["sim_time_s"] for r in records] == [0.5, 1.0]   # each round waited until the deadline
    assert summary["failures"]["total"] == 6
    assert summary["time_to_accuracy"] == {"0.01": 0.5, "0.999": None}


def test_partial_work_sends_the_steps_a_straggler_finished_by_the_deadline(tmp_path: Path) -> None:
    args = [*TINY, "num_rounds=2", "system=stragglers", "system.slow_fraction=0.5", "system.deadline_s=0.5",
            "system.step_cost_s=0.01", "system.bandwidth_mbps=1000", "failures.max_fraction=1.0",
            "strategy.fraction_train=1.0", "system.partial_work=true"]
    summary, records, _ = run_inline(args, tmp_path / "run")
    world = _world("stragglers", "system.slow_fraction=0.5", "system.deadline_s=0.5", "system.step_cost_s=0.01",
                   "system.bandwidth_mbps=1000", "system.partial_work=true", num_clients=6)
    slow = [p for p in range(6) if world.speed(p) < 1]
    assert len(slow) == 3
    for r in records:   # every client replies in time; the slow ones with the steps they could do
        assert r["num_replies"] == 6 and r["num_late"] == 0 and r["num_failures"] == 0
        assert 0.5 < r["work_fraction"] < 1.0
    assert records[-1]["sim_time_s"] <= 2 * 0.5 and summary["failures"]["total"] == 0
    # the same world without partial work: the slow half sends nothing
    _, without, _ = run_inline([a for a in args if a != "system.partial_work=true"], tmp_path / "all-or-nothing")
    assert [r["num_late"] for r in without] == [3, 3] and "work_fraction" not in without[0]
    # deterministic under the seed
    _, again, _ = run_inline(args, tmp_path / "again")
    assert [(r["accuracy"], r["work_fraction"], r["sim_time_s"]) for r in again] == \
        [(r["accuracy"], r["work_fraction"], r["sim_time_s"]) for r in records]


def test_a_step_budget_fits_the_deadline() -> None:
    world = _world("stragglers", "system.deadline_s=2", "system.partial_work=true", num_clients=10)
    for p in range(10):
        steps = world.step_budget(p, down_bytes=10_000)
        assert world.duration(p, num_examples=10**6, down_bytes=10_000, up_bytes=10_000, steps=steps) <= 2.0
        assert world.duration(p, num_examples=10**6, down_bytes=10_000, up_bytes=10_000, steps=steps + 1) > 2.0
    assert world.step_budget(0, down_bytes=10**9) is None      # the transfer alone misses the deadline


@pytest.mark.parametrize("strategy", ["fedavg", "fot"])
def test_strategies_run_under_flaky_and_count_what_they_lost(tmp_path: Path, strategy: str) -> None:
    args = [*TINY, f"strategy={strategy}", "num_rounds=3", "system=flaky", "system.dropout=0.3",
            "task.num_clients=10", "failures.max_fraction=1.0"]
    summary, records, _ = run_inline(args, tmp_path / "run")
    assert len(records) == 3 and summary["final"]["accuracy"] is not None
    world = _world("flaky", "system.dropout=0.3", num_clients=10)
    lost = sum(r["num_failures"] for r in records)
    assert lost == summary["failures"]["total"] > 0     # dropped clients never replied
    # sampling among the clients online this round: half of them (at least min_train_nodes=2)
    online = [max(sum(world.online(c, r) for c in range(10)), 2) for r in (1, 2, 3)]
    assert [r["num_replies"] + r["num_failures"] for r in records] == [max(n // 2, 2) for n in online]
    assert online != [10, 10, 10]


def test_the_readme_commands_compose_and_pass_the_check() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    commands = [line.split()[2:] for line in readme.splitlines()
                if line.split()[:2] in (["corolla", "run"], [".venv/bin/corolla", "run"]) and "system=" in line.split()[2]]
    assert commands
    for overrides in commands:
        cfg = compose(overrides)
        check_config(cfg)
        assert system_config(cfg).deadline_s == 20 and system_config(cfg).tta_targets == [0.7, 0.8]
        assert _world("stragglers").speed(0) in (0.1, 1.0)


def test_a_resumed_flaky_run_sees_the_same_world_and_clock(tmp_path: Path) -> None:
    from tests.simrun import FAST, read_metrics, run_corolla, run_dir_of

    args = ["run", "engine=inline", *FAST, "system=flaky", "system.dropout=0.3",
            "system.deadline_s=2", "system.partial_work=true", "system.step_cost_s=0.5",
            "failures.max_fraction=1.0", "seed=3"]
    full = run_dir_of(run_corolla([*args, "num_rounds=4", f"hydra.run.dir={tmp_path / 'full'}"]))
    part = run_dir_of(run_corolla([*args, "num_rounds=2", f"hydra.run.dir={tmp_path / 'part'}"]))
    resumed = run_dir_of(run_corolla(["run", f"resume={part}", "num_rounds=4"]))
    keys = ("round", "num_replies", "num_failures", "num_late", "sim_time_s", "accuracy", "work_fraction")
    expected = [{k: r.get(k) for k in keys} for r in read_metrics(full)]
    assert [{k: r.get(k) for k in keys} for r in read_metrics(resumed)] == expected
    assert sum(r["num_failures"] for r in expected) > 0 and expected[-1]["sim_time_s"] > 0
    assert all(r["work_fraction"] < 1.0 for r in expected if r["num_replies"])    # every client cut its work at the deadline
    model, base = _model(resumed), _model(full)
    assert all(torch.equal(model[k], base[k]) for k in base)
