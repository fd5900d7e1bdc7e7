"""Tests of continual streams: permuted (domain-incremental) and split (task/class-incremental)."""

from __future__ import annotations

import numpy as np
import torch

from data import load_task
from data.continual import pixel_permutations, split_classes


def test_permuted_tasks_are_pixel_permutations_with_the_same_labels() -> None:
    b = load_task({"name": "permuted-digits"}, seed=0)
    assert (b.num_tasks, b.scenario, b.num_classes) == (5, "domain-incremental", 10)
    assert b.task_classes == [list(range(10))] * 5
    perms = pixel_permutations(5, 64)
    assert np.array_equal(perms[0], np.arange(64))
    assert len({p.tobytes() for p in perms}) == 5
    base = b.test(0)
    for t in range(1, 5):
        test = b.test(t)
        assert torch.equal(test.y, base.y)
        flat = base.x.reshape(len(base), 1, 64)
        assert torch.equal(test.x.reshape(len(test), 1, 64), flat[:, :, torch.from_numpy(perms[t])])
        val0, val = b.val(0), b.val(t)
        assert torch.equal(val.y, val0.y) and not torch.equal(val.x, val0.x)


def test_permutations_do_not_depend_on_the_run_seed() -> None:
    a, b = (
        load_task({"name": "permuted-digits"}, seed=0),
        load_task({"name": "permuted-digits"}, seed=1),
    )
    assert torch.equal(a.test(3).x, b.test(3).x)
    assert not np.array_equal(a.tasks[3].clients[0], b.tasks[3].clients[0])


def test_each_task_is_partitioned_anew_among_all_clients() -> None:
    b = load_task({"name": "permuted-fmnist"}, seed=0)
    assert b.num_clients == 20
    pools = [np.sort(np.concatenate(task.clients)) for task in b.tasks]
    assert all(np.array_equal(pool, pools[0]) for pool in pools)  # the same training pool
    assert not np.array_equal(b.tasks[0].clients[0], b.tasks[1].clients[0])  # seed (seed, t)
    split = b.client_train(4, task_id=2)
    assert split.x.shape == (b.client_size(4, 2), 1, 28, 28)


def test_permuted_shard_partition_is_non_iid() -> None:
    b = load_task({"name": "permuted-fmnist", "partition": "shard"}, seed=0)
    y = b.train_store.y
    for task in b.tasks[:2]:
        classes = [len(np.unique(y[idx])) for idx in task.clients]
        assert max(classes) <= 3 and np.mean(classes) <= 2.5


def test_split_fmnist_tasks_have_their_classes() -> None:
    b = load_task({"name": "split-fmnist"}, seed=0)
    assert (b.num_tasks, b.num_classes, b.scenario) == (5, 10, "task-incremental")
    assert b.task_classes == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]] == split_classes(5)
    for t, classes in enumerate(b.task_classes):
        assert set(b.test(t).y.tolist()) == set(classes)
        assert len(b.test(t)) == 2000  # Fashion-MNIST's test split has 1,000 per class
        assert set(b.val(t).y.tolist()) == set(classes)
        for c in (0, 19):
            assert set(b.client_train(c, t).y.tolist()) <= set(classes)
        assert set(b.train_pool(t).y.tolist()) == set(classes)
    y = b.train_store.y
    total = sum(len(np.concatenate(task.clients)) + len(task.val) for task in b.tasks)
    assert total == len(y) == 60000


def test_split_class_incremental_scenario() -> None:
    cfg = {"name": "split-fmnist", "continual": {"scenario": "class-incremental"}}
    b = load_task(cfg, seed=0)
    assert b.scenario == "class-incremental" and b.num_classes == 10
    # Labels stay global (not remapped per task): the output layer covers all classes.
    assert set(b.test(4).y.tolist()) == {8, 9}
    three = load_task({"name": "split-fmnist", "continual": {"num_tasks": 3}}, seed=0)
    assert three.task_classes == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
