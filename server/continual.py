"""Continual-learning metrics from the accuracy matrix A[t][i] (accuracy on task i after task t)."""

from __future__ import annotations

import math
from typing import Any


def continual_metrics(matrix: list[list[float]]) -> dict[str, Any]:
    """ACC = mean_i A[T][i]; FGT = mean_{i<T} (A[i][i] - A[T][i]); plasticity = mean_t A[t][t]."""
    if not matrix:
        return {"acc": None, "fgt": None, "plasticity": None, "matrix": []}
    last = len(matrix) - 1
    final_row = matrix[last][: last + 1]
    acc = sum(final_row) / len(final_row)
    fgt = (sum(matrix[i][i] - matrix[last][i] for i in range(last)) / last) if last > 0 else 0.0
    plasticity = sum(matrix[t][t] for t in range(last + 1)) / (last + 1)
    clean = [[None if isinstance(v, float) and math.isnan(v) else v for v in row] for row in matrix]
    return {"acc": acc, "fgt": fgt, "plasticity": plasticity, "matrix": clean}
