"""ACC, FGT and plasticity from the accuracy matrix."""

from __future__ import annotations

import math

import pytest

from server.continual import continual_metrics


def test_metrics_from_a_known_matrix() -> None:
    nan = float("nan")
    matrix = [[0.9, nan, nan], [0.7, 0.8, nan], [0.5, 0.6, 0.95]]
    m = continual_metrics(matrix)
    assert m["acc"] == pytest.approx((0.5 + 0.6 + 0.95) / 3)
    assert m["fgt"] == pytest.approx(((0.9 - 0.5) + (0.8 - 0.6)) / 2)
    assert m["plasticity"] == pytest.approx((0.9 + 0.8 + 0.95) / 3)
    assert m["matrix"][0][1] is None  # NaN is not JSON: unseen tasks are null


def test_single_task_has_no_forgetting() -> None:
    m = continual_metrics([[0.7]])
    assert m["fgt"] == 0.0 and m["acc"] == m["plasticity"] == 0.7
    assert not math.isnan(m["acc"])
