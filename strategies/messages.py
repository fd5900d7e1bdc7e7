"""Flower message types corolla and its built-in strategies send, defined once.

A message type is `<category>` or `<category>.<action>` (Flower's `train`, `evaluate`, `query`).
The server side sends them, the ClientApp registers a handler for each, a client half maps them
to methods (`ClientHalf.message_types`).
"""

from __future__ import annotations

TRAIN = "train"
EVALUATE = "evaluate"
HELLO = "query.hello"          # corolla's own: which partition a node holds (server/grid.py, client/app.py)
FOT_SKETCH = "query.sketch"    # FOT: a sketch of the finished task's layer inputs
GGEUR_STATS = "query.stats"    # GGEUR: class statistics (and PCA's sketch) before round 1's training

# Keys the simulated world (server/system) adds to a training message and reads back from its reply.
MAX_STEPS_KEY = "system-max-steps"   # ConfigRecord: the local steps a client can finish by system.deadline_s
STEPS_METRIC = "local-steps"         # MetricRecord: the local steps a client took (sent back under that cap)
