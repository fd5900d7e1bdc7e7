"""Flower's own strategies by name: typed configs of Flower's defaults, 3-round runs, kill-and-resume."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.inline import run_inline
from conf.errors import ConfigError
from strategies import flower
from strategies.registry import available_strategies, build_server_strategy, get_strategy
from tests.simrun import REPO, corolla_env

SMALL = ["task=digits", "model=mlp", "task.num_clients=8", "plots=false", "progress=false"]
STATEFUL = {"fedadam": [], "fedyogi": [], "fedadagrad": [], "fedavgm": ["strategy.server_momentum=0.9"]}


def compose_strategy(name: str, *overrides: str) -> dict:
    from conf.compose import compose

    return compose([f"strategy={name}", *SMALL, *overrides])["strategy"]


def test_every_flower_strategy_is_built_in_with_its_yaml() -> None:
    names = available_strategies()
    for name in flower.NAMES:
        assert names[name] == "built-in"
        definition = get_strategy(name)
        assert definition.config is not None and definition.client is flower.WeightsClient
        server = build_server_strategy(compose_strategy(name))
        assert isinstance(server, flower.FlowerServer)


def test_yaml_defaults_are_flowers() -> None:
    adam = build_server_strategy(compose_strategy("fedadam"))
    assert (adam.eta, adam.beta_1, adam.beta_2, adam.tau) == (0.1, 0.9, 0.99, 1e-3)
    yogi = build_server_strategy(compose_strategy("fedyogi"))
    assert (yogi.eta, yogi.beta_1, yogi.beta_2, yogi.tau) == (1e-2, 0.9, 0.99, 1e-3)
    avgm = build_server_strategy(compose_strategy("fedavgm"))
    assert (avgm.server_learning_rate, avgm.server_momentum) == (1.0, 0.0)
    assert build_server_strategy(compose_strategy("fedtrimmedavg")).beta == 0.2
    assert build_server_strategy(compose_strategy("qfedavg")).q == 0.1
    multikrum = build_server_strategy(compose_strategy("multikrum", "strategy.num_nodes_to_select=3"))
    assert (multikrum.num_malicious_nodes, multikrum.num_nodes_to_select) == (0, 3)
    # corolla's sampling keys (from fedavg.yaml): central evaluation, half the clients a round
    assert adam.fraction_evaluate == 0.0 and adam.fraction_train == 0.5


@pytest.mark.parametrize("override, key", [
    ("strategy.beta_1=1.5", "strategy.beta_1"),
    ("strategy.eta=0", "strategy.eta"),
    ("+strategy.learning_rate=0.1", "strategy.learning_rate"),
])
def test_bad_settings_fail_naming_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_server_strategy(compose_strategy("fedadam", override))
    assert err.value.key == key


def test_trimmed_beta_out_of_range_fails() -> None:
    with pytest.raises(ConfigError, match=r"strategy.beta=0.5"):
        build_server_strategy(compose_strategy("fedtrimmedavg", "strategy.beta=0.5"))


def test_bulyan_refuses_a_round_too_small_for_its_attackers() -> None:
    with pytest.raises(ConfigError, match=r"num_malicious_nodes=1 needs at least 7 replies"):
        run_inline(["strategy=bulyan", "strategy.num_malicious_nodes=1", *SMALL, "num_rounds=1"])


@pytest.mark.parametrize("name", flower.NAMES)
def test_three_round_run(name: str, tmp_path: Path) -> None:
    summary, records, _ = run_inline([f"strategy={name}", *SMALL, "num_rounds=3"], tmp_path / name)
    assert summary["strategy"] == name and summary["rounds"] == 3
    assert [r["round"] for r in records] == [1, 2, 3]
    assert all(r["num_replies"] == 4 and r["num_failures"] == 0 for r in records)
    assert all(math.isfinite(r["loss"]) for r in records)
    assert records[-1]["accuracy"] > 0.3, records  # 10 classes: chance is 0.1
    assert (tmp_path / name / "checkpoints" / "last.pt").exists()


# The child runs inline and SIGKILLs itself right after round K's checkpoint is on disk.
KILL_AFTER = """
import json, os, signal, sys
from pathlib import Path
import server.recorder as recorder
from bench.inline import run_inline
save, k = recorder.RunRecorder.checkpoint, int(sys.argv[3])
def checkpoint(self, rnd, arrays):
    save(self, rnd, arrays)
    if rnd == k:
        os.kill(os.getpid(), signal.SIGKILL)
recorder.RunRecorder.checkpoint = checkpoint
run_inline(json.loads(sys.argv[1]), Path(sys.argv[2]))
"""


def final_state(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)


@pytest.mark.parametrize("name", sorted(STATEFUL))
def test_kill_and_resume_ends_with_the_identical_model(name: str, tmp_path: Path) -> None:
    rounds = 4
    overrides = [f"strategy={name}", *STATEFUL[name], *SMALL, f"num_rounds={rounds}", "seed=5"]
    run_inline(overrides, tmp_path / "full")

    interrupted = tmp_path / "interrupted"
    child = subprocess.run([sys.executable, "-c", KILL_AFTER, json.dumps(overrides), str(interrupted), "2"],
                           cwd=REPO, env=corolla_env(), capture_output=True, text=True, timeout=600)
    assert child.returncode == -9, child.stderr[-3000:]
    killed = final_state(interrupted)
    assert killed["round"] == 2
    state_names = get_strategy(name).server.STATE
    assert state_names and all(killed["strategy"][n] is not None for n in state_names)

    _, records, _ = run_inline(overrides, interrupted)   # the same directory: resumes after round 2
    assert [r["round"] for r in records] == list(range(1, rounds + 1))
    expected, got = final_state(tmp_path / "full"), final_state(interrupted)
    assert got["round"] == expected["round"] == rounds
    for key in expected["model"]:
        torch.testing.assert_close(got["model"][key], expected["model"][key], rtol=0, atol=0)
    for n in state_names:  # the optimizer state itself is the uninterrupted run's too
        want, have = expected["strategy"][n], got["strategy"][n]
        pairs = zip(want.values(), have.values()) if isinstance(want, dict) else zip(want, have)
        for a, b in pairs:
            assert (a == b).all()


def test_resume_without_the_saved_moments_would_differ(tmp_path: Path) -> None:
    """The kill-and-resume test can fail: dropping FedAdam's moments changes the final model."""
    overrides = ["strategy=fedadam", *SMALL, "num_rounds=3", "seed=5"]
    run_inline(overrides, tmp_path / "full")
    cut = tmp_path / "cut"
    run_inline([*overrides[:-2], "num_rounds=2", "seed=5"], cut)
    state = final_state(cut)
    state["strategy"] = {}
    torch.save(state, cut / "checkpoints" / "last.pt")
    run_inline(overrides, cut)
    expected, got = final_state(tmp_path / "full")["model"], final_state(cut)["model"]
    assert any(not torch.equal(expected[k], got[k]) for k in expected)


def test_ggeur_runs_over_a_flower_strategy(tmp_path: Path) -> None:
    """Every strategy here is a valid strategy.base for GGEUR; FedAdam's moments ride in GGEUR's checkpoint."""
    overrides = ["strategy=ggeur", "strategy.base=fedadam", "task=digits-dirichlet", "task.alpha=0.1",
                 "model=linear", "task.num_clients=6", "num_rounds=2", "plots=false", "progress=false"]
    summary, records, run_dir = run_inline(overrides, tmp_path / "ggeur")
    assert summary["strategy"] == "ggeur" and [r["round"] for r in records] == [1, 2]
    assert all(r["num_failures"] == 0 for r in records)
    base = final_state(run_dir)["strategy"]["base"]
    assert base["m_t"] is not None and base["v_t"] is not None
