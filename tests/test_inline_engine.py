"""engine=inline: the same final model as engine=ray, failures, resume and a debugger in a client half."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from tests.plugin_paths import plugin_pythonpath
from tests.simrun import CLI, FAST, REPO, corolla_env, read_metrics, read_summary, run_corolla, run_dir_of

TWO_ROUNDS = ["num_rounds=2", "seed=5", "progress=false", "plots=false"]
# A tiny 2-round setting per strategy that goes through its own phases.
RECIPES = {
    "fedavg": ["strategy=fedavg", "task=digits", "model=mlp", "task.num_clients=4", "strategy.fraction_train=0.5"],
    # 2 tasks of 1 round: round 2 opens with the subspace-sketch exchange.
    "fot": ["strategy=fot", "task=permuted-digits", "task.continual.num_tasks=2", "model=mlp", "model.bias=false",
            "task.num_clients=3", "strategy.fraction_train=1.0"],
    # The class-statistics phase, then rounds of the base strategy on augmented features.
    "ggeur": ["strategy=ggeur", "task=digits-dirichlet", "task.alpha=0.5", "model=linear", "task.num_clients=3",
              "strategy.fraction_train=1.0"],
    "creamfl": ["strategy=creamfl", "task=captioned", "task.num_clients=3",
                "task.clients={image:1,text:1,image_text:1}", "task.public_size=40", "task.private_size=120",
                "task.val_size=20", "task.test_size=40", "task.image_size=16", "strategy.embed_dim=16",
                "strategy.server_image.widths=[8,16]", "strategy.server_text.dim=16", "strategy.server_text.heads=2",
                "strategy.fraction_train=1.0", "device=cpu"],
}


def final_state(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)["model"]


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("strategy", sorted(RECIPES))
def test_inline_gives_the_same_final_model_as_ray(strategy: str, tmp_path: Path) -> None:
    args = ["run", *RECIPES[strategy], *TWO_ROUNDS]
    ray = run_dir_of(run_corolla([*args, "engine=ray", f"hydra.run.dir={tmp_path / 'ray'}"], timeout=600))
    inline = run_dir_of(run_corolla([*args, "engine=inline", f"hydra.run.dir={tmp_path / 'inline'}"], timeout=600))
    expected, got = final_state(ray), final_state(inline)
    assert expected.keys() == got.keys()
    for key in expected:  # bit-identical: same seeds, aggregation order and torch threads
        assert torch.equal(got[key], expected[key]), f"{strategy}: {key} differs between engine=ray and engine=inline"
    ray_records, inline_records = read_metrics(ray), read_metrics(inline)
    assert [r["accuracy"] for r in inline_records] == [r["accuracy"] for r in ray_records]
    assert [r["uplink_bytes"] for r in inline_records] == [r["uplink_bytes"] for r in ray_records]
    assert read_summary(inline)["rounds"] == 2
    for run_dir in (ray, inline):  # engine start to round 1, counted by both engines
        assert read_summary(run_dir)["timing"]["startup_s"] > 0


def test_inline_counts_failed_and_rejected_clients_and_goes_on(tmp_path: Path) -> None:
    args = ["run", "engine=inline", "strategy=faulty", *FAST, "task.num_clients=6", "strategy.fraction_train=1.0",
            "strategy.nan=[0]", "strategy.crash=[1]", "num_rounds=2", f"out_dir={tmp_path}/runs"]
    result = run_corolla(args, extra_pythonpath=plugin_pythonpath(tmp_path))
    records = read_metrics(run_dir_of(result))
    assert [(r["num_failures"], r["num_rejected"], r["num_replies"]) for r in records] == [(2, 1, 4)] * 2
    assert "injected crash on partition 1" in result.stdout + result.stderr


def test_inline_stops_with_the_client_traceback_when_too_many_fail(tmp_path: Path) -> None:
    args = ["run", "engine=inline", "strategy=faulty", *FAST, "task.num_clients=4", "strategy.fraction_train=1.0",
            "strategy.crash=[0,1,2]", "num_rounds=3", f"out_dir={tmp_path}/runs"]
    result = run_corolla(args, extra_pythonpath=plugin_pythonpath(tmp_path), check=False)
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert "failures.max_fraction=0.5" in text
    assert "injected crash on partition" in text  # one line per failed client on the console ...
    log = (run_dir_of(result) / "run.log").read_text()
    assert "injected crash on partition" in log and "Traceback" in log  # ... the tracebacks in run.log


def test_inline_resume_continues_to_the_same_model_as_one_run(tmp_path: Path) -> None:
    args = ["run", "engine=inline", "strategy=fedprox", *FAST, "seed=3"]
    full = run_dir_of(run_corolla([*args, "num_rounds=4", f"hydra.run.dir={tmp_path / 'full'}"]))
    part = run_dir_of(run_corolla([*args, "num_rounds=2", f"hydra.run.dir={tmp_path / 'part'}"]))
    resumed = run_dir_of(run_corolla(["run", f"resume={part}", "num_rounds=4"]))
    assert resumed == part.resolve()
    assert [r["round"] for r in read_metrics(resumed)] == [1, 2, 3, 4]
    expected, got = final_state(full), final_state(resumed)
    for key in expected:
        assert torch.equal(got[key], expected[key]), f"{key} differs after resume"


def test_breakpoint_in_a_client_half_stops_in_pdb(tmp_path: Path) -> None:
    """A user's pdb session, fed through stdin: the client's frame is inspected, then the run goes on."""
    args = [*CLI, "run", "engine=inline", "strategy=faulty", *FAST, "task.num_clients=4",
            "strategy.fraction_train=1.0", "strategy.breakpoint_on=[2]", "num_rounds=1",
            f"out_dir={tmp_path}/runs"]
    env = corolla_env(plugin_pythonpath(tmp_path))
    env.pop("PYTHONBREAKPOINT", None)
    proc = subprocess.Popen(args, cwd=REPO, env=env, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate("p ('PARTITION', self.env.partition_id)\nc\n", timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 0, err[-3000:]
    assert "('PARTITION', 2)" in out
    assert "(Pdb)" in out
    assert out.strip().splitlines()[-1].startswith("run dir: ")


def test_engine_client_threads_is_checked_before_the_run(tmp_path: Path) -> None:
    result = run_corolla(["run", "engine=inline", "engine.client_threads=0", *FAST, f"out_dir={tmp_path}/runs"], check=False)
    assert result.returncode != 0
    assert "engine.client_threads=0 must be an integer >= 1" in result.stdout + result.stderr
    assert not list(tmp_path.rglob("metrics.jsonl"))


def test_inline_sweep_runs_jobs_in_parallel_processes_with_joblib(tmp_path: Path) -> None:
    result = run_corolla(["run", "--multirun", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "engine=inline",
                          *FAST, "num_rounds=1", "seed=0,1", f"out_dir={tmp_path}/runs"])
    assert "Joblib.Parallel(n_jobs=2" in result.stdout + result.stderr
    # From the file system: two processes print to one pipe, so their lines can interleave.
    run_dirs = sorted(p.parent for p in (tmp_path / "runs").glob("multirun-*/*/summary.json"))
    assert [read_summary(d)["seed"] for d in run_dirs] == [0, 1]
