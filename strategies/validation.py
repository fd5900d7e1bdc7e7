"""Checks that keep malformed client replies out of aggregation."""

from __future__ import annotations

import math

import numpy as np
from flwr.app import ArrayRecord, RecordDict


def check_num_examples(content: RecordDict, *, max_num_examples: int) -> str | None:
    """Why the reply's `num-examples` is unusable, or None."""
    metrics = list(content.metric_records.values())
    if len(metrics) != 1:
        return f"expected exactly one MetricRecord, got {len(metrics)}"
    value = metrics[0].get("num-examples")
    if value is None:
        return "MetricRecord lacks 'num-examples'"
    if isinstance(value, list) or isinstance(value, bool):
        return f"'num-examples' must be a number, got {type(value).__name__}"
    if not math.isfinite(float(value)) or float(value) != int(value):
        return f"'num-examples' must be a whole number, got {value!r}"
    if not 0 < int(value) <= max_num_examples:
        return f"'num-examples' = {value} is outside (0, {max_num_examples}]"
    return None


def check_arrays(reply: ArrayRecord, sent: ArrayRecord) -> str | None:
    """Why the reply's arrays do not match the arrays the server sent, or None."""
    missing = sorted(set(sent) - set(reply))
    extra = sorted(set(reply) - set(sent))
    if missing or extra:
        return f"array keys differ from the global model's: missing {missing[:5]}, extra {extra[:5]}"
    for key, expected in sent.items():
        got = reply[key]
        if tuple(got.shape) != tuple(expected.shape):
            return f"array {key!r} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
        if got.dtype != expected.dtype:
            return f"array {key!r} has dtype {got.dtype}, expected {expected.dtype}"
        values = got.numpy()
        if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
            return f"array {key!r} holds NaN or Inf values"
    return None


def check_weights_reply(content: RecordDict, sent: ArrayRecord, *, max_num_examples: int) -> str | None:
    """Why a weights-carrying training reply must be rejected, or None."""
    records = list(content.array_records.values())
    if len(records) != 1:
        return f"expected exactly one ArrayRecord, got {len(records)}"
    return check_num_examples(content, max_num_examples=max_num_examples) or check_arrays(records[0], sent)
