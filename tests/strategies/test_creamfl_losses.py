"""CreamFL's math on hand-made tensors: ensemble weights, regularisers, retrieval recall."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from strategies.creamfl.losses import (
    aggregate,
    alignment_r1,
    ensemble_scores,
    ensemble_weights,
    info_nce,
    inter_modal_loss,
    intra_modal_loss,
    recall_at_k,
    retrieval_metrics,
    weight_spread,
)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1)


def test_ensemble_weights_are_a_softmax_over_clients_and_favour_the_aligned_client() -> None:
    torch.manual_seed(0)
    p, d = 6, 8
    global_txt = _unit(torch.randn(p, d))
    aligned = global_txt.clone()                            # client 0: image rep i == global text i
    misaligned = global_txt[torch.roll(torch.arange(p), 1)]  # client 1: item i looks like item i-1
    noisy = _unit(global_txt + 0.8 * torch.randn(p, d))      # client 2: in between
    local = torch.stack([aligned, misaligned, noisy])
    w = ensemble_weights(local, global_txt)
    assert w.shape == (3, p)
    torch.testing.assert_close(w.sum(0), torch.ones(p))
    assert (w >= 0).all()
    assert (w[0] > w[1]).all() and w[0].mean() > w[2].mean() > w[1].mean()
    # Hand check of one weight: s_ki = log-softmax_j <local_k,i, global_j> at j = i.
    s = [torch.log_softmax(local[k, 2] @ global_txt.T, 0)[2] for k in range(3)]
    expected = torch.softmax(torch.stack(s), 0)
    torch.testing.assert_close(w[:, 2], expected)
    torch.testing.assert_close(ensemble_scores(local, global_txt)[:, 2], torch.stack(s))
    # A temperature < 1 sharpens the weights towards the aligned client, > 1 flattens them.
    sharp = ensemble_weights(local, global_txt, temperature=0.1)
    flat = ensemble_weights(local, global_txt, temperature=10.0)
    assert (sharp[0] > w[0]).all() and (flat[0] < w[0]).all()
    assert weight_spread(sharp)["spread"] > weight_spread(w)["spread"] > weight_spread(flat)["spread"]


def test_aggregate_weighted_and_mean() -> None:
    local = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # K=2 clients, P=1 item, D=2
    torch.testing.assert_close(aggregate(local), torch.tensor([[0.5, 0.5]]))
    w = torch.tensor([[0.75], [0.25]])
    torch.testing.assert_close(aggregate(local, w), torch.tensor([[0.75, 0.25]]))
    uniform = weight_spread(torch.full((4, 3), 0.25))
    assert uniform["spread"] == pytest.approx(0.0) and uniform["entropy"] == pytest.approx(1.0)


def test_inter_modal_loss_by_hand() -> None:
    local = torch.tensor([[1.0, 0.0], [0.0, 1.0]])                  # client reps of items 1 and 2
    global_other = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]])  # P = 3 global reps
    index = torch.tensor([1, 2])
    t = 0.5
    # row 0: logits [0, 1, 0.6] / t, target 1; row 1: logits [1, 0, 0.8] / t, target 2
    row0 = -(1 / t) + math.log(math.exp(0) + math.exp(1 / t) + math.exp(0.6 / t))
    row1 = -(0.8 / t) + math.log(math.exp(1 / t) + math.exp(0) + math.exp(0.8 / t))
    got = inter_modal_loss(local, global_other, index, t)
    assert float(got) == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_intra_modal_loss_by_hand() -> None:
    local = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    global_same = torch.tensor([[0.8, 0.6], [0.0, 1.0]])  # positives
    old = torch.tensor([[1.0, 0.0], [1.0, 0.0]])          # negatives: previous-round reps
    t = 0.5
    # row 0: pos 0.8, neg 1.0; row 1: pos 0.8, neg 0.6
    def ce(pos: float, neg: float) -> float:
        return -pos / t + math.log(math.exp(pos / t) + math.exp(neg / t))
    expected = (ce(0.8, 1.0) + ce(0.8, 0.6)) / 2
    assert float(intra_modal_loss(local, global_same, old, t)) == pytest.approx(expected, rel=1e-6)


def test_info_nce_is_symmetric_and_low_for_matched_pairs() -> None:
    torch.manual_seed(1)
    x = _unit(torch.randn(8, 16))
    matched = info_nce(x, x, 0.1)
    shuffled = info_nce(x, x[torch.randperm(8)], 0.1)
    assert float(matched) < float(shuffled)
    y = _unit(torch.randn(8, 16))
    assert float(info_nce(x, y, 0.1)) == pytest.approx(float(info_nce(y, x, 0.1)), rel=1e-6)


def test_recall_identity_embeddings_is_one() -> None:
    emb = torch.eye(20)
    ids = torch.arange(20)
    metrics = retrieval_metrics(emb, emb, ids)
    assert all(metrics[k] == 1.0 for k in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10"))
    assert metrics["rsum"] == pytest.approx(6.0)
    assert alignment_r1(emb, emb) == 1.0


def test_recall_shuffled_embeddings_are_at_chance() -> None:
    gen = torch.Generator().manual_seed(0)
    n, d = 1000, 64
    img = _unit(torch.randn(n, d, generator=gen))
    txt = _unit(torch.randn(n, d, generator=gen))   # unrelated to the images: pure chance
    ids = torch.arange(n)
    metrics = retrieval_metrics(img, txt, ids)
    for k in (1, 5, 10):
        for direction in ("i2t", "t2i"):
            chance = k / n
            assert abs(metrics[f"{direction}_r{k}"] - chance) < 4 * math.sqrt(chance / n) + 1e-3
    # A shuffled pairing: each image's own text sits at a random other item.
    perm = torch.randperm(n, generator=gen)
    shuffled = retrieval_metrics(img, img[perm], ids)
    assert shuffled["i2t_r1"] < 0.01 and shuffled["t2i_r10"] < 0.03


def test_recall_counts_any_item_with_the_same_caption_as_a_hit() -> None:
    # Items 0 and 1 share a caption; image 0 retrieves text 1 first: a hit at rank 1.
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert recall_at_k(img, txt, torch.tensor([5, 5]), torch.tensor([5, 5]), (1,))[1] == 1.0
    assert recall_at_k(img, txt, torch.tensor([5, 6]), torch.tensor([5, 6]), (1,))[1] == 0.0


def test_relational_kd_is_zero_for_rotated_clients_and_positive_otherwise() -> None:
    from strategies.creamfl.losses import relational_kd_loss

    torch.manual_seed(0)
    server = _unit(torch.randn(6, 8))
    q1, _ = torch.linalg.qr(torch.randn(8, 8))
    q2, _ = torch.linalg.qr(torch.randn(8, 8))
    rotated = torch.stack([server @ q1, server @ q2])  # same geometry in other coordinates
    assert float(relational_kd_loss(server, rotated, 0.1)) == pytest.approx(0.0, abs=1e-6)
    weights = torch.softmax(torch.randn(2, 6), 0)
    assert float(relational_kd_loss(server, rotated, 0.1, weights)) == pytest.approx(0.0, abs=1e-6)
    unrelated = _unit(torch.randn(2, 6, 8))
    assert float(relational_kd_loss(server, unrelated, 0.1)) > 0.1
    # An MSE to the mean of rotated reps is large although each client agrees with the server.
    assert float(F.mse_loss(server, aggregate(rotated))) > 0.01
