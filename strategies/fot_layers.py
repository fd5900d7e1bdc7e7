"""FOT's layers: which weights are projected, their input columns, and a client's task-end sketches."""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from conf.errors import ConfigError
from models.accel import prepare_model, to_device_batch
from strategies.base import derive_seed
from strategies.fot_subspace import Sketch, gaussian_rows

log = logging.getLogger("corolla")

# ---- which layers are projected, and what their inputs are ---------------------------------------

def _conv_supported(module: nn.Conv2d) -> bool:
    return module.groups == 1 and module.padding_mode == "zeros"


def find_projected_layers(model: nn.Module, names: list[str] | None = None, *,
                          include_head: bool = True) -> dict[str, nn.Module]:
    """Weight names (``body.1.weight``) of the projected Linear/Conv2d layers, mapped to their modules.

    `names=None`: every Linear and Conv2d weight (the head only if `include_head`); grouped or
    non-zero-padded convolutions are left out, since their inputs are not plain im2col patches.
    """
    found = {f"{prefix}.weight": m for prefix, m in model.named_modules()
             if isinstance(m, (nn.Linear, nn.Conv2d))}
    if names is None:
        _refuse_unhandled_layers(model)
        chosen = {}
        for name, m in found.items():
            if name.startswith("head.") and not include_head:
                continue
            if isinstance(m, nn.Conv2d) and not _conv_supported(m):
                log.warning("FOT leaves %s unprojected (grouped or non-zero-padded convolution)", name)
                continue
            chosen[name] = m
        return chosen
    unknown = [n for n in names if n not in found]
    if unknown:
        raise ConfigError(f"strategy.projected_layers names {unknown}, which are not Linear/Conv2d weights "
                          f"of model; valid names: {', '.join(found)}", key="strategy.projected_layers")
    for n in names:
        if isinstance(found[n], nn.Conv2d) and not _conv_supported(found[n]):
            raise ConfigError(f"strategy.projected_layers: {n} is a grouped or non-zero-padded convolution; "
                              "FOT projects only groups=1, zero-padded Conv2d layers", key="strategy.projected_layers")
    return {n: found[n] for n in names}


# Layers whose weights FOT may leave to plain averaging: per-channel scales, not input projections.
_UNPROJECTED_OK = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def _refuse_unhandled_layers(model: nn.Module) -> None:
    """FOT's guarantee needs every weight that maps inputs projected: refuse layers it cannot unfold."""
    for prefix, module in model.named_modules():
        own = [n for n, _ in module.named_parameters(recurse=False)]
        if own and not isinstance(module, (nn.Linear, nn.Conv2d, *_UNPROJECTED_OK)):
            raise ValueError(
                f"FOT cannot project the {type(module).__name__} layer {prefix or '(model)'}: it unfolds only "
                "Linear and Conv2d inputs (normalisation layers are averaged); use fedavg/fedprox for this "
                "model, or list the layers to project in strategy.projected_layers")


def layer_dim(module: nn.Module) -> int:
    """d: the length of one input column of the layer (Conv2d: C_in·kh·kw)."""
    if isinstance(module, nn.Conv2d):
        return module.in_channels * math.prod(module.kernel_size)
    return int(module.in_features)


def _conv_padding(module: nn.Conv2d) -> tuple[int, ...]:
    if module.padding == "valid":
        return (0, 0)
    if module.padding == "same":  # symmetric only for odd (dilated) kernels, which is all unfold can do
        if any(k % 2 == 0 for k in module.kernel_size):
            raise ValueError("FOT cannot unfold a padding='same' Conv2d with an even kernel size")
        return tuple(dil * (k - 1) // 2 for dil, k in zip(module.dilation, module.kernel_size))
    return tuple(module.padding)


def layer_columns(module: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The layer's inputs as columns, d × m (Linear: input vectors; Conv2d: im2col patches)."""
    if isinstance(module, nn.Conv2d):
        patches = F.unfold(inputs, module.kernel_size, dilation=module.dilation,
                           padding=_conv_padding(module), stride=module.stride)  # (N, d, L)
        return patches.transpose(0, 1).reshape(patches.shape[1], -1)
    return inputs.reshape(-1, inputs.shape[-1]).T


def _module_of(model: nn.Module, weight_name: str) -> nn.Module:
    return model.get_submodule(weight_name.removesuffix(".weight"))


def client_sketches(model: nn.Module, layers: list[str], x: torch.Tensor, bases: dict[str, torch.Tensor],
                    *, cols: int | None, max_columns: int, seed: int, device: torch.device,
                    batch_size: int = 256) -> dict[str, tuple[torch.Tensor, float, int]]:
    """Per layer: (Y = R̂Q, r = ‖R̂‖/‖R‖, n = columns of R) for the layer inputs on data x.

    A layer with more than `max_columns` columns (conv patches) is subsampled uniformly; the kept
    columns are scaled by 1/sqrt(p) so that each client still weighs in by its full data.
    """
    model = prepare_model(model, device).eval()
    modules = {name: _module_of(model, name) for name in layers}
    captured: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, inp, _out, name=name: captured.__setitem__(name, inp[0]))
             for name, m in modules.items()]
    subsample = torch.Generator().manual_seed(derive_seed(seed, "subsample"))
    sketches: dict[str, Sketch] = {}
    keep: dict[str, float] = {}
    total: dict[str, int] = dict.fromkeys(layers, 0)
    n = len(x)
    try:
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                xb = x[start:start + batch_size].to(device, torch.float32)
                model(to_device_batch(xb, device))
                for name in layers:
                    block = layer_columns(modules[name], captured.pop(name).float())
                    m = block.shape[1]
                    if name not in sketches:
                        d = block.shape[0]
                        width = cols or d
                        keep[name] = min(1.0, max_columns / (m / len(xb) * n))
                        q = gaussian_rows(torch.Generator().manual_seed(derive_seed(seed, name, "Q")),
                                          width, device=device)
                        sketches[name] = Sketch(d, width, bases.get(name), q, device=device)
                    total[name] += m
                    if keep[name] < 1.0:
                        block = block[:, (torch.rand(m, generator=subsample) < keep[name]).to(device)]
                    sketches[name].add(block, scale=1.0 / math.sqrt(keep[name]))
    finally:
        for hook in hooks:
            hook.remove()
    return {name: (s.y.cpu(), s.ratio, total[name]) for name, s in sketches.items()}


# ---- server half --------------------------------------------------------------------------------
