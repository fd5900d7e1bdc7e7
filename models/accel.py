"""The CUDA fast path: device choice, channels-last, bf16 autocast, fused optimizers; plain fp32 on CPU."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn

OPTIMIZERS = ("sgd", "adam", "adamw")


def pick_device(preference: str = "auto") -> torch.device:
    """`auto`: CUDA when available, else CPU; `cuda`/`cuda:N` without CUDA is a RuntimeError."""
    pref = str(preference).strip().lower()
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if pref == "cpu":
        return torch.device("cpu")
    if pref == "cuda" or pref.startswith("cuda:"):
        if not torch.cuda.is_available():
            cuda = torch.version.cuda
            build = "a CPU-only build" if cuda is None else f"built for CUDA {cuda}"
            raise RuntimeError(
                f"device={preference!r} asked for CUDA, but none is available (torch "
                f"{torch.__version__} is {build}); use device=auto or device=cpu"
            )
        return torch.device(pref)
    raise ValueError(f"device must be auto, cpu, cuda or cuda:N; got {preference!r}")


def _is_cuda(device: torch.device) -> bool:
    return torch.device(device).type == "cuda"


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move `model` to `device`; on CUDA, convolutional models go channels-last (faster cuDNN kernels)."""
    model = model.to(device)
    if _is_cuda(device) and any(isinstance(m, nn.Conv2d) for m in model.modules()):
        torch.backends.cudnn.benchmark = True  # batch shapes repeat: tune kernels once
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


def autocast(device: torch.device) -> AbstractContextManager:
    """bf16 autocast on CUDA (no loss scaling needed, unlike fp16); a no-op on CPU."""
    if _is_cuda(device):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def make_optimizer(name: str, params: Iterable[nn.Parameter], lr: float, momentum: float,
                   weight_decay: float, device: torch.device) -> torch.optim.Optimizer:
    """`sgd` | `adam` | `adamw`, with fused CUDA kernels on CUDA; `momentum` applies to sgd only."""
    fused = True if _is_cuda(device) else None
    params = [p for p in params if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, fused=fused)
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(params, lr=lr, weight_decay=weight_decay, fused=fused)
    raise ValueError(f"unknown optimizer {name!r}; valid choices: {', '.join(OPTIMIZERS)}")


def to_device_batch(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a batch to `device`; image batches go channels-last on CUDA to match `prepare_model`."""
    x = x.to(device, non_blocking=True)
    if _is_cuda(device) and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x
