"""task=imagefolder: one sub-folder per class, optional train/test split folders or client folders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from conf.errors import ConfigError
from data.adapters.arrays import DatasetArrays, label_codes, say_once
from data.adapters.config import ImageFolderConfig
from data.adapters.images import IMAGE_SUFFIXES, open_image, to_array

KEY = "task.data_dir"
SPLITS = ("train", "test")


@dataclass(frozen=True)
class _Item:
    path: Path
    label: str
    split: str
    client: str | None


def load_image_folder(cfg: ImageFolderConfig, root: str | None = None) -> DatasetArrays:
    """Read every image under the root (``root`` or task.data_dir), checking the layout first."""
    base = _root(root if root is not None else cfg.data_dir)
    items = _scan(base, folders=cfg.partition == "folders")
    codes, classes = label_codes([it.label for it in items], cfg.classes,
                                 where=f"{base} (class folders)", key=KEY)
    images = [open_image(it.path, name=str(it.path), key=KEY) for it in items]
    names = [str(it.path) for it in items]
    x = to_array(images, names=names, image_size=cfg.image_size, channels=cfg.channels, where=str(base))
    train = np.asarray([it.split == "train" for it in items])
    clients = sorted({it.client for it in items if it.client is not None})
    groups = np.asarray([clients.index(it.client) if it.client is not None else -1 for it in items])
    has_test = not train.all()
    folders = cfg.partition == "folders"
    return DatasetArrays(
        x_train=x[train], y_train=codes[train], classes=classes, source=str(base),
        x_test=x[~train] if has_test else None, y_test=codes[~train] if has_test else None,
        groups=groups[train] if folders else None,
        groups_test=groups[~train] if folders and has_test else None,
    )


def client_folders(root: str) -> list[str]:
    """The client folder names of a <root>/<client>/<class>/ layout, in client-id order."""
    return sorted(p.name for p in _subdirs(_root(root)))


def _root(value: str | None) -> Path:
    if not value:
        raise ConfigError("task.data_dir is not set: task=imagefolder reads a folder with one "
                          "sub-folder of images per class; set task.data_dir=<root>", key=KEY)
    root = Path(value).expanduser()
    if not root.is_dir():
        raise ConfigError(f"task.data_dir={value!r}: no such directory; point it at a folder with one "
                          "sub-folder of images per class", key=KEY)
    return root


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan(root: Path, *, folders: bool) -> list[_Item]:
    items: list[_Item] = []
    if folders:
        clients = _subdirs(root)
        if not clients:
            raise ConfigError(f"{root}: task.partition=folders reads <root>/<client>/<class>/ but "
                              f"{root} has no client folders ({KEY})", key=KEY)
        for client in clients:
            items += _scan_classes(client, split="train", client=client.name)
    elif (root / "train").is_dir():
        items += _scan_classes(root / "train", split="train", client=None)
        if (root / "test").is_dir():
            items += _scan_classes(root / "test", split="test", client=None)
    else:
        items += _scan_classes(root, split="train", client=None)
    return items


def _scan_classes(folder: Path, *, split: str, client: str | None) -> list[_Item]:
    classes = _subdirs(folder)
    if not classes:
        raise ConfigError(f"{folder}: no class folders; task=imagefolder expects "
                          f"{folder}/<class>/<image>.png|jpg ({KEY})", key=KEY)
    items = []
    for label_dir in classes:
        files = sorted(p for p in label_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        skipped = len(files) - len(images)
        if skipped:
            say_once(f"{label_dir}: {skipped} file(s) that are not PNG or JPEG images are skipped")
        if not images:
            raise ConfigError(f"{label_dir}: the class folder holds no PNG or JPEG image; add images "
                              f"or remove the folder ({KEY})", key=KEY)
        items += [_Item(p, label_dir.name, split, client) for p in images]
    return items
