"""FedBuff: buffered asynchronous aggregation on the simulated clock (strategies/fedbuff.py, server/system/asynchronous.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord

from conf.compose import compose
from conf.errors import ConfigError
from server.config_check import check_config
from simulation.inline import run_inline
from strategies.fedbuff import FedBuffServer, Flight
from strategies.registry import parse_strategy_config

TINY = ["strategy=fedbuff", "task=digits", "model=mlp", "task.num_clients=10", "progress=false", "plots=false"]
STRAGGLERS = ["system=stragglers", "system.slow_fraction=0.3"]


def _server(**overrides: object) -> FedBuffServer:
    return FedBuffServer(config=parse_strategy_config({"name": "fedbuff", **overrides}))


def test_the_server_step_weights_updates_by_staleness() -> None:
    server = _server(buffer_size=2, staleness_exponent=0.5, server_lr=1.0)
    zero = ArrayRecord({"w": Array(np.zeros(2, dtype=np.float32))})
    server.bases = {0: zero}
    server.version = 3   # both clients were sent version 0: one is 3 steps stale
    server.add_update(ArrayRecord({"w": Array(np.array([4.0, 0.0], dtype=np.float32))}), Flight(1, 0, 0, 0.0))
    server.version = 0
    assert server.add_update(ArrayRecord({"w": Array(np.array([0.0, 2.0], dtype=np.float32))}), Flight(2, 1, 0, 0.0))
    stepped = server.step(zero)
    # (1/K) * (4 / sqrt(1 + 3), 2 / sqrt(1 + 0)) = (1, 1)
    assert np.allclose(stepped["w"].numpy(), [1.0, 1.0]) and stepped["w"].numpy().dtype == np.float32
    assert server.version == 1 and server.buffer == [] and server.round_metrics(1)["staleness"] == [3, 0]
    assert server.weight(0) == 1.0 and server.weight(3) == pytest.approx(0.5)


def test_its_state_survives_a_checkpoint() -> None:
    server = _server()
    server.version, server.ticket, server.clock, server.step_clock = 4, 17, 12.5, 11.0
    server.in_flight = {16: Flight(16, 3, 2, 10.0), 17: Flight(17, 5, 4, 12.5)}
    server.bases = {2: ArrayRecord({"w": Array(np.ones(3, dtype=np.float32))}),
                    4: ArrayRecord({"w": Array(np.zeros(3, dtype=np.float32))})}
    server.buffer = [({"w": np.full(3, 0.5, dtype=np.float32)}, 1)]
    saved = torch.load(_save(server.state_dict()), weights_only=False)
    again = _server()
    again.load_state_dict(saved)
    assert (again.version, again.ticket, again.clock, again.step_clock) == (4, 17, 12.5, 11.0)
    assert again.in_flight == server.in_flight
    assert np.array_equal(again.bases[2]["w"].numpy(), np.ones(3)) and again.buffer[0][1] == 1


def _save(state: dict) -> str:
    import tempfile

    path = tempfile.mktemp(suffix=".pt")
    torch.save(state, path)
    return path


def test_fedbuff_learns_digits_and_records_staleness(tmp_path: Path) -> None:
    summary, records, _ = run_inline([*TINY, "num_rounds=10"], tmp_path / "run")
    assert summary["final"]["accuracy"] > max(0.6, records[0]["accuracy"] + 0.2)   # chance is 0.1
    for r in records:   # one round = one server step of buffer_size (3) updates
        assert r["num_replies"] == 3 and len(r["staleness"]) == 3 and all(s >= 0 for s in r["staleness"])
        assert r["staleness_mean"] == sum(r["staleness"]) / 3 and r["staleness_max"] == max(r["staleness"])
    assert max(r["staleness_max"] for r in records) >= 1     # concurrency 5 > K 3: some updates are stale
    times = [r["sim_time_s"] for r in records]
    assert times == sorted(times) and times[-1] == summary["timing"]["sim_time_s"] > 0


def test_under_stragglers_it_does_not_wait_for_the_slow(tmp_path: Path) -> None:
    """Simulated order: fast clients' updates go first; the slow ones arrive many steps stale."""
    _, fedbuff, _ = run_inline([*TINY, *STRAGGLERS, "num_rounds=8"], tmp_path / "fedbuff")
    _, fedavg, _ = run_inline([*TINY, *STRAGGLERS, "strategy=fedavg", "num_rounds=3"], tmp_path / "fedavg")
    # a synchronous round waits for its slowest client (10x slower); 8 FedBuff steps take less than 3 rounds
    assert fedbuff[-1]["sim_time_s"] < fedavg[-1]["sim_time_s"]
    assert max(r["staleness_max"] for r in fedbuff) >= 3


def test_a_deployment_takes_replies_in_real_arrival_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On an HttpGrid the loop takes what comes first; the in-process grid answers at once, in dispatch
    order, so the slow clients' updates are taken as fresh as the others'."""
    monkeypatch.setattr("server.coordinator.is_deployed", lambda grid: True)   # the inline grid stands for a deployment's
    summary, records, _ = run_inline([*TINY, *STRAGGLERS, "num_rounds=8"], tmp_path / "real")
    assert summary["status"] == "completed" and len(records) == 8
    assert max(r["staleness_max"] for r in records) <= 2   # no update waits behind a simulated straggler


def test_a_deployed_run_waits_for_clients_still_training_before_it_ends(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """FedBuff keeps `concurrency` clients busy to the last version; in a deployment the run waits for
    their replies (and discards them) so no site pushes into a finished run. Simulation does not."""
    from server.system.asynchronous import AsyncLoop

    drained: list[tuple[int, int]] = []
    real_drain = AsyncLoop.drain

    def spy(self: AsyncLoop, limit_s: float) -> None:
        before = len(self.pending)
        real_drain(self, limit_s)
        drained.append((before, len(self.pending)))

    monkeypatch.setattr(AsyncLoop, "drain", spy)
    run_inline([*TINY, "num_rounds=2"], tmp_path / "simulated")
    assert drained == []
    from simulation.inline import InlineGrid

    def one_at_a_time(self: InlineGrid, message_ids: list[str]) -> list:   # replies trickle in, as on a SuperLink
        ready = [i for i in message_ids if i in self._replies]
        return [self._replies.pop(ready[0])] if ready else []

    monkeypatch.setattr(InlineGrid, "pull_messages", one_at_a_time)
    monkeypatch.setattr("server.coordinator.is_deployed", lambda grid: True)
    summary, _, _ = run_inline([*TINY, "num_rounds=2"], tmp_path / "deployed")
    assert summary["status"] == "completed"
    (before, after), = drained
    assert before > 0 and after == 0   # concurrency 5 > K 3: clients were still training, now answered


def test_a_resumed_fedbuff_run_repeats_the_uninterrupted_one(tmp_path: Path) -> None:
    from tests.simrun import read_metrics, run_corolla, run_dir_of

    args = ["run", "engine=inline", *TINY, "system=flaky", "system.dropout=0.3", "system.speed=slow_fraction",
            "system.slow_fraction=0.3", "system.slow_factor=10", "failures.max_fraction=1.0", "seed=2"]
    full = run_dir_of(run_corolla([*args, "num_rounds=6", f"hydra.run.dir={tmp_path / 'full'}"]))
    part = run_dir_of(run_corolla([*args, "num_rounds=3", f"hydra.run.dir={tmp_path / 'part'}"]))
    state = torch.load(part / "checkpoints/last.pt", weights_only=False)["strategy"]
    assert state["version"] == 3 and state["in_flight"] and state["buffer"] == []   # clients were in flight
    resumed = run_dir_of(run_corolla(["run", f"resume={part}", "num_rounds=6"]))
    keys = ("round", "num_replies", "num_failures", "sim_time_s", "staleness", "accuracy")
    expected = [{k: r[k] for k in keys} for r in read_metrics(full)]
    assert [{k: r[k] for k in keys} for r in read_metrics(resumed)] == expected
    assert sum(r["num_failures"] for r in expected) > 0
    model = torch.load(resumed / "checkpoints/last.pt", weights_only=False)["model"]
    base = torch.load(full / "checkpoints/last.pt", weights_only=False)["model"]
    assert all(torch.equal(model[k], base[k]) for k in base)


@pytest.mark.parametrize(("override", "key"), [
    ("strategy.buffer_size=0", "strategy.buffer_size"),
    ("strategy.concurrency=0", "strategy.concurrency"),
    ("strategy.server_lr=0", "strategy.server_lr"),
    ("strategy.staleness_exponent=-1", "strategy.staleness_exponent"),
    ("+strategy.fraction_train=0.5", "strategy.fraction_train"),
    ("secagg=true", "secagg"),
])
def test_bad_fedbuff_settings_are_refused_before_any_engine(override: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_config(compose(["strategy=fedbuff", override]))
    assert err.value.key == key


def test_the_readme_fedbuff_command_composes_and_passes_the_check() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    commands = [line.split()[2:] for line in readme.splitlines()
                if line.startswith(".venv/bin/corolla run") and "strategy=fedbuff" in line]
    assert commands
    for overrides in commands:
        cfg = compose(overrides)
        check_config(cfg)
        assert cfg["strategy"]["concurrency"] == 5 and cfg["strategy"]["buffer_size"] == 3
