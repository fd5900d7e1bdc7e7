"""Factories for tests/models/test_custom_model.py: good and broken on purpose."""

from __future__ import annotations

from torch import nn


def classes_only(num_classes: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))


def not_a_module(input_shape: tuple[int, ...], num_classes: int) -> str:
    return "a model"


def fixed_input(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, num_classes))  # ignores the task's shape


def wrong_outputs(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
