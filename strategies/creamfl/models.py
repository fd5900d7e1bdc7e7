"""CreamFL's models and data plumbing: the server and client towers, index batches, public-set encoding."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from data.captioned import CaptionedData, PairedSplit
from models.accel import autocast, to_device_batch
from models.multimodal import ImageTextModel, image_spec, text_spec
from strategies.creamfl.config import CreamFLConfig


def build_server_model(config: CreamFLConfig, data: CaptionedData) -> ImageTextModel:
    """The server's image-text model (strategy.server_image / server_text)."""
    return ImageTextModel(
        embed_dim=config.embed_dim,
        input_shape=(3, data.cfg.image_size, data.cfg.image_size),
        vocab_size=len(data.vocab), max_len=data.tokens.shape[1],
        image=image_spec(config.server_image, "strategy.server_image"),
        text=text_spec(config.server_text, "strategy.server_text"),
        image_feature_dim=data.image_feature_dim, text_feature_dim=data.text_feature_dim,
    )


def build_client_model(config: CreamFLConfig, data: CaptionedData, modality: str,
                       num_classes: int) -> ImageTextModel:
    """The model of one client type (`image`, `text` or `image_text`), from strategy.client_models."""
    spec = config.client_models[modality]
    return ImageTextModel(
        embed_dim=config.embed_dim, input_shape=(3, data.cfg.image_size, data.cfg.image_size),
        vocab_size=len(data.vocab), max_len=data.tokens.shape[1],
        image=image_spec(spec.get("image"), f"strategy.client_models.{modality}.image") if modality != "text" else None,
        text=text_spec(spec.get("text"), f"strategy.client_models.{modality}.text") if modality != "image" else None,
        num_classes=num_classes if modality != "image_text" else 0, class_scale=config.class_scale,
        image_feature_dim=data.image_feature_dim, text_feature_dim=data.text_feature_dim,
    )


def batches(n: int, batch_size: int, gen: torch.Generator | None) -> Iterator[torch.Tensor]:
    """Index batches over range(n): shuffled with `gen`, in order when it is None."""
    order = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def inputs_of(split: PairedSplit, key: str) -> torch.Tensor:
    """A split's model inputs of one modality key (`img`: images, `txt`: captions)."""
    return split.images if key == "img" else split.tokens


@torch.no_grad()
def encode_split(model: ImageTextModel, split: PairedSplit, key: str, device: torch.device,
                 batch_size: int = 256) -> torch.Tensor:
    """Unit representations (n, D) of a split's images or captions, on the CPU, in fp32."""
    was = model.training
    model.eval()
    out = []
    x = inputs_of(split, key)
    for idx in batches(len(split), batch_size, None):
        with autocast(device):
            out.append(model.encode(key, to_device_batch(x[idx], device)).float().cpu())
    model.train(was)
    return torch.cat(out) if out else torch.zeros(0, model.embed_dim)


def concat(a: PairedSplit, b: PairedSplit) -> PairedSplit:
    """Two splits as one (the public pairs first)."""
    return PairedSplit(torch.cat([a.images, b.images]), torch.cat([a.tokens, b.tokens]),
                       torch.cat([a.caption_ids, b.caption_ids]), torch.cat([a.attributes, b.attributes]))
