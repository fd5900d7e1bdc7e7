"""Typed config sections: unknown keys, missing keys, types, choices and ranges name the key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from conf.errors import ConfigError
from conf.typed import Section, between


@dataclass(frozen=True)
class Demo(Section):
    rate: float = field(metadata=between(0, 1, lo_open=True))
    steps: int = field(metadata=between(1))
    mode: Literal["a", "b"]
    top_k: int | None
    flag: bool
    layers: list[str] | None


GOOD = {"name": "demo", "rate": 0.5, "steps": 3, "mode": "a", "top_k": None, "flag": True, "layers": None}


def test_parses_a_good_section_and_ignores_corolla_keys():
    parsed = Demo.parse(GOOD)
    assert parsed.rate == 0.5 and parsed.steps == 3 and parsed.top_k is None
    assert Demo.parse({**GOOD, "steps": 4.0, "top_k": "7"}).top_k == 7


@pytest.mark.parametrize("change, says", [
    ({"rate": "abc"}, "strategy.rate: expected a number, got 'abc'"),
    ({"steps": "abc"}, "strategy.steps: expected an integer, got 'abc'"),
    ({"steps": 0}, "strategy.steps=0 is out of range"),
    ({"rate": 0.0}, "strategy.rate=0.0 is out of range: it must lie in (0, 1]"),
    ({"mode": "c"}, "strategy.mode='c' is not a valid choice"),
    ({"flag": "yes"}, "strategy.flag: expected true or false"),
    ({"top_k": 1.5}, "strategy.top_k: expected an integer or null"),
    ({"layers": "x"}, "strategy.layers: expected a list or null"),
    ({"typo": 1}, "strategy.typo is not a setting of Demo; valid keys: flag, layers, mode, rate, steps, top_k"),
])
def test_bad_values_name_the_key(change, says):
    with pytest.raises(ConfigError) as err:
        Demo.parse({**GOOD, **change})
    assert says in str(err.value)


def test_missing_key_is_named():
    section = dict(GOOD)
    del section["steps"]
    with pytest.raises(ConfigError, match=r"strategy lacks strategy.steps"):
        Demo.parse(section)


@dataclass(frozen=True)
class WithExtra(Section):
    EXTRA = "rest"
    top_k: int
    rest: dict = field(default_factory=dict)

    def check(self, prefix: str) -> None:
        if self.top_k > 10:
            self.fail(prefix, "top_k", "must be <= 10")


def test_extra_keys_are_collected_and_check_runs():
    parsed = WithExtra.parse({"top_k": 3, "fraction_train": 0.5})
    assert parsed.rest == {"fraction_train": 0.5}
    assert parsed.to_dict() == {"top_k": 3, "fraction_train": 0.5}
    with pytest.raises(ConfigError, match=r"strategy.top_k=11 must be <= 10"):
        WithExtra.parse({"top_k": 11})
