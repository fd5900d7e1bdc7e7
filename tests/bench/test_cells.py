"""A bench stopped part-way resumes where it stopped (bench/cells.py): what a user sees, killing
`corolla bench` and running the same command again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import cells, inline
from tests.bench import slow_bench

ROOT = Path(__file__).resolve().parents[2]
DRIVER = ("import sys; from bench import cli; cli.BENCHES['slow'] = 'tests.bench.slow_bench:run'; "
          "sys.exit(cli.main(sys.argv[1:]))")


def bench(out: Path, log: Path, *args: str, delay: float = 0.0, wait: bool = True) -> subprocess.Popen:
    env = {**os.environ, "SLOW_BENCH_LOG": str(log), "SLOW_BENCH_DELAY": str(delay)}
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, "slow", "--out", str(out), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    if wait:
        proc.wait(timeout=240)
    return proc


@pytest.mark.slow
def test_a_killed_bench_run_again_runs_only_what_it_had_not_finished(tmp_path: Path) -> None:
    log, out = tmp_path / "ran.log", tmp_path / "results"
    proc = bench(out, log, delay=1.0, wait=False)
    store = out / ".runs" / "slow"
    try:
        deadline = time.monotonic() + 180
        while len(list(store.glob("*.json"))) < 2:   # two runs finished and kept
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole tree, its worker too
        proc.wait(timeout=30)
    kept = {int(json.loads(p.read_text())["overrides"][0].split("=")[1]) for p in store.glob("*.json")}
    ran_before = slow_bench.ran(log)
    assert len(kept) >= 2 and len(ran_before) < slow_bench.RUNS

    again = bench(out, log)
    output = again.stdout.read() if again.stdout else ""
    assert again.returncode == 0, output
    rerun = slow_bench.ran(log)[len(ran_before):]
    # What was kept is read back, never run again; everything else (a run that ended as the kill
    # came may have logged without being kept) runs now; every run ran at least once.
    assert not kept & set(rerun)
    assert sorted(kept | set(rerun)) == list(range(slow_bench.RUNS))
    report = json.loads((out / "slow.json").read_text())
    assert report["rows"][0]["value"]["values"] == [float(x * x) for x in range(slow_bench.RUNS)]
    assert report["setting"]["runs_read_back"] == slow_bench.RUNS - len(rerun)
    assert "runs read back" in output


@pytest.mark.slow
def test_fresh_runs_everything_again(tmp_path: Path) -> None:
    log, out = tmp_path / "ran.log", tmp_path / "results"
    assert bench(out, log).returncode == 0
    assert bench(out, log, "--fresh").returncode == 0
    assert sorted(slow_bench.ran(log)) == sorted(2 * list(range(slow_bench.RUNS)))
    assert json.loads((out / "slow.json").read_text())["setting"]["runs_read_back"] == 0
    assert bench(out, log).returncode == 0  # --fresh stored what it ran: nothing runs now
    assert len(slow_bench.ran(log)) == 2 * slow_bench.RUNS


def test_changed_code_or_overrides_are_not_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with cells.stored_in(tmp_path):
        assert cells.save(slow_bench.one, ["x=3"], 1, {"value": 9.0})
        assert cells.load(slow_bench.one, ["x=3"], 1) == {"value": 9.0}
        assert cells.load(slow_bench.one, ["x=3", "seed=1"], 1) is None
        assert cells.load(slow_bench.one, ["x=3"], 2) is None          # another thread count
        assert cells.load(inline.run_in_tempdir, ["x=3"], 1) is None  # another function
        monkeypatch.setattr(cells, "code_fingerprint", lambda: "other code")
        assert cells.load(slow_bench.one, ["x=3"], 1) is None
    assert cells.load(slow_bench.one, ["x=3"], 1) is None  # outside the block nothing is kept


def test_a_result_json_would_change_is_not_stored_and_a_torn_file_is_ignored(tmp_path: Path) -> None:
    with cells.stored_in(tmp_path):
        assert not cells.save(slow_bench.one, ["x=1"], 1, {"value": (1, 2)})
        assert not cells.save(slow_bench.one, ["x=1"], 1, {"value": float("nan")})
        assert not cells.save(slow_bench.one, ["x=1"], 1, {1: 2.0})
        assert list(tmp_path.iterdir()) == []
        assert cells.save(slow_bench.one, ["x=2"], 1, {"value": 4.0})
        (stored,) = tmp_path.iterdir()
        stored.write_text(stored.read_text()[:10])  # as a kill mid-write would leave it, without the rename
        assert cells.load(slow_bench.one, ["x=2"], 1) is None


def test_the_fingerprint_covers_code_and_config_but_not_results_or_tests(tmp_path: Path) -> None:
    for rel in ("bench/a.py", "conf/task/t.yaml", "bench/results/r.json", "strategies/test_s.py", "server/x.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("1")
    base = cells.code_fingerprint.__wrapped__(tmp_path)
    for rel, changes in (("bench/results/r.json", False), ("strategies/test_s.py", False),
                         ("conf/task/t.yaml", True), ("server/x.py", True)):
        (tmp_path / rel).write_text("2")
        assert (cells.code_fingerprint.__wrapped__(tmp_path) != base) is changes, rel
        (tmp_path / rel).write_text("1")
