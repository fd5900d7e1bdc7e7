"""model=custom: the template factory, kwargs and weights, config-time refusals, FOT's layer check."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from conf.errors import ConfigError
from models import build_model, check_model_config
from strategies.fot_layers import find_projected_layers
from tests.simrun import REPO

TEMPLATE = REPO / "examples" / "custom-model"
FACTORY = "my_models.nets:make_net"


@pytest.fixture(autouse=True)
def _template_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(TEMPLATE))
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


def custom(**extra: object) -> dict[str, object]:
    return {"name": "custom", "factory": FACTORY, "kwargs": {}, "weights": None, **extra}


def test_template_builds_for_images_and_features_with_kwargs() -> None:
    model = build_model(custom(kwargs={"width": 16}), (3, 12, 12), 5)
    assert model(torch.zeros(4, 3, 12, 12)).shape == (4, 5)
    flat = build_model(custom(kwargs={"width": 8}), (30,), 2)
    assert flat(torch.zeros(3, 30)).shape == (3, 2) and flat[1].out_features == 8
    check_model_config(custom(), (1, 8, 8), 10)


def test_weights_are_the_initial_model(tmp_path: Path) -> None:
    source = build_model(custom(), (30,), 2)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    loaded = build_model(custom(weights=str(tmp_path / "w.pt")), (30,), 2)
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(ConfigError, match="model.weights=.* does not fit the model") as err:
        build_model(custom(weights=str(tmp_path / "w.pt")), (40,), 2)
    assert err.value.key == "model.weights"
    with pytest.raises(ConfigError, match="model.weights=.*: no such file"):
        build_model(custom(weights=str(tmp_path / "none.pt")), (30,), 2)


def test_a_factory_without_input_shape_gets_num_classes_only() -> None:
    model = build_model(custom(factory="custom_factories:classes_only"), (1, 8, 8), 7)
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 7)


@pytest.mark.parametrize("cfg, match", [
    (custom(factory="nowhere.nets:make_net"), r"cannot import nowhere.nets .*PYTHONPATH"),
    (custom(factory="my_models.nets:missing"), "has no function 'missing'"),
    (custom(factory="make_net"), "must be '<package.module>:<function>'"),
    (custom(factory="custom_factories:not_a_module"), "returned str, not a torch.nn.Module"),
    (custom(factory="custom_factories:fixed_input"), r"a forward pass on a batch of shape \(2, 1, 8, 8\)"),
    (custom(factory="custom_factories:wrong_outputs"), r"to \(2, 3\), not to logits of shape \(2, 10\)"),
    (custom(width=3), "model.width is not a setting of model=custom"),
])
def test_refused_at_config_time_naming_the_key(cfg: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        check_model_config(cfg, (1, 8, 8), 10)
    assert err.value.key is not None and err.value.key.startswith("model.")


def test_fot_projects_the_custom_layers_or_names_the_one_it_cannot() -> None:
    model = build_model(custom(), (1, 8, 8), 10)
    assert set(find_projected_layers(model)) == {"0.weight", "5.weight"}
    with pytest.raises(ValueError, match="FOT cannot project the Conv1d layer 1"):
        find_projected_layers(nn.Sequential(nn.Flatten(), nn.Conv1d(1, 2, 3), nn.Linear(2, 2)))


def test_corolla_run_refuses_a_broken_factory_before_any_engine(tmp_path: Path) -> None:
    from tests.data.test_bad_data import refused

    out = refused(tmp_path, ["task=digits", "model=custom", "model.factory=custom_factories:fixed_input"],
                  extra=[TEMPLATE, Path(__file__).parent])
    assert "model.factory='custom_factories:fixed_input': a forward pass on a batch of shape (2, 1, 8, 8)" in out
