"""CreamFL's halves: what clients send, what the server rejects, resume state, and whole rounds.

Most tests run corolla's ServerApp and ClientApp code in-process through bench.creamfl's
InlineGrid (no Ray), on a tiny captioned task; one test is a real `corolla run` simulation.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict

from bench.inline import run_inline
from conf.compose import compose
from strategies.base import ClientEnv, ServerEnv
from conf.errors import ConfigError
from strategies.creamfl import CreamFLClient, CreamFLConfig, CreamFLServer, build_server_model, encode_split
from tests.simrun import read_metrics, read_summary, run_corolla, run_dir_of

TINY = ["task=captioned", "strategy=creamfl", "task.num_clients=3",
        "task.clients={image:1,text:1,image_text:1}", "task.public_size=40", "task.private_size=120",
        "task.val_size=20", "task.test_size=40", "task.image_size=16",
        "strategy.embed_dim=16", "strategy.server_image.widths=[8,16]", "strategy.server_text.dim=16",
        "strategy.server_text.heads=2", "strategy.fraction_train=1.0", "device=cpu",
        "progress=false", "plots=false"]
RETRIEVAL_KEYS = {"i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum"}


@pytest.fixture(scope="module")
def cfg() -> dict:
    return compose(TINY)


def _server(cfg: dict, tmp_path) -> CreamFLServer:
    from data import load_task
    from strategies.registry import build_server_strategy

    task = load_task(cfg["task"], seed=int(cfg["seed"]))
    server = build_server_strategy(cfg["strategy"])
    server.setup(ServerEnv(cfg=cfg, task=task, build_model=lambda: None, run_dir=tmp_path, rounds_per_task=1))
    return server


def _train_message(server: CreamFLServer) -> Message:
    reps = {k: encode_split(server.model, server.public, k, server.device) for k in ("img", "txt")}
    arrays = ArrayRecord(array_dict={k: Array(v.numpy()) for k, v in reps.items()})
    return Message(RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": 1})}),
                   dst_node_id=1, message_type="train")


@pytest.mark.parametrize("partition, keys", [(0, {"img"}), (1, {"txt"}), (2, {"img", "txt"})])
def test_each_client_type_sends_only_its_modalities(cfg: dict, tmp_path, partition: int, keys: set) -> None:
    server = _server(cfg, tmp_path)
    message = _train_message(server)
    message.metadata.__dict__["_message_id"] = "m1"
    context = Context(run_id=1, node_id=1, node_config={"partition-id": partition, "num-partitions": 3},
                      state=RecordDict(), run_config={})
    reply = CreamFLClient(ClientEnv(cfg, context)).train(message)
    reps = reply.content["arrays"]
    assert set(reps) == keys
    for key in keys:
        assert reps[key].shape == (40, 16)
        np.testing.assert_allclose(np.linalg.norm(reps[key].numpy(), axis=1), 1.0, rtol=1e-4)
    assert server.validate_train_reply(reply.content, ArrayRecord()) is None
    assert "creamfl.model" in context.state  # the next round's intra-modal negative
    # The next round starts from the kept model, not from a fresh one.
    again = CreamFLClient(ClientEnv(cfg, context)).train(message)
    assert not np.allclose(again.content["arrays"][sorted(keys)[0]].numpy(), reps[sorted(keys)[0]].numpy())


def _reply(arrays: dict[str, np.ndarray], num_examples: int = 10) -> RecordDict:
    return RecordDict({"arrays": ArrayRecord(array_dict={k: Array(v) for k, v in arrays.items()}),
                       "metrics": MetricRecord({"num-examples": num_examples})})


def test_malformed_replies_are_rejected_with_a_reason(cfg: dict, tmp_path) -> None:
    server = _server(cfg, tmp_path)
    good = np.ones((40, 16), np.float32) / 4
    assert server.validate_train_reply(_reply({"img": good}), ArrayRecord()) is None
    assert server.validate_train_reply(_reply({"img": good, "txt": good.astype(np.float16)}), ArrayRecord()) is None
    cases = {
        "shape": _reply({"img": good[:39]}),
        "embed_dim": _reply({"txt": np.ones((40, 8), np.float32)}),
        "NaN": _reply({"img": np.full((40, 16), np.nan, np.float32)}),
        "subset": _reply({"audio": good}),
        "float": _reply({"img": np.ones((40, 16), np.int64)}),
        "num-examples": _reply({"img": good}, num_examples=0),
    }
    for why, content in cases.items():
        reason = server.validate_train_reply(content, ArrayRecord())
        assert reason and (why in reason or why == "float" and "dtype" in reason), (why, reason)


def test_a_bad_reply_is_left_out_and_the_round_goes_on(tmp_path, monkeypatch) -> None:
    original = CreamFLClient.train

    def wrong_size_for_partition_1(self, message):  # noqa: ANN001
        reply = original(self, message)
        if self.env.partition_id == 1:
            reps = reply.content["arrays"]
            bad = ArrayRecord(array_dict={k: Array(v.numpy()[:-1]) for k, v in reps.items()})
            reply.content["arrays"] = bad
        return reply

    monkeypatch.setattr(CreamFLClient, "train", wrong_size_for_partition_1)
    summary, metrics, run_dir = run_inline([*TINY, "num_rounds=2"], tmp_path / "run")
    assert [m["num_rejected"] for m in metrics] == [1, 1]
    assert all(m["num_replies"] == 2 for m in metrics)
    assert all(m["num_txt_reps"] == 1.0 and m["num_img_reps"] == 2.0 for m in metrics)  # text client left out
    assert set(summary["retrieval"]) == RETRIEVAL_KEYS


def test_rounds_record_retrieval_alignment_weights_and_bytes(tmp_path) -> None:
    summary, metrics, run_dir = run_inline([*TINY, "num_rounds=2"], tmp_path / "run")
    assert len(metrics) == 2
    for m in metrics:
        assert RETRIEVAL_KEYS <= set(m) and {f"val_{k}" for k in RETRIEVAL_KEYS} <= set(m)
        assert m["accuracy"] is None and m["num_replies"] == 3
        for key in ("alignment_img", "alignment_txt", "weight_spread_img", "global_alignment", "distill_loss"):
            assert key in m
        # Uplink: image client 40x16, text client 40x16, image-text client both, float32.
        assert m["uplink_bytes"] >= 4 * 40 * 16 * 4
    assert set(summary["retrieval"]) == RETRIEVAL_KEYS
    assert all(0.0 <= summary["retrieval"][k] <= 1.0 for k in RETRIEVAL_KEYS - {"rsum"})
    assert summary["retrieval"]["rsum"] == pytest.approx(sum(summary["retrieval"][k] for k in RETRIEVAL_KEYS - {"rsum"}))


def test_public_only_and_centralised_baselines_send_nothing(tmp_path) -> None:
    _, metrics, _ = run_inline([*TINY, "num_rounds=1", "strategy.fraction_train=0"], tmp_path / "a")
    assert metrics[0]["uplink_bytes"] == 0 and "rsum" in metrics[0]
    _, metrics, _ = run_inline([*TINY, "num_rounds=1", "strategy.fraction_train=0",
                                "strategy.server_data=all"], tmp_path / "b")
    assert metrics[0]["uplink_bytes"] == 0 and "rsum" in metrics[0]


def test_state_dict_round_trips_model_optimizer_and_round(cfg: dict, tmp_path) -> None:
    server = _server(cfg, tmp_path)
    server.public_step(1)
    server.last_round = 1
    state = server.state_dict()
    fresh = _server(cfg, tmp_path)
    fresh.load_state_dict(state)
    for (k, a), (_, b) in zip(server.model.state_dict().items(), fresh.model.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)
    assert fresh.last_round == 1 and fresh.optimizer.state_dict()["state"]
    # Resuming continues exactly: one more public step gives the same weights.
    server.public_step(2)
    fresh.public_step(2)
    for a, b in zip(server.model.parameters(), fresh.model.parameters()):
        torch.testing.assert_close(a, b)


def test_bad_strategy_values_fail_before_any_work() -> None:
    from strategies.registry import check_strategy_config

    section = compose(["task=captioned", "strategy=creamfl"])["strategy"]
    with pytest.raises(ConfigError, match="ensemble") as err:
        check_strategy_config({**section, "ensemble": "median"})
    assert err.value.key == "strategy.ensemble"
    with pytest.raises(ValueError, match="kd_gate"):
        CreamFLConfig.parse({**section, "kd_gate": "sometimes"})


def test_server_model_is_larger_than_every_client_model(cfg: dict) -> None:
    from data import load_task
    from data.captioned import captioned_of
    from models.multimodal import num_parameters
    from strategies.creamfl import build_client_model

    full = compose(["task=captioned", "strategy=creamfl"])
    config = CreamFLConfig.parse(full["strategy"])
    data = captioned_of(load_task(full["task"], seed=0))
    server = num_parameters(build_server_model(config, data))
    for modality in ("image", "text", "image_text"):
        assert num_parameters(build_client_model(config, data, modality, 10)) < server


def test_corolla_run_simulation_writes_retrieval(tmp_path) -> None:
    """A real `corolla run` (Flower's simulation engine, Ray on loopback), two rounds."""
    result = run_corolla(["run", *TINY, "num_rounds=2", f"out_dir={tmp_path}"], timeout=600)
    run_dir = run_dir_of(result)
    summary = read_summary(run_dir)
    assert summary["strategy"] == "creamfl" and summary["rounds"] == 2
    assert set(summary["retrieval"]) == RETRIEVAL_KEYS
    metrics = read_metrics(run_dir)
    assert [m["round"] for m in metrics] == [1, 2]
    assert all("rsum" in m and m["uplink_bytes"] > 0 and m["num_failures"] == 0 for m in metrics)
    assert json.loads((run_dir / "summary.json").read_text())["communication"]["uplink_bytes"] > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_server_and_client_steps_on_cuda(tmp_path) -> None:
    """The CUDA path end to end: bf16 autocast, fused AdamW, channels-last, SDPA attention."""
    summary, metrics, _ = run_inline([*TINY, "num_rounds=1", "device=cuda"], tmp_path / "run")
    assert set(summary["retrieval"]) == RETRIEVAL_KEYS and metrics[0]["num_replies"] == 3
    from bench.creamfl import server_step_timing

    timing = server_step_timing(TINY, steps=5)
    assert timing["cuda_path_ms"] > 0 and timing["fp32_eager_ms"] > 0


@pytest.mark.parametrize("name, key, value", [("creamfl-gated", "kd_gate", "item"),
                                              ("creamfl-joint", "distill_mode", "joint"),
                                              ("creamfl-joint-relational", "kd_loss", "relational")])
def test_variant_configs_compose_on_the_published_defaults(name: str, key: str, value: str) -> None:
    from strategies.registry import check_strategy_config

    cfg = compose(["task=captioned", f"strategy={name}"])
    assert cfg["strategy"]["name"] == "creamfl" and cfg["strategy"][key] == value
    assert cfg["strategy"]["kd_weight"] == compose(["strategy=creamfl"])["strategy"]["kd_weight"]
    check_strategy_config(cfg["strategy"])


def _weights(run_dir) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)["strategy"]["model"]


def test_zero_weight_distillation_leaves_the_server_as_public_only(tmp_path) -> None:
    """kd_weight 0 after two federated rounds: the server's weights are training alone's, exactly.
    A vanishing kd_weight (the distillation steps are taken) moves them by a vanishing amount;
    when the distillation shared the public steps' AdamW, it replayed Adam's first moment instead,
    a full-size step whatever the weight."""
    _, _, alone = run_inline([*TINY, "num_rounds=2", "strategy.fraction_train=0"], tmp_path / "alone")
    _, metrics, zero = run_inline([*TINY, "num_rounds=2", "strategy.kd_weight=0"], tmp_path / "zero")
    assert all(m["num_replies"] == 3 for m in metrics)
    alone_w, zero_w = _weights(alone), _weights(zero)
    assert alone_w.keys() == zero_w.keys()
    for key in alone_w:
        assert torch.equal(alone_w[key], zero_w[key]), key
    _, metrics, tiny = run_inline([*TINY, "num_rounds=2", "strategy.kd_weight=1e-9"], tmp_path / "tiny")
    assert all(m["distill_loss"] > 0 for m in metrics)  # the distillation steps were taken
    # Measured as the whole model's relative move, not per tensor: AdamW's later public steps divide
    # by sqrt(v), and for the attention key biases (whose gradient is zero up to float noise: softmax
    # ignores a shift shared by all keys) v is noise too, so 1e-9 there can become ~1e-5. The replayed
    # first moment moved every weight by a full AdamW step (lr 1e-3 on weights of RMS ~0.1: relative ~1e-2).
    tiny_w = _weights(tiny)
    moved = torch.sqrt(sum(((tiny_w[k] - alone_w[k]).double() ** 2).sum() for k in alone_w))
    size = torch.sqrt(sum((alone_w[k].double() ** 2).sum() for k in alone_w))
    assert float(moved / size) < 1e-6, float(moved / size)


def _targets(server: CreamFLServer, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.nn.functional.normalize(torch.randn(len(server.public), 16, generator=gen), dim=-1)
            for k in ("img", "txt")}


def test_distillation_has_its_own_stateless_optimizer_and_kd_weight_scales_its_step(cfg: dict, tmp_path) -> None:
    server = _server(cfg, tmp_path)
    server.public_step(1)
    adam = {k: v.clone() for k, v in server.optimizer.state_dict()["state"][0].items()}
    start = {k: v.clone() for k, v in server.model.state_dict().items()}
    moves = {}
    for weight in (0.1, 0.2):
        server.model.load_state_dict(start)
        server.training.config = dataclasses.replace(server.config, kd_weight=weight)
        assert server.training.distill(1, _targets(server)) > 0
        moves[weight] = {k: server.model.state_dict()[k] - start[k] for k in start}
    # One step (40 public items, batch 64): plain SGD, so twice the weight moves twice as far
    # (up to float32 rounding of weight + move).
    for key, move in moves[0.2].items():
        torch.testing.assert_close(move, 2 * moves[0.1][key], atol=5e-7, rtol=1e-3, msg=key)  # float32 ulps
    assert max(float(move.abs().max()) for move in moves[0.1].values()) > 1e-4  # well above the tolerance
    # The public steps' AdamW state is untouched; batch-norm statistics are not the distillation's.
    for key, value in server.optimizer.state_dict()["state"][0].items():
        torch.testing.assert_close(value, adam[key])
    buffers = dict(server.model.named_buffers())
    assert buffers and all(torch.equal(buffers[k], start[k]) for k in buffers)


def test_the_distillation_probe_measures_what_the_steps_cost_without_changing_the_run(tmp_path) -> None:
    """distill_probe records the validation rsum the separate distillation steps gained or cost; the
    run is otherwise the same, weight for weight. Every round records where the targets sit."""
    _, plain, plain_dir = run_inline([*TINY, "num_rounds=2"], tmp_path / "plain")
    _, probed, probed_dir = run_inline([*TINY, "num_rounds=2", "strategy.distill_probe=true"], tmp_path / "probed")
    assert all("distill_val_rsum_delta" not in m for m in plain)
    assert all(-6.0 <= m["distill_val_rsum_delta"] <= 6.0 for m in probed)
    a, b = _weights(plain_dir), _weights(probed_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    for m in plain:
        for key in ("img", "txt"):
            assert 0.0 < m[f"kd_target_norm_{key}"] <= 1.0 + 1e-6      # a mean of unit vectors
            assert -1.0 <= m[f"kd_target_cos_{key}"] <= 1.0


def test_the_readmes_probe_command_is_a_valid_run_at_the_benchs_pixel_budget() -> None:
    """The README's distillation-probe command composes (as written) to the bench's pixel setting."""
    import re
    import shlex

    from bench import creamfl as bench
    from server.config_check import check_config
    from tests.simrun import REPO

    text = (REPO / "README.md").read_text().replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if "corolla run task=captioned" in ln and "distill_probe=true" in ln)
    args = shlex.split(line.strip())[2:]
    cfg = compose(args)
    check_config(cfg)
    budget = json.loads((REPO / "bench" / "results" / "creamfl.json").read_text())["setting"]["budget"]["captioned/pixels"]
    for key in ("server_epochs", "server_lr", "fraction_train", "local_epochs", "client_lr"):
        assert cfg["strategy"][key] == budget[key], key
    assert cfg["strategy"]["distill_probe"] is True and cfg["num_rounds"] == bench.FULL["rounds"]
    for override in bench.task_overrides(False)["captioned/pixels"]:
        assert override in args, override
    assert not re.search(r"\bseed=[^0]", line)
