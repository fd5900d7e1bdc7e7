"""secagg=true end to end on the in-process grid: the model matches the plain run; refusals name the strategy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.inline import run_inline
from conf.errors import ConfigError
from server.config_check import check_config
from conf.compose import compose

BASE = ["task=digits", "model=mlp", "task.num_clients=5", "num_rounds=2", "strategy.fraction_train=1.0",
        "plots=false", "progress=false"]


def _final(run_dir) -> dict[str, np.ndarray]:
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    return {k: np.asarray(v, dtype=np.float64) for k, v in state["model"].items()}


@pytest.mark.parametrize("strategy", ["fedavg", "fedprox"])
def test_secure_fedavg_matches_the_plain_run(tmp_path, strategy):
    plain, _, plain_dir = run_inline([*BASE, f"strategy={strategy}"], tmp_path / "plain")
    secure, records, secure_dir = run_inline([*BASE, f"strategy={strategy}", "secagg=true"], tmp_path / "secure")
    assert records[-1]["secagg_survivors"] == 5 and records[-1]["secagg_dropped"] == 0
    a, b = _final(plain_dir), _final(secure_dir)
    worst = max(np.abs(a[k] - b[k]).max() for k in a)
    assert worst < 1e-4  # the quantisation error (clip 1, 32-bit ring, 5 parties) is far below this
    assert abs(plain["final"]["accuracy"] - secure["final"]["accuracy"]) <= 0.01


def test_secure_fot_matches_the_plain_run(tmp_path):
    """FOT under secagg: the projected updates and the bases (from summed sketches) match the plain run."""
    base = ["strategy=fot", "task=permuted-digits", "task.continual.num_tasks=2", "model=mlp", "model.bias=false",
            "task.num_clients=4", "num_rounds=4", "strategy.fraction_train=1.0", "plots=false", "progress=false"]
    plain, _, plain_dir = run_inline(base, tmp_path / "plain")
    secure, records, secure_dir = run_inline([*base, "secagg=true"], tmp_path / "secure")
    assert [r.get("fot_sketch_clients") for r in records if "fot_sketch_clients" in r] == [4]
    a, b = _final(plain_dir), _final(secure_dir)
    assert max(np.abs(a[k] - b[k]).max() for k in a) < 1e-3
    assert abs(plain["continual"]["acc"] - secure["continual"]["acc"]) <= 0.01


@pytest.mark.parametrize("strategy", ["creamfl", "fedmedian", "krum", "bulyan", "fedtrimmedavg", "qfedavg", "fedbuff"])
def test_strategies_that_need_each_reply_are_refused(strategy):
    task = "captioned" if strategy == "creamfl" else "digits"
    cfg = compose([f"strategy={strategy}", f"task={task}", "secagg=true"])
    with pytest.raises(ConfigError, match=f"secagg=true cannot run with strategy={strategy}"):
        check_config(cfg)


@pytest.mark.parametrize("strategy", ["fedadam", "fedyogi", "fedadagrad", "fedavgm"])
def test_server_optimisers_take_the_secure_mean(strategy):
    check_config(compose([f"strategy={strategy}", "task=digits", "model=mlp", "secagg=true"]))


def test_secure_fedadam_matches_the_plain_run(tmp_path):
    base = [*BASE, "strategy=fedadam"]
    _, _, plain_dir = run_inline(base, tmp_path / "plain")
    _, _, secure_dir = run_inline([*base, "secagg=true"], tmp_path / "secure")
    a, b = _final(plain_dir), _final(secure_dir)
    assert max(np.abs(a[k] - b[k]).max() for k in a) < 1e-3


def test_secagg_settings_are_checked():
    with pytest.raises(ConfigError, match=r"secure_aggregation.max_dropout=0.9 is out of range"):
        check_config(compose(["task=digits", "model=mlp", "secagg=true", "secure_aggregation.max_dropout=0.9"]))
