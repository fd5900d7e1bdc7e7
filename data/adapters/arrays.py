"""DatasetArrays, the contract every adapter (and loader plugin) returns, and its checks."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from conf.errors import ConfigError
from data.split import holdout_split, stratify_by

log = logging.getLogger("corolla")
_SAID: set[str] = set()
TEST_SPLIT_STATE = 0  # the fixed test split never depends on the run's seed


def say_once(message: str) -> None:
    """Log a warning about the data once per process (Ray actors each say it once at most)."""
    if message not in _SAID:
        _SAID.add(message)
        log.warning(message)


@dataclass(frozen=True)
class DatasetArrays:
    """A loaded dataset: inputs, labels 0..len(classes)-1 and optional test split and client groups.

    ``x_train``: uint8 images (n, C, H, W) or float32 features (n, d). ``x_test``/``y_test``: the
    dataset's own test split, or None (a stratified ``task.test_fraction`` is then held out).
    ``groups``: per training sample, the natural client it belongs to (``partition=column`` or
    ``folders``), else None. ``source``: the file or directory, named in errors.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    classes: tuple[str, ...]
    source: str
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    groups: np.ndarray | None = None
    groups_test: np.ndarray | None = None

    def check(self, *, key: str, one_class_ok: bool = False) -> None:
        """Raise ConfigError naming ``source`` and ``key`` when the arrays break the contract.

        ``one_class_ok``: one site of a federation may hold a single class of the class set.
        """
        where = f"{self.source} ({key})"
        if len(self.classes) < 2:
            raise ConfigError(f"{where}: the labels hold a single class {list(self.classes)}; a "
                              "classifier needs at least two", key=key)
        for part, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if x is None:
                continue
            if x.dtype not in (np.uint8, np.float32) or x.ndim not in (2, 4):
                raise ConfigError(f"{where}: {part} inputs must be uint8 (n, C, H, W) images or "
                                  f"float32 (n, d) features, got {x.dtype} {x.shape}", key=key)
            if y is None or len(y) != len(x):
                raise ConfigError(f"{where}: {part} has {len(x)} inputs but "
                                  f"{'no' if y is None else len(y)} labels", key=key)
            if len(y) and (y.min() < 0 or y.max() >= len(self.classes)):
                raise ConfigError(f"{where}: {part} labels lie outside the class set "
                                  f"0..{len(self.classes) - 1} ({len(self.classes)} classes)", key=key)
        if len(self.y_train) == 0:
            raise ConfigError(f"{where}: no training samples", key=key)
        if len(np.unique(self.y_train)) < 2 and not one_class_ok:
            raise ConfigError(f"{where}: every training sample has the class "
                              f"{self.classes[int(self.y_train[0])]!r}; a classifier needs at least two",
                              key=key)
        if self.x_test is not None and self.x_test.shape[1:] != self.x_train.shape[1:]:
            raise ConfigError(f"{where}: test inputs {self.x_test.shape[1:]} differ from train inputs "
                              f"{self.x_train.shape[1:]}", key=key)


def fixed_test_split(y: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices: a stratified ``fraction`` held out with a fixed state (seed-free)."""
    n_test = int(np.ceil(fraction * len(y)))
    if n_test < 1 or n_test >= len(y):
        raise ConfigError(f"task.test_fraction={fraction} leaves no test or no training sample of "
                          f"{len(y)} samples", key="task.test_fraction")
    return holdout_split(len(y), n_test, state=TEST_SPLIT_STATE, stratify=stratify_by(y, n_test))


def with_test_split(arrays: DatasetArrays, fraction: float) -> DatasetArrays:
    """``arrays`` with a test split: its own, or a fixed stratified ``fraction`` of the samples."""
    if arrays.x_test is not None:
        return arrays
    train, test = fixed_test_split(arrays.y_train, fraction)
    groups = arrays.groups
    return DatasetArrays(
        x_train=arrays.x_train[train], y_train=arrays.y_train[train], classes=arrays.classes,
        source=arrays.source, x_test=arrays.x_train[test], y_test=arrays.y_train[test],
        groups=None if groups is None else groups[train], groups_test=None if groups is None else groups[test],
    )


def label_codes(values: list[object], classes: tuple[str, ...] | None, *, where: str,
                key: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Labels as codes into ``classes`` (given: ``task.classes``; None: the sorted distinct values)."""
    names = [str(v) for v in values]
    found = sorted(set(names), key=_natural)
    if classes is None:
        classes = tuple(found)
    else:
        stray = [n for n in found if n not in classes]
        if stray:
            raise ConfigError(f"{where}: labels {stray[:5]} lie outside the class set task.classes="
                              f"{list(classes)}; add them to task.classes or remove those samples",
                              key="task.classes")
    index = {name: i for i, name in enumerate(classes)}
    return np.asarray([index[n] for n in names], dtype=np.int64), tuple(classes)


def _natural(name: str) -> tuple[int, float | str]:
    """Numbers in numeric order, then names (labels 2 < 10, not '10' < '2')."""
    try:
        return (0, float(name))
    except ValueError:
        return (1, name)
