"""The `captioned` task's items: attributes, their captions and vocabulary, rendered images.

Each item is a coloured digit in one of a few fonts on a coloured background, sometimes with a
coloured shape in a corner, and a caption naming exactly those attributes. Everything here is a
pure function of its seed and sizes; generated arrays are cached on disk.
"""

from __future__ import annotations

import numpy as np

GENERATOR_VERSION = 1
TEST_SEED = 7_919  # the test split never depends on the run seed

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40),
    "green": (44, 160, 44),
    "blue": (31, 88, 214),
    "yellow": (240, 220, 40),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
DIGIT_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven",
                                "eight", "nine")
SIZES: tuple[str, ...] = ("small", "large")
FONTS: dict[str, str] = {"serif": "DejaVuSerif-Bold.ttf", "sans": "DejaVuSans-Bold.ttf"}
FONT_NAMES: tuple[str, ...] = tuple(FONTS)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SHAPE_PROBABILITY = 0.5

# Attribute columns of `attributes` (n, 7); shape -1 means no shape (and shape colour -1).
DIGIT, FG, BG, SIZE, FONT, SHAPE, SHAPE_FG = range(7)

# The word-level vocabulary of the caption grammar; 0 is padding, 1 unknown words.
PAD, UNK = "<pad>", "<unk>"
VOCAB: tuple[str, ...] = (
    PAD, UNK, "a", "digit", "in", "font", "on", "background", "with",
    *SIZES, *COLOUR_NAMES, *DIGIT_WORDS, *FONT_NAMES, *SHAPES,
)
MAX_TOKENS = 16  # the longest caption has 15 words

# Labels of each client type's private task.
TEXT_LABEL_NAMES = COLOUR_NAMES  # text-only clients classify the background colour
IMAGE_LABEL_NAMES = DIGIT_WORDS  # image-only clients classify the digit


def sample_attributes(n: int, rng: np.random.Generator) -> np.ndarray:
    """n rows of (digit, fg, bg, size, font, shape, shape_fg) with fg != bg and shape_fg != bg."""
    k = len(COLOUR_NAMES)
    attrs = np.full((n, 7), -1, dtype=np.int64)
    attrs[:, DIGIT] = rng.integers(0, 10, n)
    attrs[:, FG] = rng.integers(0, k, n)
    attrs[:, BG] = (attrs[:, FG] + rng.integers(1, k, n)) % k  # never the digit's colour
    attrs[:, SIZE] = rng.integers(0, len(SIZES), n)
    attrs[:, FONT] = rng.integers(0, len(FONT_NAMES), n)
    has_shape = rng.random(n) < SHAPE_PROBABILITY
    attrs[has_shape, SHAPE] = rng.integers(0, len(SHAPES), int(has_shape.sum()))
    attrs[has_shape, SHAPE_FG] = (attrs[has_shape, BG] + rng.integers(1, k, int(has_shape.sum()))) % k
    return attrs


def caption_of(row: np.ndarray) -> str:
    """The caption naming a row's attributes."""
    words = [
        "a", SIZES[row[SIZE]], COLOUR_NAMES[row[FG]], "digit", DIGIT_WORDS[row[DIGIT]],
        "in", FONT_NAMES[row[FONT]], "font", "on", "a", COLOUR_NAMES[row[BG]], "background",
    ]
    if row[SHAPE] >= 0:
        words += ["with", "a", COLOUR_NAMES[row[SHAPE_FG]], SHAPES[row[SHAPE]]]
    return " ".join(words)


def tokenize(captions: list[str], max_len: int = MAX_TOKENS) -> np.ndarray:
    """Word ids (n, max_len) of captions over VOCAB, padded with 0 (PAD); unknown words are UNK."""
    index = {w: i for i, w in enumerate(VOCAB)}
    out = np.zeros((len(captions), max_len), dtype=np.int64)
    for r, caption in enumerate(captions):
        ids = [index.get(w, 1) for w in caption.lower().split()][:max_len]
        out[r, :len(ids)] = ids
    return out


def render(row: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """One item's image as uint8 (3, size, size)."""
    from PIL import Image, ImageDraw

    from data.generated import _font, font_paths

    scale = 3  # draw large, then downsample (anti-aliased edges)
    canvas = size * scale
    image = Image.new("RGB", (canvas, canvas), COLOURS[COLOUR_NAMES[row[BG]]])
    draw = ImageDraw.Draw(image)
    if row[SHAPE] >= 0:
        s = int(canvas * 0.26)
        corner = int(rng.integers(4))
        x0 = 2 * scale if corner % 2 == 0 else canvas - s - 2 * scale
        y0 = 2 * scale if corner < 2 else canvas - s - 2 * scale
        box = (x0, y0, x0 + s, y0 + s)
        colour = COLOURS[COLOUR_NAMES[row[SHAPE_FG]]]
        shape = SHAPES[row[SHAPE]]
        if shape == "circle":
            draw.ellipse(box, fill=colour)
        elif shape == "square":
            draw.rectangle(box, fill=colour)
        else:
            draw.polygon([(x0 + s / 2, y0), (x0, y0 + s), (x0 + s, y0 + s)], fill=colour)
    paths = {p.name: p for p in font_paths()}
    font_file = FONTS[FONT_NAMES[row[FONT]]]
    path = paths.get(font_file) or next(iter(paths.values()))
    points = (0.42 if SIZES[row[SIZE]] == "small" else 0.78) * size * scale
    font = _font(str(path), int(points))
    dx, dy = rng.integers(-2, 3, size=2) * scale
    draw.text((canvas / 2 + dx, canvas / 2 + dy), str(int(row[DIGIT])),
              fill=COLOURS[COLOUR_NAMES[row[FG]]], font=font, anchor="mm")
    image = image.resize((size, size), Image.Resampling.BOX)
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def generate(n: int, seed: int, size: int) -> dict[str, np.ndarray]:
    """n items: uint8 images (n, 3, size, size), tokens (n, MAX_TOKENS), attributes (n, 7)."""
    rng = np.random.default_rng(seed)
    attrs = sample_attributes(n, rng)
    images = (np.stack([render(row, rng, size) for row in attrs]) if n
              else np.zeros((0, 3, size, size), np.uint8))
    tokens = tokenize([caption_of(row) for row in attrs])
    return {"images": images, "tokens": tokens, "attributes": attrs}


def generated_key(n: int, seed: int, size: int) -> str:
    """The cache key of generated data (and the dataset name of its cached features)."""
    return f"captioned-v{GENERATOR_VERSION}-s{seed}-n{n}-px{size}"


def generated_arrays(n: int, seed: int, size: int) -> dict[str, np.ndarray]:
    from data.cache import cached_arrays

    return cached_arrays(generated_key(n, seed, size), lambda: generate(n, seed, size))


def caption_ids(attributes: np.ndarray) -> np.ndarray:
    """An id per item, equal for two items exactly when their captions are equal."""
    _, ids = np.unique(attributes, axis=0, return_inverse=True)
    return ids.reshape(-1).astype(np.int64)


def client_labels(modality: str, attrs: np.ndarray) -> tuple[np.ndarray, int]:
    """Private-task labels of a client type and their number of classes."""
    if modality == "text":
        return attrs[:, BG].astype(np.int64), len(TEXT_LABEL_NAMES)
    return attrs[:, DIGIT].astype(np.int64), len(IMAGE_LABEL_NAMES)
