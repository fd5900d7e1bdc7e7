"""The server half of secure_sum: drives the four steps over a Flower Grid and returns only the sum."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from conf.errors import first_line
from strategies.secagg import protocol
from strategies.secagg.client import KEYS, MASKED, SECAGG, SHARES, UNMASK
from strategies.secagg.fixedpoint import FixedPoint
from strategies.secagg.graph import Neighbours, neighbourhood_size, ring_graph, sparse_threshold, threshold_for

log = logging.getLogger("corolla")


class SecureSumError(RuntimeError):
    """Too few clients survived a step to unmask the sum without exposing anyone."""


@dataclass
class SecureSumResult:
    """The decoded sums by name, who took part, and what each step cost."""

    sums: dict[str, np.ndarray]
    survivors: list[int]
    dropped: list[int]
    replies: dict[int, RecordDict] = field(default_factory=dict)   # the survivors' plain records
    clipped: int = 0
    failures: dict[int, str] = field(default_factory=dict)          # node -> why it left


class SecureSumSession:
    """One secure sum split around the masking request, for strategies whose round loop sends it.

    `open(grid, nodes)` runs steps 1-2 (keys, routed shares); `masking_request(node, content)` adds
    the routed shares to that node's request (step 3 goes out with the strategy's own message);
    `finish(replies)` runs step 4 over the same grid and decodes the sum.
    """

    def __init__(self, grid: Grid, *, shapes: dict[str, tuple[int, ...]], fixed_point: FixedPoint,
                 max_dropout: float = 0.2, timeout: float | None = None,
                 neighbours: Neighbours = "auto") -> None:
        self.grid = grid
        self.neighbours = neighbours
        self.shapes = dict(shapes)
        self.size = sum(int(np.prod(s)) for s in self.shapes.values())
        self.fixed_point = fixed_point
        self.max_dropout = max_dropout
        self.timeout = timeout
        self.sid = uuid.uuid4().hex
        self.threshold = 1         # Shamir threshold inside every neighbourhood
        self.min_survivors = 1     # fewer clients left at any step: nothing is unmasked
        self.graph: dict[int, frozenset[int]] = {}
        self.failures: dict[int, str] = {}
        self.publics: dict[int, tuple[bytes, bytes]] = {}
        self.sharers: list[int] = []
        self.routed: dict[int, dict[int, bytes]] = {}

    def _step(self, mtype: str, targets: list[int], content: Callable[[int], RecordDict]) -> dict[int, RecordDict]:
        messages = [Message(content(n), dst_node_id=n, message_type=mtype) for n in targets]
        return self._collect(mtype, targets, self.grid.send_and_receive(messages, timeout=self.timeout))

    def _collect(self, mtype: str, targets: list[int], replies: Iterable[Message]) -> dict[int, RecordDict]:
        got: dict[int, RecordDict] = {}
        for reply in replies:
            src = reply.metadata.src_node_id
            if reply.has_error():
                self.failures[src] = first_line(reply.error.reason) or "error"
            elif src in targets:
                got[src] = reply.content
        for n in targets:
            if n not in got:
                self.failures.setdefault(n, "no reply")
        if len(got) < self.min_survivors:
            raise SecureSumError(f"secure sum: {len(got)} of {len(targets)} clients answered {mtype}, fewer "
                                 f"than the threshold {self.min_survivors}; nothing is unmasked")
        return got

    def _config(self, **values: object) -> Callable[[int], RecordDict]:
        return lambda n: RecordDict({SECAGG: ConfigRecord({"sid": self.sid, **values})})

    def _share_config(self, node: int) -> RecordDict:
        peers = sorted(self.graph[node])
        return RecordDict({SECAGG: ConfigRecord({
            "sid": self.sid, "threshold": self.threshold, "nodes": [str(n) for n in peers],
            "c-publics": [self.publics[n][0] for n in peers], "s-publics": [self.publics[n][1] for n in peers]})})

    def _unmask_config(self, survivors: list[int], dropped: list[int]) -> Callable[[int], RecordDict]:
        return lambda n: RecordDict({SECAGG: ConfigRecord({
            "sid": self.sid, "survivors": [str(v) for v in survivors if v in self.graph[n]],
            "dropped": [str(v) for v in dropped if v in self.graph[n]]})})

    def open(self, nodes: Iterable[int]) -> list[int]:
        """Steps 1-2 over `nodes`; returns the nodes that shared (the ones to send the request to)."""
        nodes = sorted(set(nodes))
        self.threshold = self.min_survivors = threshold_for(len(nodes), max_dropout=self.max_dropout)
        k = neighbourhood_size(len(nodes), self.neighbours)
        if k < len(nodes):  # SecAgg+: a strict majority of each neighbourhood, and enough survivors overall
            self.threshold = sparse_threshold(k)
        keys = self._step(KEYS, nodes, self._config(threshold=self.threshold))
        advertised = sorted(keys)
        self.publics = {n: (keys[n][SECAGG]["c-public"], keys[n][SECAGG]["s-public"]) for n in advertised}
        self.graph = ring_graph(advertised, k)
        shares = self._step(SHARES, advertised, self._share_config)
        self.sharers = sorted(shares)
        self.routed = {v: {} for v in self.sharers}
        for u in self.sharers:
            record = shares[u][SECAGG]
            for dst, ciphertext in zip(record["dst"], record["ciphertexts"]):
                if int(dst) in self.routed and int(dst) != u:
                    self.routed[int(dst)][u] = ciphertext
        return list(self.sharers)

    def masking_request(self, node: int, content: RecordDict) -> RecordDict:
        """`content` (the strategy's request to `node`) with what the node needs to mask its reply."""
        content[SECAGG] = ConfigRecord({
            "sid": self.sid, "src": [str(u) for u in self.routed[node]],
            "ciphertexts": list(self.routed[node].values()), "clip": self.fixed_point.clip,
            "modulus-bits": self.fixed_point.modulus_bits, "max-parties": self.fixed_point.max_parties})
        return content

    def check_reply(self, content: RecordDict) -> str | None:
        """Why a masked reply cannot take part (all that can be checked of a masked vector), or None."""
        if MASKED not in content.array_records or "masked" not in content[MASKED]:
            return "the reply carries no masked vector"
        vector = content[MASKED]["masked"]
        if tuple(vector.shape) != (self.size,) or np.dtype(vector.dtype) != np.dtype(self.fixed_point.dtype):
            return (f"the masked vector has shape {tuple(vector.shape)} and dtype {vector.dtype}, expected "
                    f"({self.size},) of {np.dtype(self.fixed_point.dtype)}")
        if SECAGG not in content.metric_records or "clipped" not in content[SECAGG]:
            return "the reply lacks its clipping count"
        return None

    def finish(self, replies: Iterable[Message]) -> SecureSumResult:
        """Step 4 for the masked replies that came back (malformed ones count as dropped)."""
        masked: dict[int, np.ndarray] = {}
        plain: dict[int, RecordDict] = {}
        clipped = 0
        for n, content in self._collect("the masking request", self.sharers, replies).items():
            reason = self.check_reply(content)
            if reason:
                self.failures[n] = reason
                continue
            masked[n] = content[MASKED]["masked"].numpy()
            clipped += int(content[SECAGG]["clipped"])
            plain[n] = RecordDict({k: v for k, v in content.items() if k not in (MASKED, SECAGG)})
        survivors = sorted(masked)
        if len(survivors) < self.min_survivors:
            raise SecureSumError(f"secure sum: {len(survivors)} usable masked replies, fewer than the threshold "
                                 f"{self.min_survivors}; nothing is unmasked")
        dropped = sorted(set(self.sharers) - set(survivors))
        revealed = self._step(UNMASK, survivors, self._unmask_config(survivors, dropped))
        b_shares: dict[int, list[bytes]] = {}
        s_shares: dict[int, list[bytes]] = {}
        for content in revealed.values():
            record = content[SECAGG]
            for v, share in zip(record["b-nodes"], record["b-shares"]):
                b_shares.setdefault(int(v), []).append(share)
            for v, share in zip(record["s-nodes"], record["s-shares"]):
                s_shares.setdefault(int(v), []).append(share)
        try:
            total = protocol.unmask_sum(masked, self.sharers, self.publics, b_shares, s_shares, self.threshold,
                                        self.fixed_point, graph=self.graph)
        except protocol.ProtocolError as err:
            raise SecureSumError(f"secure sum: {err}") from err
        if dropped:
            log.warning("secure sum: %d of %d clients dropped after sharing; their masks were removed",
                        len(dropped), len(self.sharers))
        sums, offset = {}, 0
        for name in sorted(self.shapes):
            count = int(np.prod(self.shapes[name]))
            sums[name] = total[offset:offset + count].reshape(self.shapes[name])
            offset += count
        return SecureSumResult(sums=sums, survivors=survivors, dropped=dropped, replies=plain, clipped=clipped,
                               failures={n: why for n, why in self.failures.items() if n not in survivors})


def secure_sum(grid: Grid, nodes: Iterable[int], *, request: Callable[[int], RecordDict], message_type: str,
               shapes: dict[str, tuple[int, ...]], fixed_point: FixedPoint, max_dropout: float = 0.2,
               timeout: float | None = None, neighbours: Neighbours = "auto") -> SecureSumResult:
    """The sum over `nodes` of the float arrays each computes from `request(node)`.

    `request(node)` is the content of the masking request (e.g. the training instruction); the
    client half answers it with the arrays named in `shapes`, masked. The server sees only masked
    vectors and, after unmasking, their sum. Up to `max_dropout` of the nodes may leave after
    sharing; below the Shamir threshold nothing is unmasked (SecureSumError).
    """
    session = SecureSumSession(grid, shapes=shapes, fixed_point=fixed_point, max_dropout=max_dropout,
                               timeout=timeout, neighbours=neighbours)
    sharers = session.open(nodes)
    messages = [Message(session.masking_request(n, request(n)), dst_node_id=n, message_type=message_type)
                for n in sharers]
    return session.finish(grid.send_and_receive(messages, timeout=timeout))
