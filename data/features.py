"""Registry of frozen feature encoders whose cached outputs can replace a task's pixels."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from data.cache import cached_arrays

# An encoder maps uint8 images (n, C, H, W) to float32 features (n, d). It does its own resizing,
# channel handling, normalisation and batching.
Encoder = Callable[[np.ndarray], np.ndarray]

NO_FEATURES = "none"


def _keep_pixels(images: np.ndarray) -> np.ndarray:
    return images


# "none" is a placeholder: tasks with features=none keep their images and never call it.
FEATURE_ENCODERS: dict[str, Encoder] = {NO_FEATURES: _keep_pixels}


def register_encoder(name: str, fn: Encoder) -> None:
    """Make ``fn`` available as ``task.features=<name>``."""
    if name == NO_FEATURES:
        raise ValueError(f"{NO_FEATURES!r} is reserved for 'no encoder'")
    FEATURE_ENCODERS[name] = fn


def encode_cached(images: np.ndarray, *, dataset: str, encoder: str) -> np.ndarray:
    """Features of ``images`` through a registered encoder, computed once and cached on disk.

    The cache key is the dataset, the encoder and a digest of the images themselves, so a changed
    source or split never reuses stale features.
    """
    fn = FEATURE_ENCODERS[encoder]
    digest = hashlib.blake2b(np.ascontiguousarray(images).data, digest_size=8).hexdigest()
    key = f"{dataset}-{encoder}-{digest}"

    def make() -> dict[str, np.ndarray]:
        features = np.asarray(fn(images), dtype=np.float32)
        if features.ndim != 2 or len(features) != len(images):
            raise ValueError(
                f"encoder {encoder!r} returned shape {features.shape} for {len(images)} images; "
                "expected (n, d)"
            )
        return {"features": features}

    return cached_arrays(key, make, subdir="features")["features"]
