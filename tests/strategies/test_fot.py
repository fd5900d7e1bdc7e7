"""FOT: projected aggregation, subspace extraction from sketches, im2col inputs, resume, failures, bias freezing."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict
from torch import nn

from data.bundle import Split
from models import build_model
from strategies.base import ServerEnv, derive_seed
from conf.errors import ConfigError
from strategies.fot import FotClient, FotServer
from strategies.fot_layers import client_sketches, find_projected_layers, layer_columns
from strategies.registry import build_server_strategy, check_strategy_config, parse_strategy_config
from strategies.fot_subspace import (
    expand_basis, gaussian_rows, new_directions, principal_angle_cosines, project_out, sketch_columns, threshold,
)

CNN = {"name": "cnn", "channels": [4], "fc": 8, "pool": 2, "bias": True}
LINEAR = {"name": "linear", "bias": False}


def orthonormal(d: int, k: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(d, k, generator=g, dtype=torch.float64))[0]


def make_server(model_cfg: dict, input_shape: tuple[int, ...], *, rounds_per_task: int = 1,
                num_tasks: int = 3, scenario: str = "domain-incremental", **kwargs: Any) -> FotServer:
    task = SimpleNamespace(num_clients=4, num_tasks=num_tasks, scenario=scenario)

    def new_model() -> nn.Module:
        torch.manual_seed(0)
        return build_model(model_cfg, input_shape, 3)

    env = ServerEnv(cfg={"engine": {"timeout_s": 5}}, task=task, build_model=new_model,  # type: ignore[arg-type]
                    run_dir=Path("."), rounds_per_task=rounds_per_task)
    server = FotServer(config=parse_strategy_config({"name": "fot", "fraction_train": 1.0, **kwargs}))
    server.setup(env)
    return server


class FakeGrid:
    """Nodes 1..n; sketch requests are answered by `answer(message)` (None: no reply)."""

    def __init__(self, nodes: list[int], answer: Any = None) -> None:
        self.nodes, self.answer, self.sent = nodes, answer, []

    def get_node_ids(self) -> list[int]:
        return list(self.nodes)

    def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> list[Message]:
        messages = list(messages)
        self.sent += messages
        return [r for r in (self.answer(m) for m in messages) if r is not None]


class FakeClientEnv:
    """What FotClient needs of a ClientEnv: data per task, a model factory, seeds, config."""

    def __init__(self, model_cfg: dict, input_shape: tuple[int, ...], data: list[Split], partition_id: int = 0,
                 train: dict | None = None) -> None:
        self.model_cfg, self.input_shape, self.partition_id = model_cfg, input_shape, partition_id
        self.task = SimpleNamespace(client_train=lambda pid, tid: data[tid])
        self.device = torch.device("cpu")
        self.cfg = {"train": train or {"epochs": 1, "batch_size": 8, "lr": 0.1, "momentum": 0.9}}

    def build_model(self) -> nn.Module:
        return build_model(self.model_cfg, self.input_shape, 3)

    def model_to_overwrite(self) -> nn.Module:
        return self.build_model()

    def seed_for(self, server_round: int, purpose: str = "train") -> int:
        return derive_seed(0, server_round, self.partition_id, purpose)

    def class_mask(self, task_id: int) -> None:
        return None


def weights_reply(to: Message, arrays: dict[str, np.ndarray], n: int) -> Message:
    content = RecordDict({"arrays": ArrayRecord({k: Array(np.asarray(v)) for k, v in arrays.items()}),
                          "metrics": MetricRecord({"num-examples": n})})
    return Message(content, reply_to=to)


def global_arrays(server: FotServer) -> ArrayRecord:
    return ArrayRecord(server.env.build_model().state_dict())


# ---- projection ---------------------------------------------------------------------------------

@pytest.mark.parametrize("server_lr", [1.0, 0.5])
def test_projected_update_is_orthogonal_to_the_basis_and_the_rest_is_fedavg(server_lr: float) -> None:
    server = make_server(CNN, (1, 8, 8), server_lr=server_lr, bias_mode="free")
    assert set(server.layer_dims) == {"body.0.weight", "body.5.weight", "head.weight"}
    assert server.layer_dims["body.0.weight"] == 9  # Conv2d: C_in·kh·kw
    server.bases = {"body.0.weight": orthonormal(9, 3, 1), "head.weight": orthonormal(8, 2, 2)}
    arrays = global_arrays(server)
    instructions = list(server.configure_train(1, arrays, ConfigRecord(), FakeGrid([1, 2, 3])))
    g = {k: v.numpy().astype(np.float64) for k, v in arrays.items()}
    rng = np.random.default_rng(0)
    sizes = [10, 30, 60]
    locals_ = [{k: (v + rng.normal(0, 0.1, v.shape)).astype(np.float32) for k, v in g.items()} for _ in sizes]
    new, _ = server.aggregate_train(1, [weights_reply(m, w, n) for m, w, n in zip(instructions, locals_, sizes)])
    assert new is not None
    mean = {k: sum(n * w[k].astype(np.float64) for w, n in zip(locals_, sizes)) / sum(sizes) for k in g}
    for key in g:
        applied = (g[key] - new[key].numpy().astype(np.float64)) / server_lr
        delta = g[key] - mean[key]
        if key in server.bases:
            u = server.bases[key].numpy()
            flat = applied.reshape(applied.shape[0], -1)
            assert np.abs(flat @ u).max() < 1e-5
            assert np.abs(flat @ u).max() < 1e-3 * np.abs(delta.reshape(flat.shape) @ u).max()  # it did act
            expected = delta.reshape(flat.shape) - delta.reshape(flat.shape) @ u @ u.T
            np.testing.assert_allclose(flat, expected, atol=1e-6)
        else:  # biases, body.5 (no basis yet): the plain, unprojected update
            np.testing.assert_allclose(applied, delta, atol=1e-6)


def test_project_out_handles_conv_shapes_and_empty_bases() -> None:
    delta = torch.randn(5, 3, 3, 3, dtype=torch.float64)
    u = orthonormal(27, 4)
    projected = project_out(delta, u)
    assert projected.shape == delta.shape
    assert (projected.reshape(5, -1) @ u).abs().max() < 1e-12
    assert torch.equal(project_out(delta, None), delta)


# ---- subspace extraction ------------------------------------------------------------------------

def planted_data(basis: torch.Tensor, n: int, seed: int, noise: float = 1e-3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coef = torch.randn(basis.shape[1], n, generator=g, dtype=torch.float64) * torch.linspace(3, 1, basis.shape[1],
                                                                                            dtype=torch.float64)[:, None]
    return (basis @ coef + noise * torch.randn(basis.shape[0], n, generator=g, dtype=torch.float64)).float()


def sketch_reply(to: Message, name: str, y: torch.Tensor, r: float, n: int) -> Message:
    content = RecordDict({"sketch": ArrayRecord({f"Y.{name}": Array(y.numpy().astype(np.float32))}),
                          "metrics": MetricRecord({f"r.{name}": r, f"n.{name}": n, "num-examples": n})})
    return Message(content, reply_to=to)


def test_extraction_recovers_planted_subspaces_task_after_task() -> None:
    d = 20
    cols = 1000  # many sketch columns: the sketch then keeps the energy spectrum within a few %
    server = make_server(LINEAR, (d,), eps_start=0.97, sketch_cols=cols)  # one projected layer: head.weight
    planted = orthonormal(d, 7, seed=3)
    first, second = planted[:, :4], planted[:, 4:]

    def task_end(basis: torch.Tensor, seed: int) -> None:
        request = Message(RecordDict(), dst_node_id=1, message_type="query.sketch")
        replies = []
        for client in range(3):
            r = planted_data(basis, 50 + 10 * client, seed=seed + client)
            u = server.bases.get("head.weight")
            q = gaussian_rows(torch.Generator().manual_seed(100 + client), cols)
            y, ratio = sketch_columns([r[:, :25], r[:, 25:]], None if u is None else u.float(), q, cols)
            replies.append(sketch_reply(request, "head.weight", y, ratio, r.shape[1]))
        assert server.absorb_sketches(1, replies) == 3

    task_end(first, seed=10)
    u = server.bases["head.weight"]
    assert u.shape == (d, 4)
    assert principal_angle_cosines(u, first).min() > 0.999
    task_end(second, seed=20)  # the clients remove what U explains; new directions come from the rest
    u = server.bases["head.weight"]
    assert u.shape == (d, 7)
    assert torch.allclose(u.T @ u, torch.eye(7, dtype=torch.float64), atol=1e-10)
    assert principal_angle_cosines(u, planted).min() > 0.999


def test_threshold_and_direction_count() -> None:
    y = torch.diag(torch.tensor([3.0, 2.0, 1.0, 0.0], dtype=torch.float64))  # energies 9, 4, 1 of 14
    assert new_directions(y, 9 / 14).shape[1] == 1
    assert new_directions(y, 0.9).shape[1] == 2
    assert new_directions(y, 1.0).shape[1] == 3  # never the zero-energy direction
    assert new_directions(y, -0.2).shape[1] == 0
    assert threshold(1.0, 0.9) == pytest.approx(0.9)
    assert threshold(0.5, 0.9) == pytest.approx(0.8)  # half the energy is new: keep 80 % of it
    assert threshold(0.05, 0.9) < 0  # the basis explains enough already
    u = orthonormal(6, 2)
    grown = expand_basis(u, torch.cat([u[:, :1], orthonormal(6, 1, seed=5)], dim=1))  # one column is old
    assert grown.shape == (6, 3) and torch.equal(grown[:, :2], u)


def test_sum_of_client_sketches_equals_sketch_of_concatenated_data() -> None:
    d, cols = 12, 8
    u = orthonormal(d, 3, seed=7).float()
    data = [planted_data(orthonormal(d, 5, seed=s), n, seed=s) for s, n in ((1, 30), (2, 45), (3, 20))]
    drawn: list[torch.Tensor] = []

    def recording(seed: int) -> Any:
        draw = gaussian_rows(torch.Generator().manual_seed(seed), cols)

        def rows(m: int) -> torch.Tensor:
            drawn.append(draw(m))
            return drawn[-1]
        return rows

    # Each client streams its own data in blocks, with its own private Q.
    ys = [sketch_columns(r.split(16, dim=1), u, recording(seed), cols)[0] for seed, r in enumerate(data)]
    q = torch.cat(drawn)  # the Q of the concatenated data is the clients' Qs stacked
    used = [0]

    def replay(m: int) -> torch.Tensor:  # the same rows again, in blocks of other sizes
        used[0] += m
        return q[used[0] - m:used[0]]

    y_all, _ = sketch_columns(torch.cat(data, dim=1).split(7, dim=1), u, replay, cols)
    y_sum = sum(ys)
    torch.testing.assert_close(y_sum, y_all, rtol=1e-4, atol=1e-4)
    a, b = new_directions(y_sum, 0.9), new_directions(y_all, 0.9)
    assert a.shape == b.shape and principal_angle_cosines(a, b).min() > 1 - 1e-6
    r_all = torch.cat(data, dim=1).double()
    r_hat = r_all - u.double() @ (u.double().T @ r_all)
    torch.testing.assert_close(y_all.double(), r_hat @ q.double(), rtol=1e-4, atol=1e-4)


# ---- layer inputs -------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [dict(padding=1), dict(stride=2, padding=2, dilation=2), dict(padding="same"),
                                    dict(kernel_size=(3, 1), padding="valid")])
def test_conv_columns_are_im2col_patches(kwargs: dict) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, **{"kernel_size": 3, "bias": False, **kwargs})
    x = torch.randn(2, 3, 9, 9)
    cols = layer_columns(conv, x)
    assert cols.shape[0] == 3 * conv.kernel_size[0] * conv.kernel_size[1]
    out = conv(x)
    as_matmul = (conv.weight.reshape(5, -1) @ cols).reshape(5, 2, -1).transpose(0, 1).reshape(out.shape)
    torch.testing.assert_close(as_matmul, out, rtol=1e-5, atol=1e-5)
    # Column (n, i, j) holds the patch under output pixel (i, j) of image n.
    patch = cols[:, 1 * out.shape[2] * out.shape[3]]
    assert torch.isclose(conv.weight.reshape(5, -1) @ patch, out[1, :, 0, 0], atol=1e-5).all()


def test_client_sketch_captures_each_layers_inputs() -> None:
    torch.manual_seed(0)
    model = build_model(CNN, (1, 8, 8), 3)
    layers = list(find_projected_layers(model))
    x = torch.randn(6, 1, 8, 8)
    u = {"body.5.weight": orthonormal(16, 5).float()}
    seed = 11
    out = client_sketches(model, layers, x, u, cols=None, max_columns=10_000, seed=seed,
                          device=torch.device("cpu"), batch_size=64)
    with torch.no_grad():
        feats = model.body[:5](x)  # conv, relu, pool, adaptive pool, flatten: the input of Linear body.5
        expected_inputs = {"body.0.weight": layer_columns(model.body[0], x),
                           "body.5.weight": feats.T,
                           "head.weight": model.features(x).T}
    for name, r in expected_inputs.items():
        y, ratio, n = out[name]
        assert n == r.shape[1]
        basis = u.get(name)
        r_hat = r if basis is None else r - basis @ (basis.T @ r)
        q = gaussian_rows(torch.Generator().manual_seed(derive_seed(seed, name, "Q")), r.shape[0])(r.shape[1])
        torch.testing.assert_close(y, r_hat @ q, rtol=1e-4, atol=1e-4)
        assert ratio == pytest.approx(1.0 if basis is None else float(r_hat.norm() / r.norm()), rel=1e-5)


def test_client_sketch_subsamples_many_columns_and_keeps_the_scale() -> None:
    torch.manual_seed(0)
    model = build_model(CNN, (1, 8, 8), 3)
    x = torch.randn(40, 1, 8, 8)
    full = client_sketches(model, ["body.0.weight"], x, {}, cols=512, max_columns=10**6, seed=1,
                           device=torch.device("cpu"))["body.0.weight"]
    part = client_sketches(model, ["body.0.weight"], x, {}, cols=512, max_columns=500, seed=1,
                           device=torch.device("cpu"))["body.0.weight"]
    assert full[2] == part[2] == 40 * 64  # n counts every column, kept or not
    energy_full, energy_part = full[0].pow(2).sum(), part[0].pow(2).sum()
    assert 0.8 < float(energy_part / energy_full) < 1.25


# ---- resume -------------------------------------------------------------------------------------

def test_state_dict_round_trip_keeps_bases_eps_and_task() -> None:
    server = make_server(CNN, (1, 8, 8), eps_start=0.9, eps_inc=0.02)
    server.bases = {"body.0.weight": orthonormal(9, 2), "head.weight": orthonormal(8, 5)}
    server.eps, server.task_index, server.last_round_nodes = 0.94, 2, [3, 5]
    buffer = io.BytesIO()
    torch.save({"strategy": server.state_dict()}, buffer)  # as the run's checkpoint does
    buffer.seek(0)
    restored = make_server(CNN, (1, 8, 8), eps_start=0.9, eps_inc=0.02)
    restored.load_state_dict(torch.load(buffer, weights_only=False)["strategy"])
    assert set(restored.bases) == set(server.bases)
    for name, u in server.bases.items():
        assert torch.equal(restored.bases[name], u)
    assert (restored.eps, restored.task_index, restored.last_round_nodes) == (0.94, 2, [3, 5])
    assert restored.round_metrics(7)["fot_basis_dim"] == 7
    with pytest.raises(ValueError, match="d="):
        restored.load_state_dict({**server.state_dict(), "bases": {"head.weight": orthonormal(5, 1)}})


# ---- the task switch over messages --------------------------------------------------------------

def client_data(task: int, partition: int, n: int = 24, d: int = 10) -> Split:
    g = torch.Generator().manual_seed(100 * task + partition)
    x = torch.randn(n, d, generator=g) * torch.linspace(4, 0.1, d)  # a few dominant input directions
    return Split(x, torch.randint(0, 3, (n,), generator=g))


@pytest.mark.parametrize("failing", [[1], [1, 2, 3]])
def test_a_client_failing_its_sketch_does_not_break_the_task_switch(failing: list[int]) -> None:
    d = 10
    server = make_server(LINEAR, (d,), rounds_per_task=1, eps_start=0.9, eps_inc=0.05)
    clients = {node: FotClient(FakeClientEnv(LINEAR, (d,), [client_data(t, node) for t in range(3)],
                                             partition_id=node)) for node in (1, 2, 3)}

    def answer(message: Message) -> Message | None:
        node = message.metadata.dst_node_id
        if node in failing:
            return Message(Error(code=1, reason=f"injected failure on node {node}"), reply_to=message)
        return clients[node].handle(message)

    grid = FakeGrid([1, 2, 3], answer)
    arrays = global_arrays(server)
    sent = list(server.configure_train(1, arrays, ConfigRecord(), grid))  # round 1: task 0
    replies = [clients[m.metadata.dst_node_id].handle(m) for m in sent]
    arrays, _ = server.aggregate_train(1, replies)
    assert sorted(server.last_round_nodes) == [1, 2, 3] and not grid.sent
    train = list(server.configure_train(2, arrays, ConfigRecord(), grid))  # round 2: task 1 -> sketch first
    assert len(train) == 3 and server.task_index == 1 and server.eps == pytest.approx(0.95)
    assert [m.metadata.message_type for m in grid.sent] == ["query.sketch"] * 3
    assert int(grid.sent[0].content["config"]["task-id"]) == 0
    metrics = server.round_metrics(2)
    if len(failing) == 3:  # nobody answered: the basis stays (empty), the task still switches
        assert server.bases == {} and metrics["fot_sketch_clients"] == 0
        return
    assert metrics["fot_sketch_clients"] == 2 and metrics["fot_sketch_bytes"] >= 2 * d * d * 4
    u = server.bases["head.weight"]
    assert 0 < u.shape[1] < d and torch.allclose(u.T @ u, torch.eye(u.shape[1], dtype=torch.float64))
    # Updates of task 1 no longer move the head along task 0's input directions.
    replies = [clients[m.metadata.dst_node_id].handle(m) for m in train]
    before = arrays["head.weight"].numpy()
    after, _ = server.aggregate_train(2, replies)
    step = torch.from_numpy((after["head.weight"].numpy() - before).astype(np.float64))
    assert (step @ u).abs().max() < 1e-5 and step.abs().max() > 1e-3


def test_sketch_replies_with_wrong_shapes_are_left_out() -> None:
    server = make_server(LINEAR, (10,))
    request = Message(RecordDict(), dst_node_id=1, message_type="query.sketch")
    bad = sketch_reply(request, "head.weight", torch.ones(10, 3), 1.0, 5)
    nan = sketch_reply(request, "head.weight", torch.full((10, 10), float("nan")), 1.0, 5)
    good = sketch_reply(request, "head.weight", torch.eye(10)[:, :10] * torch.linspace(5, 0.01, 10), 1.0, 5)
    assert server.absorb_sketches(1, [bad, nan, good]) == 1
    assert server.bases["head.weight"].shape[1] >= 1


# ---- biases -------------------------------------------------------------------------------------

def test_biases_frozen_after_the_first_task_on_clients_and_server() -> None:
    d = 10
    model_cfg = {"name": "mlp", "hidden": [6], "bias": True}
    server = make_server(model_cfg, (d,), rounds_per_task=1, bias_mode="freeze_after_first_task")
    assert server.frozen_biases == ["body.1.bias", "head.bias"]
    clients = {n: FotClient(FakeClientEnv(model_cfg, (d,), [client_data(t, n) for t in range(3)], partition_id=n))
               for n in (1, 2)}
    grid = FakeGrid([1, 2], lambda m: clients[m.metadata.dst_node_id].handle(m))
    arrays = global_arrays(server)
    config = ConfigRecord()
    for rnd in (1, 2):
        sent = list(server.configure_train(rnd, arrays, config, grid))
        replies = [clients[m.metadata.dst_node_id].handle(m) for m in sent]
        assert ("fot-frozen" in config) == (rnd == 2)
        for reply in replies:  # the clients themselves left the biases alone in task 1 (momentum 0.9)
            for key in ("body.1.bias", "head.bias"):
                same = np.array_equal(reply.content["arrays"][key].numpy(), arrays[key].numpy())
                assert same == (rnd == 2)
            assert not np.array_equal(reply.content["arrays"]["body.1.weight"].numpy(),
                                      arrays["body.1.weight"].numpy())
        new, _ = server.aggregate_train(rnd, replies)
        for key in ("body.1.bias", "head.bias"):
            assert np.array_equal(new[key].numpy(), arrays[key].numpy()) == (rnd == 2)
        arrays = new
    # Even a client that ignores the freeze cannot move a bias after task 0.
    sent = list(server.configure_train(3, arrays, config, grid))
    moved = {k: v.numpy() + 1.0 for k, v in arrays.items()}
    new, _ = server.aggregate_train(3, [weights_reply(m, moved, 5) for m in sent])
    assert np.array_equal(new["head.bias"].numpy(), arrays["head.bias"].numpy())


# ---- configuration ------------------------------------------------------------------------------

def test_layer_choice_and_config_errors() -> None:
    torch.manual_seed(0)
    model = build_model(CNN, (1, 8, 8), 3)
    assert "head.weight" not in find_projected_layers(model, include_head=False)
    assert list(find_projected_layers(model, ["body.5.weight"])) == ["body.5.weight"]
    with pytest.raises(ValueError, match="valid names"):
        find_projected_layers(model, ["body.1.weight"])
    split = make_server(CNN, (1, 8, 8), scenario="task-incremental")
    assert "head.weight" not in split.layer_dims  # per-task heads stay free
    with pytest.raises(ConfigError, match="strategy.bias_mode='none' is not a valid choice"):
        check_strategy_config({"name": "fot", "bias_mode": "none"})
    with pytest.raises(ConfigError, match="sketch_clients"):
        check_strategy_config({"name": "fot", "sketch_clients": "some"})
    for key, value in (("eps_start", 1.5), ("eps_start", 0.0), ("eps_inc", 1.0), ("server_lr", 0.0),
                       ("sketch_cols", 0), ("sketch_max_samples", 0)):
        with pytest.raises(ConfigError, match=f"strategy.{key}={value!r} is out of range") as err:
            check_strategy_config({"name": "fot", key: value})
        assert err.value.key == f"strategy.{key}"
    with pytest.raises(ConfigError, match="strategy.sketch_dtype='bfloat16' is not a valid choice"):
        check_strategy_config({"name": "fot", "sketch_dtype": "bfloat16"})
    with pytest.raises(ConfigError, match="strategy.eps_strat is not a setting of FOTConfig"):
        check_strategy_config({"name": "fot", "eps_strat": 0.9})


def test_fot_config_from_the_yaml_reaches_the_server_half() -> None:
    from conf.compose import compose

    cfg = compose(["strategy=fot", "strategy.eps_start=0.9", "strategy.sketch_cols=16", "strategy.project_head=false"])
    server = build_server_strategy(cfg["strategy"])
    assert isinstance(server, FotServer)
    assert (server.eps, server.sketch_cols, server.project_head) == (0.9, 16, False)
    assert (server.fraction_train, server.fraction_evaluate) == (0.5, 0.0)  # FedAvg's keys, from fedavg.yaml
