"""Bad data fails through `corolla run` in seconds, naming the file or column and the key, before Ray."""

from __future__ import annotations

import gzip
import logging
import resource
import time
from pathlib import Path

import pytest

from data import load_task
from tests.data.makers import breast_cancer_csv, image_folder
from tests.simrun import run_corolla

# A `ray` that cannot be imported: a run that got as far as an engine would fail with this instead.
NO_RAY = "import sys; sys.exit('RAY WAS IMPORTED: the data check came too late')\n"


def refused(tmp_path: Path, overrides: list[str], extra: list[Path] = ()) -> str:
    """Run `corolla run <overrides>`; assert it failed in < 10 s of CPU without Ray; its output."""
    fake = tmp_path / "no-ray"
    (fake / "ray").mkdir(parents=True, exist_ok=True)
    (fake / "ray" / "__init__.py").write_text(NO_RAY)
    t0, cpu0 = time.monotonic(), _children_cpu()
    result = run_corolla(["run", *overrides, "num_rounds=1", "progress=false", "plots=false",
                          f"out_dir={tmp_path / 'runs'}"], timeout=180, extra_pythonpath=[fake, *extra], check=False)
    seconds, cpu = time.monotonic() - t0, _children_cpu() - cpu0
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "RAY WAS IMPORTED" not in output and "corolla run: " in output, output[-3000:]  # one line, the key named
    # The work takes < 10 s of CPU; on a box shared by many test runs the wall clock stretches far
    # past it (load 30 on 2 cores here), so the wall-clock bound is only a backstop.
    assert cpu < 10 and seconds < 120, f"took {cpu:.1f}s of CPU, {seconds:.1f}s of wall clock"
    return output


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def test_missing_image_folder(tmp_path: Path) -> None:
    out = refused(tmp_path, ["task=imagefolder", f"task.data_dir={tmp_path / 'nowhere'}"])
    assert f"task.data_dir='{tmp_path / 'nowhere'}': no such directory" in out


def test_class_folder_without_images(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "imgs", per_class=4)
    (root / "c5").mkdir()
    (root / "c5" / "notes.txt").write_text("no images here")
    out = refused(tmp_path, ["task=imagefolder", f"task.data_dir={root}"])
    assert f"{root / 'c5'}: the class folder holds no PNG or JPEG image" in out and "(task.data_dir)" in out


def test_undecodable_image(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "imgs", per_class=4)
    (root / "c2" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a picture")
    out = refused(tmp_path, ["task=imagefolder", f"task.data_dir={root}"])
    assert f"{root / 'c2' / 'broken.png'}: cannot decode this image" in out and "(task.data_dir)" in out


def test_labels_outside_the_class_set(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "imgs", per_class=4)
    out = refused(tmp_path, ["task=imagefolder", f"task.data_dir={root}", "task.classes=[c0,c1,c2]"])
    assert "labels ['c3', 'c4'] lie outside the class set task.classes=['c0', 'c1', 'c2']" in out


def test_one_class_label_column(tmp_path: Path) -> None:
    import pandas as pd

    csv = breast_cancer_csv(tmp_path / "bc.csv")
    frame = pd.read_csv(csv)
    frame["diagnosis"] = "benign"
    frame.to_csv(csv, index=False)
    out = refused(tmp_path, ["task=tabular", f"task.path={csv}", "task.label=diagnosis"])
    assert f"{csv}: column 'diagnosis' (task.label) holds a single class ['benign']" in out


def test_missing_label_column_and_missing_file(tmp_path: Path) -> None:
    csv = breast_cancer_csv(tmp_path / "bc.csv")
    out = refused(tmp_path, ["task=tabular", f"task.path={csv}", "task.label=outcome"])
    assert f"{csv}: task.label='outcome' is not a column; its columns are: mean radius" in out
    out = refused(tmp_path, ["task=tabular", f"task.path={tmp_path / 'none.csv'}", "task.label=x"])
    assert f"task.path='{tmp_path / 'none.csv'}': no such file" in out


def test_unreadable_table(tmp_path: Path) -> None:
    bad = tmp_path / "t.parquet"
    bad.write_bytes(b"not parquet at all")
    out = refused(tmp_path, ["task=tabular", f"task.path={bad}", "task.label=y"])
    assert f"{bad}: cannot read this table" in out and "(task.path)" in out


def test_empty_partition(tmp_path: Path) -> None:
    csv = breast_cancer_csv(tmp_path / "bc.csv")
    out = refused(tmp_path, ["task=tabular", f"task.path={csv}", "task.label=diagnosis",
                             "task.partition=column", "task.partition_column=site", "task.num_clients=4"])
    assert "task.partition_column=site gives 3 clients but task.num_clients=4; set task.num_clients=3" in out
    root = image_folder(tmp_path / "imgs", per_class=4)
    out = refused(tmp_path, ["task=imagefolder", f"task.data_dir={root}", "task.num_clients=40"])
    assert "task.num_clients" in out and "lower the number of clients" in out


def test_data_dir_given_to_a_task_that_does_not_read_it(tmp_path: Path) -> None:
    out = refused(tmp_path, ["task=digits", f"task.data_dir={tmp_path}"])
    assert "task.data_dir=" in out and "task digits (digits) does not read files" in out
    csv = breast_cancer_csv(tmp_path / "bc.csv")
    out = refused(tmp_path, ["task=tabular", f"task.path={csv}", "task.label=diagnosis", f"task.data_dir={tmp_path}"])
    assert "task.data_dir=" in out and "is not read by task=tabular" in out and "task.path=" in out


def _fmnist_copy(root: Path, labels: list[int], truncate: bool = False) -> Path:
    import numpy as np

    from data.idx import write_idx

    root.mkdir(parents=True)
    n = len(labels)
    for name, array in {"train-images-idx3-ubyte.gz": np.zeros((n, 28, 28), np.uint8),
                        "train-labels-idx1-ubyte.gz": np.asarray(labels, np.uint8),
                        "t10k-images-idx3-ubyte.gz": np.zeros((n, 28, 28), np.uint8),
                        "t10k-labels-idx1-ubyte.gz": np.asarray(labels, np.uint8)}.items():
        write_idx(root / name, array)
    if truncate:
        raw = gzip.decompress((root / "train-images-idx3-ubyte.gz").read_bytes())
        (root / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw)[:-200])
    return root


def test_fmnist_copy_with_labels_out_of_range_or_a_truncated_file(tmp_path: Path) -> None:
    bad_labels = _fmnist_copy(tmp_path / "labels", [i % 12 for i in range(120)])
    out = refused(tmp_path, ["task=fmnist", f"task.data_dir={bad_labels}", "task.num_clients=2"])
    assert f"{bad_labels / 'train-labels-idx1-ubyte.gz'}: labels [10, 11] lie outside fmnist's class set" in out
    truncated = _fmnist_copy(tmp_path / "cut", [i % 10 for i in range(120)], truncate=True)
    out = refused(tmp_path, ["task=fmnist", f"task.data_dir={truncated}", "task.num_clients=2"])
    assert f"{truncated / 'train-images-idx3-ubyte.gz'}: cannot read this fmnist file" in out


def test_mixed_image_sizes_are_resized_and_said_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = image_folder(tmp_path / "imgs", per_class=6, size=16)
    image_folder(root, classes=["c0", "c1"], per_class=3, size=24, seed=5)  # overwrites 0..2 at 24x24
    with caplog.at_level(logging.WARNING, logger="corolla"):
        bundle = load_task({"name": "imagefolder", "data_dir": str(root), "image_size": 20, "num_clients": 2}, seed=0)
        load_task({"name": "imagefolder", "data_dir": str(root), "image_size": 20, "num_clients": 2}, seed=1)
    said = [r.getMessage() for r in caplog.records if "sizes" in r.getMessage()]
    assert len(said) == 1 and "images come in 2 sizes" in said[0] and "resized to 20x20" in said[0]
    assert bundle.input_shape == (3, 20, 20)
