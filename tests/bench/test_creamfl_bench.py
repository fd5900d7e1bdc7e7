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


def test_the_client_budget_is_tuned_on_creamfl_and_given_to_every_federated_row(monkeypatch) -> None:
    import bench.creamfl as bench

    calls: list[list[tuple]] = []

    def fake_run_many(fn, jobs, **_):
        calls.append(jobs)
        out = {}
        for key, overrides in jobs:
            ov = dict(o.split("=", 1) for o in overrides if o.startswith("strategy."))
            # validation prefers 3 server epochs, every client each round, 3 local epochs, client lr 0.001
            val = (-abs(int(ov.get("strategy.server_epochs", 0)) - 3) - abs(int(ov.get("strategy.local_epochs", 1)) - 3)
                   + float(ov.get("strategy.fraction_train", 0.5)) - float(ov.get("strategy.client_lr", 0.001)))
            out[key] = {"rsum": 1.0, "i2t_r1": 0.1, "t2i_r1": 0.1, "val_rsum": val, "s_per_round": 1.0,
                        "uplink_per_reply": 0.0, "series": {k: [None] for k in bench.PER_ROUND}}
        return out

    monkeypatch.setattr(bench, "run_many", fake_run_many)
    monkeypatch.setattr(bench, "_model_bytes", lambda overrides: {"client_mean": 1})
    report = bench.run(quick=True, settings=["captioned/frozen"], workers=1)
    budget = report.setting["budget"]["captioned/frozen"]
    assert (budget["server_epochs"], budget["fraction_train"], budget["local_epochs"], budget["client_lr"]) \
        == (3, 1.0, 3, 0.001)
    assert "creamfl" in report.setting["budget"]["how"] and "local_epochs" in report.setting["budget"]["how"]
    server_tuning, client_tuning, final = calls
    assert all("strategy.fraction_train=0" in ov for _, ov in server_tuning)
    # the client grid runs the published method (no variant overrides) at the chosen server budget
    assert all("strategy.server_epochs=3" in ov and not any(o.startswith("strategy.distill_mode") for o in ov)
               for _, ov in client_tuning)
    assert len(client_tuning) == 8 * 2 and len({k[1:4] for k, _ in client_tuning}) == 8
    for (_, name, _), ov in final:
        client = {"strategy.fraction_train=1.0", "strategy.local_epochs=3", "strategy.client_lr=0.001"}
        if name in ("public-only", "centralised"):  # no clients: no client budget, still no clients sampled
            assert not client & set(ov) and "strategy.fraction_train=0" in ov, name
        else:
            assert client <= set(ov) and "strategy.server_epochs=3" in ov, name


def test_budget_ties_take_the_smaller_values_first_coordinate_first() -> None:
    assert choose_budget({(1.0, 1, 0.001): [2.0], (0.5, 3, 0.003): [2.0]}) == (0.5, 3, 0.003)
    assert choose_budget({(1.0, 1, 0.001): [2.0], (0.5, 3, 0.003): [1.9]}) == (1.0, 1, 0.001)
