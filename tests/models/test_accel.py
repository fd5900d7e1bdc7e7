"""The accelerator helpers on CPU: device choice, fp32 no-op paths, optimizer choice."""

from __future__ import annotations

import pytest
import torch

from models import build_model
from models.accel import autocast, make_optimizer, pick_device, prepare_model, to_device_batch

CPU = torch.device("cpu")


def test_pick_device() -> None:
    assert pick_device("cpu") == CPU
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device("auto").type == pick_device().type == expected
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        pick_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="CUDA.*device=auto or device=cpu"):
        pick_device("cuda")


def test_cpu_path_is_plain_fp32() -> None:
    model = prepare_model(build_model({"name": "cnn"}, (1, 28, 28), 10), CPU)
    assert model.body[0].weight.is_contiguous()
    x = to_device_batch(torch.randn(4, 1, 28, 28), CPU)
    with autocast(CPU):
        assert model(x).dtype == torch.float32


@pytest.mark.parametrize("name,cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                      ("adamw", torch.optim.AdamW)])
def test_make_optimizer(name: str, cls: type) -> None:
    params = [torch.nn.Parameter(torch.zeros(3))]
    opt = make_optimizer(name, params, lr=0.1, momentum=0.9, weight_decay=0.01, device=CPU)
    assert type(opt) is cls and opt.defaults["lr"] == 0.1 and not opt.defaults.get("fused")


def test_make_optimizer_unknown() -> None:
    with pytest.raises(ValueError, match="lbfgs.*sgd, adam, adamw"):
        make_optimizer("lbfgs", [torch.nn.Parameter(torch.zeros(1))], 0.1, 0.0, 0.0, CPU)
