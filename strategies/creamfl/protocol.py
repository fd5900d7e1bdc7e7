"""CreamFL's messages: what travels each round, packed and parsed side by side.

Server -> client (`train`): Flower's FedAvg message, whose `arrays` ArrayRecord holds the global
public-set representations `img` and `txt`, each (public_size, embed_dim), and whose `config` holds
`server-round`. Client -> server: one ArrayRecord (`arrays`) with the client's public-set
representations of its own modalities only, and one MetricRecord (`metrics`) with `num-examples`
and its losses. Representations travel as float32, or float16 with strategy.wire_dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict

from strategies.validation import check_num_examples

MODALITY_KEYS = ("img", "txt")
OTHER = {"img": "txt", "txt": "img"}
STATE_KEY = "creamfl.model"  # a client's own model in Flower's Context.state
ARRAYS, METRICS, CONFIG = "arrays", "metrics", "config"


def pack_reps(reps: dict[str, torch.Tensor], wire_dtype: str) -> ArrayRecord:
    """Representations (CPU tensors) as an ArrayRecord in the wire dtype."""
    dtype = np.float16 if wire_dtype == "float16" else np.float32
    return ArrayRecord(array_dict={k: Array(np.ascontiguousarray(v.numpy().astype(dtype)))
                                   for k, v in reps.items()})


def parse_reps(record: ArrayRecord) -> dict[str, torch.Tensor]:
    """An ArrayRecord of representations as float32 CPU tensors, by modality key."""
    return {k: torch.from_numpy(v.numpy().astype(np.float32)) for k, v in record.items()}


def parse_train(message: Message) -> tuple[int, dict[str, torch.Tensor]]:
    """The server's `train` message: its round and the global public-set representations."""
    return int(message.content[CONFIG]["server-round"]), parse_reps(message.content[ARRAYS])


def pack_reply(message: Message, reps: dict[str, torch.Tensor], wire_dtype: str, *,
               num_examples: int, metrics: dict[str, float]) -> Message:
    """A client's reply: its public-set representations and its training numbers."""
    record = MetricRecord({"num-examples": num_examples, **metrics})
    return Message(RecordDict({ARRAYS: pack_reps(reps, wire_dtype), METRICS: record}), reply_to=message)


def parse_reply(content: RecordDict) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """A validated reply's representations (float32) and its numeric metrics but num-examples."""
    reps = parse_reps(next(iter(content.array_records.values())))
    metrics = {name: float(value) for name, value in next(iter(content.metric_records.values())).items()
               if name != "num-examples" and isinstance(value, (int, float))}
    return reps, metrics


def check_reply(content: RecordDict, *, public_size: int, embed_dim: int, max_num_examples: int) -> str | None:
    """Why a reply must be rejected, or None: one ArrayRecord with `img` and/or `txt`, each
    (public_size, embed_dim), floating and finite; and a valid `num-examples`."""
    records = list(content.array_records.values())
    if len(records) != 1:
        return f"expected exactly one ArrayRecord of representations, got {len(records)}"
    reps = records[0]
    keys = set(reps)
    if not keys or keys - set(MODALITY_KEYS):
        return f"representation keys must be a non-empty subset of {list(MODALITY_KEYS)}, got {sorted(keys)}"
    expected = (public_size, embed_dim)
    for key in sorted(keys):
        arr = reps[key]
        if tuple(arr.shape) != expected:
            return (f"{key!r} representations have shape {tuple(arr.shape)}, expected {expected} "
                    "(public_size, embed_dim)")
        values: Any = arr.numpy()
        if not np.issubdtype(values.dtype, np.floating):
            return f"{key!r} representations have dtype {values.dtype}, expected a float type"
        if not np.isfinite(values).all():
            return f"{key!r} representations hold NaN or Inf values"
    return check_num_examples(content, max_num_examples=max_num_examples)
