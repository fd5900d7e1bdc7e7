"""Benchmark JSON follows the contract in docs/architecture.md ("Benchmark JSON")."""

from __future__ import annotations

import json
from pathlib import Path

from bench.cli import BENCHES, main
from bench.report import BenchReport, stat


def test_stat_mean_std_values() -> None:
    s = stat([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["values"] == [1.0, 2.0, 3.0]
    assert abs(s["std"] - 1.0) < 1e-12
    assert stat([5.0])["std"] == 0.0


def test_report_json_shape(tmp_path: Path) -> None:
    report = BenchReport("demo", quick=True, setting={"rounds": 3})
    report.add("digits/alpha=0.1", "fedavg", accuracy=[0.5, 0.7], bytes_per_client=1234)
    path = report.write(tmp_path)
    data = json.loads(path.read_text())
    assert path.name == "demo.json"
    assert set(data) == {"bench", "quick", "setting", "rows", "machine"}
    assert data["bench"] == "demo" and data["quick"] is True
    row = data["rows"][0]
    assert row["setting"] == "digits/alpha=0.1" and row["variant"] == "fedavg"
    assert row["accuracy"]["mean"] == 0.6 and row["accuracy"]["values"] == [0.5, 0.7]
    assert row["bytes_per_client"] == 1234
    assert data["machine"]["cpus"] >= 1
    table = report.table()
    assert "fedavg" in table and "0.6 ± 0.14" in table


def test_bench_list(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["--list"]) == 0
    listed = capsys.readouterr().out.split()
    assert "sim-overhead" in listed and set(listed) == set(BENCHES)
