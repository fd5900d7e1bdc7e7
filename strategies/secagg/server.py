"""The server half of secure_sum: drives the four steps over a Flower Grid and returns only the sum."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from strategies.secagg import protocol
from strategies.secagg.client import KEYS, MASKED, SECAGG, SHARES, UNMASK
from strategies.secagg.fixedpoint import FixedPoint

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


def threshold_for(num_nodes: int, *, max_dropout: float) -> int:
    """The Shamir threshold that tolerates `max_dropout` of the nodes leaving after masking.

    Never below a strict majority, so the server and a minority of clients cannot rebuild an
    honest survivor's self-mask together with a dropped client's mask key.
    """
    return max(num_nodes // 2 + 1, math.ceil(num_nodes * (1 - max_dropout)), 2 if num_nodes >= 2 else 1)


def secure_sum(grid: Grid, nodes: Iterable[int], *, request: Callable[[int], RecordDict], message_type: str,
               shapes: dict[str, tuple[int, ...]], fixed_point: FixedPoint, max_dropout: float = 0.2,
               timeout: float | None = None) -> SecureSumResult:
    """The sum over `nodes` of the float arrays each computes from `request(node)`.

    `request(node)` is the content of the masking request (e.g. the training instruction);
    the client half answers it with the arrays named in `shapes`, masked. The server sees only
    masked vectors and, after unmasking, their sum.
    """
    nodes = sorted(set(nodes))
    threshold = threshold_for(len(nodes), max_dropout=max_dropout)
    sid = uuid.uuid4().hex
    failures: dict[int, str] = {}

    def step(mtype: str, targets: list[int], content: Callable[[int], RecordDict]) -> dict[int, RecordDict]:
        messages = [Message(content(n), dst_node_id=n, message_type=mtype) for n in targets]
        replies: dict[int, RecordDict] = {}
        for reply in grid.send_and_receive(messages, timeout=timeout):
            src = reply.metadata.src_node_id
            if reply.has_error():
                failures[src] = reply.error.reason.strip().splitlines()[0] if reply.error.reason else "error"
            elif src in targets:
                replies[src] = reply.content
        for n in targets:
            if n not in replies:
                failures.setdefault(n, "no reply")
        alive = len(replies)
        if alive < threshold:
            raise SecureSumError(f"secure sum: {alive} of {len(nodes)} clients answered {mtype}, fewer than the "
                                 f"threshold {threshold}; the sum is not unmasked")
        return replies

    def config(**values: object) -> Callable[[int], RecordDict]:
        return lambda n: RecordDict({SECAGG: ConfigRecord({"sid": sid, **values})})

    keys = step(KEYS, nodes, config(threshold=threshold))
    advertised = sorted(keys)
    publics = {n: (keys[n][SECAGG]["c-public"], keys[n][SECAGG]["s-public"]) for n in advertised}
    shares = step(SHARES, advertised, config(nodes=[str(n) for n in advertised],
                                             **{"c-publics": [publics[n][0] for n in advertised],
                                                "s-publics": [publics[n][1] for n in advertised]}))
    sharers = sorted(shares)
    routed: dict[int, dict[int, bytes]] = {v: {} for v in sharers}
    for u in sharers:
        record = shares[u][SECAGG]
        for dst, ciphertext in zip(record["dst"], record["ciphertexts"]):
            if int(dst) in routed and int(dst) != u:
                routed[int(dst)][u] = ciphertext

    def masking(n: int) -> RecordDict:
        content = request(n)
        content[SECAGG] = ConfigRecord({
            "sid": sid, "src": [str(u) for u in routed[n]], "ciphertexts": list(routed[n].values()),
            "clip": fixed_point.clip, "modulus-bits": fixed_point.modulus_bits,
            "max-parties": fixed_point.max_parties})
        return content

    size = sum(int(np.prod(s)) for s in shapes.values())
    masked_replies = step(message_type, sharers, masking)
    masked: dict[int, np.ndarray] = {}
    clipped = 0
    for n, content in masked_replies.items():
        vector = content[MASKED]["masked"].numpy() if MASKED in content.array_records else None
        if vector is None or vector.size != size or vector.dtype != fixed_point.dtype:
            failures[n] = f"masked vector malformed (expected {size} values of {np.dtype(fixed_point.dtype)})"
            continue
        masked[n] = vector
        clipped += int(content.metric_records[SECAGG]["clipped"])
    survivors = sorted(masked)
    dropped = sorted(set(sharers) - set(survivors))
    revealed = step(UNMASK, survivors, config(survivors=[str(n) for n in survivors],
                                              dropped=[str(n) for n in dropped]))
    b_shares: dict[int, list[bytes]] = {}
    s_shares: dict[int, list[bytes]] = {}
    for content in revealed.values():
        record = content[SECAGG]
        for v, share in zip(record["b-nodes"], record["b-shares"]):
            b_shares.setdefault(int(v), []).append(share)
        for v, share in zip(record["s-nodes"], record["s-shares"]):
            s_shares.setdefault(int(v), []).append(share)
    try:
        total = protocol.unmask_sum(masked, sharers, publics, b_shares, s_shares, threshold, fixed_point)
    except protocol.ProtocolError as err:
        raise SecureSumError(f"secure sum: {err}") from err
    if dropped:
        log.warning("secure sum: %d of %d clients dropped after sharing; their masks were removed",
                    len(dropped), len(sharers))
    sums, offset = {}, 0
    for name in sorted(shapes):
        count = int(np.prod(shapes[name]))
        sums[name] = total[offset:offset + count].reshape(shapes[name])
        offset += count
    plain = {n: RecordDict({k: v for k, v in masked_replies[n].items() if k not in (MASKED, SECAGG)})
             for n in survivors}
    return SecureSumResult(sums=sums, survivors=survivors, dropped=dropped, replies=plain, clipped=clipped,
                           failures={n: why for n, why in failures.items() if n not in survivors})
