"""GGEUR's server half: the statistics phase and the geometry, holding the base strategy's server half."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from conf.errors import ConfigError, first_line
from strategies.base import CorollaStrategy, ServerEnv, derive_seed
from strategies.ggeur import geometry as geo
from strategies.ggeur import protocol as proto
from strategies.ggeur import secure
from strategies.ggeur.augment import GeometryPayload
from strategies.ggeur.config import GGEURConfig
from strategies.payload import record_nbytes
from strategies.registry import build_server_strategy

log = logging.getLogger("corolla")


class GGEURServer(CorollaStrategy, Strategy):
    """GGEUR's statistics phase and geometry in front of the base strategy's server half.

    The base server half (``self.base``) runs every round; this class forwards each Strategy and
    corolla hook to it, adding the statistics phase before round 1's training and the geometry to
    the training messages of nodes that do not hold it yet.
    """

    NODE_WAIT_S: ClassVar[float] = 60.0
    # secagg=true: the base aggregates the secure mean, and the statistics are secure sums (`secure`).
    aggregates_by_sum: ClassVar[bool] = True
    secure: Any = None                 # set by the secure-aggregation wrapper
    secure_survivors: list[int] = []   # ... with the clients whose updates made the last sum

    @classmethod
    def secagg_refusal(cls, section: dict[str, Any]) -> None:
        """ConfigError for settings that need each client's own statistics (see `secure.refusal`)."""
        secure.refusal(section)

    def __init__(self, *, config: GGEURConfig) -> None:
        self.config = config
        self.base = build_server_strategy(config.base_section())
        # The pooled geometry (None until the statistics phase ran) and what it cost.
        self.geometry: geo.Geometry | None = None
        self.digest: str | None = None
        self.partition_classes: dict[int, list[int]] = {}   # partition -> classes it holds
        self.partition_domain: dict[int, str] = {}
        self.node_partition: dict[int, int] = {}             # this engine's node ids -> partition
        self.acked: set[int] = set()                         # nodes that confirmed the geometry
        self.phase: dict[str, Any] = {}
        self._round_geometry_bytes: dict[int, list[int]] = {}

    def setup(self, env: ServerEnv) -> None:
        super().setup(env)
        self.base.max_num_examples = self.max_num_examples  # the run's cap, set on this half
        self.base.setup(env)
        task, cfg = env.task, self.config
        self.num_classes = task.num_classes
        self.dim = int(np.prod(task.input_shape))
        self.multi_domain = bool(task.client_domains) if cfg.multi_domain == "auto" else cfg.multi_domain
        self.r = self.dim if cfg.reduce == "none" else min(cfg.reduce_dim, self.dim)
        self.seed = int(env.cfg["seed"])
        self.timeout = float(env.cfg.get("engine", {}).get("timeout_s", 3600))

    # ---- the base strategy runs the rounds ------------------------------------------------------
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

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        if self.geometry is None:
            self.run_statistics_phase(server_round, grid)
        config[proto.DIGEST_KEY] = self.digest or ""
        out, sizes = [], []
        for message in self.base.configure_train(server_round, arrays, config, grid):
            node = message.metadata.dst_node_id
            if node in self.acked:
                out.append(message)
                continue
            geometry, meta = self.payload_for(self.node_partition.get(node))
            sizes.append(record_nbytes(RecordDict({proto.GEOMETRY_KEY: geometry, proto.META_KEY: meta})))
            out.append(proto.with_geometry(message, geometry, meta))
        self._round_geometry_bytes[server_round] = sizes
        return out

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        if self.secure is not None:  # one summed reply: the survivors trained with the geometry they were sent
            self.acked.update(self.secure_survivors)
        else:
            self.acked.update(r.metadata.src_node_id for r in replies if proto.confirms_geometry(r))
        return self.base.aggregate_train(server_round, replies)

    # ---- the statistics phase -------------------------------------------------------------------
    def run_statistics_phase(self, server_round: int, grid: Grid) -> None:
        """Ask every connected node for its class sums, then pool them into the class geometry."""
        cfg = self.config
        started = time.perf_counter()
        nodes = self._wait_for_nodes(grid)
        basis = None
        sketch_up = sketch_down = 0
        if cfg.reduce == "pca" and self.secure is not None:
            basis, sketch_up = secure.sketch_basis(self, grid, nodes, server_round)
        elif cfg.reduce == "pca":
            basis, sketch_up, sketch_down = self._pca_basis(server_round, grid, nodes)
        elif cfg.reduce == "random":
            basis = geo.random_basis(self.dim, self.r, self._projection_seed())
        content = proto.stats_query(server_round=server_round, reduce=cfg.reduce, dim=self.r,
                                    seed=self._projection_seed(), dtype=cfg.stats_dtype, basis=basis)
        down = record_nbytes(content) * len(nodes)
        if self.secure is not None:
            used, up = self.absorb_secure_stats(grid, nodes, content, basis)
        else:
            messages = [Message(content=content, message_type=proto.STATS, dst_node_id=n) for n in nodes]
            replies = list(grid.send_and_receive(messages, timeout=self.timeout))
            used, up = self.absorb_stats(server_round, replies, basis=basis)
        self.phase.update({
            "round": server_round, "nodes": len(nodes), "clients_used": used,
            "clients_failed": len(nodes) - used, "dim": self.r, "top_k": cfg.top_k or self.r,
            "reduce": cfg.reduce, "stats_uplink_bytes": up + sketch_up,
            "stats_downlink_bytes": down + sketch_down, "seconds": time.perf_counter() - started,
        })
        log.info("ggeur: statistics of %d/%d clients pooled in %.2fs (dim %d, top-%d)", used,
                 len(nodes), self.phase["seconds"], self.r, cfg.top_k or self.r)

    def _wait_for_nodes(self, grid: Grid) -> list[int]:
        """The connected nodes, once all of the task's clients are (SuperNodes register
        asynchronously): after NODE_WAIT_S, whoever is there, at least the base's minimum."""
        want = int(self.env.task.num_clients)
        floor = max(1, int(getattr(self.base, "min_available_nodes", 1)))
        deadline = time.monotonic() + self.NODE_WAIT_S
        while True:
            nodes = list(grid.get_node_ids())
            # a simulated world's listing of the clients online this round will not grow by waiting
            if len(nodes) >= want or (getattr(grid, "listing_is_final", False) and len(nodes) >= floor):
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
        cols = min(self.r + self.config.sketch_oversample, self.dim)
        content = proto.sketch_query(server_round=server_round, seed=self._projection_seed(), cols=cols)
        messages = [Message(content=content, message_type=proto.STATS, dst_node_id=n) for n in nodes]
        down = sum(record_nbytes(m.content) for m in messages)
        replies = list(grid.send_and_receive(messages, timeout=self.timeout))
        n_sum, s1_sum, y_sum, up = 0.0, np.zeros(self.dim), np.zeros((self.dim, cols)), 0
        # Sum in partition order, so the basis (and every sample drawn with it) repeats bit for bit.
        replies.sort(key=lambda m: (m.has_error(), proto.partition_of(m)))
        for reply in replies:
            if reply.has_error():
                log.warning("ggeur: node %s failed the sketch, left out: %s", reply.metadata.src_node_id,
                            first_line(reply.error.reason or ""))
                continue
            try:
                n, s1, y = proto.parse_sketch(reply.content, d=self.dim, cols=cols)
            except (KeyError, ValueError, IndexError) as err:
                log.warning("ggeur: sketch from node %s rejected: %s", reply.metadata.src_node_id, err)
                continue
            up += record_nbytes(reply.content)
            n_sum, s1_sum, y_sum = n_sum + n, s1_sum + s1, y_sum + y
        if n_sum == 0:
            raise RuntimeError("ggeur: no client returned a usable sketch; cannot build the PCA basis")
        omega = geo.sketch_matrix(self.dim, cols, self._projection_seed())
        return geo.nystrom_basis(n_sum, s1_sum, y_sum, omega, self.r), up, down

    def absorb_stats(self, server_round: int, replies: Iterable[Message], *,
                     basis: np.ndarray | None = None) -> tuple[int, int]:
        """Pool the usable statistics replies into the geometry; returns (replies used, their bytes).

        Failed and malformed replies are logged and left out. Raises ConfigError when a client
        holds a class with fewer real samples than ``min_class_samples``.
        """
        cfg = self.config
        clients: list[geo.ClientStats] = []
        up = 0
        for reply in replies:
            node = reply.metadata.src_node_id
            if reply.has_error():
                log.warning("ggeur: node %s failed the statistics phase, left out: %s", node,
                            first_line(reply.error.reason or ""))
                continue
            try:
                stats = proto.parse_stats(reply.content, num_classes=self.num_classes, d=self.dim, r=self.r)
            except (KeyError, ValueError, IndexError, TypeError) as err:
                log.warning("ggeur: statistics from node %s rejected: %s", node, err)
                continue
            up += record_nbytes(reply.content)
            self.node_partition[node] = stats.partition
            clients.append(stats)
        if not clients:
            raise RuntimeError(f"ggeur: round {server_round}: no client returned usable class "
                               "statistics; the geometry cannot be built")
        clients.sort(key=lambda s: s.partition)  # partition order: float sums repeat across runs
        small = geo.small_classes(clients, cfg.min_class_samples)
        if small:
            listed = ", ".join(f"client {pid} class {c}: {n}" for pid, c, n in small[:8])
            raise ConfigError(
                f"ggeur: {len(small)} client class(es) hold fewer real samples than "
                f"strategy.min_class_samples={cfg.min_class_samples} ({listed}"
                f"{', ...' if len(small) > 8 else ''}). Lower strategy.min_class_samples, or use "
                "a partition with more samples per class (e.g. a larger task.alpha).",
                key="strategy.min_class_samples")
        self.geometry = geo.pool_geometry(
            clients, num_classes=self.num_classes, d=self.dim, r=self.r, basis=basis, top_k=cfg.top_k,
            amplify=cfg.amplify, amplify_top=cfg.amplify_top, guided_fraction=cfg.guided_fraction,
            target_count=cfg.target_count, multi_domain=self.multi_domain)
        for stats in clients:
            self.partition_classes[stats.partition] = [int(c) for c in np.flatnonzero(stats.sums.n)]
            self.partition_domain[stats.partition] = stats.domain
        self.digest = self._digest()
        return len(clients), up

    def absorb_secure_stats(self, grid: Grid, nodes: list[int], content: RecordDict,
                            basis: np.ndarray | None) -> tuple[int, int]:
        """The geometry from secure sums (secagg=true); (clients summed, their uplink bytes)."""
        self.geometry, used, up = secure.statistics(self, grid, nodes, content, basis)
        self.digest = self._digest()
        return used, up

    def _digest(self) -> str:
        cfg = self.config
        assert self.geometry is not None
        return geo.geometry_digest(self.geometry, f"{cfg.noise}|{cfg.reduce}|{self.r}|{self._projection_seed()}|"
                                                  f"{self.multi_domain}|{cfg.global_prototypes}")

    def payload_for(self, partition: int | None) -> tuple[ArrayRecord, ConfigRecord]:
        """The geometry one node needs: its classes' eigenpairs (+ the prototypes that serve it)."""
        assert self.geometry is not None
        g, cfg = self.geometry, self.config
        if self.secure is not None:  # the server knows no client's classes or domain: one payload for all
            partition = None
        selection = geo.select_for(
            g, classes_held=self.partition_classes.get(partition) if partition is not None else None,
            domain=self.partition_domain.get(partition) if partition is not None else None,
            multi_domain=self.multi_domain, global_prototypes=cfg.global_prototypes)
        classes = selection.classes
        return proto.pack_geometry(GeometryPayload(
            classes=classes, eigvals=g.eigvals[classes], eigvecs=g.eigvecs[classes], targets=g.targets,
            noise=cfg.noise, reduce=cfg.reduce, dim=self.r, seed=self._projection_seed(),
            digest=self.digest or "", multi_domain=self.multi_domain or cfg.global_prototypes,
            basis=g.basis if cfg.reduce == "pca" else None, prototypes=selection.prototypes,
            prototype_classes=selection.prototype_classes,
            prototype_domains=(selection.prototype_domains or []) if self.secure is not None else None))

    # ---- what a run records ---------------------------------------------------------------------
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
        cfg = self.config
        out["ggeur"] = {"base": cfg.base, "noise": cfg.noise, "weight_by": cfg.weight_by,
                        "target_count": cfg.target_count, "digest": self.digest, **phase}
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"base": self.base.state_dict(),
                "geometry": None if self.geometry is None else self.geometry.to_state(),
                "digest": self.digest, "partition_classes": self.partition_classes,
                "partition_domain": self.partition_domain, "phase": self.phase}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base.load_state_dict(state.get("base", {}))
        geometry = state.get("geometry")
        self.geometry = None if geometry is None else geo.Geometry.from_state(geometry)
        self.digest = state.get("digest")
        self.partition_classes = {int(k): list(v) for k, v in (state.get("partition_classes") or {}).items()}
        self.partition_domain = {int(k): str(v) for k, v in (state.get("partition_domain") or {}).items()}
        self.phase = dict(state.get("phase") or {})
        # Node ids belong to the engine that ran before: every node gets the geometry again.
        self.node_partition, self.acked = {}, set()
