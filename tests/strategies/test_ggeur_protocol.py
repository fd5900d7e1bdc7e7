"""GGEUR's messages: each record packed and parsed back, and what a malformed reply gets."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ConfigRecord, Message, MetricRecord, RecordDict

from strategies.ggeur import geometry as geo
from strategies.ggeur import protocol as proto
from strategies.ggeur.augment import GeometryPayload


def _sums(rng: np.random.Generator, d: int = 5) -> geo.ClassSums:
    y = np.array([0, 0, 2, 2, 2, 3])
    return geo.class_sums(rng.normal(size=(len(y), d)), y, num_classes=4)


def test_stats_reply_round_trip_keeps_the_held_classes_only() -> None:
    sums = _sums(np.random.default_rng(0))
    content = proto.pack_stats(sums, partition=7, domain="mnist", dtype="float64", num_examples=6)
    assert content[proto.STATS_RECORD]["classes"].numpy().tolist() == [0, 2, 3]  # class 1: absent
    assert content[proto.STATS_RECORD]["s2"].numpy().shape == (3, 15)  # upper triangles of 5 x 5
    back = proto.parse_stats(content, num_classes=4, d=5, r=5)
    assert (back.partition, back.domain) == (7, "mnist")
    np.testing.assert_array_equal(back.sums.n, sums.n)
    np.testing.assert_allclose(back.sums.s1, sums.s1)
    np.testing.assert_allclose(back.sums.s2, sums.s2)
    half = proto.parse_stats(proto.pack_stats(sums, partition=7, domain="", dtype="float32", num_examples=6),
                             num_classes=4, d=5, r=5)
    np.testing.assert_allclose(half.sums.s2, sums.s2, rtol=1e-6)


@pytest.mark.parametrize(("name", "value", "why"), [
    ("classes", np.array([0, 2, 9]), "out of range or repeated"),
    ("classes", np.array([0, 2, 2]), "out of range or repeated"),
    ("n", np.array([2, 0, 1]), "counts below 1"),
    ("s1", np.full((3, 5), np.nan), "NaN/Inf"),
    ("s2", np.zeros((3, 14)), "do not fit"),
])
def test_a_malformed_stats_reply_is_refused(name: str, value: np.ndarray, why: str) -> None:
    content = proto.pack_stats(_sums(np.random.default_rng(1)), partition=0, domain="", dtype="float64",
                               num_examples=6)
    content[proto.STATS_RECORD][name] = Array(value)
    with pytest.raises(ValueError, match=why):
        proto.parse_stats(content, num_classes=4, d=5, r=5)


def test_queries_and_sketch_replies_round_trip() -> None:
    basis = geo.random_basis(6, 2, seed=3)
    query = proto.parse_query(proto.stats_query(server_round=1, reduce="pca", dim=2, seed=11,
                                                dtype="float32", basis=basis))
    assert (query.phase, query.reduce, query.dim, query.seed, query.dtype) == ("stats", "pca", 2, 11, "float32")
    np.testing.assert_allclose(query.basis, basis, rtol=1e-6)
    sketch = proto.parse_query(proto.sketch_query(server_round=1, seed=5, cols=4))
    assert (sketch.phase, sketch.seed, sketch.sketch_cols) == ("sketch", 5, 4)
    rng = np.random.default_rng(2)
    s1, y = rng.normal(size=6), rng.normal(size=(6, 4))
    reply = proto.pack_sketch(30, s1, y, partition=4)
    n, s1_back, y_back = proto.parse_sketch(reply, d=6, cols=4)
    assert n == 30.0 and np.array_equal(s1_back, s1) and np.array_equal(y_back, y)
    with pytest.raises(ValueError, match="shapes"):
        proto.parse_sketch(reply, d=6, cols=5)
    assert proto.partition_of(Message(reply, dst_node_id=1, message_type="query.stats")) == 4


def test_geometry_round_trip_and_the_digest_check() -> None:
    rng = np.random.default_rng(0)
    payload = GeometryPayload(
        classes=np.array([1, 3]), eigvals=rng.random((2, 4)).astype(np.float32),
        eigvecs=rng.random((2, 4, 4)).astype(np.float32), targets=np.array([5, 6, 7, 8]),
        noise="isotropic", reduce="none", dim=4, seed=9, digest="abc", multi_domain=True,
        prototypes=rng.random((3, 4)).astype(np.float32), prototype_classes=np.array([1, 1, 3]))
    arrays, meta = proto.pack_geometry(payload)
    back = proto.parse_geometry(arrays, meta)
    for name in ("classes", "eigvals", "eigvecs", "targets", "prototypes", "prototype_classes"):
        np.testing.assert_array_equal(getattr(back, name), getattr(payload, name))
    assert (back.noise, back.reduce, back.dim, back.seed, back.digest, back.multi_domain, back.basis) == (
        "isotropic", "none", 4, 9, "abc", True, None)
    # a client keeps it in its state and uses it only for the round's digest
    state = RecordDict()
    train = Message(RecordDict({"config": ConfigRecord({proto.DIGEST_KEY: "abc"})}), dst_node_id=1,
                    message_type="train")
    assert proto.held_geometry(state, "abc") is None
    proto.keep_geometry(proto.with_geometry(train, arrays, meta).content, state)
    assert proto.held_geometry(state, "abc") is not None and proto.held_geometry(state, "new") is None
    metrics = MetricRecord({"num-examples": 1})
    proto.mark_train_reply(metrics, num_examples=10, real=4, augmented=10, has_geometry=True)
    assert proto.confirms_geometry(Message(RecordDict({"metrics": metrics}), dst_node_id=1, message_type="train"))
