"""Message payload sizes: array buffers exactly, config/metric entries approximately."""

from __future__ import annotations

from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict


def record_nbytes(content: RecordDict) -> int:
    """Bytes a message's content puts on the wire (serialised arrays plus keys and scalars)."""
    total = 0
    for key, record in content.items():
        total += len(key)
        if isinstance(record, ArrayRecord):
            total += sum(len(arr.data) + len(name) for name, arr in record.items())
        elif isinstance(record, (ConfigRecord, MetricRecord)):
            for name, value in record.items():
                total += len(name) + _value_nbytes(value)
    return total


def _value_nbytes(value: Any) -> int:
    if isinstance(value, (bytes, str)):
        return len(value)
    if isinstance(value, list):
        return sum(_value_nbytes(v) for v in value)
    return 8
