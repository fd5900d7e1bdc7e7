"""Shared fixtures: Flower's task identity (Messages need it outside an engine), temp run dirs."""

from __future__ import annotations

import pytest
from flwr.supercore.task_identity import TaskIdentity


@pytest.fixture(autouse=True, scope="session")
def _flower_task_identity() -> None:
    # Flower's Message() reads the process's task identity; engines set it, plain tests must.
    TaskIdentity.run_id = 1
    TaskIdentity.task_id = 1
    TaskIdentity.node_id = 1
