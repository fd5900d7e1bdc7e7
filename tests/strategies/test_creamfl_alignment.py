"""CreamFL's client alignment on held-out public pairs: the measure, the selection, the weights,
the cross-modal distillation loss, and what a round with them records and distils."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bench.inline import run_inline
from conf.compose import compose
from conf.errors import ConfigError
from strategies.creamfl.alignment import alignment_weights, client_alignment, held_out_items, select_clients
from strategies.creamfl.losses import crossmodal_kd_loss
from strategies.registry import check_strategy_config
from tests.strategies.test_creamfl import TINY


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1)


def test_held_out_items_are_a_fixed_fraction_never_all_and_none_at_zero() -> None:
    mask = held_out_items(50, 0.2, torch.Generator().manual_seed(0))
    assert mask.dtype == torch.bool and int(mask.sum()) == 10
    assert torch.equal(mask, held_out_items(50, 0.2, torch.Generator().manual_seed(0)))
    assert not torch.equal(mask, held_out_items(50, 0.2, torch.Generator().manual_seed(1)))
    assert int(held_out_items(2, 0.5, torch.Generator()).sum()) == 1
    assert not held_out_items(50, 0.0, torch.Generator()).any()


def test_an_aligned_client_scores_one_a_random_one_near_chance_on_held_out_items_only() -> None:
    torch.manual_seed(0)
    other = _unit(torch.randn(40, 8))
    ids = torch.arange(40)
    items = torch.zeros(40, dtype=torch.bool)
    items[:20] = True
    aligned = other.clone()
    aligned[20:] = _unit(torch.randn(20, 8))  # wrong outside the held-out items: not measured
    random = _unit(torch.randn(40, 8))
    align = client_alignment(torch.stack([aligned, random]), other, ids, items)
    assert align[0] == pytest.approx(1.0) and align[1] < 0.3
    assert torch.equal(select_clients(align, 0.5), torch.tensor([True, False]))


def test_alignment_weights_are_proportional_and_none_when_nobody_aligns() -> None:
    w = alignment_weights(torch.tensor([0.3, 0.1, 0.0]), 5)
    assert w is not None and w.shape == (3, 5)
    torch.testing.assert_close(w[:, 0], torch.tensor([0.75, 0.25, 0.0]))
    assert torch.allclose(w.sum(0), torch.ones(5))
    assert alignment_weights(torch.zeros(2), 5) is None


def test_crossmodal_kd_is_zero_when_the_server_matches_the_clients_and_positive_otherwise() -> None:
    torch.manual_seed(0)
    img, txt = _unit(torch.randn(6, 8)), _unit(torch.randn(6, 8))
    same = crossmodal_kd_loss(img, txt, img.unsqueeze(0), txt.unsqueeze(0), 0.1)
    assert float(same) == pytest.approx(0.0, abs=1e-6)
    # A client rotated against the server carries the same image-text geometry: still zero.
    q, _ = torch.linalg.qr(torch.randn(8, 8))
    rotated = crossmodal_kd_loss(img, txt, (img @ q).unsqueeze(0), (txt @ q).unsqueeze(0), 0.1)
    assert float(rotated) == pytest.approx(0.0, abs=1e-5)
    other = crossmodal_kd_loss(img, txt, _unit(torch.randn(1, 6, 8)), _unit(torch.randn(1, 6, 8)), 0.1)
    assert float(other) > 0.1


@pytest.mark.parametrize("key", ["kd_clients=aligned", "kd_client_weights=alignment"])
def test_alignment_choices_without_held_out_pairs_are_refused_naming_the_fix(key: str) -> None:
    section = compose(["task=captioned", "strategy=creamfl", f"strategy.{key}"])["strategy"]
    with pytest.raises(ConfigError, match="align_holdout=0.2") as err:
        check_strategy_config(section)
    assert err.value.key == f"strategy.{key.split('=')[0]}"


def test_a_round_records_alignment_per_client_type_and_never_distils_held_out_items(tmp_path) -> None:
    run = [*TINY, "num_rounds=2", "strategy.distill_mode=joint", "strategy.kd_loss=relational",
           "strategy.align_holdout=0.25", "strategy.kd_clients=aligned", "strategy.align_min=0"]
    _, metrics, _ = run_inline(run, tmp_path / "run")
    for m in metrics:
        for key in ("align_image_img", "align_text_txt", "align_image_text_img", "align_image_text_txt",
                    "align_server_img", "align_server_txt"):
            assert 0.0 <= m[key] <= 1.0, key
        assert m["kd_clients_kept_img"] == 1.0  # align_min 0 keeps every client


def test_held_out_items_are_not_distillation_targets(tmp_path) -> None:
    from tests.strategies.test_creamfl import _server

    cfg = compose([*TINY, "strategy.align_holdout=0.5", "strategy.kd_loss=mse"])
    server = _server(cfg, tmp_path)
    held = server.held
    assert int(held.sum()) == 20
    z = {"img": _unit(torch.randn(40, 16)).requires_grad_(), "txt": _unit(torch.randn(40, 16)).requires_grad_()}
    targets = {"img": _unit(torch.randn(40, 16)), "txt": _unit(torch.randn(40, 16)), "distil": ~held}
    loss = server.training.kd_loss(z, torch.arange(40), targets)
    loss.backward()
    assert z["img"].grad is not None and float(z["img"].grad[held].abs().max()) == 0.0
    assert float(z["img"].grad[~held].abs().max()) > 0


def test_crossmodal_distils_only_image_text_clients(tmp_path) -> None:
    run = [*TINY, "num_rounds=2", "strategy.distill_mode=joint", "strategy.kd_loss=crossmodal"]
    _, metrics, _ = run_inline(run, tmp_path / "run")
    assert all(m["kd_crossmodal_clients"] == 1.0 for m in metrics)  # TINY has one image-text client
