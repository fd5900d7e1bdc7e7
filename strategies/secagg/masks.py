"""Mask streams: agreed keys expanded by ChaCha20 (from `cryptography`) into ring elements."""

from __future__ import annotations

import base64

import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from flwr.common.secure_aggregation.crypto.symmetric_encryption import generate_shared_key

CURVE = ec.SECP384R1()
SCALAR_BYTES = 48


def agreed_key(private_key: ec.EllipticCurvePrivateKey, public_key: ec.EllipticCurvePublicKey) -> bytes:
    """The 32-byte key two parties agree on (ECDH + HKDF-SHA256, Flower's `generate_shared_key`)."""
    return base64.urlsafe_b64decode(generate_shared_key(private_key, public_key))


def mask_stream(seed: bytes, size: int, dtype: type[np.unsignedinteger], *, nonce: bytes = b"\0" * 16) -> np.ndarray:
    """`size` uniform ring elements from a 32-byte seed: the ChaCha20 key stream read as integers."""
    if len(seed) != 32:
        raise ValueError(f"a mask seed has 32 bytes, got {len(seed)}")
    width = np.dtype(dtype).itemsize
    encryptor = Cipher(algorithms.ChaCha20(seed, nonce), mode=None).encryptor()
    stream = encryptor.update(bytes(size * width))
    return np.frombuffer(stream, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)


def private_scalar(private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """The private key as its 48-byte scalar (what is Shamir-shared for dropout recovery)."""
    return private_key.private_numbers().private_value.to_bytes(SCALAR_BYTES, "big")


def key_from_scalar(scalar: bytes) -> ec.EllipticCurvePrivateKey:
    """The private key a reconstructed scalar stands for."""
    return ec.derive_private_key(int.from_bytes(scalar, "big"), CURVE)
