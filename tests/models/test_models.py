"""Model zoo: shapes for every input kind, config validation, bias-free layers, norms, `head`."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models import MODEL_NAMES, build_model, check_model_config

IMAGE_SHAPES = [(1, 8, 8), (1, 28, 28), (3, 28, 28)]
FLAT_SHAPES = [(64,), (784,)]
SHAPES = {
    "mlp": IMAGE_SHAPES + FLAT_SHAPES,
    "linear": IMAGE_SHAPES + FLAT_SHAPES,
    "cnn": IMAGE_SHAPES,
    "resnet": IMAGE_SHAPES,
}
CASES = [(name, shape) for name in MODEL_NAMES for shape in SHAPES[name]]


def test_every_name_is_covered() -> None:
    assert set(MODEL_NAMES) == set(SHAPES)


@pytest.mark.parametrize("name,shape", CASES)
def test_output_shape_features_and_head(name: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = build_model({"name": name}, shape, 7)
    x = torch.randn(5, *shape)
    logits = model(x)
    assert logits.shape == (5, 7)
    assert isinstance(model.head, nn.Linear) and model.head.out_features == 7
    feats = model.features(x)
    assert feats.shape == (5, model.head.in_features)
    torch.testing.assert_close(model.head(feats), logits)


@pytest.mark.parametrize("name", ["cnn", "resnet"])
@pytest.mark.parametrize("shape", FLAT_SHAPES)
def test_conv_models_reject_flat_inputs(name: str, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="image inputs"):
        build_model({"name": name}, shape, 10)


@pytest.mark.parametrize("name,extra", [("mlp", {}), ("linear", {}), ("cnn", {}),
                                        ("resnet", {"norm": "none"})])
def test_bias_false_has_no_bias_parameters(name: str, extra: dict) -> None:
    model = build_model({"name": name, "bias": False, **extra}, (1, 28, 28), 10)
    names = [n for n, _ in model.named_parameters()]
    assert names and not [n for n in names if n.endswith("bias")]
    assert build_model({"name": name, **extra}, (1, 28, 28), 10).head.bias is not None


def test_mlp_hidden_sizes() -> None:
    model = build_model({"name": "mlp", "hidden": [32, 16]}, (64,), 10)
    widths = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
    assert widths == [32, 16, 10]
    assert build_model({"name": "mlp", "hidden": []}, (64,), 10).head.in_features == 64


@pytest.mark.parametrize("norm,layer", [("batch", nn.BatchNorm2d), ("group", nn.GroupNorm), ("none", None)])
def test_resnet_norm(norm: str, layer: type | None) -> None:
    model = build_model({"name": "resnet", "norm": norm, "widths": [8, 16], "blocks": 2}, (3, 28, 28), 10)
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))]
    assert all(isinstance(m, layer) for m in norms) and bool(norms) == (layer is not None)
    assert model(torch.randn(2, 3, 28, 28)).shape == (2, 10)


def test_resnet_widths_and_blocks() -> None:
    model = build_model({"name": "resnet", "widths": [8, 16, 32, 64], "blocks": 2}, (1, 8, 8), 10)
    assert model.head.in_features == 64
    assert len(model.stages) == 8
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_cnn_too_many_stages_for_small_images() -> None:
    with pytest.raises(ValueError, match="too many"):
        build_model({"name": "cnn", "channels": [8, 8, 8, 8]}, (1, 8, 8), 10)


def test_unknown_name_names_the_key_and_choices() -> None:
    with pytest.raises(ValueError, match=r"model\.name.*'vgg'.*cnn, linear, mlp, resnet"):
        build_model({"name": "vgg"}, (1, 28, 28), 10)
    with pytest.raises(ValueError, match=r"model\.name"):
        check_model_config({})


@pytest.mark.parametrize("cfg,match", [
    ({"name": "mlp", "hiden": [10]}, r"model\.hiden.*fields are: bias, hidden"),
    ({"name": "mlp", "bias": "yes"}, r"model\.bias must be true or false"),
    ({"name": "mlp", "hidden": [10, 0]}, r"model\.hidden must be positive"),
    ({"name": "mlp", "hidden": 200}, r"model\.hidden must be a list of integers"),
    ({"name": "cnn", "fc": 1.5}, r"model\.fc must be an integer"),
    ({"name": "cnn", "channels": []}, r"model\.channels must not be empty"),
    ({"name": "resnet", "norm": "layer"}, r"model\.norm must be one of batch, group, none"),
    ({"name": "resnet", "norm": "group", "widths": [12, 24]}, r"multiples of model\.groups"),
])
def test_bad_fields_are_rejected_before_building(cfg: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_model_config(cfg)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_shipped_configs_are_valid(name: str) -> None:
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[2] / "conf" / "model" / f"{name}.yaml"
    cfg = yaml.safe_load(path.read_text())
    assert cfg["name"] == name
    check_model_config(cfg)
