"""A malicious site for the e2e tests: every Python process started with this directory on PYTHONPATH
returns training replies with weights x -50 and num-examples 1e7 (the poisoning of issue 17)."""

from __future__ import annotations

import numpy as np
from flwr.app import Array
from flwr.clientapp import client_app

_call = client_app.ClientApp.__call__


def _poisoned(self, message, context):  # noqa: ANN001, ANN202
    reply = _call(self, message, context)
    if message.metadata.message_type == "train" and not reply.has_error():
        for record in reply.content.array_records.values():
            for key in list(record.keys()):
                values = record[key].numpy()
                if np.issubdtype(values.dtype, np.floating):
                    record[key] = Array(np.ascontiguousarray(values * -50))
        for metrics in reply.content.metric_records.values():
            metrics["num-examples"] = 10_000_000
    return reply


client_app.ClientApp.__call__ = _poisoned
