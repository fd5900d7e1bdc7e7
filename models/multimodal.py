"""Image-text models for multimodal FL: towers into a shared, L2-normalised embedding space.

The server model has both towers (the spine's small ResNet and a transformer text encoder); a
client model has the towers of its modalities only (a small CNN, an embedding bag or a tiny
transformer), each with a projection head into the shared dimension, plus a cosine classifier for
its private task. Towers are specified by small dicts (the strategy's config), so the server never
needs a client's weights or even its architecture.

With frozen features (the captioned task's `image_features` / `text_features`), a tower is only a
trainable head on the cached feature vectors: Linear(feature_dim, width) -> ReLU ->
Linear(width, embed_dim), `width` being what its spec's encoder would output (resnet: widths[-1],
cnn: fc, transformer: dim, bag: hidden), so a spec keeps sizing the tower either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.cnn import CNN, CNNConfig
from models.resnet import ResNet, ResNetConfig
from models.text import TEXT_ENCODERS, build_text_encoder

IMAGE_ENCODERS = ("resnet", "cnn")


@dataclass(frozen=True)
class ImageSpec:
    """An image tower: `resnet` (widths, blocks, norm) or `cnn` (channels, fc)."""

    kind: str = "resnet"
    widths: tuple[int, ...] = (16, 32, 64)
    blocks: int = 1
    norm: str = "batch"
    channels: tuple[int, ...] = (16, 32)
    fc: int = 64

    def __post_init__(self) -> None:
        if self.kind not in IMAGE_ENCODERS:
            raise ValueError(f"image encoder kind {self.kind!r}; valid choices: {', '.join(IMAGE_ENCODERS)}")


@dataclass(frozen=True)
class TextSpec:
    """A text tower: `transformer` (dim, depth, heads) or `bag` (dim, hidden)."""

    kind: str = "transformer"
    dim: int = 64
    depth: int = 2
    heads: int = 4
    hidden: int = 128

    def __post_init__(self) -> None:
        if self.kind not in TEXT_ENCODERS:
            raise ValueError(f"text encoder kind {self.kind!r}; valid choices: {', '.join(TEXT_ENCODERS)}")


def _spec(cls: type, value: Mapping[str, Any] | None, where: str) -> Any:
    if value is None:
        return None
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(value) - names)
    if unknown:
        raise ValueError(f"{where}.{unknown[0]} is not a key of a {cls.__name__}; valid keys: {', '.join(sorted(names))}")
    kwargs = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in value.items()}
    return cls(**kwargs)


def image_spec(value: Mapping[str, Any] | None, where: str = "image") -> ImageSpec | None:
    return _spec(ImageSpec, value, where)


def text_spec(value: Mapping[str, Any] | None, where: str = "text") -> TextSpec | None:
    return _spec(TextSpec, value, where)


def _head(in_dim: int, width: int, embed_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, width), nn.ReLU(), nn.Linear(width, embed_dim))


class ImageTower(nn.Module):
    """A spine backbone's features, then a projection head to `embed_dim`.

    With `feature_dim`, the inputs are frozen image features (n, feature_dim): no backbone, only
    the head Linear(feature_dim, width) -> ReLU -> Linear(width, embed_dim).
    """

    def __init__(self, spec: ImageSpec, input_shape: tuple[int, ...], embed_dim: int,
                 feature_dim: int | None = None) -> None:
        super().__init__()
        width = spec.widths[-1] if spec.kind == "resnet" else spec.fc
        self.backbone: nn.Module | None = None
        if feature_dim is not None:
            self.proj = _head(int(feature_dim), width, embed_dim)
            return
        if spec.kind == "resnet":
            backbone: nn.Module = ResNet(ResNetConfig(widths=spec.widths, blocks=spec.blocks, norm=spec.norm),
                                         input_shape, 1)
        else:
            backbone = CNN(CNNConfig(channels=spec.channels, fc=spec.fc), input_shape, 1)
        backbone.head = nn.Identity()  # type: ignore[assignment]  # features only
        self.backbone = backbone
        self.proj = _head(width, width, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x if self.backbone is None else self.backbone.features(x))  # type: ignore[operator]


def text_width(spec: TextSpec) -> int:
    """The width of a text spec's encoder output (`out_dim`): transformer dim, bag hidden."""
    return spec.hidden if spec.kind == "bag" else spec.dim


class TextTower(nn.Module):
    """A text encoder, then a projection head to `embed_dim`.

    With `feature_dim`, the inputs are frozen caption features (n, feature_dim): no encoder, only
    the head Linear(feature_dim, width) -> ReLU -> Linear(width, embed_dim), width = text_width(spec).
    """

    def __init__(self, spec: TextSpec, vocab_size: int, embed_dim: int, max_len: int,
                 feature_dim: int | None = None) -> None:
        super().__init__()
        self.encoder: nn.Module | None = None
        if feature_dim is not None:
            self.proj = _head(int(feature_dim), text_width(spec), embed_dim)
            return
        self.encoder = build_text_encoder(spec.kind, vocab_size, dim=spec.dim, depth=spec.depth,
                                          heads=spec.heads, hidden=spec.hidden, max_len=max_len)
        width = int(self.encoder.out_dim)  # type: ignore[arg-type]
        self.proj = _head(width, width, embed_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.proj(tokens if self.encoder is None else self.encoder(tokens))


class ImageTextModel(nn.Module):
    """Image and/or text towers into one L2-normalised space; optional cosine classifier.

    `encode_image(x)` and `encode_text(tokens)` return unit vectors (n, embed_dim); `classify(z)`
    gives `scale * cos(z, class weight)` logits for a client's private task. With
    `image_feature_dim` / `text_feature_dim`, that tower takes frozen features (n, dim) instead.
    """

    def __init__(self, *, embed_dim: int, input_shape: tuple[int, ...], vocab_size: int, max_len: int = 16,
                 image: ImageSpec | None = None, text: TextSpec | None = None, num_classes: int = 0,
                 class_scale: float = 10.0, image_feature_dim: int | None = None,
                 text_feature_dim: int | None = None) -> None:
        super().__init__()
        if image is None and text is None:
            raise ValueError("a model needs an image tower, a text tower or both")
        self.embed_dim = int(embed_dim)
        self.image = (ImageTower(image, tuple(input_shape), embed_dim, image_feature_dim)
                      if image is not None else None)
        self.text = (TextTower(text, vocab_size, embed_dim, max_len, text_feature_dim)
                     if text is not None else None)
        self.classifier = nn.Linear(embed_dim, num_classes, bias=False) if num_classes else None
        self.class_scale = float(class_scale)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m, tower in (("img", self.image), ("txt", self.text)) if tower is not None)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        assert self.image is not None, "this model has no image tower"
        return F.normalize(self.image(x).float(), dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        assert self.text is not None, "this model has no text tower"
        return F.normalize(self.text(tokens).float(), dim=-1)

    def encode(self, modality: str, inputs: torch.Tensor) -> torch.Tensor:
        return self.encode_image(inputs) if modality == "img" else self.encode_text(inputs)

    def classify(self, z: torch.Tensor) -> torch.Tensor:
        assert self.classifier is not None, "this model has no classifier"
        return self.class_scale * z @ F.normalize(self.classifier.weight.float(), dim=-1).T

    def forward(self, images: torch.Tensor | None = None,
                tokens: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        if images is not None:
            out["img"] = self.encode_image(images)
        if tokens is not None:
            out["txt"] = self.encode_text(tokens)
        return out


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
