"""GGEUR's messages: every key, and each record's pack and parse side by side.

Server -> client: the statistics query (``query.stats``, phase ``sketch`` or ``stats``) and the
geometry, which rides along with a node's training message until the node confirms it.
Client -> server: the sketch sums, the class sums, and the training reply's GGEUR metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from strategies.ggeur.augment import GeometryPayload
from strategies.ggeur.geometry import ClassSums, ClientStats, pack_sym, unpack_sym
from strategies.messages import GGEUR_STATS

STATS = GGEUR_STATS              # the message type of both statistics phases

# Records and keys of the statistics phase.
BASIS_RECORD = "ggeur.basis"     # ArrayRecord {"basis": (d, r)} with reduce=pca
SKETCH_RECORD = "ggeur.sketch"   # ArrayRecord {"n", "s1", "y"}
STATS_RECORD = "ggeur.stats"     # ArrayRecord {"classes", "n", "s1", "s2" (upper triangles)}
INFO_RECORD = "ggeur.info"       # ConfigRecord {"partition-id", "domain"}

# Records and keys of the training rounds.
GEOMETRY_KEY = "ggeur.geometry"  # ArrayRecord: the client's part of the geometry (also in Context.state)
META_KEY = "ggeur.meta"          # ConfigRecord: how to generate with it, and its digest
DIGEST_KEY = "ggeur-digest"      # in every training ConfigRecord: the digest the client must hold
HAS_GEOMETRY = "ggeur-has-geometry"
REAL_EXAMPLES = "ggeur-real-examples"
AUGMENTED_EXAMPLES = "ggeur-augmented-examples"


# ---- the statistics query (server -> client) ----------------------------------------------------

@dataclass
class StatsQuery:
    """What a ``query.stats`` message asks for."""

    phase: str                          # "sketch" (PCA's first exchange) or "stats"
    seed: int                           # the shared projection/sketch seed
    sketch_cols: int = 0                # phase sketch: columns of the sketch matrix
    reduce: str = "none"                # phase stats: none | random | pca
    dim: int | None = None              # phase stats: r (None: the feature dimension)
    dtype: str = "float64"              # phase stats: of the sums sent back
    basis: np.ndarray | None = None     # phase stats with reduce=pca: (d, r)
    task_id: int = 0


def sketch_query(*, server_round: int, seed: int, cols: int) -> RecordDict:
    """The PCA reduction's sketch request."""
    return RecordDict({"config": ConfigRecord({"server-round": server_round, "ggeur-phase": "sketch",
                                               "ggeur-seed": seed, "ggeur-sketch-cols": cols})})


def stats_query(*, server_round: int, reduce: str, dim: int, seed: int, dtype: str,
                basis: np.ndarray | None = None) -> RecordDict:
    """The class-statistics request (with the PCA basis when ``reduce`` is pca)."""
    config = ConfigRecord({"server-round": server_round, "ggeur-phase": "stats", "ggeur-reduce": reduce,
                           "ggeur-dim": dim, "ggeur-seed": seed, "ggeur-dtype": dtype})
    content = RecordDict({"config": config})
    if reduce == "pca":
        assert basis is not None
        content[BASIS_RECORD] = ArrayRecord({"basis": Array(basis.astype(np.float32))})
    return content


def parse_query(content: RecordDict) -> StatsQuery:
    """The request of either phase."""
    config = content["config"]
    task_id = int(config.get("task-id", 0))
    if config.get("ggeur-phase") == "sketch":
        return StatsQuery(phase="sketch", seed=int(config["ggeur-seed"]),
                          sketch_cols=int(config["ggeur-sketch-cols"]), task_id=task_id)
    reduce = str(config.get("ggeur-reduce", "none"))
    dim = config.get("ggeur-dim")
    basis = content[BASIS_RECORD]["basis"].numpy() if reduce == "pca" else None
    return StatsQuery(phase="stats", seed=int(config.get("ggeur-seed", 0)), reduce=reduce,
                      dim=None if dim is None else int(dim), dtype=str(config.get("ggeur-dtype", "float64")),
                      basis=basis, task_id=task_id)


# ---- the replies (client -> server) -------------------------------------------------------------

def pack_sketch(n: int, s1: np.ndarray, y: np.ndarray, *, partition: int) -> RecordDict:
    """The sketch sums (n, sum x, (sum x x^T) Omega) of one client."""
    rec = ArrayRecord({"n": Array(np.array([n], np.int64)), "s1": Array(s1), "y": Array(y)})
    metrics = MetricRecord({"num-examples": n, "partition-id": partition})
    return RecordDict({SKETCH_RECORD: rec, "metrics": metrics})


def parse_sketch(content: RecordDict, *, d: int, cols: int) -> tuple[float, np.ndarray, np.ndarray]:
    """(n, sum x, Y) of a sketch reply; ValueError (or KeyError, IndexError) when malformed."""
    rec = content[SKETCH_RECORD]
    n = float(rec["n"].numpy().reshape(-1)[0])
    s1, y = rec["s1"].numpy().astype(np.float64), rec["y"].numpy().astype(np.float64)
    if s1.shape != (d,) or y.shape != (d, cols) or not np.isfinite(y).all():
        raise ValueError(f"shapes {s1.shape}, {y.shape}")
    return n, s1, y


def partition_of(reply: Message) -> int:
    """The partition a (sketch) reply says it comes from; -1 for an error or none."""
    if reply.has_error():
        return -1
    metrics = next(iter(reply.content.metric_records.values()), None)
    return int(metrics.get("partition-id", -1)) if metrics is not None else -1


def pack_stats(sums: ClassSums, *, partition: int, domain: str, dtype: str, num_examples: int) -> RecordDict:
    """One client's class sums: only the classes it holds, s2 as upper triangles in ``dtype``."""
    classes = np.flatnonzero(sums.n)
    kind = np.dtype(dtype)
    rec = ArrayRecord({
        "classes": Array(classes.astype(np.int64)),
        "n": Array(sums.n[classes].astype(np.int64)),
        "s1": Array(np.ascontiguousarray(sums.s1[classes].astype(kind))),
        "s2": Array(np.ascontiguousarray(pack_sym(sums.s2[classes]).astype(kind))),
    })
    info = ConfigRecord({"partition-id": partition, "domain": domain})
    metrics = MetricRecord({"num-examples": num_examples})
    return RecordDict({STATS_RECORD: rec, INFO_RECORD: info, "metrics": metrics})


def parse_stats(content: RecordDict, *, num_classes: int, d: int, r: int) -> ClientStats:
    """A client's class sums, checked for shapes, class ids, counts and finiteness (ValueError)."""
    C = num_classes
    rec = content[STATS_RECORD]
    info = content[INFO_RECORD]
    classes = rec["classes"].numpy().astype(np.int64).reshape(-1)
    n = rec["n"].numpy().astype(np.int64).reshape(-1)
    s1 = rec["s1"].numpy().astype(np.float64)
    s2 = rec["s2"].numpy().astype(np.float64)
    m = len(classes)
    if n.shape != (m,) or s1.shape != (m, d) or s2.shape != (m, r * (r + 1) // 2):
        raise ValueError(f"shapes classes {classes.shape}, n {n.shape}, s1 {s1.shape}, s2 {s2.shape} "
                         f"do not fit {C} classes, d={d}, r={r}")
    if m and (classes.min() < 0 or classes.max() >= C or len(set(classes.tolist())) != m):
        raise ValueError(f"class ids {classes.tolist()} out of range or repeated")
    if (n < 1).any() or not (np.isfinite(s1).all() and np.isfinite(s2).all()):
        raise ValueError("counts below 1, or NaN/Inf sums")
    sums = ClassSums.zeros(C, d, r)
    sums.n[classes] = n
    sums.s1[classes] = s1
    sums.s2[classes] = unpack_sym(s2, r)
    return ClientStats(int(info["partition-id"]), str(info.get("domain", "")), sums)


# ---- the geometry (server -> client, with the training message) ---------------------------------

def pack_geometry(g: GeometryPayload) -> tuple[ArrayRecord, ConfigRecord]:
    """The records `GEOMETRY_KEY` and `META_KEY` of a training message."""
    arrays = {"targets": Array(g.targets), "classes": Array(g.classes),
              "eigvals": Array(np.ascontiguousarray(g.eigvals)),
              "eigvecs": Array(np.ascontiguousarray(g.eigvecs))}
    if g.reduce == "pca":
        assert g.basis is not None
        arrays["basis"] = Array(g.basis)
    if g.prototypes is not None:
        assert g.prototype_classes is not None
        arrays["prototypes"] = Array(g.prototypes.astype(np.float32))
        arrays["prototype_classes"] = Array(g.prototype_classes.astype(np.int64))
    meta = ConfigRecord({"digest": g.digest, "noise": g.noise, "reduce": g.reduce, "dim": g.dim,
                         "seed": g.seed, "multi-domain": int(g.multi_domain)})
    if g.prototype_domains is not None:  # one payload for every client (secagg): each takes its part
        meta["shared"] = 1
        if g.prototype_domains:
            meta["prototype-domains"] = list(g.prototype_domains)
    return ArrayRecord(arrays), meta


def parse_geometry(geometry: ArrayRecord, meta: ConfigRecord) -> GeometryPayload:
    """Inverse of `pack_geometry` (arrays as the generation uses them)."""
    return GeometryPayload(
        classes=geometry["classes"].numpy().astype(np.int64),
        eigvals=geometry["eigvals"].numpy().astype(np.float32),
        eigvecs=geometry["eigvecs"].numpy().astype(np.float32),
        targets=geometry["targets"].numpy().astype(np.int64),
        noise=str(meta["noise"]), reduce=str(meta["reduce"]), dim=int(meta["dim"]),
        seed=int(meta["seed"]), digest=str(meta["digest"]),
        multi_domain=bool(int(meta.get("multi-domain", 0))),
        basis=geometry["basis"].numpy().astype(np.float32) if "basis" in geometry else None,
        prototypes=geometry["prototypes"].numpy() if "prototypes" in geometry else None,
        prototype_classes=(geometry["prototype_classes"].numpy() if "prototype_classes" in geometry
                           else None),
        prototype_domains=([str(v) for v in meta.get("prototype-domains", [])] if int(meta.get("shared", 0))
                           else None),
    )


def with_geometry(message: Message, geometry: ArrayRecord, meta: ConfigRecord) -> Message:
    """A copy of a training message that carries the geometry too."""
    content = RecordDict({**dict(message.content.items()), GEOMETRY_KEY: geometry, META_KEY: meta})
    return Message(content=content, message_type=message.metadata.message_type,
                   dst_node_id=message.metadata.dst_node_id, group_id=message.metadata.group_id)


def keep_geometry(content: RecordDict, state: RecordDict) -> None:
    """Store a training message's geometry (if it carries one) in the client's Context.state."""
    if GEOMETRY_KEY in content.array_records:
        state[GEOMETRY_KEY] = content[GEOMETRY_KEY]
        state[META_KEY] = content[META_KEY]


def held_geometry(state: RecordDict, digest: str) -> tuple[ArrayRecord, ConfigRecord] | None:
    """The geometry the client holds, if it is the one with ``digest`` (the round's)."""
    if not digest or META_KEY not in state.config_records:
        return None
    meta = state[META_KEY]
    return (state[GEOMETRY_KEY], meta) if str(meta["digest"]) == digest else None


# ---- the training reply's GGEUR metrics ---------------------------------------------------------

def mark_train_reply(metrics: MetricRecord, *, num_examples: int, real: int, augmented: int,
                     has_geometry: bool) -> None:
    """Set the aggregation weight and GGEUR's own counts on the base's training reply metrics."""
    metrics["num-examples"] = int(num_examples)
    metrics[REAL_EXAMPLES] = int(real)
    metrics[AUGMENTED_EXAMPLES] = int(augmented)
    metrics[HAS_GEOMETRY] = int(has_geometry)


def confirms_geometry(reply: Message) -> bool:
    """Whether a training reply says its node holds the round's geometry."""
    if reply.has_error():
        return False
    metrics = next(iter(reply.content.metric_records.values()), {})
    return int(metrics.get(HAS_GEOMETRY, 0)) == 1
