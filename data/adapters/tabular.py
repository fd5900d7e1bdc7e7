"""task=tabular: a CSV or Parquet file; numeric columns standardised, categorical ones one-hot."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from conf.errors import ConfigError
from data.adapters.arrays import DatasetArrays, fixed_test_split, label_codes, say_once
from data.adapters.config import TabularConfig

if TYPE_CHECKING:
    import pandas as pd

KEY = "task.path"
SUFFIXES = (".csv", ".parquet", ".pq")
MANY_CATEGORIES = 100


def read_table(value: str | None, *, key: str = KEY) -> "pd.DataFrame":
    """The file as a DataFrame; ConfigError naming the file and ``key`` when it cannot be read."""
    import pandas as pd

    if not value:
        raise ConfigError(f"{key} is not set: name a .csv or .parquet file ({key}=<file>)", key=key)
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(f"{key}={value!r}: no such file", key=key)
    if path.suffix.lower() not in SUFFIXES:
        raise ConfigError(f"{key}={value!r}: expected a .csv or .parquet file", key=key)
    try:
        frame = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except Exception as err:  # pandas/pyarrow raise many types for a bad file
        raise ConfigError(f"{path}: cannot read this table ({type(err).__name__}: {err}) ({key})",
                          key=key) from None
    if frame.empty:
        raise ConfigError(f"{path}: the table has no rows ({key})", key=key)
    return frame


def load_table(cfg: TabularConfig) -> DatasetArrays:
    """The table of task.path as standardised/one-hot float32 features and label codes."""
    frame = read_table(cfg.path)
    source = str(Path(str(cfg.path)).expanduser())
    return frame_arrays(frame, label=cfg.label, label_key="task.label", classes=cfg.classes,
                        group_column=cfg.partition_column if cfg.partition == "column" else None,
                        test_fraction=cfg.test_fraction, source=source)


def frame_arrays(frame: "pd.DataFrame", *, label: str | None, label_key: str,
                 classes: tuple[str, ...] | None, group_column: str | None, test_fraction: float,
                 source: str, test: "pd.DataFrame | None" = None) -> DatasetArrays:
    """Features and labels of a DataFrame (``test``: its own test rows, else a fixed split)."""
    import pandas as pd

    _require_column(frame, label, label_key, source)
    if group_column is not None:
        _require_column(frame, group_column, "task.partition_column", source)
    whole = frame if test is None else pd.concat([frame, test], ignore_index=True)
    missing = int(whole[label].isna().sum())
    if missing:
        raise ConfigError(f"{source}: column {label!r} ({label_key}) has {missing} empty label(s); "
                          "drop those rows", key=label_key)
    y, classes = label_codes(whole[label].tolist(), classes, where=f"{source} column {label!r}",
                             key=label_key)
    if len(classes) < 2 or len(np.unique(y)) < 2:
        raise ConfigError(f"{source}: column {label!r} ({label_key}) holds a single class "
                          f"{sorted(set(map(str, whole[label])))[:1]}; a classifier needs at least two",
                          key=label_key)
    if test is None:
        train_idx, test_idx = fixed_test_split(y, test_fraction)
    else:
        train_idx, test_idx = np.arange(len(frame)), np.arange(len(frame), len(whole))
    groups = None
    if group_column is not None:
        values = whole[group_column].astype(str).to_numpy()
        names = sorted(set(values))
        groups = np.asarray([names.index(v) for v in values], dtype=np.int64)
    features = whole.drop(columns=[c for c in (label, group_column) if c is not None])
    x = _encode(features, train_idx, source)
    return DatasetArrays(
        x_train=x[train_idx], y_train=y[train_idx], classes=classes, source=source,
        x_test=x[test_idx], y_test=y[test_idx],
        groups=None if groups is None else groups[train_idx],
        groups_test=None if groups is None else groups[test_idx],
    )


def _require_column(frame: "pd.DataFrame", column: str | None, key: str, source: str) -> None:
    if not column or column not in frame.columns:
        shown = ", ".join(map(str, list(frame.columns)[:20]))
        raise ConfigError(f"{source}: {key}={column!r} is not a column; its columns are: {shown}", key=key)


def _encode(features: "pd.DataFrame", train_idx: np.ndarray, source: str) -> np.ndarray:
    """Numeric columns standardised with the training rows' mean/std; the others one-hot."""
    import pandas as pd
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    if features.shape[1] == 0:
        raise ConfigError(f"{source}: no feature column is left besides the label (task.label)",
                          key="task.label")
    blocks = []
    for column in features.columns:
        values = features[column]
        if is_numeric_dtype(values) and not is_bool_dtype(values):
            col = values.to_numpy(dtype=np.float64)
            train = col[train_idx]
            if np.isnan(train).all():
                raise ConfigError(f"{source}: column {column!r} is empty in every training row; drop it",
                                  key="task.path")
            mean, std = float(np.nanmean(train)), float(np.nanstd(train))
            if np.isnan(col).any():
                say_once(f"{source}: column {column!r} has {int(np.isnan(col).sum())} empty value(s), "
                         "filled with the training mean")
                col = np.where(np.isnan(col), mean, col)
            blocks.append(((col - mean) / (std if std > 0 else 1.0))[:, None])
        else:
            texts = values.astype(str).where(values.notna(), "<missing>")
            categories = sorted(set(texts))
            if len(categories) > MANY_CATEGORIES:
                say_once(f"{source}: column {column!r} has {len(categories)} distinct values, one-hot "
                         "into as many features; drop it if it is an identifier")
            blocks.append(pd.get_dummies(pd.Categorical(texts, categories=categories)).to_numpy(np.float64))
    return np.ascontiguousarray(np.concatenate(blocks, axis=1), dtype=np.float32)
