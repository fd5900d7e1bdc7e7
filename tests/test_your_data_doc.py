"""docs/your-data.md: every command of its bash blocks runs, from an empty directory, and works."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

from tests.simrun import REPO, corolla_env

DOC = REPO / "docs" / "your-data.md"
E2E = REPO / "tests" / "e2e" / "test_site_data.py"


def commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_the_commands_of_the_doc_run_and_learn(tmp_path: Path) -> None:
    lines = commands()
    assert sum(line.startswith("corolla run") for line in lines) == 4, lines
    for line in lines:
        argv = shlex.split(line)
        if argv[0] == "corolla":
            argv = [sys.executable, "-m", "simulation.cli", *argv[1:], "progress=false", "plots=false"]
        else:
            assert argv[0] == "python", line
            argv = [sys.executable, str(REPO / argv[1]), *argv[2:]]
        done = subprocess.run(argv, cwd=tmp_path, env=corolla_env(), text=True, capture_output=True, timeout=420)
        assert done.returncode == 0, f"{line}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    runs = sorted((tmp_path / "runs").iterdir())
    summaries = [json.loads((run / "summary.json").read_text()) for run in runs]
    assert len(runs) == 4
    images = [s for s in summaries if s["task"] == "imagefolder"]
    assert len(images) == 3 and all(s["final"]["accuracy"] > 0.5 for s in images), images  # chance: 0.2
    assert [("clients" in s) for s in images] == [False, True, True]
    tabular = next(s for s in summaries if s["task"] == "tabular")
    assert tabular["final"]["accuracy"] > 0.75  # majority class: 357/569 = 0.63


def test_the_deployment_step_is_the_one_the_e2e_test_runs() -> None:
    doc, e2e = DOC.read_text(), E2E.read_text()
    assert "--data /srv/site-a" in doc and '"--data"' in e2e
    for setting in ("task=imagefolder", "task.classes=[c0,c1,c2,c3,c4]", "task.channels=3", "task.image_size=16",
                    "evaluate.where=clients", "strategy.fraction_train=1.0"):
        assert setting in doc and (setting in e2e or setting.replace("[c0,c1,c2,c3,c4]", "{CLASSES}") in e2e), setting
