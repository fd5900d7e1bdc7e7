"""The one local training loop every strategy's client half uses (no Flower here: plugins import it)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from conf.errors import ConfigError
from models.accel import OPTIMIZERS, autocast, make_optimizer, prepare_model, to_device_batch

# (model, logits, y) -> a scalar added to the cross-entropy. Terms run outside autocast, in fp32;
# a term that runs the model again may enter `models.accel.autocast` itself.
LossTerm = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 1
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.0
    weight_decay: float = 0.0
    optimizer: str = "sgd"
    max_steps: int | None = None  # cap on optimizer steps (None: full epochs)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"train.epochs must be >= 1, got {self.epochs}", key="train.epochs")
        if self.batch_size < 1:
            raise ConfigError(f"train.batch_size must be >= 1, got {self.batch_size}", key="train.batch_size")
        for key in ("lr", "momentum", "weight_decay"):
            if getattr(self, key) < 0:
                raise ConfigError(f"train.{key} must be >= 0, got {getattr(self, key)}", key=f"train.{key}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"train.optimizer must be one of {', '.join(OPTIMIZERS)}; "
                              f"got {self.optimizer!r}", key="train.optimizer")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"train.max_steps must be >= 1 or null, got {self.max_steps}", key="train.max_steps")

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> "TrainConfig":
        """A TrainConfig from the `train` config section; unknown keys are ignored."""
        kinds = {"epochs": int, "batch_size": int, "lr": float, "momentum": float,
                 "weight_decay": float, "optimizer": str}
        values: dict[str, Any] = {k: kinds[k](m[k]) for k in kinds if k in m}
        if m.get("max_steps") is not None:
            values["max_steps"] = int(m["max_steps"])
        return cls(**values)


@dataclass(frozen=True)
class TrainResult:
    num_examples: int  # the local dataset's size (FedAvg's weight), whatever max_steps cut
    loss: float        # mean cross-entropy plus loss terms over the last epoch's examples
    accuracy: float    # training accuracy over the same examples
    steps: int         # optimizer steps taken


@dataclass(frozen=True)
class EvalResult:
    num_examples: int
    loss: float
    accuracy: float


def train_local(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    *,
    device: torch.device,
    seed: int,
    class_mask: Sequence[int] | None = None,
    loss_terms: Sequence[LossTerm] = (),
    after_backward: Callable[[nn.Module], None] | None = None,
) -> TrainResult:
    """Train `model` in place on (x, y) with seeded shuffling; the model stays on `device`.

    `class_mask` lists the allowed classes: the other logits are set to -inf, so their head rows
    get no gradient from the cross-entropy (per-task heads in task-incremental learning).
    `after_backward(model)` runs between backward and the optimizer step (gradient projection).
    """
    n = len(x)
    if len(y) != n:
        raise ValueError(f"x and y differ in length: {n} vs {len(y)}")
    model = prepare_model(model, device)
    if n == 0:  # an empty partition: nothing to learn, and a zero weight in the average
        return TrainResult(num_examples=0, loss=0.0, accuracy=0.0, steps=0)
    model.train()
    allowed = _allowed_classes(class_mask, y, device)
    x, y = _to_device(x, y, device)  # once: batches are then gathered on the device
    opt = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay, device)
    gen = torch.Generator().manual_seed(seed)
    steps_per_epoch = -(-n // cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)

    step = 0
    while step < total_steps:
        perm = torch.randperm(n, generator=gen).to(device)
        # Running sums stay on the device: a .item() per step would sync CUDA every step.
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        for start in range(0, n, cfg.batch_size):
            if step == total_steps:
                break
            idx = perm[start:start + cfg.batch_size]
            xb, yb = to_device_batch(x[idx], device), y[idx]
            with autocast(device):
                logits = model(xb)
            logits = _mask(logits.float(), allowed)
            loss = F.cross_entropy(logits, yb)
            for term in loss_terms:
                loss = loss + term(model, logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if after_backward is not None:
                after_backward(model)
            opt.step()
            step += 1
            loss_sum += loss.detach() * len(yb)
            correct += (logits.detach().argmax(1) == yb).sum()
            seen += len(yb)
    return TrainResult(num_examples=n, loss=loss_sum.item() / seen,
                       accuracy=correct.item() / seen, steps=step)


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    device: torch.device,
    batch_size: int = 512,
    class_mask: Sequence[int] | None = None,
) -> EvalResult:
    """Mean cross-entropy and accuracy of `model` on (x, y), logits restricted to `class_mask`."""
    n = len(x)
    # Outside inference mode: parameters moved inside it would become inference tensors,
    # which a later train_local on the same model could not train.
    model = prepare_model(model, device)
    if n == 0:
        return EvalResult(num_examples=0, loss=0.0, accuracy=0.0)
    allowed = _allowed_classes(class_mask, y, device)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            xb, yb = _to_device(x[start:start + batch_size], y[start:start + batch_size], device)
            with autocast(device):
                logits = model(to_device_batch(xb, device))
            logits = _mask(logits.float(), allowed)
            loss_sum += F.cross_entropy(logits, yb, reduction="sum")
            correct += (logits.argmax(1) == yb).sum()
    model.train(was_training)
    return EvalResult(num_examples=n, loss=loss_sum.item() / n, accuracy=correct.item() / n)


def _to_device(x: torch.Tensor, y: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return x.to(device, torch.float32, non_blocking=True), y.to(device, torch.long, non_blocking=True)


def _allowed_classes(class_mask: Sequence[int] | None, y: torch.Tensor,
                     device: torch.device) -> torch.Tensor | None:
    """`class_mask` as a device tensor (None: no mask); labels outside the mask are an error."""
    if class_mask is None:
        return None
    allowed = torch.as_tensor(list(class_mask), dtype=torch.long)
    labels = torch.unique(y.cpu())
    stray = labels[~torch.isin(labels, allowed)]
    if len(stray):
        raise ValueError(f"labels {stray.tolist()} lie outside class_mask {allowed.tolist()}")
    return allowed.to(device)


def _mask(logits: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
    if allowed is None:
        return logits
    keep = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device)
    keep[allowed] = True
    return logits.masked_fill(~keep, float("-inf"))
