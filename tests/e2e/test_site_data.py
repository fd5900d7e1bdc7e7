"""Three sites, each with its own image folder; a SuperLink that holds no data; TLS and node auth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.data.makers import image_folder
from tests.e2e.harness import Federation, read_jsonl

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

# Each site: its own class mix and image size (all resized to task.image_size).
SITES = [(["c0", "c1", "c2"], 16), (["c1", "c2", "c3"], 24), (["c2", "c3", "c4"], 20)]
CLASSES = "[c0,c1,c2,c3,c4]"
RUN = (f"strategy=fedavg strategy.fraction_train=1.0 task=imagefolder task.num_clients={len(SITES)} "
       f"task.classes={CLASSES} task.channels=3 task.image_size=16 evaluate.where=clients model=cnn")


def test_sites_train_on_their_own_folders_and_report_per_site_accuracy(tmp_path: Path) -> None:
    fed = Federation(tmp_path / "deploy", num_keys=len(SITES))
    try:
        fed.start_superlink()
        for i, (classes, size) in enumerate(SITES, start=1):
            fed.register(i)
            folder = image_folder(tmp_path / f"site-{i}", classes=classes, per_class=30, size=size, seed=i)
            fed.start_node(i, partition_id=i - 1, num_partitions=len(SITES), extra=["--data", str(folder)],
                           wait=False)
        for i in fed.nodes:
            fed.nodes[i].wait_for(r"SuperNode ID: \d+", 60)
        result = fed.run(f"{RUN} num_rounds=3", tmp_path / "run", timeout=420)
        assert result.status == "finished:completed", f"{result.status}\n{result.output[-4000:]}\n{fed.diagnostics()}"
        records = read_jsonl(result.run_dir / "metrics.jsonl")
        assert [r["round"] for r in records] == [1, 2, 3]
        for record in records:
            clients = record["clients"]
            assert set(clients["per_client"]) == {"0", "1", "2"} and clients["num_failures"] == 0, record
            assert record["accuracy"] == clients["accuracy"]  # the server evaluated nothing itself
        summary = json.loads((result.run_dir / "summary.json").read_text())
        assert summary["final"]["split"] == "clients" and summary["num_clients"] == len(SITES)
        assert summary["clients"]["accuracy"] >= 0.6, summary  # chance over 5 classes: 0.2
        assert summary["clients"]["worst"] > 0.34, summary  # every site, with its own 3 classes, learns
    finally:
        fed.stop_all()
