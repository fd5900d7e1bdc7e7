"""The typed `system` config section (conf/system/*.yaml), parsed before any engine starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from conf.typed import Section, between

IDEAL_YAML = Path(__file__).resolve().parents[2] / "conf" / "system" / "ideal.yaml"


@dataclass(frozen=True)
class SystemConfig(Section):
    """How the simulated clients behave; every default lives in conf/system/ideal.yaml."""

    availability: Literal["always", "bernoulli", "diurnal"]
    online_prob: float = field(metadata=between(0.0, 1.0))
    diurnal_period: int = field(metadata=between(1))
    diurnal_amplitude: float = field(metadata=between(0.0, 1.0))
    dropout: float = field(metadata=between(0.0, 1.0, hi_open=True))
    speed: Literal["constant", "lognormal", "slow_fraction"]
    speed_sigma: float = field(metadata=between(0.0))
    slow_fraction: float = field(metadata=between(0.0, 1.0))
    slow_factor: float = field(metadata=between(1.0))
    step_cost_s: float = field(metadata=between(0.0, lo_open=True))
    bandwidth_mbps: float = field(metadata=between(0.0, lo_open=True))
    bandwidth_sigma: float = field(metadata=between(0.0))
    deadline_s: float | None = field(metadata=between(0.0, lo_open=True))
    partial_work: bool
    tta_targets: list[float] = field(metadata=between(0.0, 1.0))

    def check(self, prefix: str) -> None:
        if self.availability == "always" and self.online_prob < 1.0:
            self.fail(prefix, "online_prob", "has no effect with system.availability=always; "
                      "set system.availability=bernoulli (or diurnal) or online_prob=1.0")
        if self.availability == "bernoulli" and self.online_prob <= 0.0:
            self.fail(prefix, "online_prob", "leaves no client online; it must be > 0")
        if self.partial_work and self.deadline_s is None:
            self.fail(prefix, "partial_work", "needs a deadline to cut the work at; set system.deadline_s=<seconds> "
                      "or system.partial_work=false")

    @property
    def ideal(self) -> bool:
        """True when the simulated world cannot change which clients train or what is aggregated."""
        return self.availability == "always" and self.dropout == 0.0 and self.deadline_s is None


def system_config(cfg: dict[str, Any]) -> SystemConfig:
    """The run's parsed `system` section; a config composed without one gets conf/system/ideal.yaml."""
    section = cfg.get("system")
    if section is None:
        section = yaml.safe_load(IDEAL_YAML.read_text())
    return SystemConfig.parse(section, prefix="system")
