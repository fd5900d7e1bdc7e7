"""GGEUR: its typed config, the statistics phase, the server half and the client half."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Error, Message, RecordDict

from conf.compose import compose
from conf.errors import ConfigError
from data import load_task
from strategies.base import ClientEnv
from strategies.ggeur import AUGMENTED, GGEURClient, GGEURConfig, GGEURServer
from strategies.ggeur.augment import generate
from strategies.ggeur.client import base_env
from strategies.ggeur.protocol import DIGEST_KEY, GEOMETRY_KEY, STATS, parse_geometry
from strategies.payload import record_nbytes
from strategies.registry import check_strategy_config

TASK = {"name": "digits-dirichlet", "alpha": 0.1, "num_clients": 10}


# ---- the server's statistics phase ---------------------------------------------------------------

def _cfg(**strategy: Any) -> dict[str, Any]:
    cfg = compose(["strategy=ggeur", "task=digits-dirichlet", "model=linear", "task.alpha=0.1"])
    cfg["strategy"].update(strategy)
    return cfg


def _client(cfg: dict[str, Any], pid: int, state: RecordDict | None = None) -> GGEURClient:
    context = Context(run_id=7, node_id=100 + pid, node_config={"partition-id": pid, "num-partitions": 10},
                      state=state if state is not None else RecordDict(), run_config={})
    return GGEURClient(ClientEnv(cfg, context))


def _server(cfg: dict[str, Any]) -> GGEURServer:
    server = GGEURServer(config=GGEURConfig.parse(cfg["strategy"]))
    task = load_task(cfg["task"], seed=int(cfg["seed"]))
    server.setup(SimpleNamespace(cfg=cfg, task=task, build_model=None, run_dir=None,  # type: ignore[arg-type]
                                 task_of_round=lambda r: 0))
    return server


class FakeGrid:
    """Answers query.stats with real client halves; nodes in `fail` answer with an error."""

    def __init__(self, cfg: dict[str, Any], nodes: list[int], fail: tuple[int, ...] = ()) -> None:
        self.cfg, self.nodes, self.fail = cfg, nodes, set(fail)
        self.sent: list[Message] = []
        self.replies: list[Message] = []

    def get_node_ids(self) -> list[int]:
        return list(self.nodes)

    def send_and_receive(self, messages: list[Message], *, timeout: float | None = None) -> list[Message]:
        replies = []
        for m in messages:
            self.sent.append(m)
            node = m.metadata.dst_node_id
            if node in self.fail:
                replies.append(Message(Error(code=1, reason=f"ClientFailure: boom on node {node}"), reply_to=m))
                continue
            out = _client(self.cfg, node - 100).handle(m)
            replies.append(Message(out.content, reply_to=m))
        self.replies += replies
        return replies


def test_statistics_phase_goes_on_when_a_client_fails() -> None:
    cfg = _cfg()
    server = _server(cfg)
    grid = FakeGrid(cfg, nodes=[100 + p for p in range(10)], fail=(103, 107))
    server.run_statistics_phase(1, grid)  # type: ignore[arg-type]
    assert [m.metadata.message_type for m in grid.sent] == [STATS] * 10
    assert server.phase["clients_used"] == 8 and server.phase["clients_failed"] == 2
    assert server.phase["stats_uplink_bytes"] > 0
    # one byte meter (strategies/payload.py), the one the metered grid uses: what was sent and received
    assert server.phase["stats_uplink_bytes"] == sum(record_nbytes(r.content) for r in grid.replies
                                                     if not r.has_error())
    assert server.phase["stats_downlink_bytes"] == sum(record_nbytes(m.content) for m in grid.sent)
    # the geometry is that of the 8 clients that answered
    task = load_task(cfg["task"], seed=0)
    xs, ys = zip(*[(task.client_train(p).x.reshape(-1, 64).numpy(), task.client_train(p).y.numpy())
                   for p in range(10) if p not in (3, 7)])
    x, y = np.concatenate(xs).astype(np.float64), np.concatenate(ys)
    g = server.geometry
    assert g is not None and server.digest
    np.testing.assert_array_equal(g.counts, np.bincount(y, minlength=10))
    for c in range(10):
        cov = np.cov(x[y == c], rowvar=False, bias=True)
        w = np.clip(np.linalg.eigvalsh(cov)[::-1], 0, None)
        np.testing.assert_allclose(g.eigvals[c], w, atol=1e-4)
    # the failed clients still get every class's geometry with their first training message
    geometry, meta = server.payload_for(None)
    assert geometry["classes"].numpy().tolist() == [c for c in range(10) if g.counts[c] > 0]
    mine, _ = server.payload_for(0)
    assert set(mine["classes"].numpy().tolist()) == set(np.flatnonzero(np.bincount(task.client_train(0).y.numpy(), minlength=10)))


def test_no_usable_statistics_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg()
    server = _server(cfg)
    monkeypatch.setattr(GGEURServer, "NODE_WAIT_S", 0.0)  # 2 of 10 clients connected: go on
    with pytest.raises(RuntimeError, match="no client returned usable class statistics"):
        server.run_statistics_phase(1, FakeGrid(cfg, nodes=[100, 101], fail=(100, 101)))  # type: ignore[arg-type]


def test_class_with_a_single_sample_is_a_clear_error() -> None:
    cfg = _cfg(min_class_samples=2)
    task = load_task(cfg["task"], seed=0)
    counts = np.stack([np.bincount(task.client_train(p).y.numpy(), minlength=10) for p in range(10)])
    pid, cls = map(int, np.argwhere(counts == 1)[0])  # alpha=0.1 leaves some single-sample classes
    server = _server(cfg)
    with pytest.raises(ConfigError) as err:
        server.run_statistics_phase(1, FakeGrid(cfg, nodes=[100 + p for p in range(10)]))  # type: ignore[arg-type]
    text = str(err.value)
    assert f"client {pid} class {cls}: 1" in text and "strategy.min_class_samples=2" in text
    assert err.value.key == "strategy.min_class_samples"


def _section(**strategy: Any) -> dict[str, Any]:
    return {**compose(["strategy=ggeur"])["strategy"], **strategy}


def test_bad_config_names_the_key() -> None:
    with pytest.raises(ConfigError, match="strategy.noise") as err:
        GGEURConfig.parse(_section(noise="gaussian"))
    assert err.value.key == "strategy.noise"
    with pytest.raises(ConfigError, match="proximal_mu") as err:
        GGEURConfig.parse(_section(base="fedavg", proximal_mu=0.1))  # FedAvg has no mu
    assert err.value.key == "strategy.proximal_mu"
    assert GGEURServer(config=GGEURConfig.parse(_section(base="fedprox", proximal_mu=0.1))).base.proximal_mu == 0.1
    with pytest.raises(ConfigError, match="base=ggeur"):
        GGEURConfig.parse(_section(base="ggeur"))


@pytest.mark.parametrize(("key", "value", "message"), [
    ("top_k", 0, "strategy.top_k=0 is out of range"),
    ("reduce", "svd", "strategy.reduce='svd' is not a valid choice"),
    ("reduce_dim", 0, "strategy.reduce_dim=0 is out of range"),
    ("sketch_oversample", -1, "strategy.sketch_oversample=-1 is out of range"),
    ("stats_dtype", "float16", "strategy.stats_dtype='float16' is not a valid choice"),
    ("target_count", 0, "strategy.target_count=0 is out of range"),
    ("target_count", "local", "strategy.target_count: expected 'global' or an integer"),
    ("weight_by", "both", "strategy.weight_by='both' is not a valid choice"),
    ("min_class_samples", 0, "strategy.min_class_samples=0 is out of range"),
    ("guided_fraction", 0.0, "strategy.guided_fraction=0.0 is out of range"),
    ("guided_fraction", 1.5, "strategy.guided_fraction=1.5 is out of range"),
    ("multi_domain", "yes", "strategy.multi_domain: expected 'auto' or true or false"),
    ("local_steps", "some", "strategy.local_steps='some' is not a valid choice"),
    ("base", "nope", "unknown strategy.name='nope'"),
])
def test_every_setting_is_checked_before_any_engine_starts(key: str, value: Any, message: str) -> None:
    """The registry's check (what `corolla run` calls before it starts an engine) refuses each."""
    cfg = _cfg(**{key: value})
    with pytest.raises(ValueError, match=re.escape(message)):
        check_strategy_config(cfg["strategy"])


def test_the_yaml_files_hold_every_default() -> None:
    plain = GGEURConfig.parse(compose(["strategy=ggeur"])["strategy"])
    assert (plain.base, plain.top_k, plain.reduce, plain.weight_by, plain.local_steps) == (
        "fedavg", None, "none", "real", "augmented")
    assert plain.base_kwargs == {"fraction_train": 0.5, "min_train_nodes": 2}
    prox = GGEURConfig.parse(compose(["strategy=ggeur-fedprox"])["strategy"])
    assert prox.base == "fedprox" and prox.base_kwargs["proximal_mu"] == 0.01
    with pytest.raises(ConfigError, match="strategy lacks strategy.top_k"):
        GGEURConfig.parse({k: v for k, v in _section().items() if k != "top_k"})


# ---- the client half -----------------------------------------------------------------------------

def _train_message(server: GGEURServer, node: int, arrays: ArrayRecord) -> Message:
    config = ConfigRecord({"server-round": 1, "task-id": 0, "proximal-mu": 0.1})
    grid = SimpleNamespace(get_node_ids=lambda: [node])
    server.base.min_available_nodes = server.base.min_train_nodes = 1
    server.base.fraction_train = 1.0
    (message,) = server.configure_train(1, arrays, config, grid)  # type: ignore[arg-type]
    return message


@pytest.mark.parametrize("weight_by", ["real", "augmented"])
def test_client_trains_the_base_on_its_augmented_set(weight_by: str) -> None:
    cfg = _cfg(weight_by=weight_by, base="fedprox", proximal_mu=0.1)
    server = _server(cfg)
    grid = FakeGrid(cfg, nodes=[100 + p for p in range(10)])
    server.run_statistics_phase(1, grid)  # type: ignore[arg-type]
    from models import build_model

    model = build_model(cfg["model"], (1, 8, 8), 10)
    arrays = ArrayRecord(model.state_dict())
    message = _train_message(server, 102, arrays)
    assert GEOMETRY_KEY in message.content and message.content["config"][DIGEST_KEY] == server.digest
    state = RecordDict()
    client = _client(cfg, 2, state)
    reply = client.handle(message)
    metrics = reply.content["metrics"]
    task = client.env.task
    real = task.client_train(2)
    held = np.flatnonzero(np.bincount(real.y.numpy(), minlength=10))
    targets = server.geometry.counts
    assert metrics["ggeur-real-examples"] == len(real)
    assert metrics["ggeur-augmented-examples"] == int(targets[held].sum())  # every held class filled
    assert metrics["num-examples"] == (len(real) if weight_by == "real" else int(targets[held].sum()))
    assert metrics["ggeur-has-geometry"] == 1
    assert GEOMETRY_KEY in state.array_records  # kept in Context.state for later rounds
    # the server stops sending the geometry once the client confirmed it
    server.aggregate_train(1, [Message(reply.content, reply_to=message)])
    assert 102 in server.acked
    assert GEOMETRY_KEY not in _train_message(server, 102, arrays).content
    # a later round (a new message without the geometry) hits the in-process cache: same set
    hits = AUGMENTED.hits
    again = _client(cfg, 2, state).handle(Message(RecordDict({"arrays": arrays, "config": message.content["config"]}),
                                                  dst_node_id=102, message_type="train"))
    assert AUGMENTED.hits == hits + 1
    assert again.content["metrics"]["ggeur-augmented-examples"] == metrics["ggeur-augmented-examples"]


def test_the_base_client_half_sees_its_own_strategy_section() -> None:
    cfg = _cfg(base="fedprox", proximal_mu=0.1, weight_by="augmented")
    client = _client(cfg, 3)
    assert client.config.weight_by == "augmented" and client.config.base == "fedprox"
    view = base_env(client.env, client.config, train={**cfg["train"], "max_steps": 3})
    assert view.cfg["strategy"] == {"name": "fedprox", "proximal_mu": 0.1, "fraction_train": 0.5,
                                    "min_train_nodes": 2}
    assert view.cfg["train"]["max_steps"] == 3 and client.env.cfg["train"].get("max_steps") is None
    assert not isinstance(view.strategy_config, GGEURConfig)  # the base's own (or None)
    assert view.partition_id == 3 and view.task is client.env.task and view.state is client.env.state
    assert isinstance(client.env.strategy_config, GGEURConfig)  # the real env is untouched


def test_generation_is_deterministic_and_fills_targets_multi_domain() -> None:
    rng = np.random.default_rng(0)
    d = 4
    x = rng.normal(size=(6, d)).astype(np.float32)
    y = np.array([0, 0, 0, 1, 1, 1])
    eig = np.abs(rng.normal(size=(3, d))).astype(np.float32)
    vec = np.stack([np.linalg.qr(rng.normal(size=(d, d)))[0] for _ in range(3)]).astype(np.float32)
    protos = rng.normal(size=(3, d)).astype(np.float32)
    geometry = ArrayRecord({"classes": Array(np.array([0, 1, 2])), "eigvals": Array(eig), "eigvecs": Array(vec),
                            "targets": Array(np.array([20, 21, 9])), "prototypes": Array(protos),
                            "prototype_classes": Array(np.array([0, 2, 2]))})
    meta = ConfigRecord({"digest": "x", "noise": "geometry", "reduce": "none", "dim": d, "seed": 0,
                         "multi-domain": 1})
    a = generate(x, y, parse_geometry(geometry, meta), np.random.default_rng(5))
    b = generate(x, y, parse_geometry(geometry, meta), np.random.default_rng(5))
    np.testing.assert_array_equal(a[0], b[0])
    counts = np.bincount(a[1], minlength=3)
    # class 0: 3 real + 17 (own + one prototype); class 1: 3 real + 18 own; class 2 (absent): 9 from 2 prototypes
    assert counts.tolist() == [17, 18, 9]


def test_global_prototypes_fill_every_class() -> None:
    cfg = _cfg(global_prototypes=True)
    server = _server(cfg)
    server.run_statistics_phase(1, FakeGrid(cfg, nodes=[100 + p for p in range(10)]))  # type: ignore[arg-type]
    geometry, meta = server.payload_for(0)
    g = server.geometry
    held = np.flatnonzero(g.counts)
    assert geometry["classes"].numpy().tolist() == held.tolist()  # also the classes client 0 lacks
    np.testing.assert_allclose(geometry["prototypes"].numpy(), g.mean[held])
    assert int(meta["multi-domain"]) == 1
    task = load_task(cfg["task"], seed=0)
    real = task.client_train(0)
    x, y = real.x.reshape(len(real), -1).numpy(), real.y.numpy()
    _, new_y = generate(x, y, parse_geometry(geometry, meta), np.random.default_rng(0))
    counts = np.bincount(np.concatenate([y, new_y]), minlength=10)
    np.testing.assert_array_equal(counts[held], g.counts[held])  # every class at its global count


def test_local_steps_real_caps_the_loop_at_the_real_data(monkeypatch: pytest.MonkeyPatch) -> None:
    import strategies.fedavg as fedavg

    seen: list[tuple[int, int | None]] = []
    real_train_local = fedavg.train_local

    def spy(model, x, y, cfg, **kw):  # type: ignore[no-untyped-def]
        seen.append((len(x), cfg.max_steps))
        return real_train_local(model, x, y, cfg, **kw)

    monkeypatch.setattr(fedavg, "train_local", spy)
    from models import build_model

    arrays = ArrayRecord(build_model({"name": "linear"}, (1, 8, 8), 10).state_dict())
    for steps in ("augmented", "real"):
        cfg = _cfg(local_steps=steps)
        server = _server(cfg)
        server.run_statistics_phase(1, FakeGrid(cfg, nodes=[100 + p for p in range(10)]))  # type: ignore[arg-type]
        _client(cfg, 5).handle(_train_message(server, 105, arrays))
    n_real = len(load_task(TASK, seed=0).client_train(5))
    (n_aug, cap_aug), (n_aug2, cap_real) = seen
    assert n_aug == n_aug2 > n_real and cap_aug is None
    assert cap_real == -(-n_real // 32)  # one epoch of the real data at batch 32


def test_state_dict_restores_the_geometry_for_a_resume() -> None:
    cfg = _cfg()
    server = _server(cfg)
    server.run_statistics_phase(1, FakeGrid(cfg, nodes=[100 + p for p in range(10)]))  # type: ignore[arg-type]
    server.acked.add(101)
    state = server.state_dict()
    fresh = _server(cfg)
    fresh.load_state_dict(state)
    assert fresh.digest == server.digest and fresh.acked == set()  # new engine: resend to everyone
    for key in ("eigvals", "eigvecs", "targets", "mean"):
        np.testing.assert_array_equal(getattr(fresh.geometry, key), getattr(server.geometry, key))
    # no second statistics phase: the first round after the resume goes straight to training
    from models import build_model

    arrays = ArrayRecord(build_model({"name": "linear"}, (1, 8, 8), 10).state_dict())
    message = _train_message(fresh, 104, arrays)
    assert GEOMETRY_KEY in message.content and message.content["config"][DIGEST_KEY] == server.digest


def test_digit_domains_dirichlet_with_one_client_per_domain_skews_labels_across_domains() -> None:
    """The bench's digit-domains/alpha=... settings (data/domains.py: skew_across_domains)."""
    full = load_task({"name": "digit-domains"}, seed=0)
    skewed = load_task({"name": "digit-domains", "partition": "dirichlet", "alpha": 0.1}, seed=0)
    again = load_task({"name": "digit-domains", "partition": "dirichlet", "alpha": 0.1}, seed=0)
    for d in range(4):
        whole = np.bincount(full.client_train(d).y.numpy(), minlength=10)
        kept = np.bincount(skewed.client_train(d).y.numpy(), minlength=10)
        assert np.all(kept <= whole) and kept.sum() < whole.sum()
        np.testing.assert_array_equal(kept, np.bincount(again.client_train(d).y.numpy(), minlength=10))
    counts = np.stack([np.bincount(skewed.client_train(d).y.numpy(), minlength=10) for d in range(4)])
    assert (counts.max(0) > 0).all()                       # every class lives in some domain
    assert (counts == 0).sum() + (counts < 0.1 * counts.max(0)).sum() > 4  # and is rare in others
    assert skewed.test().x.shape == full.test().x.shape    # the test splits stay whole
