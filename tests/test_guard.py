"""RoundGuard and reply validation: bad replies are rejected, failures counted, dtypes kept."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict

from server.guard import RoundGuard, RoundStats, TooManyFailures
from strategies.fedavg import FedAvgServer
from strategies.validation import check_weights_reply

SENT = ArrayRecord({"w": Array(np.zeros((2, 3), np.float32)), "steps": Array(np.array(4, np.int64))})


def reply(to: Message, *, w: np.ndarray | None = None, n: object = 10, steps: int = 4,
          extra: dict | None = None) -> Message:
    arrays = {"w": Array(np.ones((2, 3), np.float32) if w is None else w), "steps": Array(np.array(steps, np.int64))}
    arrays.update(extra or {})
    content = RecordDict({"arrays": ArrayRecord(arrays), "metrics": MetricRecord({"num-examples": n})})
    return Message(content, reply_to=to)


def instruction(node: int) -> Message:
    return Message(RecordDict(), dst_node_id=node, message_type="train")


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"w": np.full((2, 3), np.nan, np.float32)}, "NaN"),
        ({"w": np.full((2, 3), np.inf, np.float32)}, "NaN or Inf"),
        ({"w": np.ones((3, 2), np.float32)}, "shape"),
        ({"w": np.ones((2, 3), np.float64)}, "dtype"),
        ({"extra": {"b": Array(np.ones(2, np.float32))}}, "extra ['b']"),
        ({"n": 0}, "outside"),
        ({"n": -5}, "outside"),
        ({"n": 10**12}, "outside"),
        ({"n": 2.5}, "whole number"),
    ],
)
def test_malformed_replies_are_rejected_with_a_reason(kwargs: dict, why: str) -> None:
    msg = reply(instruction(1), **kwargs)
    reason = check_weights_reply(msg.content, SENT, max_num_examples=10**6)
    assert reason is not None and why in reason


def test_missing_key_and_good_reply() -> None:
    missing = RecordDict({"arrays": ArrayRecord({"w": Array(np.ones((2, 3), np.float32))}),
                          "metrics": MetricRecord({"num-examples": 3})})
    assert "missing ['steps']" in check_weights_reply(missing, SENT, max_num_examples=100)
    assert check_weights_reply(reply(instruction(1)).content, SENT, max_num_examples=100) is None


def make_guard(max_fraction: float = 0.5) -> RoundGuard:
    env = SimpleNamespace(task_of_round=lambda r: 0, task=SimpleNamespace(num_clients=4))
    guard = RoundGuard(FedAvgServer(), env=env, seed=0, max_failure_fraction=max_fraction)  # type: ignore[arg-type]
    guard._sent_arrays = SENT
    return guard


def test_guard_leaves_out_bad_replies_and_keeps_dtypes() -> None:
    guard = make_guard()
    guard.rounds[1] = RoundStats(sent=4)
    replies = [reply(instruction(n), w=np.full((2, 3), float(n), np.float32), n=n, steps=n) for n in (1, 2, 3)]
    replies.append(reply(instruction(4), w=np.full((2, 3), np.nan, np.float32)))
    arrays, _ = guard.aggregate_train(1, replies)
    assert arrays is not None
    expected = (1 * 1 + 2 * 2 + 3 * 3) / 6  # example-weighted mean of the three good replies
    np.testing.assert_allclose(arrays["w"].numpy(), np.full((2, 3), expected), rtol=1e-6)
    assert arrays["steps"].numpy().dtype == np.int64  # averaging would make it float64
    stats = guard.rounds[1]
    assert (stats.rejected, stats.errors, stats.failures) == (1, 0, 1)


def test_too_many_failures_stop_the_run_with_the_client_traceback() -> None:
    guard = make_guard(max_fraction=0.5)
    guard.rounds[1] = RoundStats(sent=4)
    errors = [Message(Error(code=1, reason=f"Traceback: boom on client {n}"), reply_to=instruction(n)) for n in (1, 2, 3)]
    with pytest.raises(TooManyFailures, match="boom on client"):
        guard.aggregate_train(1, errors + [reply(instruction(4))])


def test_failures_within_threshold_continue() -> None:
    guard = make_guard(max_fraction=0.5)
    guard.rounds[1] = RoundStats(sent=4)
    replies = [Message(Error(code=1, reason="boom"), reply_to=instruction(1))]
    replies += [reply(instruction(n)) for n in (2, 3, 4)]
    arrays, _ = guard.aggregate_train(1, replies)
    assert arrays is not None and guard.rounds[1].errors == 1


def test_missing_replies_count_as_failures() -> None:
    guard = make_guard(max_fraction=0.5)
    guard.rounds[1] = RoundStats(sent=4)
    with pytest.raises(TooManyFailures, match="3 of 4"):
        guard.aggregate_train(1, [reply(instruction(1))])


def test_a_round_that_sent_nothing_warns_of_nothing(caplog: pytest.LogCaptureFixture) -> None:
    guard = make_guard()
    guard.rounds[1] = RoundStats(sent=0)
    assert guard.aggregate_train(1, []) == (None, None)
    assert "no usable replies" not in caplog.text
    guard.rounds[2] = RoundStats(sent=2)
    replies = [reply(instruction(n), w=np.full((2, 3), np.nan, np.float32)) for n in (1, 2)]
    with pytest.raises(TooManyFailures):  # both lost: more than max_fraction 0.5
        guard.aggregate_train(2, replies)
    guard = make_guard(max_fraction=1.0)
    guard.rounds[1] = RoundStats(sent=2)
    assert guard.aggregate_train(1, replies) == (None, None)
    assert "round 1: no usable replies" in caplog.text


def test_round_numbers_continue_after_resume() -> None:
    guard = make_guard()
    guard.offset = 7
    assert guard.global_round(1) == 8
    seen: list[int] = []

    def configure_train(rnd: int, arrays: ArrayRecord, config: ConfigRecord, grid: object) -> list:
        seen.append(rnd)
        return []

    guard.inner.configure_train = configure_train
    guard.configure_train(1, SENT, ConfigRecord(), grid=None)  # type: ignore[arg-type]
    assert seen == [8]
