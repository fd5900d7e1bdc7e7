"""The generated captioned task: config, determinism, captions, splits and client modalities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from data import ConfigError, check_task_config, load_task
from data.captioned import (
    BG,
    DIGIT,
    VOCAB,
    caption_ids,
    caption_of,
    captioned_of,
    generate,
    parse_captioned_config,
    tokenize,
)
from data.captioned_config import CAPTIONED_DEFAULTS
from data.partition import label_entropy

CONF = Path(__file__).resolve().parents[2] / "conf" / "task" / "captioned.yaml"
TINY = {"name": "captioned", "num_clients": 6, "clients": {"image": 2, "text": 2, "image_text": 2},
        "public_size": 40, "private_size": 240, "val_size": 20, "test_size": 40, "image_size": 16}


def test_yaml_matches_the_catalogue_and_validates() -> None:
    cfg = yaml.safe_load(CONF.read_text())
    assert cfg == CAPTIONED_DEFAULTS  # captioned_config.py still repeats its YAML
    check_task_config(cfg)


@pytest.mark.parametrize("override, match", [
    ({"num_clients": 5}, "must equal the sum of task.clients"),
    ({"clients": {"audio": 1}}, "unknown client type"),
    ({"clients": {"image": -1}}, "must be an integer >= 0"),
    ({"partition": "shard"}, "iid, dirichlet"),
    ({"public_size": 1}, "public_size"),
    ({"features": "effnet-lite0"}, "features=none"),
    ({"bogus": 1}, "unknown key"),
])
def test_bad_configs_name_the_key(override: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_captioned_config({**TINY, **override})


def test_captions_name_the_attributes_and_tokenize_over_the_vocabulary() -> None:
    rng = np.random.default_rng(0)
    data = generate(30, seed=3, size=16)
    assert data["images"].shape == (30, 3, 16, 16) and data["images"].dtype == np.uint8
    for row, tokens in zip(data["attributes"], data["tokens"]):
        caption = caption_of(row)
        assert " ".join(VOCAB[t] for t in tokens if t) == caption
        assert ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"][row[DIGIT]] in caption
        assert row[1] != row[2]  # the digit's colour is never the background's
    assert (tokenize(["a blue zebra"])[0, :3] == [VOCAB.index("a"), VOCAB.index("blue"), 1]).all()
    del rng


def test_generation_is_deterministic_and_the_test_split_ignores_the_seed() -> None:
    a, b = generate(12, seed=5, size=16), generate(12, seed=5, size=16)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    cfg = {**TINY, "data_seed": None}
    one, two = captioned_of(load_task(cfg, seed=1)), captioned_of(load_task(cfg, seed=2))
    np.testing.assert_array_equal(one.test_images, two.test_images)
    assert not np.array_equal(one.public_idx, two.public_idx) or not np.array_equal(one.images, two.images)
    # With a fixed data_seed (the default), two run seeds share the same data.
    fixed1, fixed2 = captioned_of(load_task(TINY, seed=1)), captioned_of(load_task(TINY, seed=2))
    np.testing.assert_array_equal(fixed1.images, fixed2.images)
    assert all(np.array_equal(x, y) for x, y in zip(fixed1.client_idx, fixed2.client_idx))


def test_splits_are_disjoint_and_clients_hold_only_their_modality() -> None:
    bundle = load_task(TINY, seed=0)
    data = captioned_of(bundle)
    public, val = set(data.public_idx), set(data.val_idx)
    private = [set(c) for c in data.client_idx]
    assert len(public) == 40 and len(val) == 20 and sum(len(c) for c in private) == 240
    assert not public & val
    every = [public, val, *private]
    assert sum(len(s) for s in every) == len(set().union(*every))
    assert data.client_types == ["image", "image", "text", "text", "image_text", "image_text"]
    image, text, pair = data.client(0), data.client(2), data.client(4)
    assert image.images is not None and image.tokens is None and image.num_classes == 10
    assert text.images is None and text.tokens is not None and text.num_classes == 6
    assert pair.images is not None and pair.tokens is not None
    np.testing.assert_array_equal(text.labels.numpy(), data.attributes[data.client_idx[2], BG])
    pub = data.public()
    assert pub.images.shape == (40, 3, 16, 16) and pub.tokens.shape[0] == 40
    assert len(data.test()) == 40 and bundle.num_clients == 6


def test_dirichlet_skews_each_client_types_labels() -> None:
    cfg = {**TINY, "clients": {"image": 4}, "num_clients": 4, "private_size": 800, "alpha": 0.1}
    skewed = captioned_of(load_task(cfg, seed=0))
    iid = captioned_of(load_task({**cfg, "partition": "iid"}, seed=0))

    def mean_entropy(d) -> float:
        return float(np.mean([label_entropy(d.client(c).labels.numpy(), 10) for c in range(4)]))

    assert mean_entropy(skewed) < mean_entropy(iid) - 0.3


def test_caption_ids_equal_exactly_for_equal_captions() -> None:
    attrs = np.array([[1, 0, 1, 0, 0, -1, -1], [1, 0, 1, 0, 0, -1, -1], [2, 0, 1, 0, 0, -1, -1]])
    ids = caption_ids(attrs)
    assert ids[0] == ids[1] != ids[2]
