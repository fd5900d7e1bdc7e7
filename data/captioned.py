"""The `captioned` task: generated image-caption pairs for multimodal FL (CreamFL).

Each item is a coloured digit in one of a few fonts on a coloured background, sometimes with a
coloured shape in a corner, and a caption naming exactly those attributes, e.g. "a large red
digit eight in serif font on a blue background with a green circle". Everything is deterministic
in `data_seed` (default 0, so runs of several seeds share the data; null: the run seed) and the
sizes; the test split depends only on its own fixed seed.

Splits: a public set of pairs (server and every client may see it), private data per client,
a validation split for tuning and a test split for reporting. Clients hold one modality each by
config (`clients: {image: 4, text: 4, image_text: 4}`; partition ids in that order):
image-only clients hold labelled images (the digit), text-only clients labelled captions (the
background colour), image-text clients private pairs. Partitions are skewed by Dirichlet(alpha)
over those labels.

Optional frozen encoders replace a modality's inputs by cached features (trainable heads on top
in models/multimodal.py): `image_features: effnet-lite0` (EfficientNet-Lite0, 1280-d, computed by
data.features.encode_cached) and `text_features: minilm` (all-MiniLM-L6-v2, 384-d, computed by
data.text_encoders.encode_sentences over the unique captions).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from data.bundle import Normalisation, Store, TaskBundle, TaskData
from data.encoders import EFFNET_LITE0
from data.errors import ConfigError
from data.features import encode_cached
from data.text_encoders import NO_TEXT_FEATURES, TEXT_FEATURES, encode_sentences

CAPTIONED = "captioned"
GENERATOR_VERSION = 1
IMAGE_FEATURES: tuple[str, ...] = ("none", EFFNET_LITE0)
TEST_SEED = 7_919  # the test split never depends on the run seed
MODALITIES: tuple[str, ...] = ("image", "text", "image_text")

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

CAPTIONED_DEFAULTS: dict[str, Any] = {
    "name": CAPTIONED,
    "dataset": CAPTIONED,
    "num_clients": 12,             # must equal the sum of `clients`
    "clients": {"image": 4, "text": 4, "image_text": 4},
    "partition": "dirichlet",      # iid | dirichlet (over each client type's label)
    "alpha": 0.5,
    "min_partition_size": 2,
    "public_size": 500,
    "private_size": 2400,          # pairs shared out among all clients (each keeps its modality)
    "val_size": 300,
    "test_size": 500,
    "image_size": 32,
    "data_seed": 0,                # generation and splits; null: the run seed (models and sampling
                                   # always follow the run seed)
    "features": "none",            # must stay none: use image_features / text_features
    "image_features": "none",      # none (pixels) | effnet-lite0 (frozen, cached 1280-d features)
    "text_features": "none",       # none (word ids) | minilm (frozen, cached 384-d features)
    "data_dir": None,
    "continual": None,
}


@dataclass(frozen=True)
class CaptionedConfig:
    """A validated, hashable `captioned` task config."""

    name: str
    num_clients: int
    clients: tuple[tuple[str, int], ...]
    partition: str
    alpha: float
    min_partition_size: int
    public_size: int
    private_size: int
    val_size: int
    test_size: int
    image_size: int
    data_seed: int | None = 0
    features: str = "none"
    image_features: str = "none"
    text_features: str = "none"
    data_dir: str | None = None
    continual: None = None
    dataset: str = CAPTIONED

    def client_types(self) -> list[str]:
        """The modality of every partition id, in order."""
        return [m for m, n in self.clients for _ in range(n)]


def parse_captioned_config(cfg: Mapping[str, Any]) -> CaptionedConfig:
    """Validate a `captioned` task config; each error names the key and the fix."""
    unknown = sorted(set(cfg) - set(CAPTIONED_DEFAULTS))
    if unknown:
        raise ConfigError(
            f"task.{unknown[0]}: unknown key for the captioned task; valid keys: "
            f"{', '.join(CAPTIONED_DEFAULTS)}"
        )
    merged = {**CAPTIONED_DEFAULTS, **dict(cfg)}
    clients_cfg = merged["clients"]
    if not isinstance(clients_cfg, Mapping) or not clients_cfg:
        raise ConfigError(f"task.clients: expected a mapping like {{image: 4, text: 4, image_text: 4}}, "
                          f"got {clients_cfg!r}")
    bad = sorted(set(clients_cfg) - set(MODALITIES))
    if bad:
        raise ConfigError(f"task.clients.{bad[0]}: unknown client type; valid: {', '.join(MODALITIES)}")
    clients = []
    for m in MODALITIES:
        n = clients_cfg.get(m, 0)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"task.clients.{m}: must be an integer >= 0, got {n!r}")
        if n:
            clients.append((m, int(n)))
    total = sum(n for _, n in clients)
    num_clients = merged["num_clients"]
    if total < 1:
        raise ConfigError("task.clients: at least one client is needed")
    if num_clients != total:
        raise ConfigError(
            f"task.num_clients={num_clients} must equal the sum of task.clients ({total}: "
            f"{dict(clients)}); set task.num_clients={total} or change task.clients"
        )
    if merged["partition"] not in ("iid", "dirichlet"):
        raise ConfigError(f"task.partition: {merged['partition']!r}; choose one of: iid, dirichlet")
    alpha = merged["alpha"]
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ConfigError(f"task.alpha: the Dirichlet concentration must be > 0, got {alpha!r}")
    ints = {}
    for key, minimum in (("public_size", 2), ("private_size", 1), ("val_size", 1), ("test_size", 2),
                         ("image_size", 16), ("min_partition_size", 0)):
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"task.{key}: must be an integer >= {minimum}, got {value!r}")
        ints[key] = int(value)
    data_seed = merged["data_seed"]
    if data_seed is not None and (isinstance(data_seed, bool) or not isinstance(data_seed, int)):
        raise ConfigError(f"task.data_seed: must be an integer or null, got {data_seed!r}")
    if merged["features"] != "none":
        raise ConfigError(
            f"task.features={merged['features']!r}: the captioned task needs features=none; choose "
            f"frozen encoders per modality with task.image_features ({' | '.join(IMAGE_FEATURES)}) "
            f"and task.text_features ({' | '.join(TEXT_FEATURES)})"
        )
    for key, valid in (("image_features", IMAGE_FEATURES), ("text_features", TEXT_FEATURES)):
        if merged[key] not in valid:
            raise ConfigError(f"task.{key}={merged[key]!r}; valid choices: {', '.join(valid)}")
    if merged["continual"] is not None:
        raise ConfigError("task.continual: the captioned task is not continual; set continual: null")
    if merged["dataset"] != CAPTIONED:
        raise ConfigError(f"task.dataset: the captioned task's dataset is {CAPTIONED!r}")
    per_client = max(1, ints["min_partition_size"])
    if ints["private_size"] < total * per_client:
        raise ConfigError(
            f"task.private_size={ints['private_size']} is too small for {total} clients with "
            f"min_partition_size={ints['min_partition_size']}; raise it or lower the client counts"
        )
    return CaptionedConfig(
        name=str(merged["name"]), num_clients=total, clients=tuple(clients),
        partition=str(merged["partition"]), alpha=float(alpha), data_dir=merged["data_dir"],
        data_seed=data_seed, image_features=str(merged["image_features"]),
        text_features=str(merged["text_features"]), **ints,
    )


# ---- generation ------------------------------------------------------------------------------
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


def _generated_key(n: int, seed: int, size: int) -> str:
    """The cache key of generated data (and the dataset name of its cached features)."""
    return f"captioned-v{GENERATOR_VERSION}-s{seed}-n{n}-px{size}"


def _generated(n: int, seed: int, size: int) -> dict[str, np.ndarray]:
    from data.cache import cached_arrays

    return cached_arrays(_generated_key(n, seed, size), lambda: generate(n, seed, size))


def caption_ids(attributes: np.ndarray) -> np.ndarray:
    """An id per item, equal for two items exactly when their captions are equal."""
    _, ids = np.unique(attributes, axis=0, return_inverse=True)
    return ids.reshape(-1).astype(np.int64)


# ---- the bundle --------------------------------------------------------------------------------
@dataclass(frozen=True)
class PairedSplit:
    """Model-ready pairs: float images (n, 3, H, W) normalised, tokens (n, L), caption ids (n,).

    With task.image_features on, `images` holds float32 frozen image features (n, d) instead;
    with task.text_features on, `tokens` holds float32 frozen caption features (n, d).
    """

    images: torch.Tensor
    tokens: torch.Tensor
    caption_ids: torch.Tensor
    attributes: torch.Tensor

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


@dataclass(frozen=True)
class ClientData:
    """One client's private data: its modality, and images and/or tokens with labels.

    Like PairedSplit, `images` / `tokens` hold float32 frozen features (n, d) when the task's
    image_features / text_features are on.
    """

    modality: str
    images: torch.Tensor | None
    tokens: torch.Tensor | None
    labels: torch.Tensor
    num_classes: int

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class CaptionedData:
    """The captioned task's arrays (uint8 images, tokens, attributes) and index splits.

    The optional `*_features` arrays (float32, one row per item of the array they name) are what
    the models see in place of pixels / word ids when task.image_features / text_features are on.
    """

    cfg: CaptionedConfig
    images: np.ndarray = field(repr=False)       # uint8 (n, 3, H, W): public, private, val
    tokens: np.ndarray = field(repr=False)       # (n, L)
    attributes: np.ndarray = field(repr=False)   # (n, 7)
    test_images: np.ndarray = field(repr=False)
    test_tokens: np.ndarray = field(repr=False)
    test_attributes: np.ndarray = field(repr=False)
    public_idx: np.ndarray = field(repr=False)
    val_idx: np.ndarray = field(repr=False)
    client_idx: list[np.ndarray] = field(repr=False)
    client_types: list[str] = field(repr=False)
    normalisation: Normalisation = field(repr=False)

    vocab: tuple[str, ...] = VOCAB
    image_features: np.ndarray | None = field(default=None, repr=False)       # (n, d) of `images`
    test_image_features: np.ndarray | None = field(default=None, repr=False)
    text_features: np.ndarray | None = field(default=None, repr=False)        # (n, d) of `tokens`
    test_text_features: np.ndarray | None = field(default=None, repr=False)

    @property
    def image_feature_dim(self) -> int | None:
        """The frozen image features' size; None when models see pixels."""
        return None if self.image_features is None else int(self.image_features.shape[1])

    @property
    def text_feature_dim(self) -> int | None:
        """The frozen caption features' size; None when models see word ids."""
        return None if self.text_features is None else int(self.text_features.shape[1])

    def _images(self, x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(x)).to(torch.float32).div_(255.0)
        mean = torch.tensor(self.normalisation.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.normalisation.std).view(1, -1, 1, 1)
        return t.sub_(mean).div_(std)

    def _image_inputs(self, i: np.ndarray, test: bool = False) -> torch.Tensor:
        """What models see of images i: normalised pixels, or their frozen features when on."""
        features = self.test_image_features if test else self.image_features
        if features is not None:
            return torch.from_numpy(np.array(features[i], dtype=np.float32))
        return self._images((self.test_images if test else self.images)[i])

    def _text_inputs(self, i: np.ndarray, test: bool = False) -> torch.Tensor:
        """What models see of captions i: word ids, or their frozen features when on."""
        features = self.test_text_features if test else self.text_features
        if features is not None:
            return torch.from_numpy(np.array(features[i], dtype=np.float32))
        return torch.from_numpy(np.array((self.test_tokens if test else self.tokens)[i]))

    def _paired(self, i: np.ndarray, test: bool = False) -> PairedSplit:
        attrs = np.array((self.test_attributes if test else self.attributes)[i])
        return PairedSplit(self._image_inputs(i, test), self._text_inputs(i, test),
                           torch.from_numpy(caption_ids(attrs)), torch.from_numpy(attrs))

    def public(self) -> PairedSplit:
        """The public pairs, in a fixed order (item i of every representation is pair i)."""
        return self._paired(self.public_idx)

    def val(self) -> PairedSplit:
        return self._paired(self.val_idx)

    def test(self) -> PairedSplit:
        return self._paired(np.arange(len(self.test_attributes)), test=True)

    def private_pairs(self) -> PairedSplit:
        """All clients' private items as pairs (only for the centralised upper bound)."""
        return self._paired(np.concatenate(self.client_idx))

    def client(self, client_id: int) -> ClientData:
        """A client's private data, only in its own modalities."""
        if not 0 <= client_id < len(self.client_types):
            raise IndexError(f"client_id {client_id} out of range [0, {len(self.client_types)})")
        modality = self.client_types[client_id]
        i = self.client_idx[client_id]
        images = self._image_inputs(i) if modality != "text" else None
        tokens = self._text_inputs(i) if modality != "image" else None
        labels, k = client_labels(modality, self.attributes[i])
        return ClientData(modality, images, tokens, torch.from_numpy(labels), k)


def client_labels(modality: str, attrs: np.ndarray) -> tuple[np.ndarray, int]:
    """Private-task labels of a client type and their number of classes."""
    if modality == "text":
        return attrs[:, BG].astype(np.int64), len(TEXT_LABEL_NAMES)
    return attrs[:, DIGIT].astype(np.int64), len(IMAGE_LABEL_NAMES)


@dataclass(frozen=True, eq=False)
class CaptionedBundle(TaskBundle):
    """A TaskBundle (images and digits, for code that only knows those) plus the paired data."""

    captioned: CaptionedData | None = field(default=None, repr=False)


def build_captioned(cfg: CaptionedConfig, seed: int) -> CaptionedBundle:
    """Generate (disk-cached) and split the captioned task: from `data_seed`, else the run seed."""
    from data.build import PARTITION_SEED, derive_seed
    from data.partition import partition_indices

    seed = int(seed if cfg.data_seed is None else cfg.data_seed)
    n = cfg.public_size + cfg.private_size + cfg.val_size
    train_seed = int(derive_seed(seed, 11))
    train = _generated(n, train_seed, cfg.image_size)
    test = _generated(cfg.test_size, TEST_SEED, cfg.image_size)
    features = frozen_features(cfg, train, _generated_key(n, train_seed, cfg.image_size),
                               test, _generated_key(cfg.test_size, TEST_SEED, cfg.image_size))
    order = np.random.default_rng(derive_seed(seed, 12)).permutation(n)
    public_idx = np.sort(order[:cfg.public_size])
    val_idx = np.sort(order[cfg.public_size:cfg.public_size + cfg.val_size])
    private = order[cfg.public_size + cfg.val_size:]
    # Each client type gets a share of the private pool in proportion to its client count,
    # then a Dirichlet split of that share over the type's own label.
    types = cfg.client_types()
    counts = [n_ for _, n_ in cfg.clients]
    bounds = np.cumsum([0, *counts]) * len(private) // sum(counts)
    client_idx: list[np.ndarray] = []
    for g, (modality, num) in enumerate(cfg.clients):
        pool = np.sort(private[bounds[g]:bounds[g + 1]])
        labels, _ = client_labels(modality, train["attributes"][pool])
        try:
            parts = partition_indices(labels, num, scheme=cfg.partition, alpha=cfg.alpha,
                                      seed=derive_seed(seed, PARTITION_SEED, g),
                                      min_partition_size=cfg.min_partition_size)
        except ValueError as err:
            raise ConfigError(f"task.clients.{modality}={num}, task.alpha={cfg.alpha}: {err}") from err
        client_idx += [pool[p] for p in parts]
    images = train["images"]
    norm = Normalisation.of(images[public_idx])  # public statistics: nothing private leaks
    data = CaptionedData(
        cfg=cfg, images=images, tokens=train["tokens"], attributes=train["attributes"],
        test_images=test["images"], test_tokens=test["tokens"], test_attributes=test["attributes"],
        public_idx=public_idx, val_idx=val_idx, client_idx=client_idx, client_types=types,
        normalisation=norm, **features,
    )
    digits = train["attributes"][:, DIGIT]
    return CaptionedBundle(
        name=cfg.name, input_shape=(3, cfg.image_size, cfg.image_size), num_classes=10,
        num_clients=cfg.num_clients, num_tasks=1, scenario="single",
        task_classes=[list(range(10))], domains=[],
        train_store=Store(images, digits), test_store=Store(test["images"], test["attributes"][:, DIGIT]),
        tasks=[TaskData([idx if t != "text" else idx[:0] for idx, t in zip(client_idx, types)],
                        val_idx, np.arange(cfg.test_size))],
        normalisation=norm, captioned=data,
    )


def frozen_features(cfg: CaptionedConfig, train: dict[str, np.ndarray], train_key: str,
                    test: dict[str, np.ndarray], test_key: str) -> dict[str, np.ndarray]:
    """CaptionedData's `*_features` arrays for the encoders `cfg` turns on (disk-cached).

    Image features are keyed by the generated data's key (its seed, size and image size) plus a
    digest of the images; caption features by the same key plus a digest of the unique captions
    (train and test captions are encoded in one call).
    """
    out: dict[str, np.ndarray] = {}
    if cfg.image_features != "none":
        out["image_features"] = encode_cached(train["images"], dataset=train_key, encoder=cfg.image_features)
        out["test_image_features"] = encode_cached(test["images"], dataset=test_key,
                                                   encoder=cfg.image_features)
    if cfg.text_features != NO_TEXT_FEATURES:
        captions = [caption_of(row) for row in np.concatenate([train["attributes"], test["attributes"]])]
        features = encode_sentences(captions, dataset=f"{train_key}+{test_key}", encoder=cfg.text_features)
        n = len(train["attributes"])
        out["text_features"], out["test_text_features"] = features[:n], features[n:]
    return out


def captioned_of(bundle: TaskBundle) -> CaptionedData:
    """The paired data of a captioned bundle, or a clear error for another task."""
    data = getattr(bundle, "captioned", None)
    if data is None:
        raise ConfigError(f"task {bundle.name!r} is not a captioned (image-text) task; use task=captioned")
    return data


__all__ = [
    "CAPTIONED", "CAPTIONED_DEFAULTS", "CaptionedBundle", "CaptionedConfig", "CaptionedData",
    "ClientData", "PairedSplit", "VOCAB", "build_captioned", "caption_ids", "caption_of",
    "captioned_of", "generate", "parse_captioned_config", "tokenize",
]
