"""The Docker build context of deploy/Dockerfile, computed from .dockerignore the way Docker does, holds no
key, certificate, secret, database or virtualenv, wherever the docs (old or new) put them; .gitignore
keeps the same files out of commits."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from deploy import certs

REPO = Path(__file__).resolve().parents[2]

# What deploy/README.md's commands (and earlier versions of them) create inside a checkout.
PLANTED = [
    *(f"deploy/certs/{p.name}" for p in certs.planned_files(Path("x"), 3)),
    *(f"deploy/k8s/certs/{p.name}" for p in certs.planned_files(Path("x"), 3)),
    *(f"certs/{p.name}" for p in certs.planned_files(Path("x"), 3)),
    "certs/revoked/supernode-2.key",
    "deploy/state/superlink.db",
    "deploy/state/superlink.db-wal",
    "state/superlink.db",
    "superlink.db",
    "deploy/superlink.sqlite",
    "gateway/nginx.conf",
    "operator-gateway/nginx.conf",
    "deploy/secrets/site.key",
    "secrets/token",
    "server/stray.key",
    "data/stray.secret",
    "conf/stray.pem",
    ".venv/bin/python",
    ".venv/lib/python3.11/site-packages/torch/__init__.py",
    "deploy/.venv/pyvenv.cfg",
    ".flwr/config.toml",
    "runs/20260101-000000-fedavg/summary.json",
    "deploy/data/site-1/train.gz",
    ".git/config",
]
SECRET = re.compile(r"(\.(key|pem|crt|csr|pub|secret|p12|db|db-\w+|sqlite3?)$)|(^|/)(certs|secrets|state|\.venv|"
                    r"\.flwr|\.git|gateway|operator-gateway)(/|$)")


# Docker's matcher (github.com/moby/patternmatcher): patterns are cleaned paths; `*` and `?` stay within
# a path element, `**` crosses them; a pattern matching a parent directory matches everything below
# it; patterns are applied in order and the last one that matches decides (`!` re-includes).
def _regex(pattern: str) -> re.Pattern[str]:
    out, i = "^", 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern[i + 1:i + 2] == "*":
                i += 1
                if pattern[i + 1:i + 2] == "/":
                    i += 1
                    out += "(.*/)?" if i + 1 < len(pattern) else ".*"
                else:
                    out += ".*"
            else:
                out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(ch)
        i += 1
    return re.compile(out + "$")


def load_patterns(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    patterns = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        line = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
        patterns.append((exclusion, _regex(line)))
    return patterns


def excluded(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    result = False
    for exclusion, regex in patterns:
        if any(regex.match(p) for p in prefixes):
            result = not exclusion
    return result


def repo_files() -> list[str]:
    """Every file in the checkout (not following symlinks, e.g. a linked .venv), relative paths."""
    files = []
    for root, dirs, names in os.walk(REPO):
        rel = os.path.relpath(root, REPO)
        for name in [*names, *(d for d in dirs if os.path.islink(os.path.join(root, d)))]:
            files.append(name if rel == "." else f"{rel}/{name}")
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
    return files


def build_context(files: list[str]) -> list[str]:
    patterns = load_patterns((REPO / ".dockerignore").read_text())
    return sorted(f for f in files if not excluded(f, patterns))


def test_matcher_follows_dockers_rules() -> None:
    patterns = load_patterns("*\n!conf/\n**/*.key\n!keep/\n**/certs\n")
    assert excluded("README.md", patterns) and not excluded("conf/a/b.yaml", patterns)
    assert excluded("conf/x.key", patterns) and excluded("conf/certs/ca.crt", patterns)
    assert excluded("keep/certs/ca.crt", patterns) and not excluded("keep/x.key", patterns)
    assert _regex("a/**/b").match("a/b") and _regex("a/**/b").match("a/x/y/b") and not _regex("a/*").match("a/x/y")


def test_no_secret_database_or_venv_in_the_build_context() -> None:
    context = build_context(repo_files() + PLANTED)
    leaked = [f for f in context if SECRET.search(f) or f in PLANTED]
    assert not leaked, f"these would be sent to the Docker builder: {leaked}"
    assert len(context) > 50  # the allowlist still lets the code through


def test_everything_the_dockerfile_copies_is_in_the_context() -> None:
    context = set(build_context(repo_files()))
    sources = []
    for line in (REPO / "deploy" / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            sources += line.split()[1:-1]
    assert sources
    for src in sources:
        src = src.rstrip("/")
        assert src in context or any(f.startswith(src + "/") for f in context), f"COPY {src}: not in the context"
    assert "deploy/Dockerfile" in context and "deploy/wheels/README.md" in context


@pytest.mark.parametrize("path", PLANTED)
def test_gitignore_keeps_secrets_out_of_commits(path: str) -> None:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    if path.startswith(".git/") or not SECRET.search(path) and not path.startswith((".venv", "runs/", "deploy/data")):
        return
    top = path.split("/")[0]
    if (REPO / top).is_symlink():  # git refuses paths beyond a symlink (a linked .venv): ask about the link
        path = top
    done = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=REPO, check=False)
    assert done.returncode == 0, f"{path} is not ignored by .gitignore"
