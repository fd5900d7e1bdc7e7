"""corolla's offline data: dataset catalogue, partitioners, continual streams and domains."""

from data.adapters.arrays import DatasetArrays
from data.bundle import Split, TaskBundle
from data.config import TASK_NAMES
from data.errors import ConfigError, DatasetNotInstalled
from data.tasks import check_client_data, check_task_config, load_site_task, load_task, server_task

import data.encoders  # noqa: E402,F401  (registers the built-in frozen encoders, e.g. effnet-lite0)

__all__ = [
    "TASK_NAMES",
    "ConfigError",
    "DatasetArrays",
    "DatasetNotInstalled",
    "Split",
    "TaskBundle",
    "check_client_data",
    "check_task_config",
    "load_site_task",
    "load_task",
    "server_task",
]
