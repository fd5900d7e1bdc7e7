"""GGEUR (Dai et al., CVPR 2025): geometry-guided embedding augmentation in front of a base strategy.

"Geometric Knowledge-Guided Localized Global Distribution Alignment for Federated Learning".

Phases, all ordinary Flower messages:
1. Statistics (once, in round 1's ``configure_train``, before any training): every connected node
   gets a ``query.stats`` message and replies, per class, n_c, sum x and sum z z^T (sums, so
   secure aggregation could hide them). With ``reduce: pca`` a sketch exchange comes first (see
   ``ggeur_geometry``). A node that fails is logged and left out; the phase goes on.
2. The server pools the sums into each class's mean and covariance, eigen-decomposes, clamps
   negative eigenvalues and keeps the top-k eigenpairs: the class's geometric shape.
3. The geometry (and, on multi-domain tasks, the other domains' class prototypes) rides along
   with a node's first training message (and again whenever a node did not confirm it holds it);
   the client keeps it in Flower's ``Context.state``.
4. The base strategy (``strategy.base``: fedavg, fedprox or any registered one) then runs its rounds
   unchanged: its server half configures and aggregates, its client half trains, but on the local
   embeddings augmented by x' = x + sum_j eps_j sqrt(lambda_j) xi_j up to a target count per class.
   The augmented set is deterministic in (run seed, partition, geometry) and cached in-process.

Not the official code's bugs: cross-entropy takes the logits once (the shared local loop), the
global model goes out each round (the base strategy), averaging is example-weighted (by real
counts unless ``weight_by: augmented``), ``amplify`` scales the largest eigenvalues, and no model is
selected on the test split.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from data import Split
from strategies import ggeur_geometry as geo
from strategies.base import ClientEnv, ClientHalf, CorollaStrategy, ServerEnv, StrategyDef, derive_seed

log = logging.getLogger("corolla")

STATS = "query.stats"
REDUCTIONS = ("none", "random", "pca")
WEIGHTS = ("real", "augmented")
DTYPES = ("float64", "float32")
STEPS = ("augmented", "real")
GEOMETRY_KEY = "ggeur.geometry"
META_KEY = "ggeur.meta"
DIGEST_KEY = "ggeur-digest"


class GGEURConfigError(ValueError):
    """A GGEUR config that cannot work with the data; the message names the key and the fix."""


def _nbytes(record: ArrayRecord) -> int:
    return sum(len(arr.data) for arr in record.values())


def _content_nbytes(content: RecordDict) -> int:
    total = 0
    for record in content.values():
        if isinstance(record, ArrayRecord):
            total += _nbytes(record)
        else:
            total += 16 * len(record)
    return total


# ============================================================================================
# Server half
# ============================================================================================

class GGEURServer(CorollaStrategy, Strategy):
    """GGEUR's statistics phase and geometry, in front of the base strategy's server half."""

    def __init__(self, *, base: str = "fedavg", top_k: int | None = None, reduce: str = "none",
                 reduce_dim: int = 128, sketch_oversample: int = 10, stats_dtype: str = "float64",
                 target_count: int | str = "global", noise: str = "geometry", weight_by: str = "real",
                 min_class_samples: int = 1, guided_fraction: float | None = None,
                 amplify: float = 1.0, amplify_top: int = 0, multi_domain: bool | str = "auto",
                 global_prototypes: bool = False, local_steps: str = "augmented",
                 **base_kwargs: Any) -> None:
        from strategies.registry import StrategyConfigError, check_strategy_config

        if base == "ggeur":
            raise StrategyConfigError("strategy.base=ggeur: GGEUR needs another strategy as its base "
                                      "(fedavg, fedprox, ...)")
        try:
            definition = check_strategy_config({"name": base, **base_kwargs})
        except StrategyConfigError as err:
            raise StrategyConfigError(f"strategy.base={base}: {err} (GGEUR passes every key it does "
                                      "not use itself to its base strategy)") from err
        self.base_name = base
        self.base = definition.server(**base_kwargs)
        if top_k is not None and int(top_k) < 1:
            raise StrategyConfigError(f"strategy.top_k must be >= 1 or null (all), got {top_k}")
        _choice("reduce", reduce, REDUCTIONS)
        _choice("noise", noise, geo.NOISES)
        _choice("weight_by", weight_by, WEIGHTS)
        _choice("stats_dtype", stats_dtype, DTYPES)
        _choice("local_steps", local_steps, STEPS)
        if int(reduce_dim) < 1 or int(sketch_oversample) < 0:
            raise StrategyConfigError("strategy.reduce_dim must be >= 1 and strategy.sketch_oversample >= 0")
        if not (target_count == "global" or (isinstance(target_count, int) and target_count >= 1)):
            raise StrategyConfigError(f"strategy.target_count must be 'global' or an integer >= 1, "
                                      f"got {target_count!r}")
        if int(min_class_samples) < 1:
            raise StrategyConfigError(f"strategy.min_class_samples must be >= 1, got {min_class_samples}")
        if guided_fraction is not None and not 0 < float(guided_fraction) <= 1:
            raise StrategyConfigError(f"strategy.guided_fraction must lie in (0, 1] or be null, "
                                      f"got {guided_fraction}")
        if multi_domain not in ("auto", True, False):
            raise StrategyConfigError(f"strategy.multi_domain must be auto, true or false, got {multi_domain!r}")
        self.top_k = None if top_k is None else int(top_k)
        self.reduce = reduce
        self.reduce_dim = int(reduce_dim)
        self.sketch_oversample = int(sketch_oversample)
        self.stats_dtype = stats_dtype
        self.target_count = target_count
        self.noise = noise
        self.weight_by = weight_by
        self.min_class_samples = int(min_class_samples)
        self.guided_fraction = None if guided_fraction is None else float(guided_fraction)
        self.amplify = float(amplify)
        self.amplify_top = int(amplify_top)
        self.multi_domain_cfg = multi_domain
        self.global_prototypes = bool(global_prototypes)
        self.local_steps = local_steps
        # The pooled geometry (None until the statistics phase ran) and what it cost.
        self.geometry: dict[str, Any] | None = None
        self.digest: str | None = None
        self.partition_classes: dict[int, list[int]] = {}   # partition -> classes it holds
        self.partition_domain: dict[int, str] = {}
        self.node_partition: dict[int, int] = {}             # this engine's node ids -> partition
        self.acked: set[int] = set()                         # nodes that confirmed the geometry
        self.phase: dict[str, Any] = {}
        self._round_geometry_bytes: dict[int, list[int]] = {}

    # ---- plumbing: the base strategy does the rounds --------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name == "base" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.base, name)

    @property
    def max_num_examples(self) -> int:  # type: ignore[override]
        return self.base.max_num_examples

    @max_num_examples.setter
    def max_num_examples(self, value: int) -> None:
        self.base.max_num_examples = value

    def setup(self, env: ServerEnv) -> None:
        super().setup(env)
        self.base.setup(env)
        task = env.task
        self.num_classes = task.num_classes
        self.dim = int(np.prod(task.input_shape))
        if self.multi_domain_cfg == "auto":
            self.multi_domain = bool(task.client_domains)
        else:
            self.multi_domain = bool(self.multi_domain_cfg)
        self.r = self.dim if self.reduce == "none" else min(self.reduce_dim, self.dim)
        self.seed = int(env.cfg["seed"])
        self.timeout = float(env.cfg.get("engine", {}).get("timeout_s", 3600))

    def summary(self) -> None:
        self.base.summary()

    def initial_arrays(self, default: ArrayRecord) -> ArrayRecord:
        return self.base.initial_arrays(default)

    def evaluate_global(self, server_round: int, arrays: ArrayRecord) -> dict[str, Any] | None:
        return self.base.evaluate_global(server_round, arrays)

    def validate_train_reply(self, content: RecordDict, sent: ArrayRecord) -> str | None:
        return self.base.validate_train_reply(content, sent)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self.base.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.base.aggregate_evaluate(server_round, replies)

    # ---- training rounds ------------------------------------------------------------------
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        if self.geometry is None:
            self.run_statistics_phase(server_round, grid)
        config[DIGEST_KEY] = self.digest or ""
        messages = list(self.base.configure_train(server_round, arrays, config, grid))
        out, sizes = [], []
        for message in messages:
            node = message.metadata.dst_node_id
            if node in self.acked:
                out.append(message)
                continue
            geometry, meta = self.payload_for(self.node_partition.get(node))
            content = RecordDict({**dict(message.content.items()), GEOMETRY_KEY: geometry, META_KEY: meta})
            sizes.append(_nbytes(geometry))
            out.append(Message(content=content, message_type=message.metadata.message_type,
                               dst_node_id=node, group_id=message.metadata.group_id))
        self._round_geometry_bytes[server_round] = sizes
        return out

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        for reply in replies:
            if reply.has_error():
                continue
            metrics = next(iter(reply.content.metric_records.values()), {})
            if int(metrics.get("ggeur-has-geometry", 0)) == 1:
                self.acked.add(reply.metadata.src_node_id)
        return self.base.aggregate_train(server_round, replies)

    # ---- the statistics phase ---------------------------------------------------------------
    def run_statistics_phase(self, server_round: int, grid: Grid) -> None:
        """Ask every connected node for its class sums, then pool them into the class geometry."""
        started = time.perf_counter()
        nodes = self._wait_for_nodes(grid)
        basis = None
        sketch_up = sketch_down = 0
        if self.reduce == "pca":
            basis, sketch_up, sketch_down = self._pca_basis(server_round, grid, nodes)
        elif self.reduce == "random":
            basis = geo.random_basis(self.dim, self.r, self._projection_seed())
        config = ConfigRecord({"server-round": server_round, "ggeur-phase": "stats",
                               "ggeur-reduce": self.reduce, "ggeur-dim": self.r,
                               "ggeur-seed": self._projection_seed(), "ggeur-dtype": self.stats_dtype})
        content = RecordDict({"config": config})
        if self.reduce == "pca":
            content["ggeur.basis"] = ArrayRecord({"basis": Array(basis.astype(np.float32))})
        messages = [Message(content=content, message_type=STATS, dst_node_id=n) for n in nodes]
        down = sum(_content_nbytes(m.content) for m in messages)
        replies = list(grid.send_and_receive(messages, timeout=self.timeout))
        used, up = self.absorb_stats(server_round, replies, basis=basis)
        self.phase.update({
            "round": server_round, "nodes": len(nodes), "clients_used": used,
            "clients_failed": len(nodes) - used, "dim": self.r, "top_k": self.top_k or self.r,
            "reduce": self.reduce, "stats_uplink_bytes": up + sketch_up,
            "stats_downlink_bytes": down + sketch_down, "seconds": time.perf_counter() - started,
        })
        log.info("ggeur: statistics of %d/%d clients pooled in %.2fs (dim %d, top-%d)", used,
                 len(nodes), self.phase["seconds"], self.r, self.top_k or self.r)

    NODE_WAIT_S: ClassVar[float] = 60.0

    def _wait_for_nodes(self, grid: Grid) -> list[int]:
        """The connected nodes, once all of the task's clients are (SuperNodes register
        asynchronously): after NODE_WAIT_S, whoever is there, at least the base's minimum."""
        want = int(self.env.task.num_clients)
        floor = max(1, int(getattr(self.base, "min_available_nodes", 1)))
        deadline = time.monotonic() + self.NODE_WAIT_S
        while True:
            nodes = list(grid.get_node_ids())
            if len(nodes) >= want:
                return nodes
            if time.monotonic() > deadline and len(nodes) >= floor:
                log.warning("ggeur: %d of %d clients connected after %.0fs; the statistics phase goes "
                            "on without the others (they get every class's geometry later)",
                            len(nodes), want, self.NODE_WAIT_S)
                return nodes
            time.sleep(0.2)

    def _projection_seed(self) -> int:
        return derive_seed(self.seed, "ggeur-projection") % 2**31

    def _pca_basis(self, server_round: int, grid: Grid, nodes: list[int]) -> tuple[np.ndarray, int, int]:
        """The sketch exchange of the PCA reduction: the top-r directions of the pooled covariance."""
        cols = min(self.r + self.sketch_oversample, self.dim)
        config = ConfigRecord({"server-round": server_round, "ggeur-phase": "sketch",
                               "ggeur-seed": self._projection_seed(), "ggeur-sketch-cols": cols})
        messages = [Message(content=RecordDict({"config": config}), message_type=STATS, dst_node_id=n)
                    for n in nodes]
        down = sum(_content_nbytes(m.content) for m in messages)
        replies = list(grid.send_and_receive(messages, timeout=self.timeout))
        n_sum, s1_sum, y_sum, up = 0.0, np.zeros(self.dim), np.zeros((self.dim, cols)), 0
        # Sum in partition order, so the basis (and every sample drawn with it) repeats bit for bit.
        replies.sort(key=lambda m: (m.has_error(), _partition_of(m)))
        for reply in replies:
            if reply.has_error():
                log.warning("ggeur: node %s failed the sketch, left out: %s", reply.metadata.src_node_id,
                            _first_line(reply.error.reason))
                continue
            try:
                rec = reply.content["ggeur.sketch"]
                n = float(rec["n"].numpy().reshape(-1)[0])
                s1, y = rec["s1"].numpy().astype(np.float64), rec["y"].numpy().astype(np.float64)
                if s1.shape != (self.dim,) or y.shape != (self.dim, cols) or not np.isfinite(y).all():
                    raise ValueError(f"shapes {s1.shape}, {y.shape}")
            except (KeyError, ValueError, IndexError) as err:
                log.warning("ggeur: sketch from node %s rejected: %s", reply.metadata.src_node_id, err)
                continue
            up += _content_nbytes(reply.content)
            n_sum, s1_sum, y_sum = n_sum + n, s1_sum + s1, y_sum + y
        if n_sum == 0:
            raise RuntimeError("ggeur: no client returned a usable sketch; cannot build the PCA basis")
        omega = geo.sketch_matrix(self.dim, cols, self._projection_seed())
        return geo.nystrom_basis(n_sum, s1_sum, y_sum, omega, self.r), up, down

    def absorb_stats(self, server_round: int, replies: Iterable[Message], *,
                     basis: np.ndarray | None = None) -> tuple[int, int]:
        """Pool the usable statistics replies into the geometry; returns (replies used, their bytes).

        Failed and malformed replies are logged and left out. Raises GGEURConfigError when a client
        holds a class with fewer real samples than ``min_class_samples``.
        """
        C, d, r = self.num_classes, self.dim, self.r
        per_client: list[tuple[int, str, geo.ClassSums]] = []
        up = 0
        for reply in replies:
            node = reply.metadata.src_node_id
            if reply.has_error():
                log.warning("ggeur: node %s failed the statistics phase, left out: %s", node,
                            _first_line(reply.error.reason))
                continue
            try:
                pid, domain, sums = self._parse_stats(reply.content)
            except (KeyError, ValueError, IndexError, TypeError) as err:
                log.warning("ggeur: statistics from node %s rejected: %s", node, err)
                continue
            up += _content_nbytes(reply.content)
            self.node_partition[node] = pid
            per_client.append((pid, domain, sums))
        if not per_client:
            raise RuntimeError(f"ggeur: round {server_round}: no client returned usable class "
                               "statistics; the geometry cannot be built")
        per_client.sort(key=lambda t: t[0])  # partition order: float sums repeat across runs
        small = [(pid, c, int(s.n[c])) for pid, _, s in per_client for c in range(C)
                 if 0 < s.n[c] < self.min_class_samples]
        if small:
            listed = ", ".join(f"client {pid} class {c}: {n}" for pid, c, n in small[:8])
            raise GGEURConfigError(
                f"ggeur: {len(small)} client class(es) hold fewer real samples than "
                f"strategy.min_class_samples={self.min_class_samples} ({listed}"
                f"{', ...' if len(small) > 8 else ''}). Lower strategy.min_class_samples, or use "
                "a partition with more samples per class (e.g. a larger task.alpha)."
            )
        counts = np.stack([s.n for _, _, s in per_client])  # (K, C)
        mask = (geo.guided_subset(counts, self.guided_fraction) if self.guided_fraction is not None
                else counts > 0)
        pooled = geo.ClassSums.zeros(C, d, r)
        for k, (_, _, s) in enumerate(per_client):
            keep = mask[k]
            pooled = pooled + geo.ClassSums(np.where(keep, s.n, 0), s.s1 * keep[:, None],
                                            s.s2 * keep[:, None, None])
        mean, cov = geo.pooled_moments(pooled, basis)
        eigvals, eigvecs = geo.eigen_geometry(cov, self.top_k, amplify=self.amplify,
                                              amplify_top=self.amplify_top)
        global_counts = counts.sum(0)
        targets = (global_counts if self.target_count == "global"
                   else np.full(C, int(self.target_count))).astype(np.int64)
        protos: dict[str, np.ndarray] = {}
        proto_counts: dict[str, np.ndarray] = {}
        if self.multi_domain:
            for _, domain, s in per_client:
                protos[domain] = protos.get(domain, np.zeros((C, d))) + s.s1
                proto_counts[domain] = proto_counts.get(domain, np.zeros(C)) + s.n
            protos = {dom: protos[dom] / np.maximum(proto_counts[dom], 1)[:, None] for dom in protos}
        for pid, domain, s in per_client:
            self.partition_classes[pid] = [int(c) for c in np.flatnonzero(s.n)]
            self.partition_domain[pid] = domain
        self.geometry = {
            "eigvals": eigvals.astype(np.float32), "eigvecs": eigvecs.astype(np.float32),
            "mean": mean.astype(np.float32), "counts": global_counts.astype(np.int64),
            "targets": targets, "basis": None if basis is None else basis.astype(np.float32),
            "prototypes": {dom: p.astype(np.float32) for dom, p in protos.items()},
            "prototype_counts": {dom: c.astype(np.int64) for dom, c in proto_counts.items()},
        }
        self.digest = self._digest()
        return len(per_client), up

    def _parse_stats(self, content: RecordDict) -> tuple[int, str, geo.ClassSums]:
        C, d, r = self.num_classes, self.dim, self.r
        rec = content["ggeur.stats"]
        info = content["ggeur.info"]
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
        sums = geo.ClassSums.zeros(C, d, r)
        sums.n[classes] = n
        sums.s1[classes] = s1
        sums.s2[classes] = geo.unpack_sym(s2, r)
        return int(info["partition-id"]), str(info.get("domain", "")), sums

    def _digest(self) -> str:
        h = hashlib.sha256()
        g = self.geometry or {}
        for key in ("eigvals", "eigvecs", "targets", "mean"):
            h.update(np.ascontiguousarray(g[key]).tobytes())
        h.update(f"{self.noise}|{self.reduce}|{self.r}|{self._projection_seed()}|"
                 f"{self.multi_domain}|{self.global_prototypes}".encode())
        return h.hexdigest()[:16]

    def payload_for(self, partition: int | None) -> tuple[ArrayRecord, ConfigRecord]:
        """The geometry one node needs: its classes' eigenpairs (+ other domains' prototypes)."""
        assert self.geometry is not None
        g = self.geometry
        held = g["counts"] > 0
        domain = self.partition_domain.get(partition) if partition is not None else None
        arrays: dict[str, Array] = {"targets": Array(g["targets"])}
        proto_rows, proto_classes = [], []
        if self.multi_domain:
            for dom, protos in sorted(g["prototypes"].items()):
                if dom == domain:
                    continue
                have = np.flatnonzero(g["prototype_counts"][dom] > 0)
                proto_rows.append(protos[have])
                proto_classes.append(have)
        if self.global_prototypes:  # every class's pooled mean is one more prototype
            have = np.flatnonzero(held)
            proto_rows.append(g["mean"][have])
            proto_classes.append(have)
        if partition is not None and partition in self.partition_classes:
            wanted = set(self.partition_classes[partition])
            if self.multi_domain or self.global_prototypes:
                wanted |= {int(c) for cs in proto_classes for c in cs}
            classes = np.array(sorted(c for c in wanted if held[c]), dtype=np.int64)
        else:  # a node whose statistics never came (failed, or a resumed run): every class
            classes = np.flatnonzero(held).astype(np.int64)
        arrays["classes"] = Array(classes)
        arrays["eigvals"] = Array(np.ascontiguousarray(g["eigvals"][classes]))
        arrays["eigvecs"] = Array(np.ascontiguousarray(g["eigvecs"][classes]))
        if self.reduce == "pca":
            arrays["basis"] = Array(g["basis"])
        if proto_rows:
            arrays["prototypes"] = Array(np.concatenate(proto_rows).astype(np.float32))
            arrays["prototype_classes"] = Array(np.concatenate(proto_classes).astype(np.int64))
        meta = ConfigRecord({"digest": self.digest or "", "noise": self.noise, "reduce": self.reduce,
                             "dim": self.r, "seed": self._projection_seed(),
                             "multi-domain": int(self.multi_domain or self.global_prototypes)})
        return ArrayRecord(arrays), meta

    # ---- what a run records --------------------------------------------------------------------
    def round_metrics(self, server_round: int) -> dict[str, float]:
        out = dict(self.base.round_metrics(server_round))
        sizes = self._round_geometry_bytes.get(server_round, [])
        out["ggeur_geometry_messages"] = len(sizes)
        out["ggeur_geometry_bytes"] = int(sum(sizes))
        if self.phase.get("round") == server_round:
            nodes = max(int(self.phase["nodes"]), 1)
            out["ggeur_stats_uplink_bytes_per_client"] = self.phase["stats_uplink_bytes"] / max(self.phase["clients_used"], 1)
            out["ggeur_stats_downlink_bytes_per_client"] = self.phase["stats_downlink_bytes"] / nodes
            out["ggeur_clients_used"] = self.phase["clients_used"]
            out["ggeur_clients_failed"] = self.phase["clients_failed"]
        return out

    def summary_extra(self) -> dict[str, Any]:
        out = dict(self.base.summary_extra())
        sizes = [s for v in self._round_geometry_bytes.values() for s in v]
        phase = dict(self.phase)
        if phase:
            used = max(int(phase["clients_used"]), 1)
            geometry = float(np.mean(sizes)) if sizes else 0.0
            phase["stats_uplink_bytes_per_client"] = phase["stats_uplink_bytes"] / used
            phase["stats_downlink_bytes_per_client"] = phase["stats_downlink_bytes"] / max(int(phase["nodes"]), 1)
            phase["geometry_bytes_per_client"] = geometry
            phase["bytes_per_client"] = (phase["stats_uplink_bytes_per_client"]
                                         + phase["stats_downlink_bytes_per_client"] + geometry)
        out["ggeur"] = {"base": self.base_name, "noise": self.noise, "weight_by": self.weight_by,
                        "target_count": self.target_count, "digest": self.digest, **phase}
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"base": self.base.state_dict(), "geometry": self.geometry, "digest": self.digest,
                "partition_classes": self.partition_classes, "partition_domain": self.partition_domain,
                "phase": self.phase}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base.load_state_dict(state.get("base", {}))
        self.geometry = state.get("geometry")
        self.digest = state.get("digest")
        self.partition_classes = {int(k): list(v) for k, v in (state.get("partition_classes") or {}).items()}
        self.partition_domain = {int(k): str(v) for k, v in (state.get("partition_domain") or {}).items()}
        self.phase = dict(state.get("phase") or {})
        # Node ids belong to the engine that ran before: every node gets the geometry again.
        self.node_partition, self.acked = {}, set()


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    from strategies.registry import StrategyConfigError

    if value not in choices:
        raise StrategyConfigError(f"strategy.{key}={value!r}; choose one of: {', '.join(choices)}")


def _partition_of(reply: Message) -> int:
    if reply.has_error():
        return -1
    metrics = next(iter(reply.content.metric_records.values()), None)
    return int(metrics.get("partition-id", -1)) if metrics is not None else -1


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


# ============================================================================================
# Client half
# ============================================================================================

class _Cache:
    """In-process LRU of augmented training sets, bounded in bytes ($COROLLA_GGEUR_CACHE_MB)."""

    def __init__(self) -> None:
        self.items: OrderedDict[tuple, Split] = OrderedDict()
        self.lock = threading.Lock()
        self.hits = self.misses = 0

    @property
    def budget(self) -> int:
        return int(float(os.environ.get("COROLLA_GGEUR_CACHE_MB", "2048")) * 2**20)

    def get(self, key: tuple) -> Split | None:
        with self.lock:
            split = self.items.get(key)
            if split is not None:
                self.items.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
            return split

    def put(self, key: tuple, split: Split) -> None:
        with self.lock:
            self.items[key] = split
            while len(self.items) > 1 and sum(s.x.nbytes for s in self.items.values()) > self.budget:
                self.items.popitem(last=False)


AUGMENTED = _Cache()


class _TaskView:
    """The task as the base client half sees it: this client's training split is the augmented one."""

    def __init__(self, task: Any, partition_id: int, task_id: int, split: Split) -> None:
        self._task, self._key, self._split = task, (partition_id, task_id), split

    def client_train(self, client_id: int, task_id: int = 0) -> Split:
        if (client_id, task_id) == self._key:
            return self._split
        return self._task.client_train(client_id, task_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._task, name)


class _EnvView:
    """A ClientEnv whose task hands out the augmented split (and, optionally, whose local loop is
    capped at the steps the real data would take); everything else is the real env's."""

    def __init__(self, env: ClientEnv, task: _TaskView, cfg: dict[str, Any] | None = None) -> None:
        self._env, self.task = env, task
        self.cfg = cfg if cfg is not None else env.cfg

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)


class GGEURClient(ClientHalf):
    """Class statistics, then the base strategy's client half on augmented local embeddings."""

    message_types: ClassVar[dict[str, str]] = {STATS: "stats", "train": "train", "evaluate": "evaluate"}

    @property
    def base_name(self) -> str:
        return str(self.env.cfg["strategy"].get("base", "fedavg"))

    def base_client(self, env: Any = None) -> ClientHalf:
        from strategies.registry import get_strategy

        return get_strategy(self.base_name).client(env if env is not None else self.env)

    def handle(self, message: Message) -> Message:
        if message.metadata.message_type in self.message_types:
            return super().handle(message)
        return self.base_client().handle(message)  # the base's own extra phases, if any

    # ---- statistics ----------------------------------------------------------------------
    def _features(self, task_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
        split = self.env.task.client_train(self.env.partition_id, task_id)
        return split.x.reshape(len(split), -1).numpy(), split.y.numpy()

    def stats(self, message: Message) -> Message:
        config = message.content["config"]
        task_id = int(config.get("task-id", 0))
        x, y = self._features(task_id)
        d = x.shape[1]
        if config.get("ggeur-phase") == "sketch":
            cols = int(config["ggeur-sketch-cols"])
            omega = geo.sketch_matrix(d, cols, int(config["ggeur-seed"]))
            n, s1, yk = geo.sketch_sums(x, omega)
            rec = ArrayRecord({"n": Array(np.array([n], np.int64)), "s1": Array(s1),
                               "y": Array(yk)})
            metrics = MetricRecord({"num-examples": n, "partition-id": self.env.partition_id})
            return Message(RecordDict({"ggeur.sketch": rec, "metrics": metrics}), reply_to=message)
        reduce, r = str(config.get("ggeur-reduce", "none")), int(config.get("ggeur-dim", d))
        basis = self._basis(reduce, d, r, int(config.get("ggeur-seed", 0)),
                            message.content["ggeur.basis"]["basis"].numpy() if reduce == "pca" else None)
        num_classes = int(self.env.task.num_classes)
        sums = geo.class_sums(x, y, num_classes, basis)
        classes = np.flatnonzero(sums.n)
        dtype = np.dtype(str(config.get("ggeur-dtype", "float64")))
        rec = ArrayRecord({
            "classes": Array(classes.astype(np.int64)),
            "n": Array(sums.n[classes].astype(np.int64)),
            "s1": Array(np.ascontiguousarray(sums.s1[classes].astype(dtype))),
            "s2": Array(np.ascontiguousarray(geo.pack_sym(sums.s2[classes]).astype(dtype))),
        })
        info = ConfigRecord({"partition-id": self.env.partition_id,
                             "domain": self.env.task.client_domain(self.env.partition_id) or ""})
        metrics = MetricRecord({"num-examples": int(len(y))})
        return Message(RecordDict({"ggeur.stats": rec, "ggeur.info": info, "metrics": metrics}),
                       reply_to=message)

    @staticmethod
    def _basis(reduce: str, d: int, r: int, seed: int, sent: np.ndarray | None) -> np.ndarray | None:
        if reduce == "none":
            return None
        if reduce == "random":
            return geo.random_basis(d, r, seed)
        if sent is None or sent.shape != (d, r):
            raise ValueError(f"ggeur: the PCA basis is missing or has the wrong shape (want {(d, r)})")
        return sent.astype(np.float64)

    # ---- training on the augmented set ---------------------------------------------------------
    def train(self, message: Message) -> Message:
        content = message.content
        config = content["config"]
        task_id = int(config.get("task-id", 0))
        state = self.env.state
        if GEOMETRY_KEY in content.array_records:  # the server sends it until we confirm it
            state[GEOMETRY_KEY] = content[GEOMETRY_KEY]
            state[META_KEY] = content[META_KEY]
        want = str(config.get(DIGEST_KEY, ""))
        meta = state[META_KEY] if META_KEY in state.config_records else None
        real = self.env.task.client_train(self.env.partition_id, task_id)
        if want and meta is not None and str(meta["digest"]) == want:
            split = self.augmented(task_id, state[GEOMETRY_KEY], meta)
            has_geometry = 1
        else:
            log.warning("ggeur: client %d holds no geometry %s; training on its real data only",
                        self.env.partition_id, want)
            split, has_geometry = real, 0
        cfg = self.env.cfg
        if str(cfg["strategy"].get("local_steps", "augmented")) == "real" and len(real):
            # The augmented set reshapes what the client learns from, not how far it drifts:
            # as many optimizer steps as its real data would take.
            train = dict(cfg["train"])
            steps = int(train.get("epochs", 1)) * -(-len(real) // int(train.get("batch_size", 32)))
            if train.get("max_steps") is not None:
                steps = min(steps, int(train["max_steps"]))
            cfg = {**cfg, "train": {**train, "max_steps": steps}}
        view = _EnvView(self.env, _TaskView(self.env.task, self.env.partition_id, task_id, split), cfg)
        base = self.base_client(view)
        reply = base.handle(message)
        if reply.has_error():
            return reply
        metrics = next(iter(reply.content.metric_records.values()))
        weight_by = str(self.env.cfg["strategy"].get("weight_by", "real"))
        metrics["num-examples"] = int(len(split) if weight_by == "augmented" else len(real))
        metrics["ggeur-real-examples"] = int(len(real))
        metrics["ggeur-augmented-examples"] = int(len(split))
        metrics["ggeur-has-geometry"] = has_geometry
        return reply

    def evaluate(self, message: Message) -> Message:
        return self.base_client().handle(message)

    def augmented(self, task_id: int, geometry: ArrayRecord, meta: ConfigRecord) -> Split:
        """This client's real samples plus the generated ones (cached in-process)."""
        key = (self.env.context.run_id, self.env.partition_id, task_id, str(meta["digest"]),
               int(self.env.cfg["seed"]))
        cached = AUGMENTED.get(key)
        if cached is not None:
            return cached
        x, y = self._features(task_id)
        rng = np.random.default_rng(derive_seed(self.env.cfg["seed"], self.env.partition_id,
                                                str(meta["digest"]), "ggeur-augment"))
        new_x, new_y = generate(x, y, geometry, meta, rng)
        split = Split(torch.from_numpy(np.concatenate([x, new_x]).astype(np.float32)),
                      torch.from_numpy(np.concatenate([y, new_y]).astype(np.int64)))
        shape = tuple(self.env.task.input_shape)
        if len(shape) > 1:  # image-shaped inputs (raw pixels): back to the model's input shape
            split = Split(split.x.reshape(len(split), *shape), split.y)
        AUGMENTED.put(key, split)
        return split


def generate(x: np.ndarray, y: np.ndarray, geometry: ArrayRecord, meta: ConfigRecord,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The generated samples (m, d) and labels of one client, from its real (x, y) and the geometry.

    Single domain: every class the client holds is filled to its target from its own samples.
    With prototypes (multi-domain: the other domains' class means; ``global_prototypes``: the
    pooled class means): the missing count of every class is split evenly between the client's
    own samples (if it holds the class) and each prototype of the class.
    """
    d = x.shape[1]
    noise, reduce = str(meta["noise"]), str(meta["reduce"])
    classes = geometry["classes"].numpy().astype(np.int64)
    eigvals = geometry["eigvals"].numpy().astype(np.float32)
    eigvecs = geometry["eigvecs"].numpy().astype(np.float32)
    targets = geometry["targets"].numpy().astype(np.int64)
    basis = None
    if reduce == "random":
        basis = geo.random_basis(d, int(meta["dim"]), int(meta["seed"])).astype(np.float32)
    elif reduce == "pca":
        basis = geometry["basis"].numpy().astype(np.float32)
    multi = bool(int(meta.get("multi-domain", 0)))
    protos = geometry["prototypes"].numpy() if multi and "prototypes" in geometry else np.zeros((0, d))
    proto_classes = (geometry["prototype_classes"].numpy() if multi and "prototype_classes" in geometry
                     else np.zeros(0, np.int64))
    xs = x.astype(np.float32)
    out_x, out_y = [], []
    for i, c in enumerate(classes):
        own = xs[y == c]
        m, target = len(own), int(targets[c])
        kw = {"basis": basis, "noise": noise}
        if not multi:
            new = geo.expand_class(own, target, eigvals[i], eigvecs[i], rng, **kw)
        else:
            points = protos[proto_classes == c].astype(np.float32)
            sources = (1 if m else 0) + len(points)
            parts = geo.split_evenly(target - m, sources)
            chunks = []
            if m:
                chunks.append(geo.expand_class(own, m + parts[0], eigvals[i], eigvecs[i], rng, **kw))
                parts = parts[1:]
            for point, count in zip(points, parts):
                chunks.append(geo.around_points(point[None], count, eigvals[i], eigvecs[i], rng, **kw))
            new = np.concatenate(chunks) if chunks else np.zeros((0, d))
        out_x.append(new.astype(np.float32))
        out_y.append(np.full(len(new), c, np.int64))
    if not out_x:
        return np.zeros((0, d), np.float32), np.zeros(0, np.int64)
    return np.concatenate(out_x), np.concatenate(out_y)


STRATEGY = StrategyDef(name="ggeur", server=GGEURServer, client=GGEURClient,
                       description="GGEUR (Dai et al., 2025): geometry-guided embedding augmentation "
                                   "in front of a base strategy (strategy.base)")
