"""The client half of secure_sum: handles the protocol's messages, keeping its secrets in Context.state."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from strategies.secagg import protocol
from strategies.secagg.fixedpoint import FixedPoint

KEYS = "query.secagg_keys"
SHARES = "query.secagg_shares"
UNMASK = "query.secagg_unmask"
MESSAGE_TYPES = (KEYS, SHARES, UNMASK)
SECAGG = "secagg"          # the ConfigRecord of every protocol message (and of the masking request)
MASKED = "secagg-masked"   # the ArrayRecord of the masked vector
STATE = "secagg-state"

Compute = Callable[[Message], tuple[dict[str, np.ndarray], RecordDict]]


def is_masking_request(message: Message) -> bool:
    """A request whose reply must be masked (it carries the routed shares)."""
    return SECAGG in message.content.config_records and "src" in message.content.config_records[SECAGG]


def handle(message: Message, state: RecordDict, compute: Compute | None = None, *,
           rounding_seed: int | None = None) -> Message:
    """One protocol message: the reply, with the client's secrets kept in `state` between steps.

    For the masking request, `compute(message)` returns the named float arrays to sum and the
    plain records to send beside them (metrics that are not secret); the arrays go out masked.
    `rounding_seed` seeds the stochastic rounding (default: from the client's secret seed).
    """
    node = message.metadata.dst_node_id
    config = message.content.config_records[SECAGG]
    mtype = message.metadata.message_type
    if mtype == KEYS:
        secrets, (c_public, s_public) = protocol.advertise(node, int(config["threshold"]))
        _save(state, str(config["sid"]), secrets)
        return _reply(message, ConfigRecord({"c-public": c_public, "s-public": s_public}))
    secrets = _load(state, str(config["sid"]))
    if mtype == SHARES:
        publics = {int(n): (c, s) for n, c, s in zip(config["nodes"], config["c-publics"], config["s-publics"])}
        secrets.threshold = int(config.get("threshold", secrets.threshold))  # the graph's, known once keys are in
        ciphertexts = protocol.share(secrets, publics)
        _save(state, str(config["sid"]), secrets)
        return _reply(message, ConfigRecord({"dst": [str(v) for v in ciphertexts],
                                             "ciphertexts": list(ciphertexts.values())}))
    if mtype == UNMASK:
        b, s = protocol.reveal(secrets, [int(v) for v in config["survivors"]], [int(v) for v in config["dropped"]])
        del state.config_records[_key(str(config["sid"]))]  # one secure sum, one set of secrets
        return _reply(message, ConfigRecord({"b-nodes": [str(v) for v in b], "b-shares": list(b.values()),
                                             "s-nodes": [str(v) for v in s], "s-shares": list(s.values())}))
    if not is_masking_request(message) or compute is None:
        raise protocol.ProtocolError(f"message type {mtype!r} is not a step of secure_sum")
    arrays, plain = compute(message)
    vector = np.concatenate([np.asarray(arrays[name], dtype=np.float64).ravel() for name in sorted(arrays)])
    fixed_point = FixedPoint(clip=float(config["clip"]), modulus_bits=int(config["modulus-bits"]),
                             max_parties=int(config["max-parties"]))
    received = {int(n): c for n, c in zip(config["src"], config["ciphertexts"])}
    # Stochastic rounding needs no secrecy (the server sees only the sum); a seed makes runs repeat.
    rng = np.random.default_rng(rounding_seed if rounding_seed is not None
                                else np.frombuffer(secrets.self_seed[:16], dtype=np.uint64))
    masked, clipped = protocol.mask(secrets, received, vector, fixed_point, rng)
    _save(state, str(config["sid"]), secrets)
    content = RecordDict(dict(plain))
    content[MASKED] = ArrayRecord({"masked": Array(masked)})
    content[SECAGG] = MetricRecord({"clipped": clipped, "size": int(vector.size)})
    return Message(content, reply_to=message)


def _reply(message: Message, record: ConfigRecord) -> Message:
    return Message(RecordDict({SECAGG: record}), reply_to=message)


def _key(sid: str) -> str:
    return f"{STATE}:{sid}"


def _save(state: RecordDict, sid: str, secrets: protocol.ClientSecrets) -> None:
    own_b, own_s = secrets.own_shares
    state[_key(sid)] = ConfigRecord({
        "node": str(secrets.node), "threshold": secrets.threshold,
        "c-private": secrets.c_private, "s-private": secrets.s_private,
        "peers": [str(n) for n in secrets.publics],
        "c-publics": [c for c, _ in secrets.publics.values()], "s-publics": [s for _, s in secrets.publics.values()],
        "self-seed": secrets.self_seed, "own-b": own_b, "own-s": own_s,
        "received-from": [str(n) for n in secrets.received], "received": list(secrets.received.values()),
    })


def _load(state: RecordDict, sid: str) -> protocol.ClientSecrets:
    key = _key(sid)
    if key not in state.config_records:
        raise protocol.ProtocolError(f"no secure-sum session {sid!r} on this client (it missed the key step)")
    rec = state.config_records[key]
    return protocol.ClientSecrets(
        node=int(rec["node"]), threshold=int(rec["threshold"]),
        c_private=rec["c-private"], s_private=rec["s-private"],
        publics={int(n): (c, s) for n, c, s in zip(rec["peers"], rec["c-publics"], rec["s-publics"])},
        self_seed=rec["self-seed"], own_shares=(rec["own-b"], rec["own-s"]),
        received={int(n): c for n, c in zip(rec["received-from"], rec["received"])},
    )
