"""The shared local loop: learning, seeded reproducibility, class masks, loss terms, step caps, CUDA path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models import training
from models.training import EvalResult, TrainConfig, TrainResult, evaluate, train_local
from models import build_model

CPU = torch.device("cpu")
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def blobs(n: int = 400, classes: int = 4, dim: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Well-separated Gaussian blobs: a linearly separable toy problem."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=g) * 4
    y = torch.arange(n) % classes
    return centers[y] + 0.3 * torch.randn(n, dim, generator=g), y


def mlp(dim: int = 2, classes: int = 4, seed: int = 0, **cfg) -> nn.Module:
    torch.manual_seed(seed)
    return build_model({"name": "mlp", "hidden": [16], **cfg}, (dim,), classes)


def flat_params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().cpu().flatten() for p in model.parameters()])


def test_learns_a_separable_problem() -> None:
    x, y = blobs()
    model = mlp()
    before = evaluate(model, x, y, device=CPU)
    result = train_local(model, x, y, TrainConfig(epochs=5, lr=0.1), device=CPU, seed=0)
    after = evaluate(model, x, y, device=CPU)
    assert isinstance(result, TrainResult) and isinstance(after, EvalResult)
    assert result.num_examples == after.num_examples == 400
    assert result.steps == 5 * 13
    assert after.loss < before.loss / 5
    assert after.accuracy == 1.0 and result.accuracy > 0.95


def test_conv_model_trains() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 1, 8, 8)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()
    model = build_model({"name": "cnn", "channels": [8, 8], "fc": 16}, (1, 8, 8), 2)
    first = train_local(model, x, y, TrainConfig(epochs=1, batch_size=16, lr=0.1), device=CPU, seed=0)
    last = train_local(model, x, y, TrainConfig(epochs=15, batch_size=16, lr=0.1), device=CPU, seed=0)
    assert last.loss < first.loss


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    x, y = blobs()
    cfg = TrainConfig(epochs=2, lr=0.1, momentum=0.9)
    runs = {}
    for key, seed in [("a", 1), ("b", 1), ("c", 2)]:
        model = mlp()
        train_local(model, x, y, cfg, device=CPU, seed=seed)
        runs[key] = flat_params(model)
    assert torch.equal(runs["a"], runs["b"])
    assert not torch.allclose(runs["a"], runs["c"])


def test_class_mask_restricts_predictions_and_gradients() -> None:
    x, y = blobs(classes=4)
    keep = y < 2  # the task's classes are {0, 1}; the head has 4 rows
    x, y = x[keep], y[keep]
    model = mlp()
    head_before = model.head.weight.detach().clone()
    masked_grads: list[torch.Tensor] = []

    def record(m: nn.Module) -> None:
        masked_grads.append(m.head.weight.grad[2:].clone())

    train_local(model, x, y, TrainConfig(epochs=2), device=CPU, seed=0, class_mask=[0, 1],
                after_backward=record)
    assert masked_grads and all(torch.count_nonzero(g) == 0 for g in masked_grads)
    assert torch.equal(model.head.weight[2:].detach(), head_before[2:])
    with torch.no_grad():
        model.head.bias[2:] = 100.0  # unmasked, the model would now always predict class 2 or 3
    assert evaluate(model, x, y, device=CPU).accuracy == 0.0
    masked = evaluate(model, x, y, device=CPU, class_mask=[0, 1])
    assert masked.accuracy > 0.9 and masked.loss < 1.0


def test_labels_outside_the_mask_are_an_error() -> None:
    x, y = blobs()
    with pytest.raises(ValueError, match="outside class_mask"):
        train_local(mlp(), x, y, TrainConfig(), device=CPU, seed=0, class_mask=[0, 1])


def test_loss_term_changes_the_result() -> None:
    x, y = blobs()

    def huge_l2(model: nn.Module, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 300.0 * sum(p.pow(2).sum() for p in model.parameters())

    cfg = TrainConfig(epochs=2, lr=1e-3)
    plain, shrunk = mlp(), mlp()
    r_plain = train_local(plain, x, y, cfg, device=CPU, seed=0)
    r_shrunk = train_local(shrunk, x, y, cfg, device=CPU, seed=0, loss_terms=[huge_l2])
    assert flat_params(shrunk).abs().max() < 1e-2 < 0.1 < flat_params(plain).abs().max()
    assert r_shrunk.loss != r_plain.loss


def test_max_steps_and_after_backward_per_step() -> None:
    x, y = blobs()
    calls = []
    result = train_local(mlp(), x, y, TrainConfig(epochs=3, max_steps=5), device=CPU, seed=0,
                         after_backward=lambda m: calls.append(1))
    assert result.steps == len(calls) == 5
    assert result.num_examples == 400
    # The cap can cross an epoch boundary: 13 steps per epoch at batch 32.
    assert train_local(mlp(), x, y, TrainConfig(epochs=3, max_steps=20), device=CPU, seed=0).steps == 20
    assert train_local(mlp(), x, y, TrainConfig(epochs=1, max_steps=99), device=CPU, seed=0).steps == 13


def test_empty_data_trains_nothing() -> None:
    result = train_local(mlp(), torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), TrainConfig(),
                         device=CPU, seed=0)
    assert result == TrainResult(num_examples=0, loss=0.0, accuracy=0.0, steps=0)


def test_evaluate_keeps_the_model_trainable() -> None:
    x, y = blobs()
    model = build_model({"name": "resnet", "widths": [4]}, (1, 8, 8), 4)
    imgs = x.repeat(1, 32)[:, :64].reshape(-1, 1, 8, 8)
    evaluate(model, imgs, y, device=CPU, batch_size=64)
    assert model.training
    assert not any(p.is_inference() for p in model.parameters())
    train_local(model, imgs, y, TrainConfig(max_steps=2), device=CPU, seed=0)


def test_train_config_from_mapping() -> None:
    cfg = TrainConfig.from_mapping({"epochs": 2, "lr": "0.1", "max_steps": None, "optimizer": "adamw",
                                    "unknown": 1})
    assert cfg == TrainConfig(epochs=2, lr=0.1, optimizer="adamw")
    assert TrainConfig.from_mapping({"max_steps": 7}).max_steps == 7
    with pytest.raises(ValueError, match="train.optimizer"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="train.batch_size"):
        TrainConfig(batch_size=0)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_every_optimizer_learns(optimizer: str) -> None:
    x, y = blobs()
    lr = 0.1 if optimizer == "sgd" else 0.01
    model = mlp()
    train_local(model, x, y, TrainConfig(epochs=3, lr=lr, optimizer=optimizer), device=CPU, seed=0)
    assert evaluate(model, x, y, device=CPU).accuracy > 0.95


@pytest.mark.gpu
@gpu
def test_cuda_path_bf16_fused_channels_last(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = torch.device("cuda")
    torch.manual_seed(0)
    x = torch.randn(256, 1, 8, 8)
    y = (x[:, 0, :4].mean(dim=(1, 2)) > x[:, 0, 4:].mean(dim=(1, 2))).long()
    model = build_model({"name": "cnn", "channels": [8, 16], "fc": 32}, (1, 8, 8), 2)
    optimizers: list[torch.optim.Optimizer] = []
    real = training.make_optimizer

    def spy(*args, **kwargs):
        optimizers.append(real(*args, **kwargs))
        return optimizers[-1]

    monkeypatch.setattr(training, "make_optimizer", spy)
    dtypes: list[torch.dtype] = []
    model.head.register_forward_hook(lambda mod, inp, out: dtypes.append(out.dtype))
    train_local(model, x, y, TrainConfig(epochs=1), device=cuda, seed=0)
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert optimizers[0].defaults["fused"] is True
    conv = model.body[0]
    assert conv.weight.device.type == "cuda"
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.gpu
@gpu
def test_cuda_evaluate_then_train_the_same_model() -> None:
    x, y = blobs()
    model = mlp()
    evaluate(model, x, y, device=torch.device("cuda"))  # moves the CPU model to the GPU
    assert not any(p.is_inference() for p in model.parameters())
    result = train_local(model, x, y, TrainConfig(), device=torch.device("cuda"), seed=0)
    assert result.steps == 13


@pytest.mark.gpu
@gpu
def test_cuda_result_is_close_to_cpu_fp32() -> None:
    x, y = blobs()
    cfg = TrainConfig(epochs=3, lr=0.1)
    results = {}
    for device in (CPU, torch.device("cuda")):
        model = mlp()
        train_local(model, x, y, cfg, device=device, seed=0)
        results[device.type] = evaluate(model, x, y, device=CPU)
    assert results["cuda"].accuracy == pytest.approx(results["cpu"].accuracy, abs=0.02)
    assert results["cuda"].loss == pytest.approx(results["cpu"].loss, abs=0.05)
