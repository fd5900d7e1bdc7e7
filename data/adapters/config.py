"""Typed task sections of the adapter tasks (imagefolder, tabular, hf, plugin); defaults in YAML."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from conf.errors import ConfigError
from conf.typed import Section, between

ADAPTERS: tuple[str, ...] = ("imagefolder", "tabular", "hf", "plugin")
Partition = Literal["iid", "dirichlet", "shard", "column", "folders"]


@dataclass(frozen=True)
class AdapterConfig(Section):
    """Keys every adapter task shares: how many clients, how they split the data, held-out parts."""

    IGNORED: ClassVar[frozenset[str]] = frozenset()

    name: str
    dataset: str
    num_clients: int = field(metadata=between(1))
    partition: Partition
    partition_column: str | None
    alpha: float = field(metadata=between(0, lo_open=True))
    shards_per_client: int = field(metadata=between(1))
    min_partition_size: int | None = field(metadata=between(0))
    val_fraction: float = field(metadata=between(0, 1, hi_open=True))
    test_fraction: float = field(metadata=between(0, 1, lo_open=True, hi_open=True))
    local_test_fraction: float = field(metadata=between(0, 1, hi_open=True))
    classes: tuple[str, ...] | None
    data_dir: str | None
    features: Literal["none"]
    continual: Any

    def check(self, prefix: str) -> None:
        if self.partition == "column" and not self.partition_column:
            self.fail(prefix, "partition_column", "must name the column whose values are the clients "
                      "(task.partition=column); e.g. task.partition_column=site")
        if self.partition == "folders" and self.dataset != "imagefolder":
            self.fail(prefix, "partition", "reads <root>/<client>/<class>/ folders, which only "
                      "task=imagefolder has; use task.partition=column with task.partition_column")
        if self.continual is not None:
            self.fail(prefix, "continual", "is not supported by the adapter tasks; set it to null")
        if self.classes is not None and len(set(self.classes)) < 2:
            self.fail(prefix, "classes", "must list at least two distinct classes")

    def _no_data_dir(self, prefix: str, instead: str) -> None:
        if self.data_dir is not None:
            self.fail(prefix, "data_dir", f"is not read by task={self.dataset} (it would be ignored); "
                      f"remove it and set {instead}")


@dataclass(frozen=True)
class ImageFolderConfig(AdapterConfig):
    """task=imagefolder: <data_dir>/<class>/*.png|jpg (or <data_dir>/{train,test}/<class>/)."""

    image_size: int | None = field(metadata=between(1))
    channels: int | None

    def check(self, prefix: str) -> None:
        super().check(prefix)
        if self.channels not in (None, 1, 3):
            self.fail(prefix, "channels", "must be 1 (grey), 3 (RGB) or null (from the files)")


@dataclass(frozen=True)
class TabularConfig(AdapterConfig):
    """task=tabular: one CSV or Parquet file, one label column, the other columns features."""

    path: str | None
    label: str | None

    def check(self, prefix: str) -> None:
        super().check(prefix)
        self._no_data_dir(prefix, "task.path=<file.csv|file.parquet>")


@dataclass(frozen=True)
class HFConfig(AdapterConfig):
    """task=hf: a `datasets` save_to_disk directory or a directory of parquet/arrow files."""

    path: str | None
    image_column: str | None
    label_column: str
    image_size: int | None = field(metadata=between(1))
    channels: int | None

    def check(self, prefix: str) -> None:
        super().check(prefix)
        self._no_data_dir(prefix, "task.path=<directory>")


@dataclass(frozen=True)
class PluginConfig(AdapterConfig):
    """task=plugin: a Python loader registered under the `corolla.datasets` entry-point group."""

    loader: str | None
    path: str | None
    options: dict[str, Any]

    def check(self, prefix: str) -> None:
        super().check(prefix)
        self._no_data_dir(prefix, "task.path or task.options")
        if not self.loader:
            self.fail(prefix, "loader", "must name a loader registered under the corolla.datasets "
                      "entry-point group (task.loader=<name>)")


_SECTIONS: dict[str, type[AdapterConfig]] = {
    "imagefolder": ImageFolderConfig, "tabular": TabularConfig, "hf": HFConfig, "plugin": PluginConfig,
}


def parse_adapter_config(merged: Mapping[str, Any]) -> AdapterConfig:
    """The typed section of an adapter task (``merged``: the YAML defaults with the overrides)."""
    dataset = merged.get("dataset")
    if dataset not in _SECTIONS:
        raise ConfigError(f"task.dataset={dataset!r} is not an adapter; choose one of: "
                          f"{', '.join(ADAPTERS)}", key="task.dataset")
    return _SECTIONS[dataset].parse(merged, prefix="task")


def source_path(cfg: AdapterConfig) -> str | None:
    """The file or directory an adapter task reads (data_dir for image folders, else path)."""
    return cfg.data_dir if isinstance(cfg, ImageFolderConfig) else getattr(cfg, "path", None)


def path_key(cfg: AdapterConfig) -> str:
    """The config key of that file or directory."""
    return "task.data_dir" if isinstance(cfg, ImageFolderConfig) else "task.path"
