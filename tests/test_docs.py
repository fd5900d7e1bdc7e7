"""The repository carries its own map: no file cites a document outside it, and the guides name every hook."""

from __future__ import annotations

import inspect
import re
import subprocess

from strategies.base import CorollaStrategy
from tests.simrun import REPO

OUTSIDE = re.compile(r"DESIGN\.md|design card|design document", re.IGNORECASE)


def tracked_text_files() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [p for p in out.splitlines() if p.endswith((".py", ".md", ".yaml", ".toml", ".sh", ".txt", "Makefile"))]


def test_no_file_cites_a_document_outside_the_repository() -> None:
    this = "tests/test_docs.py"
    cited = [f"{path}:{n}" for path in tracked_text_files() if path != this
             for n, line in enumerate((REPO / path).read_text(errors="replace").splitlines(), 1)
             if OUTSIDE.search(line)]
    assert not cited, f"cite docs/architecture.md instead: {cited}"


def test_cited_docs_exist() -> None:
    missing = sorted({f"{path}: {doc}" for path in tracked_text_files()
                      for doc in re.findall(r"docs/[\w./-]+\.md", (REPO / path).read_text(errors="replace"))
                      if not (REPO / doc).exists()})
    assert not missing, missing


def test_the_guides_name_every_hook_of_the_contract() -> None:
    hooks = [name for name, _ in inspect.getmembers(CorollaStrategy, inspect.isfunction)]
    assert len(hooks) == 8
    for doc in ("docs/writing-a-strategy.md", "docs/architecture.md"):
        text = (REPO / doc).read_text()
        assert [h for h in hooks if f"`{h}(" not in text] == [], doc
    guide = (REPO / "docs/writing-a-strategy.md").read_text()
    for needed in ("env.strategy_config", "loss_terms(self, config: ConfigRecord, global_model",
                   "aggregate_train(self, server_round: int, replies", "Rename checklist",
                   "examples/strategy-plugin/tests/test_fedmedian.py"):
        assert needed in guide, needed
