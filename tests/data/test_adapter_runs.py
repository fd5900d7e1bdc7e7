"""`corolla run` on your own data: an image folder and a CSV partitioned by a column (Ray, 2 rounds)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tests.data.makers import breast_cancer_csv, image_folder
from tests.simrun import read_metrics, read_summary, run_corolla, run_dir_of

QUIET = ["num_rounds=2", "progress=false", "plots=false"]


def test_image_folder_three_clients_five_classes_trains_well_above_chance(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "images", per_class=40)
    result = run_corolla(["run", "task=imagefolder", f"task.data_dir={root}", "task.num_clients=3",
                          *QUIET, f"out_dir={tmp_path / 'runs'}"], timeout=420)
    summary = read_summary(run_dir_of(result))
    assert summary["num_clients"] == 3 and summary["rounds"] == 2
    assert summary["final"]["accuracy"] >= 0.6, summary  # chance: 0.2


def test_csv_partitioned_by_a_column_beats_the_majority_class(tmp_path: Path) -> None:
    csv = breast_cancer_csv(tmp_path / "breast-cancer.csv")
    majority = pd.read_csv(csv)["diagnosis"].value_counts(normalize=True).max()
    result = run_corolla(["run", "task=tabular", f"task.path={csv}", "task.label=diagnosis",
                          "task.partition=column", "task.partition_column=site", *QUIET,
                          f"out_dir={tmp_path / 'runs'}"], timeout=420)
    run_dir = run_dir_of(result)
    assert len(read_metrics(run_dir)) == 2
    accuracy = read_summary(run_dir)["final"]["accuracy"]
    assert accuracy > majority + 0.1, (accuracy, majority)  # majority: 357/569 = 0.63
