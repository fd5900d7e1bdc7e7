"""UpdateBounds: leave out training replies whose update norm or num-examples is implausible for the round."""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, Message

from conf.errors import ConfigError

log = logging.getLogger("corolla")

ENABLED = ("auto", True, False)


@dataclass
class UpdateBounds:
    """A screen between per-reply validation and aggregation.

    - `num-examples` above `examples_factor` x what the node declared (the size of the partition it
      announced in the hello exchange) is rejected: a site cannot buy weight in a weighted average.
    - An update (reply weights minus the weights sent) whose L2 norm exceeds `norm_factor` x the
      median norm of the round's replies is rejected, once the round has `min_replies` comparable
      replies (a median of fewer says little). Replies that carry no weights of the global model's
      shape (feature statistics, embeddings) are not norm-checked.
    Rejections are counted per node and logged with the node id and the numbers.
    """

    norm_factor: float = 10.0
    min_replies: int = 3
    examples_factor: float = 1.0
    declared: Callable[[int, int], int | None] = lambda node, rnd: None
    rejected: Counter[int] = field(default_factory=Counter)

    def screen(self, rnd: int, replies: list[Message],
               sent: ArrayRecord | None) -> tuple[list[Message], list[tuple[int, str]]]:
        """(replies kept, [(node, reason)] rejected) for one round's validated replies."""
        refused: dict[int, str] = {}
        norms = {i: update_norm(r, sent) for i, r in enumerate(replies)}
        for i, reply in enumerate(replies):
            # Only weight updates are bounded: other replies (CreamFL's representations) count
            # public-set items in num-examples, not the node's own partition.
            reason = self._examples_reason(reply, rnd) if norms[i] is not None else None
            if reason:
                refused[i] = reason
        comparable = {i: n for i, n in norms.items() if n is not None and i not in refused}
        if len(comparable) >= self.min_replies:
            median = float(np.median(list(comparable.values())))
            limit = self.norm_factor * median
            for i, norm in comparable.items():
                if median > 0 and norm > limit:
                    refused[i] = (f"update norm {norm:.4g} is {norm / median:.1f}x the round's median "
                                  f"{median:.4g} (limit: failures.bounds.norm_factor={self.norm_factor:g}x)")
        kept, rejections = [], []
        for i, reply in enumerate(replies):
            if i in refused:
                node = reply.metadata.src_node_id
                self.rejected[node] += 1
                rejections.append((node, refused[i]))
            else:
                kept.append(reply)
        return kept, rejections

    def _examples_reason(self, reply: Message, rnd: int) -> str | None:
        node = reply.metadata.src_node_id
        bound = self.declared(node, rnd)
        if not bound:  # nothing declared (a site that holds its own data declares no partition size)
            return None
        for metrics in reply.content.metric_records.values():
            value = metrics.get("num-examples")
            if isinstance(value, (int, float)) and value > self.examples_factor * bound:
                return (f"num-examples {value:g} exceeds the {bound} examples of the partition it declared "
                        f"(limit: failures.bounds.examples_factor={self.examples_factor:g}x)")
        return None


def update_norm(reply: Message, sent: ArrayRecord | None) -> float | None:
    """L2 norm of (reply's weights - sent weights) over floating arrays, or None if not comparable."""
    if sent is None:
        return None
    records = list(reply.content.array_records.values())
    if len(records) != 1 or set(records[0]) != set(sent):
        return None
    total = 0.0
    for key, ref in sent.items():
        before = ref.numpy()
        if not np.issubdtype(before.dtype, np.floating):
            continue
        after = records[0][key].numpy()
        if after.shape != before.shape:
            return None
        total += float(np.sum((after.astype(np.float64) - before.astype(np.float64)) ** 2))
    return math.sqrt(total)


def bounds_from_config(cfg: Mapping[str, Any], *, deployed: bool,
                       declared: Callable[[int, int], int | None]) -> UpdateBounds | None:
    """The run's UpdateBounds from `failures.bounds` (None when off); `auto` means on in deployments."""
    section = dict(cfg.get("failures", {}).get("bounds") or {})
    enabled = section.get("enabled", "auto")
    if enabled not in ENABLED:
        raise ConfigError(f"failures.bounds.enabled={enabled!r}: use auto, true or false",
                          key="failures.bounds.enabled")
    if enabled is False or (enabled == "auto" and not deployed):
        return None
    values: dict[str, float] = {}
    for key, low in (("norm_factor", 1.0), ("min_replies", 2), ("examples_factor", 1.0)):
        value = section.get(key, getattr(UpdateBounds, key))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
            raise ConfigError(f"failures.bounds.{key}={value!r}: must be a number >= {low}",
                              key=f"failures.bounds.{key}")
        values[key] = value
    return UpdateBounds(norm_factor=float(values["norm_factor"]), min_replies=int(values["min_replies"]),
                        examples_factor=float(values["examples_factor"]), declared=declared)


def partition_size(task: Any, partition: int | None, task_id: int) -> int | None:
    """How many training examples partition `partition` holds in continual task `task_id` (None: unknown)."""
    try:
        return None if partition is None else int(len(task.tasks[task_id].clients[partition]))
    except (AttributeError, IndexError, TypeError):
        return None
