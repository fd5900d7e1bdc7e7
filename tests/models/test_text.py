"""Text encoders (SDPA transformer, embedding bag), the tokenizer and the image-text towers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.multimodal import ImageTextModel, image_spec, text_spec
from models.text import BagTextEncoder, SelfAttention, TransformerTextEncoder, WordTokenizer

VOCAB = ["<pad>", "<unk>", "a", "red", "blue", "digit", "one", "two"]
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_tokenizer_round_trip_padding_and_unknown_words() -> None:
    tok = WordTokenizer(VOCAB, max_len=6)
    ids = tok.encode(["a red digit one", "A BLUE zebra"])
    assert ids.shape == (2, 6) and ids.dtype == torch.long
    assert ids[0].tolist() == [2, 3, 5, 6, 0, 0] and ids[1].tolist()[:3] == [2, 4, 1]
    assert tok.decode(ids)[0] == "a red digit one"


def test_transformer_output_ignores_padding() -> None:
    torch.manual_seed(0)
    enc = TransformerTextEncoder(len(VOCAB), dim=16, depth=2, heads=2, max_len=8).eval()
    short = torch.tensor([[2, 3, 5, 6, 0, 0]])
    long = torch.tensor([[2, 3, 5, 6, 0, 0, 0, 0]])
    torch.testing.assert_close(enc(short), enc(long), atol=1e-5, rtol=1e-5)
    assert enc(torch.zeros(1, 4, dtype=torch.long)).isfinite().all()  # an empty caption
    out = enc(torch.tensor([[2, 3, 5, 6], [2, 4, 5, 7]]))
    assert out.shape == (2, 16) and not torch.allclose(out[0], out[1])


def test_sdpa_attention_equals_the_explicit_softmax() -> None:
    torch.manual_seed(0)
    attn = SelfAttention(8, 2).eval()
    x = torch.randn(2, 5, 8)
    keep = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    q, k, v = attn.qkv(x).view(2, 5, 3, 2, 4).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-1, -2) / 2.0
    scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
    manual = attn.out((scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 5, 8))
    torch.testing.assert_close(attn(x, keep), manual, atol=1e-5, rtol=1e-5)


def test_bag_encoder_ignores_padding() -> None:
    enc = BagTextEncoder(len(VOCAB), dim=8, hidden=12)
    a = enc(torch.tensor([[2, 3, 0, 0]]))
    b = enc(torch.tensor([[2, 3, 0, 0, 0, 0, 0]]))
    torch.testing.assert_close(a, b)
    assert a.shape == (1, 12)


@pytest.mark.parametrize("image, text", [
    ({"kind": "resnet", "widths": [8, 16]}, {"kind": "transformer", "dim": 16, "depth": 1, "heads": 2}),
    ({"kind": "cnn", "channels": [8], "fc": 16}, {"kind": "bag", "dim": 8, "hidden": 16}),
])
def test_image_text_model_gives_unit_vectors_in_the_shared_space(image: dict, text: dict) -> None:
    model = ImageTextModel(embed_dim=12, input_shape=(3, 16, 16), vocab_size=len(VOCAB),
                           image=image_spec(image), text=text_spec(text), num_classes=4)
    out = model(torch.randn(3, 3, 16, 16), torch.tensor([[2, 3, 5, 0]] * 3))
    for key in ("img", "txt"):
        assert out[key].shape == (3, 12)
        torch.testing.assert_close(out[key].norm(dim=-1), torch.ones(3))
    logits = model.classify(out["img"])
    assert logits.shape == (3, 4) and logits.abs().max() <= model.class_scale + 1e-4
    assert model.modalities == ("img", "txt")
    only_text = ImageTextModel(embed_dim=12, input_shape=(3, 16, 16), vocab_size=len(VOCAB), text=text_spec(text))
    assert only_text.modalities == ("txt",) and only_text.image is None


def test_bad_specs_name_the_key() -> None:
    with pytest.raises(ValueError, match="kind"):
        image_spec({"kind": "vit"})
    with pytest.raises(ValueError, match="valid keys"):
        text_spec({"kind": "bag", "layers": 3})


@gpu
@pytest.mark.gpu
def test_cuda_bf16_sdpa_path_matches_fp32() -> None:
    from models.accel import autocast, prepare_model

    torch.manual_seed(0)
    dev = torch.device("cuda")
    model = ImageTextModel(embed_dim=32, input_shape=(3, 32, 32), vocab_size=len(VOCAB),
                           image=image_spec({"kind": "resnet"}), text=text_spec({"kind": "transformer"}))
    model = prepare_model(model, dev).eval()
    images = torch.randn(8, 3, 32, 32, device=dev).contiguous(memory_format=torch.channels_last)
    tokens = torch.randint(2, len(VOCAB), (8, 10), device=dev)
    with torch.no_grad():
        ref = model(images, tokens)
        with autocast(dev):
            fast = model(images, tokens)
    for key in ("img", "txt"):
        assert fast[key].dtype == torch.float32  # encoders normalise in fp32
        assert F.cosine_similarity(fast[key], ref[key]).min() > 0.98
