"""bench creamfl's choices: the budget and the best candidate come from validation, the settings
are the documented ones, and the private4x setting gives image-text clients 4 x the public pairs."""

from __future__ import annotations

from bench.creamfl import CANDIDATES, best_candidate, choose_budget, private4x_size, task_overrides
from conf.compose import compose
from data import load_task
from data.captioned import captioned_of


def test_the_budget_is_the_best_mean_validation_rsum_and_ties_take_fewer_epochs() -> None:
    val = {(1, 0.001): [1.0, 1.2], (3, 0.001): [2.0, 2.2], (5, 0.003): [2.2, 1.8]}
    assert choose_budget(val) == (3, 0.001)
    assert choose_budget({(5, 0.001): [2.0], (3, 0.003): [2.0], (3, 0.001): [2.0]}) == (3, 0.001)


def test_the_best_candidate_is_chosen_on_validation_only() -> None:
    names = list(CANDIDATES)
    val = {names[0]: [5.0, 5.2], names[1]: [5.3, 5.3], names[2]: [5.3, 5.3]}
    assert best_candidate(val) == names[1]  # a tie goes to the earlier candidate


def test_settings_are_pixels_frozen_and_frozen_private4x() -> None:
    quick = task_overrides(True)
    assert list(quick) == ["captioned/pixels", "captioned/frozen", "captioned/frozen-private4x"]
    assert not any("features" in o for o in quick["captioned/pixels"])
    for name in ("captioned/frozen", "captioned/frozen-private4x"):
        assert {"task.image_features=effnet-lite0", "task.text_features=minilm"} <= set(quick[name])


def test_private4x_gives_the_image_text_clients_four_times_the_public_pairs() -> None:
    assert private4x_size(500, 4) == 6000
    overrides = [o for o in task_overrides(True)["captioned/pixels"] if "private_size" not in o]
    cfg = compose(["task=captioned", *overrides, f"task.private_size={private4x_size(300, 2)}"])
    data = captioned_of(load_task(cfg["task"], seed=0))
    held = sum(len(idx) for idx, kind in zip(data.client_idx, data.client_types) if kind == "image_text")
    assert held == 4 * len(data.public_idx) == 1200
