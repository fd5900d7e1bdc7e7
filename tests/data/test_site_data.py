"""A deployed site's own data (SuperNode --data) and the task's shape for a server without data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conf.errors import ConfigError
from data import check_client_data, check_task_config, load_site_task, server_task
from tests.data.makers import image_folder

RUN = {"name": "imagefolder", "classes": ["c0", "c1", "c2", "c3", "c4"], "channels": 3, "image_size": 16}


def test_a_site_holds_all_of_its_folder_as_its_partition(tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "site", classes=["c1", "c3"], per_class=10, size=24)
    bundle = load_site_task(RUN, str(folder), partition_id=1, num_partitions=3, seed=0)
    assert (bundle.num_clients, bundle.num_classes, bundle.input_shape) == (3, 5, (3, 16, 16))
    assert bundle.client_size(0) == bundle.client_size(2) == 0
    assert bundle.client_size(1) + len(bundle.client_test(1)) == 20  # local_test_fraction of its own
    assert set(bundle.client_train(1).y.tolist()) <= {1, 3}  # labels in the federation's class set
    only_one = image_folder(tmp_path / "one", classes=["c4"], per_class=6)  # a site may hold one class
    assert set(load_site_task(RUN, str(only_one), partition_id=0, num_partitions=3, seed=0)
               .client_train(0).y.tolist()) == {4}


def test_a_sites_own_test_folder_is_its_local_test(tmp_path: Path) -> None:
    image_folder(tmp_path / "s" / "train", classes=["c0", "c2"], per_class=8)
    image_folder(tmp_path / "s" / "test", classes=["c0", "c2"], per_class=3, seed=1)
    bundle = load_site_task(RUN, str(tmp_path / "s"), partition_id=0, num_partitions=2, seed=0)
    assert bundle.client_size(0) == 16 and len(bundle.client_test(0)) == 6


def test_a_site_refuses_classes_outside_the_federations(tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "site", classes=["c1", "c9"], per_class=4)
    with pytest.raises(ConfigError, match=r"labels \['c9'\] lie outside the class set task.classes"):
        load_site_task(RUN, str(folder), partition_id=0, num_partitions=3, seed=0)


def test_a_server_without_data_builds_the_task_from_the_config() -> None:
    spec = server_task({**RUN, "num_clients": 3}, seed=0)
    assert (spec.input_shape, spec.num_classes, spec.num_clients, len(spec.test())) == ((3, 16, 16), 5, 3, 0)
    check_task_config({**RUN, "num_clients": 3})
    with pytest.raises(ConfigError, match="set task.channels, task.image_size") as err:
        check_task_config({"name": "imagefolder", "classes": ["a", "b"], "channels": None, "image_size": None})
    assert err.value.key == "task.channels"
    with pytest.raises(ConfigError, match="task.path is not set: a server without data knows the input shape"):
        check_task_config({"name": "tabular", "label": "y"})
    with pytest.raises(ConfigError, match="the clients of a simulation read their data"):
        check_client_data(RUN)
    assert np.array_equal(spec.task_classes[0], list(range(5)))


def _env(task: dict, node_config: dict):
    from flwr.app import Context, RecordDict

    from strategies.base import ClientEnv

    context = Context(run_id=1, node_id=1, node_config=node_config, state=RecordDict(), run_config={})
    return ClientEnv({"task": task, "seed": 0}, context)


def test_a_nodes_data_dir_reaches_only_tasks_that_read_it_and_data_reaches_the_adapter(tmp_path: Path) -> None:
    # docker-compose and k8s give every SuperNode data-dir=/data, whatever the run's task
    env = _env({"name": "digits", "num_clients": 3}, {"partition-id": 0, "num-partitions": 3, "data-dir": "/data"})
    assert env.task.num_clients == 3 and "data_dir" not in env._task_cfg()
    folder = image_folder(tmp_path / "site", classes=["c0", "c2"], per_class=5)
    env = _env({**RUN, "num_clients": 2}, {"partition-id": 1, "num-partitions": 2, "data": str(folder)})
    assert env.task.client_size(1) + len(env.task.client_test(1)) == 10 and env.task.client_size(0) == 0
