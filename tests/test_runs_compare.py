"""`corolla runs ls` and `corolla runs compare` on run directories, fabricated and from a real sweep."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from conf.compose import compose
from simulation.runs import compare, differing_keys, ls
from tests.simrun import REPO, corolla_env, run_corolla

ACC = {"fedavg": [0.80, 0.82, 0.84], "fedprox": [0.70, 0.72, 0.74]}


def fabricate(root: Path, strategy: str, seed: int, acc: float, *, status: str | None = "completed") -> Path:
    run_dir = root / f"{strategy}-s{seed}"
    run_dir.mkdir(parents=True)
    cfg = compose([f"strategy={strategy}", "task=digits", "model=mlp", f"seed={seed}", "num_rounds=2"])
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    records = [{"round": r, "accuracy": acc * r / 2, "loss": 1.0 / r} for r in (1, 2)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if status:
        summary = {"status": status, "final": {"accuracy": acc, "loss": 0.5},
                   "communication": {"uplink_bytes": 2e6, "downlink_bytes": 2e6}, "timing": {"wall_s": 10.0}}
        (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def test_compare_groups_by_strategy_with_mean_and_std_over_seeds(tmp_path: Path) -> None:
    for strategy, accs in ACC.items():
        for seed, acc in enumerate(accs):
            fabricate(tmp_path / "sweep", strategy, seed, acc)
    text, png = compare([str(tmp_path / "sweep" / "*")])
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["strategy", "seeds"], text
    fedavg = next(line for line in lines if line.startswith("fedavg"))
    fedprox = next(line for line in lines if line.startswith("fedprox"))
    assert "0,1,2" in fedavg and "0.8200 ± 0.0200" in fedavg, text
    assert "0.7200 ± 0.0200" in fedprox, text
    assert png == tmp_path / "sweep" / "compare.png" and png.stat().st_size > 10_000
    assert differing_keys([compose(["strategy=fedavg"]), compose(["strategy=fedavg", "seed=4"])]) == []


def test_ls_shows_status_of_finished_failed_and_killed_runs(tmp_path: Path) -> None:
    fabricate(tmp_path, "fedavg", 0, 0.8)
    fabricate(tmp_path, "fedavg", 1, 0.8, status="failed")
    fabricate(tmp_path, "fedprox", 0, 0.8, status=None)
    out = ls([str(tmp_path)])
    rows = {line.split()[0].rsplit("/", 1)[-1]: line.split() for line in out.splitlines()[2:]}
    assert rows["fedavg-s0"][1:7] == ["fedavg", "digits", "0", "2/2", "0.8000", "completed"]
    assert rows["fedavg-s1"][6] == "failed"
    assert rows["fedprox-s0"][6] == "incomplete"


def test_runs_compare_cli(tmp_path: Path) -> None:
    for seed in range(2):
        fabricate(tmp_path, "fedavg", seed, 0.8 + seed / 100)
    result = subprocess.run([sys.executable, "-m", "simulation.cli", "runs", "compare", str(tmp_path),
                             "--out", str(tmp_path / "c.png")], cwd=REPO, env=corolla_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "all runs" in result.stdout and "0.8050 ± 0.0071" in result.stdout
    assert (tmp_path / "c.png").exists()


def test_a_real_multirun_sweep_ends_with_the_comparison(tmp_path: Path) -> None:
    args = ["run", "--multirun", "strategy=fedavg,fedprox", "seed=0,1,2", "task=digits", "model=mlp",
            "task.num_clients=2", "num_rounds=1", "progress=false", "plots=false", f"out_dir={tmp_path}"]
    result = run_corolla(args, timeout=900)
    out = result.stdout
    assert "curves: " in out, out[-3000:]
    table = out[out.rindex("strategy  seeds"):]
    assert "fedavg" in table and "fedprox" in table and " ± " in table, table
    png = Path(out.strip().splitlines()[-1].removeprefix("curves: "))
    assert png.exists() and png.parent.parent == tmp_path
