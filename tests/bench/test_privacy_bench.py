"""`corolla bench privacy`: its variants, each run's config, the lr pick, the table's epsilon and the PNG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import inline, privacy
from bench.cli import BENCHES
from bench.report import BenchReport


def test_variants_are_the_issues() -> None:
    assert "privacy" in BENCHES
    assert list(privacy.VARIANTS) == ["none", "central-fixed/z=0.3", "central-fixed/z=0.6", "central-fixed/z=1.0",
                                      "central-fixed/z=2.0", "client-fixed/z=1.0"]


@pytest.mark.parametrize("quick", [True, False])
def test_every_run_of_the_bench_has_a_valid_config(quick: bool) -> None:
    from conf.compose import compose
    from server.config_check import check_config

    for variant in privacy.VARIANTS:
        cfg = compose(privacy.overrides(variant, quick=quick, seed=1, lr=0.05))
        check_config(cfg)
        mode, _, z = variant.partition("/z=")
        assert cfg["privacy"]["name"] == mode and cfg["privacy"]["delta"] == 1e-5
        assert cfg["privacy"]["clipping_norm"] == privacy.CLIP and cfg["train"]["lr"] == 0.05
        if z:
            assert cfg["privacy"]["noise_multiplier"] == float(z)
        size = privacy.SIZES[quick]
        assert cfg["task"]["num_clients"] * cfg["strategy"]["fraction_train"] == pytest.approx(size["per_round"])


def test_the_lr_choice_skips_failed_trials() -> None:
    results = {("none", 0.05): RuntimeError("nan"), ("none", 0.1): {"accuracy": 0.7}}
    assert inline.best_lr(results, "none") == 0.1
    with pytest.raises(RuntimeError, match="every lr trial of central-fixed/z=2.0 failed"):
        inline.best_lr(results, "central-fixed/z=2.0")


def test_the_report_writes_json_without_infinities_and_the_png(tmp_path: Path) -> None:
    report = BenchReport("privacy", quick=True, setting={"setting": "digits/mlp"})
    report.add("digits/mlp", "none", accuracy=[0.9], epsilon=[])
    report.add("digits/mlp", "central-fixed/z=1.0", accuracy=[0.7], epsilon=[3.2])
    report.figures.append(lambda out: privacy.plot(report, out))
    path = report.write(tmp_path)
    data = json.loads(path.read_text())   # strict JSON: `none` has no epsilon rather than Infinity
    assert data["rows"][0]["epsilon"]["mean"] is None and data["rows"][1]["epsilon"]["mean"] == 3.2
    assert (tmp_path / "privacy.png").read_bytes()[:4] == b"\x89PNG"
