"""The secure-sum protocol's steps for both halves, as plain functions on bytes and arrays.

Four steps (Bonawitz et al., CCS 2017; with SecAgg+'s k-neighbour graph, Bell et al., CCS 2020,
"peers" below are a client's neighbours, and the server sends each client only its neighbours'
keys and lists; `graph` builds the graph and its thresholds):
1. advertise: each client makes two EC key pairs, c (encrypting shares) and s (pairwise masks),
   and sends the public keys.
2. share: with everyone's public keys, each client draws a self-mask seed b, splits b and its s
   private scalar into t-of-n Shamir shares, and sends each peer its two shares encrypted under
   their agreed c key (the server routes ciphertexts it cannot read).
3. mask: each client sends y = q + PRG(b) + sum_v +-PRG(s_uv) mod 2^bits, q its quantised values,
   with a pairwise mask for every peer whose shares it received (+ toward larger ids, - smaller).
4. unmask: survivors send their shares of each survivor's b and each dropped client's s scalar,
   never both for one client, and only when at least t clients survive. The server rebuilds the
   seeds, strips the masks and decodes the sum.
Pairwise masks between survivors cancel in the sum; those with dropped clients are rebuilt from
the dropped client's s scalar. A single masked vector is uniform in the ring to the server.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from cryptography.fernet import InvalidToken
from flwr.common.secure_aggregation.crypto.shamir import combine_shares, create_shares
from flwr.common.secure_aggregation.crypto.symmetric_encryption import decrypt, encrypt, generate_shared_key
from flwr.common.secure_aggregation.secaggplus_utils import (
    share_keys_plaintext_concat,
    share_keys_plaintext_separate,
)
from flwr.supercore.primitives.asymmetric import (
    bytes_to_private_key,
    bytes_to_public_key,
    generate_key_pairs,
    private_key_to_bytes,
    public_key_to_bytes,
)

from strategies.secagg.fixedpoint import FixedPoint
from strategies.secagg.masks import agreed_key, key_from_scalar, mask_stream, private_scalar


class ProtocolError(RuntimeError):
    """A step that must not run: too few peers, inconsistent lists, an unreadable share."""


@dataclass
class ClientSecrets:
    """What one client keeps between the steps of one secure sum (in Flower's Context.state)."""

    node: int
    threshold: int
    c_private: bytes = b""
    s_private: bytes = b""
    publics: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)
    self_seed: bytes = b""
    own_shares: tuple[bytes, bytes] = (b"", b"")
    received: dict[int, bytes] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# Client steps
# ----------------------------------------------------------------------------------------------

def advertise(node: int, threshold: int) -> tuple[ClientSecrets, tuple[bytes, bytes]]:
    """Step 1: fresh key pairs; returns the secrets to keep and the (c, s) public keys to send."""
    c_private, c_public = generate_key_pairs()
    s_private, s_public = generate_key_pairs()
    secrets = ClientSecrets(node=node, threshold=threshold, c_private=private_key_to_bytes(c_private),
                            s_private=private_key_to_bytes(s_private))
    return secrets, (public_key_to_bytes(c_public), public_key_to_bytes(s_public))


def share(secrets: ClientSecrets, publics: dict[int, tuple[bytes, bytes]]) -> dict[int, bytes]:
    """Step 2: encrypted shares of b and of the s scalar for every peer, by peer id."""
    if secrets.node not in publics:
        raise ProtocolError(f"node {secrets.node} is missing from the public keys it was sent")
    if len(publics) < secrets.threshold:
        raise ProtocolError(f"{len(publics)} clients advertised keys, fewer than the threshold {secrets.threshold}")
    secrets.publics = dict(publics)
    secrets.self_seed = os.urandom(32)
    peers = sorted(publics)
    scalar = private_scalar(bytes_to_private_key(secrets.s_private))
    b_shares = create_shares(secrets.self_seed, secrets.threshold, len(peers))
    s_shares = create_shares(scalar, secrets.threshold, len(peers))
    c_private = bytes_to_private_key(secrets.c_private)
    out: dict[int, bytes] = {}
    for peer, b_share, s_share in zip(peers, b_shares, s_shares):
        if peer == secrets.node:
            secrets.own_shares = (b_share, s_share)
            continue
        key = generate_shared_key(c_private, bytes_to_public_key(publics[peer][0]))
        out[peer] = encrypt(key, share_keys_plaintext_concat(secrets.node, peer, b_share, s_share))
    return out


def mask(secrets: ClientSecrets, received: dict[int, bytes], values: np.ndarray, fixed_point: FixedPoint,
         rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Step 3: the masked, quantised vector and how many values were clipped."""
    unknown = sorted(set(received) - set(secrets.publics))
    if unknown:
        raise ProtocolError(f"shares from nodes {unknown[:5]} that advertised no keys")
    if len(received) + 1 < secrets.threshold:
        raise ProtocolError(f"shares from {len(received)} peers: with this client, fewer than the "
                            f"threshold {secrets.threshold}")
    secrets.received = dict(received)
    quantised, clipped = fixed_point.encode(values, rng)
    masked = quantised + mask_stream(secrets.self_seed, quantised.size, fixed_point.dtype)
    s_private = bytes_to_private_key(secrets.s_private)
    for peer in sorted(received):
        stream = mask_stream(agreed_key(s_private, bytes_to_public_key(secrets.publics[peer][1])),
                             quantised.size, fixed_point.dtype)
        masked = masked + stream if secrets.node < peer else masked - stream
    return masked, clipped


def reveal(secrets: ClientSecrets, survivors: list[int], dropped: list[int]) -> tuple[dict[int, bytes], dict[int, bytes]]:
    """Step 4: (b shares of survivors, s-scalar shares of dropped clients), by the client they belong to."""
    both = set(survivors) & set(dropped)
    if both:
        raise ProtocolError(f"nodes {sorted(both)[:5]} are listed as both surviving and dropped: "
                            "revealing both shares would unmask them")
    if len(survivors) < secrets.threshold:
        raise ProtocolError(f"{len(survivors)} survivors are fewer than the threshold {secrets.threshold}: "
                            "unmasking now could expose a single client's values")
    participants = set(secrets.received) | {secrets.node}
    strangers = sorted((set(survivors) | set(dropped)) - participants)
    if strangers:
        raise ProtocolError(f"nodes {strangers[:5]} sent this client no shares")
    shares = {secrets.node: secrets.own_shares}
    c_private = bytes_to_private_key(secrets.c_private)
    for peer, ciphertext in secrets.received.items():
        key = generate_shared_key(c_private, bytes_to_public_key(secrets.publics[peer][0]))
        try:
            src, dst, b_share, s_share = share_keys_plaintext_separate(decrypt(key, ciphertext))
        except InvalidToken:
            raise ProtocolError(f"the share from node {peer} does not decrypt") from None
        if (src, dst) != (peer, secrets.node):
            raise ProtocolError(f"the share routed from node {peer} claims {src} -> {dst}")
        shares[peer] = (b_share, s_share)
    return ({v: shares[v][0] for v in survivors if v in shares},
            {v: shares[v][1] for v in dropped if v in shares})


# ----------------------------------------------------------------------------------------------
# Server step
# ----------------------------------------------------------------------------------------------

def unmask_sum(masked: dict[int, np.ndarray], participants: list[int], publics: dict[int, tuple[bytes, bytes]],
               b_shares: dict[int, list[bytes]], s_shares: dict[int, list[bytes]], threshold: int,
               fixed_point: FixedPoint, *, graph: dict[int, frozenset[int]] | None = None) -> np.ndarray:
    """The float sum of the survivors' values from their masked vectors and the revealed shares.

    `participants` are the clients whose shares were routed (step 2); `masked` holds the
    survivors' vectors; b_shares[v] (v a survivor) and s_shares[v] (v dropped) the revealed shares.
    `graph` maps each client to its neighbourhood (None: everyone is everyone's neighbour).
    """
    survivors = sorted(masked)
    dropped = sorted(set(participants) - set(survivors))
    if len(survivors) < threshold:
        raise ProtocolError(f"{len(survivors)} survivors are fewer than the threshold {threshold}")
    size = next(iter(masked.values())).size
    dtype = fixed_point.dtype
    total = np.zeros(size, dtype=dtype)
    for vector in masked.values():
        total = total + vector.astype(dtype)
    for v in survivors:
        total = total - mask_stream(_combine(b_shares.get(v, []), threshold, f"node {v}'s self-mask seed"),
                                    size, dtype)
    for v in dropped:
        s_private = key_from_scalar(_combine(s_shares.get(v, []), threshold, f"dropped node {v}'s mask key"))
        for u in survivors if graph is None else sorted(graph[v] & set(survivors)):
            stream = mask_stream(agreed_key(s_private, bytes_to_public_key(publics[u][1])), size, dtype)
            total = total - stream if u < v else total + stream
    return fixed_point.decode_sum(total, len(survivors))


def _combine(shares: list[bytes], threshold: int, what: str) -> bytes:
    if len(shares) < threshold:
        raise ProtocolError(f"{len(shares)} shares of {what} are fewer than the threshold {threshold}")
    try:
        return combine_shares(shares[:threshold])
    except ValueError:
        raise ProtocolError(f"the shares of {what} do not combine") from None
