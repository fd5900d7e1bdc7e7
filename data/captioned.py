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

from dataclasses import dataclass, field

import numpy as np
import torch

from data.build import PARTITION_SEED, derive_seed
from data.bundle import Normalisation, Store, TaskBundle, TaskData
from data.captioned_config import (
    CAPTIONED,
    CAPTIONED_DEFAULTS,
    IMAGE_FEATURES,
    MODALITIES,
    CaptionedConfig,
    parse_captioned_config,
)
from data.captioned_generate import (
    BG,
    DIGIT,
    TEST_SEED,
    VOCAB,
    caption_ids,
    caption_of,
    client_labels,
    generate,
    generated_arrays,
    generated_key,
    tokenize,
)
from data.errors import ConfigError
from data.features import encode_cached
from data.partition import partition_indices
from data.text_encoders import NO_TEXT_FEATURES, encode_sentences


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


@dataclass(frozen=True, eq=False)
class CaptionedBundle(TaskBundle):
    """A TaskBundle (images and digits, for code that only knows those) plus the paired data."""

    captioned: CaptionedData | None = field(default=None, repr=False)


def build_captioned(cfg: CaptionedConfig, seed: int) -> CaptionedBundle:
    """Generate (disk-cached) and split the captioned task: from `data_seed`, else the run seed."""
    seed = int(seed if cfg.data_seed is None else cfg.data_seed)
    n = cfg.public_size + cfg.private_size + cfg.val_size
    train_seed = int(derive_seed(seed, 11))
    train = generated_arrays(n, train_seed, cfg.image_size)
    test = generated_arrays(cfg.test_size, TEST_SEED, cfg.image_size)
    features = frozen_features(cfg, train, generated_key(n, train_seed, cfg.image_size),
                               test, generated_key(cfg.test_size, TEST_SEED, cfg.image_size))
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
    "BG", "CAPTIONED", "CAPTIONED_DEFAULTS", "DIGIT", "IMAGE_FEATURES", "MODALITIES", "TEST_SEED", "VOCAB",
    "CaptionedBundle", "CaptionedConfig", "CaptionedData", "ClientData", "PairedSplit", "build_captioned",
    "caption_ids", "caption_of", "captioned_of", "client_labels", "frozen_features", "generate",
    "parse_captioned_config", "tokenize",
]
