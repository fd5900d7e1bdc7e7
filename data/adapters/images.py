"""Decode image files or bytes with PIL into uint8 (n, C, H, W): one size, one channel count."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from conf.errors import ConfigError
from data.adapters.arrays import say_once

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def open_image(item: Path | bytes | Image.Image, *, name: str, key: str) -> Image.Image:
    """A fully decoded PIL image; ConfigError naming the file (or row) when it cannot be decoded."""
    if isinstance(item, Image.Image):
        return item
    try:
        image = Image.open(io.BytesIO(item) if isinstance(item, bytes) else item)
        image.load()
        return image
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ConfigError(f"{name}: cannot decode this image ({err}); fix or remove the file "
                          f"({key})", key=key) from None


def to_array(images: Sequence[Image.Image], *, names: Sequence[str], image_size: int | None,
             channels: int | None, where: str) -> np.ndarray:
    """Stack PIL images as uint8 (n, C, H, W), resized to ``image_size`` and converted to ``channels``.

    ``image_size`` None keeps the files' size (the most common one if they differ); ``channels``
    None takes 1 when every image is grey, else 3. Mixed sizes are resized and said once.
    """
    if not images:
        return np.zeros((0, channels or 1, image_size or 1, image_size or 1), dtype=np.uint8)
    sizes = Counter(im.size for im in images)
    if image_size is None:
        (width, height), _ = sizes.most_common(1)[0]
    else:
        width = height = image_size
    if len(sizes) > 1:
        examples = ", ".join(f"{w}x{h} ({names[[im.size for im in images].index((w, h))]})"
                             for (w, h) in list(sizes)[:3])
        say_once(f"{where}: images come in {len(sizes)} sizes, e.g. {examples}; all are resized to "
                 f"{width}x{height} (task.image_size)")
    if channels is None:
        channels = 1 if all(im.mode in GREY_MODES for im in images) else 3
    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(images), channels, height, width), dtype=np.uint8)
    for i, image in enumerate(images):
        if image.mode != mode:
            image = image.convert(mode)
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.uint8)
        out[i] = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
    return out
