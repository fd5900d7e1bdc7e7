"""The adapter tasks on data written by the tests: image folders, tables, HF datasets, plugins."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data import DatasetArrays, load_task
from tests.data.makers import breast_cancer_csv, class_image, image_folder

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dataset-plugin"


def test_image_folder_classes_sizes_channels_and_partitions(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "imgs", per_class=20, size=20)
    bundle = load_task({"name": "imagefolder", "data_dir": str(root), "image_size": 12}, seed=0)
    assert (bundle.input_shape, bundle.num_classes, bundle.num_clients) == ((3, 12, 12), 5, 3)
    sizes = [bundle.client_size(c) for c in range(3)]
    local = [len(bundle.client_test(c)) for c in range(3)]  # task.local_test_fraction: 0.2 of each
    assert sum(sizes) + sum(local) + len(bundle.val()) + len(bundle.test()) == 100 and min(sizes) > 0
    assert all(abs(t - 0.2 * (s + t)) <= 1 for s, t in zip(sizes, local))
    assert not set(bundle.tasks[0].clients[0].tolist()) & set(bundle.tasks[0].local_tests[0].tolist())
    assert len(bundle.test()) == 20 and np.bincount(bundle.test().y.numpy()).tolist() == [4] * 5
    grey = load_task({"name": "imagefolder", "data_dir": str(root), "channels": 1, "image_size": None}, seed=0)
    assert grey.input_shape == (1, 20, 20)


def test_image_folder_fixed_split_and_grey_files(tmp_path: Path) -> None:
    image_folder(tmp_path / "d" / "train", classes=["c0", "c1", "c2"], per_class=10, mode="L")
    image_folder(tmp_path / "d" / "test", classes=["c0", "c1", "c2"], per_class=4, mode="L", seed=1)
    bundle = load_task({"name": "imagefolder", "data_dir": str(tmp_path / "d"), "num_clients": 2,
                        "val_fraction": 0.0, "local_test_fraction": 0.0}, seed=0)
    assert bundle.input_shape == (1, 32, 32)  # channels from the files: all grey
    assert len(bundle.test()) == 12 and sum(bundle.client_size(c) for c in range(2)) == 30


def test_image_folder_natural_partition_one_client_per_folder(tmp_path: Path) -> None:
    for client, classes in enumerate([["c0", "c1"], ["c1", "c2", "c3"], ["c3", "c4"]]):
        image_folder(tmp_path / "sites" / f"site{client}", classes=classes, per_class=10, seed=client)
    bundle = load_task({"name": "imagefolder", "data_dir": str(tmp_path / "sites"),
                        "partition": "folders"}, seed=0)
    assert bundle.num_classes == 5
    held = [set(bundle.client_train(c).y.tolist()) for c in range(3)]
    assert held == [{0, 1}, {1, 2, 3}, {3, 4}]


def test_tabular_csv_partitioned_by_a_column(tmp_path: Path) -> None:
    csv = breast_cancer_csv(tmp_path / "bc.csv")
    bundle = load_task({"name": "tabular", "path": str(csv), "label": "diagnosis", "partition": "column",
                        "partition_column": "site"}, seed=0)
    # 30 numeric features + 2 one-hot columns for `scanner`; `site` is the partition, not a feature
    assert bundle.input_shape == (32,) and bundle.num_classes == 2 and bundle.normalisation is None
    pooled = bundle.train_pool().x[:, :30]
    assert abs(float(pooled.mean())) < 0.1 and abs(float(pooled.std()) - 1) < 0.1
    import pandas as pd

    frame = pd.read_csv(csv)
    for client in range(3):  # every client holds exactly one site's rows
        assert bundle.client_size(client) <= int((frame["site"] == f"hospital-{client}").sum())


def test_tabular_parquet_iid(tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.read_csv(breast_cancer_csv(tmp_path / "bc.csv"))
    frame.to_parquet(tmp_path / "bc.parquet")
    bundle = load_task({"name": "tabular", "path": str(tmp_path / "bc.parquet"), "label": "diagnosis",
                        "num_clients": 4}, seed=1)
    assert bundle.num_clients == 4 and bundle.input_shape == (35,)  # + 3 one-hot sites


def _hf_dataset(n: int = 60):
    import datasets

    rng = np.random.default_rng(0)
    images, labels = [], []
    for i in range(n):
        buffer = io.BytesIO()
        class_image(i % 3, rng, 14).save(buffer, format="PNG")
        images.append({"bytes": buffer.getvalue(), "path": None})
        labels.append(i % 3)
    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=["cat", "dog", "fox"])})
    return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)


def test_hf_save_to_disk_and_parquet_folder(tmp_path: Path) -> None:
    ds = _hf_dataset()
    ds.train_test_split(test_size=0.25, seed=0).save_to_disk(str(tmp_path / "saved"))
    before = sorted(p.name for p in (tmp_path / "saved").rglob("*"))
    bundle = load_task({"name": "hf", "path": str(tmp_path / "saved"), "image_size": 14}, seed=0)
    assert sorted(p.name for p in (tmp_path / "saved").rglob("*")) == before  # no cache files written there
    assert (bundle.input_shape, bundle.num_classes, len(bundle.test())) == ((3, 14, 14), 3, 15)
    (tmp_path / "pq").mkdir()
    ds.to_parquet(str(tmp_path / "pq" / "train.parquet"))
    bundle = load_task({"name": "hf", "path": str(tmp_path / "pq"), "channels": 1}, seed=0)
    assert bundle.input_shape == (1, 32, 32) and len(bundle.test()) == 12
    (tmp_path / "arrow").mkdir()  # the arrow files `datasets` wrote, train and test by name
    for split in ("train", "test"):
        for i, arrow in enumerate(sorted((tmp_path / "saved" / split).glob("data-*.arrow"))):
            (tmp_path / "arrow" / f"{split}-{i}.arrow").write_bytes(arrow.read_bytes())
    bundle = load_task({"name": "hf", "path": str(tmp_path / "arrow"), "num_clients": 2}, seed=0)
    assert len(bundle.test()) == 15 and bundle.num_classes == 3  # labels as values: 0, 1, 2


def register_dataset_plugin(site: Path) -> list[Path]:
    """sys.path entries that make the example loader discoverable as pip would install it."""
    info = site / "corolla_blobs-0.1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: corolla-blobs\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[corolla.datasets]\nblobs = corolla_blobs.loader:load\n")
    return [site, EXAMPLE]


def test_plugin_loader_from_the_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for entry in register_dataset_plugin(tmp_path / "site"):
        monkeypatch.syspath_prepend(str(entry))
    bundle = load_task({"name": "plugin", "loader": "blobs", "options": {"n": 300, "dims": 5},
                        "partition": "column", "partition_column": "site"}, seed=0)
    assert (bundle.input_shape, bundle.num_classes, bundle.num_clients) == ((5,), 3, 3)
    from corolla_blobs.loader import load

    assert isinstance(load(path=None, options={}), DatasetArrays)
    sys.modules.pop("corolla_blobs.loader", None)
    sys.modules.pop("corolla_blobs", None)


def test_hf_and_plugin_refusals_name_the_key(tmp_path: Path) -> None:
    from data import ConfigError

    _hf_dataset().save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(ConfigError, match=r"task.image_column='img' is not a column of its train split; "
                       "its columns are: image, label") as err:
        load_task({"name": "hf", "path": str(tmp_path / "saved"), "image_column": "img"}, seed=0)
    assert err.value.key == "task.image_column"
    with pytest.raises(ConfigError, match="task.loader='nope' is not registered under the corolla.datasets"):
        load_task({"name": "plugin", "loader": "nope"}, seed=0)
    with pytest.raises(ConfigError, match="task.partition_column=None must name the column"):
        load_task({"name": "tabular", "path": "x.csv", "label": "y", "partition": "column"}, seed=0)
    with pytest.raises(ConfigError, match="task.partition='folders'.* only task=imagefolder has"):
        load_task({"name": "tabular", "path": "x.csv", "label": "y", "partition": "folders"}, seed=0)


def test_no_runtime_module_is_left_out_of_the_flower_app_bundle() -> None:
    # `flwr run .` leaves **/*_test.py and **/test_*.py out of the FAB: a runtime module so named
    # imports in tests and simulation but is missing on a SuperLink.
    root = Path(__file__).resolve().parents[2]
    packages = ("conf", "server", "client", "strategies", "models", "data", "simulation", "deploy")
    named = [p for pkg in packages for p in (root / pkg).rglob("*.py")
             if p.name.endswith("_test.py") or p.name.startswith("test_")]
    assert named == []
