"""secure_sum: the unmasked sum equals the plain sum within the stated error; a masked vector looks uniform."""

from __future__ import annotations

import traceback
import uuid
from collections.abc import Iterable

import numpy as np
import pytest
from flwr.app import Error, Message, MetricRecord, RecordDict

from strategies.secagg import FixedPoint, SecureSumError, secure_sum
from strategies.secagg import client as secagg_client
from strategies.secagg import protocol
from strategies.secagg.server import SecureSumSession, threshold_for

SHAPES = {"b": (3,), "w": (20, 10)}
TRAIN = "train.secagg"


class FakeGrid:
    """Nodes as in-process handlers with their own state; some drop out at a chosen step."""

    def __init__(self, values: dict[int, dict[str, np.ndarray]], drop_at: dict[int, str] | None = None) -> None:
        self.values = values
        self.drop_at = drop_at or {}
        self.states = {n: RecordDict() for n in values}
        self.masked: dict[int, np.ndarray] = {}   # what the server saw of each client's values

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        replies = []
        for message in messages:
            node = message.metadata.dst_node_id
            message.metadata.__dict__["_message_id"] = uuid.uuid4().hex
            if self.drop_at.get(node) == message.metadata.message_type:
                continue  # the node went away: no reply at all
            try:
                reply = secagg_client.handle(message, self.states[node], self.compute)
            except Exception as ex:  # as Flower does: an exception becomes an error reply
                reply = Message(error=Error(code=0, reason=f"{ex}\n{traceback.format_exc()}"), reply_to=message)
            reply.metadata.__dict__["_src_node_id"] = node
            if not reply.has_error() and secagg_client.MASKED in reply.content.array_records:
                self.masked[node] = reply.content[secagg_client.MASKED]["masked"].numpy()
            replies.append(reply)
        return replies

    def compute(self, message: Message) -> tuple[dict[str, np.ndarray], RecordDict]:
        node = message.metadata.dst_node_id
        return self.values[node], RecordDict({"metrics": MetricRecord({"train_loss": float(node)})})


def _values(n: int, seed: int = 0) -> dict[int, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {100 + i: {name: rng.normal(scale=0.5, size=shape) for name, shape in SHAPES.items()} for i in range(n)}


def _run(grid: FakeGrid, fixed_point: FixedPoint, max_dropout: float = 0.2):
    return secure_sum(grid, grid.values, request=lambda n: RecordDict(), message_type=TRAIN, shapes=SHAPES,
                      fixed_point=fixed_point, max_dropout=max_dropout)


@pytest.mark.parametrize("bits", [32, 64])
def test_sum_equals_plain_sum_within_the_stated_error(bits):
    values = _values(8)
    fixed_point = FixedPoint(clip=3.0, modulus_bits=bits, max_parties=64)
    result = _run(FakeGrid(values), fixed_point)
    assert result.survivors == sorted(values) and result.dropped == []
    for name in SHAPES:
        plain = sum(v[name] for v in values.values())
        assert np.abs(result.sums[name] - plain).max() <= len(values) * fixed_point.step
    assert result.replies[100]["metrics"]["train_loss"] == 100.0


def test_dropouts_after_masking_are_recovered():
    values = _values(10, seed=1)
    dropped = {103: TRAIN, 107: TRAIN}  # shared their keys, then never sent a masked vector
    fixed_point = FixedPoint(clip=3.0, max_parties=64)
    result = _run(FakeGrid(values, dropped), fixed_point)
    assert result.dropped == [103, 107]
    assert set(result.failures) == {103, 107}
    survivors = [n for n in values if n not in dropped]
    for name in SHAPES:
        plain = sum(values[n][name] for n in survivors)
        assert np.abs(result.sums[name] - plain).max() <= len(survivors) * fixed_point.step


def test_dropout_before_sharing_leaves_the_node_out():
    values = _values(6, seed=2)
    result = _run(FakeGrid(values, {102: secagg_client.SHARES}), FixedPoint(clip=3.0, max_parties=64), max_dropout=0.4)
    assert 102 not in result.survivors
    plain = sum(values[n]["w"] for n in values if n != 102)
    assert np.abs(result.sums["w"] - plain).max() < 1e-5


def test_refuses_to_unmask_below_the_threshold():
    values = _values(5, seed=3)
    drop = {n: TRAIN for n in list(values)[:3]}  # 2 of 5 survive; threshold is 4 at 20 % dropout
    with pytest.raises(SecureSumError, match="fewer than the threshold"):
        _run(FakeGrid(values, drop), FixedPoint(clip=3.0, max_parties=64))


def test_a_client_never_reveals_both_shares_of_one_node():
    secrets = {u: protocol.advertise(u, 2) for u in (1, 2, 3)}
    publics = {u: pub for u, (_, pub) in secrets.items()}
    ciphertexts = {u: protocol.share(s, publics) for u, (s, _) in secrets.items()}
    client = secrets[1][0]
    protocol.mask(client, {u: ciphertexts[u][1] for u in (2, 3)}, np.zeros(4), FixedPoint(clip=1.0), np.random.default_rng(0))
    with pytest.raises(protocol.ProtocolError, match="both surviving and dropped"):
        protocol.reveal(client, [1, 2], [2])
    with pytest.raises(protocol.ProtocolError, match="fewer than the threshold"):
        protocol.reveal(client, [1], [2, 3])


def test_threshold_is_a_strict_majority_at_least():
    assert threshold_for(100, max_dropout=0.2) == 80
    assert threshold_for(100, max_dropout=0.9) == 51
    assert threshold_for(3, max_dropout=0.5) == 2


def _chi_square_uniform(vector: np.ndarray, bins: int = 256) -> float:
    """Chi-square statistic of the vector's top byte against the uniform distribution."""
    top = (vector.astype(np.uint64) >> np.uint64(vector.dtype.itemsize * 8 - 8)).astype(np.int64)
    counts = np.bincount(top, minlength=bins)
    expected = vector.size / bins
    return float(((counts - expected) ** 2 / expected).sum())


def test_a_masked_vector_is_indistinguishable_from_uniform():
    from scipy.stats import chi2

    rng = np.random.default_rng(4)
    size = 200_000
    values = {100 + i: {"w": rng.normal(scale=0.1, size=(size,))} for i in range(4)}
    fixed_point = FixedPoint(clip=1.0, max_parties=16)
    grid = FakeGrid(values)
    secure_sum(grid, values, request=lambda n: RecordDict(), message_type=TRAIN, shapes={"w": (size,)},
               fixed_point=fixed_point)
    critical = chi2.ppf(1 - 1e-6, df=255)  # a false alarm once in a million runs
    plain, _ = fixed_point.encode(values[100]["w"], np.random.default_rng(0))
    assert _chi_square_uniform(plain) > critical  # the test has power: it rejects unmasked values
    assert sorted(grid.masked) == sorted(values)
    for vector in grid.masked.values():
        assert _chi_square_uniform(vector) < critical


def test_ring_graph_is_symmetric_with_k_neighbours():
    from strategies.secagg.graph import neighbourhood_size, ring_graph

    assert neighbourhood_size(10) == 10 and neighbourhood_size(100) == 21 and neighbourhood_size(100, "all") == 100
    assert neighbourhood_size(100, 8) == 9
    graph = ring_graph(range(50), 9)
    assert all(len(nbrs) == 9 and u in nbrs for u, nbrs in graph.items())
    assert all(u in graph[v] for u, nbrs in graph.items() for v in nbrs)


def test_secagg_plus_graph_sums_with_dropouts_and_routes_only_to_neighbours():
    """60 clients, k=19 neighbours each: the sum is exact, 12 (20 %) drop after masking."""
    values = _values(60, seed=5)
    drop = {n: TRAIN for n in list(values)[::5]}
    grid = FakeGrid(values, drop)
    session = SecureSumSession(grid, shapes=SHAPES, fixed_point=FixedPoint(clip=3.0, max_parties=64), max_dropout=0.2)
    sharers = session.open(values)
    assert session.threshold == 10 and session.min_survivors == 48
    assert all(len(session.routed[n]) == 18 for n in sharers)  # shares came from its 18 neighbours only
    messages = [Message(session.masking_request(n, RecordDict()), dst_node_id=n, message_type=TRAIN) for n in sharers]
    result = session.finish(grid.send_and_receive(messages))
    assert result.dropped == sorted(drop)
    survivors = [n for n in values if n not in drop]
    for name in SHAPES:
        plain = sum(values[n][name] for n in survivors)
        assert np.abs(result.sums[name] - plain).max() <= len(survivors) * session.fixed_point.step
