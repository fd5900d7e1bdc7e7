"""task=hf: a Hugging Face `datasets` save_to_disk directory, or a directory of parquet/arrow files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from conf.errors import ConfigError
from data.adapters.arrays import DatasetArrays, fixed_test_split, label_codes
from data.adapters.config import HFConfig
from data.adapters.images import open_image, to_array
from data.adapters.tabular import frame_arrays

if TYPE_CHECKING:
    import pandas as pd

KEY = "task.path"


def load_hf(cfg: HFConfig) -> DatasetArrays:
    """The dataset's train (and test, when it has one) split as images or table features."""
    root = _root(cfg.path)
    train, test, names = _frames(root)
    for frame, part in ((train, "train"), (test, "test")):
        if frame is None:
            continue
        for key, column in (("task.label_column", cfg.label_column), ("task.image_column", cfg.image_column)):
            if column is not None and column not in frame.columns:
                raise ConfigError(f"{root}: {key}={column!r} is not a column of its {part} split; its "
                                  f"columns are: {', '.join(map(str, frame.columns))}", key=key)
    if names is not None:  # a ClassLabel column: integers that mean these names
        for frame in (train, test):
            if frame is not None:
                frame[cfg.label_column] = [names[int(v)] if 0 <= int(v) < len(names) else str(v)
                                           for v in frame[cfg.label_column]]
    classes = cfg.classes if cfg.classes is not None else (tuple(names) if names else None)
    group = cfg.partition_column if cfg.partition == "column" else None
    if cfg.image_column is None:
        return frame_arrays(train, label=cfg.label_column, label_key="task.label_column", classes=classes,
                            group_column=group, test_fraction=cfg.test_fraction, source=str(root), test=test)
    return _images(cfg, root, train, test, classes, group)


def _root(value: str | None) -> Path:
    if not value:
        raise ConfigError("task.path is not set: task=hf reads a `datasets` save_to_disk directory or "
                          "a directory of parquet/arrow files; set task.path=<dir>", key=KEY)
    root = Path(value).expanduser()
    if not root.is_dir():
        raise ConfigError(f"task.path={value!r}: no such directory", key=KEY)
    return root


def _frames(root: Path) -> tuple["pd.DataFrame", "pd.DataFrame | None", list[str] | None]:
    """(train, test or None, ClassLabel names or None) of a saved dataset or a folder of files."""
    if (root / "dataset_dict.json").is_file() or (root / "state.json").is_file():
        return _saved(root)
    files = sorted(p for p in root.rglob("*") if p.suffix in (".parquet", ".arrow") and p.is_file())
    if not files:
        raise ConfigError(f"{root}: neither a `datasets` save_to_disk directory nor a folder of "
                          ".parquet/.arrow files (task.path)", key=KEY)
    test = [p for p in files if "test" in p.name.lower()]
    train = [p for p in files if p not in test]
    if not train:
        raise ConfigError(f"{root}: every file is a test split ({', '.join(p.name for p in test)}); "
                          "add training files (task.path)", key=KEY)
    return _read(train), (_read(test) if test else None), None


def _saved(root: Path) -> tuple["pd.DataFrame", "pd.DataFrame | None", list[str] | None]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(root))
    except Exception as err:
        raise ConfigError(f"{root}: cannot load this saved dataset ({type(err).__name__}: {err}) "
                          "(task.path)", key=KEY) from None
    if isinstance(loaded, datasets.DatasetDict):
        if "train" not in loaded:
            raise ConfigError(f"{root}: the saved DatasetDict has splits {list(loaded)} but no 'train' "
                              "(task.path)", key=KEY)
        train, test = loaded["train"], loaded.get("test")
    else:
        train, test = loaded, None
    names = None
    for feature in train.features.values():
        if isinstance(feature, datasets.ClassLabel):
            names = list(feature.names)
    # Images stay undecoded ({bytes, path}): PIL decodes them under our checks.
    cast = {k: datasets.Image(decode=False) for k, f in train.features.items() if isinstance(f, datasets.Image)}
    if cast:
        quiet = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()  # a cast bar per split is noise in a run's output
        try:
            train = train.cast(datasets.Features({**train.features, **cast}), keep_in_memory=True)
            test = (test.cast(datasets.Features({**test.features, **cast}), keep_in_memory=True)
                    if test is not None else None)
        finally:
            if quiet:
                datasets.enable_progress_bars()
    return train.to_pandas(), (test.to_pandas() if test is not None else None), names


def _read(files: list[Path]) -> "pd.DataFrame":
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for path in files:
        try:
            if path.suffix == ".parquet":
                tables.append(pq.read_table(path).to_pandas())
            else:
                tables.append(_read_arrow(path).to_pandas())
        except Exception as err:
            raise ConfigError(f"{path}: cannot read this file ({type(err).__name__}: {err}) (task.path)",
                              key=KEY) from None
    return pd.concat(tables, ignore_index=True)


def _read_arrow(path: Path) -> "Any":
    """An .arrow file in the IPC stream format (what `datasets` writes) or the file format."""
    import pyarrow as pa

    with pa.memory_map(str(path)) as source:
        try:
            return pa.ipc.open_stream(source).read_all()
        except pa.ArrowInvalid:
            source.seek(0)
            return pa.ipc.open_file(source).read_all()


def _images(cfg: HFConfig, root: Path, train: "pd.DataFrame", test: "pd.DataFrame | None",
            classes: tuple[str, ...] | None, group: str | None) -> DatasetArrays:
    import pandas as pd

    whole = train if test is None else pd.concat([train, test], ignore_index=True)
    y, classes = label_codes(whole[cfg.label_column].tolist(), classes,
                             where=f"{root} column {cfg.label_column!r}", key="task.label_column")
    assert cfg.image_column is not None
    names = [f"{root} row {i} column {cfg.image_column!r}" for i in range(len(whole))]
    images = [open_image(_cell(v), name=n, key="task.image_column")
              for v, n in zip(whole[cfg.image_column], names)]
    x = to_array(images, names=names, image_size=cfg.image_size, channels=cfg.channels, where=str(root))
    if test is None:
        train_idx, test_idx = fixed_test_split(y, cfg.test_fraction)
    else:
        train_idx, test_idx = np.arange(len(train)), np.arange(len(train), len(whole))
    groups = None
    if group is not None:
        if group not in whole.columns:
            raise ConfigError(f"{root}: task.partition_column={group!r} is not a column", key="task.partition_column")
        values = whole[group].astype(str).to_numpy()
        ids = sorted(set(values))
        groups = np.asarray([ids.index(v) for v in values], dtype=np.int64)
    return DatasetArrays(x_train=x[train_idx], y_train=y[train_idx], classes=classes, source=str(root),
                         x_test=x[test_idx], y_test=y[test_idx],
                         groups=None if groups is None else groups[train_idx],
                         groups_test=None if groups is None else groups[test_idx])


def _cell(value: Any) -> Any:
    """An image cell as bytes, a path or a PIL image (HF Image dicts, raw bytes, pixel arrays)."""
    from PIL import Image

    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        if value.get("path"):
            return Path(value["path"])
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, Image.Image):
        return value
    pixels = np.asarray(value.tolist() if hasattr(value, "tolist") else value)
    if pixels.dtype == object:
        pixels = np.stack([np.asarray(row) for row in pixels])
    return Image.fromarray(pixels.astype(np.uint8))
