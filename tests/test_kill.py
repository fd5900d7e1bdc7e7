"""SIGKILL a real `corolla run` three times (start-up, after a round, mid-checkpoint), resume with resume=<dir> only."""

from __future__ import annotations

import random
import time
from pathlib import Path

from bench.chaos import TINY, chain, final_model, run_to_end

ROUNDS = 4
BASE = ["strategy=fedavg", *TINY, f"num_rounds={ROUNDS}", "seed=2"]


def test_three_kills_resume_to_the_uninterrupted_model(tmp_path: Path) -> None:
    started = time.monotonic()
    run_to_end([*BASE, f"hydra.run.dir={tmp_path / 'full'}"])
    full_s = time.monotonic() - started
    result = chain(BASE, tmp_path / "killed", final_model(tmp_path / "full"), kills=3, num_rounds=ROUNDS,
                   rng=random.Random(11), startup_s=full_s / 3, moments=["startup", "round", "checkpoint"])
    assert result.moments == ["startup", "round", "checkpoint"], result
    assert result.rounds_once, "metrics.jsonl must hold rounds 1..4 exactly once"
    assert result.identical, "the resumed final model differs from the uninterrupted run's"
    leftovers = list((tmp_path / "killed" / "checkpoints").glob(".*.tmp"))
    assert not leftovers, leftovers
    assert sorted(p.name for p in (tmp_path / "killed" / "checkpoints").iterdir()) == ["last.pt", "previous.pt"]
