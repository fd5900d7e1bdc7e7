"""Path-load plugin packages: a dist-info with entry_points.txt, as pip would install it."""

from __future__ import annotations

from pathlib import Path

from tests.simrun import REPO

FEDMEDIAN_SRC = REPO / "examples" / "strategy-plugin"
TEST_PLUGINS_SRC = REPO / "tests" / "plugins"


def register_plugin(site: Path, dist: str, entry_points: dict[str, str]) -> Path:
    """Write `<dist>-0.1.0.dist-info` into `site` declaring corolla.strategies entry points."""
    info = site / f"{dist.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    lines = ["[corolla.strategies]"] + [f"{name} = {target}" for name, target in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return site


def plugin_pythonpath(tmp_path: Path) -> list[Path]:
    """sys.path entries that make the example plugin and the test plugins discoverable."""
    site = register_plugin(tmp_path / "site", "corolla-fedmedian", {"mymedian": "corolla_fedmedian.strategy:STRATEGY"})
    register_plugin(site, "corolla-test-plugins", {"faulty": "corolla_test_plugins.faulty:STRATEGY"})
    return [site, FEDMEDIAN_SRC, TEST_PLUGINS_SRC]
