"""GGEUR: pooled statistics, geometry, generation, the statistics phase and the client half."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord, RecordDict

from conf.compose import compose
from data import load_task
from strategies import ggeur_geometry as geo
from strategies.base import ClientEnv
from strategies.ggeur import (
    AUGMENTED,
    DIGEST_KEY,
    GEOMETRY_KEY,
    STATS,
    GGEURClient,
    GGEURConfigError,
    GGEURServer,
    generate,
)
from strategies.registry import StrategyConfigError

TASK = {"name": "digits-dirichlet", "alpha": 0.1, "num_clients": 10}


def _clients_data(rng: np.random.Generator, d: int = 6, classes: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    """Three clients with different label mixes and class-dependent means."""
    means = rng.normal(0, 5, (classes, d))
    out = []
    for n, probs in ((50, [0.8, 0.2, 0.0]), (120, [0.1, 0.3, 0.6]), (7, [0.0, 0.0, 1.0])):
        y = rng.choice(classes, size=n, p=probs)
        x = means[y] + rng.normal(0, 1, (n, d)) @ rng.normal(0, 1, (d, d))
        out.append((x, y))
    return out


# ---- math ----------------------------------------------------------------------------------------

def test_pooled_covariance_from_sums_equals_covariance_of_pooled_data() -> None:
    rng = np.random.default_rng(0)
    data = _clients_data(rng)
    sums = [geo.class_sums(x, y, 3) for x, y in data]
    # what goes on the wire: upper triangles, unpacked on the server
    for s in sums:
        assert np.array_equal(geo.unpack_sym(geo.pack_sym(s.s2), 6), s.s2)
    pooled = sums[0] + sums[1] + sums[2]
    mean, cov = geo.pooled_moments(pooled)
    x_all = np.concatenate([x for x, _ in data])
    y_all = np.concatenate([y for _, y in data])
    for c in range(3):
        xc = x_all[y_all == c]
        assert pooled.n[c] == len(xc)
        np.testing.assert_allclose(mean[c], xc.mean(0), atol=1e-6)
        np.testing.assert_allclose(cov[c], np.cov(xc, rowvar=False, bias=True), atol=1e-6)
    # with a reduction, the second moments give P^T Sigma P exactly
    basis = geo.random_basis(6, 3, seed=1)
    reduced = [geo.class_sums(x, y, 3, basis) for x, y in data]
    _, cov_r = geo.pooled_moments(reduced[0] + reduced[1] + reduced[2], basis)
    for c in range(3):
        xc = x_all[y_all == c]
        np.testing.assert_allclose(cov_r[c], basis.T @ np.cov(xc, rowvar=False, bias=True) @ basis, atol=1e-6)


def _covariance(d: int, rng: np.random.Generator, eigvals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return q @ np.diag(eigvals) @ q.T, q


def test_generated_samples_have_the_global_covariance_in_expectation() -> None:
    """x' - x ~ N(0, Sigma): the sample covariance of 40,000 draws is Sigma within 6 standard errors.

    The standard error of a sample covariance entry is sqrt((S_ii S_jj + S_ij^2) / n).
    """
    rng = np.random.default_rng(0)
    d, n = 5, 40_000
    sigma, _ = _covariance(d, rng, np.array([4.0, 2.0, 1.0, 0.5, 0.1]))
    w, v = geo.eigen_geometry(sigma[None])
    centres = rng.normal(0, 3, (4, d))  # four real samples of the class on this client
    new = geo.expand_class(centres, 4 + n, w[0], v[0], np.random.default_rng(1))
    assert new.shape == (n, d)
 # every real sample is a centre equally often (shuffled round-robin): the mean is theirs
    offsets = new - centres.mean(0)
    assert np.allclose(offsets.mean(0), 0, atol=6 * np.sqrt(np.diag(sigma).max() / n))
    # around one known centre, the draws' covariance is Sigma
    one = geo.expand_class(centres[:1], 1 + n, w[0], v[0], np.random.default_rng(2)) - centres[0]
    emp = one.T @ one / n  # the mean is known (0): no Bessel correction
    se = np.sqrt((np.outer(np.diag(sigma), np.diag(sigma)) + sigma**2) / n)
    assert np.all(np.abs(emp - sigma) < 6 * se), np.abs(emp - sigma) / se
    # isotropic control: the same total variance, spread equally
    iso = geo.sample_noise(n, w[0], v[0], np.random.default_rng(3), noise="isotropic")
    assert abs(np.trace(iso.T @ iso / n) - np.trace(sigma)) < 0.05 * np.trace(sigma)
    assert np.allclose(np.cov(iso, rowvar=False), np.trace(sigma) / d * np.eye(d), atol=0.05)
    # oversampling control: copies of real samples
    dup = geo.expand_class(centres, 10, w[0], v[0], np.random.default_rng(4), noise="none")
    assert all(any(np.array_equal(row, c) for c in centres) for row in dup)


def test_top_k_truncation_and_negative_eigenvalues_clamped() -> None:
    rng = np.random.default_rng(0)
    d = 6
    cov, q = _covariance(d, rng, np.array([5.0, 3.0, 1.0, 0.5, 0.2, -0.3]))  # not PSD (noisy estimate)
    w_all, _ = geo.eigen_geometry(cov[None])
    assert w_all.shape == (1, d) and np.all(np.diff(w_all[0]) <= 0) and w_all[0, -1] == 0.0
    w, v = geo.eigen_geometry(cov[None], top_k=2)
    assert w.shape == (1, 2) and v.shape == (1, d, 2)
    np.testing.assert_allclose(w[0], [5.0, 3.0], atol=1e-9)
    np.testing.assert_allclose(np.abs(v[0].T @ q[:, :2]), np.eye(2), atol=1e-9)
    noise = geo.sample_noise(1000, w[0], v[0], rng)
    outside = noise - noise @ v[0] @ v[0].T  # nothing outside the top-2 span
    assert np.abs(outside).max() < 1e-9
    amp, _ = geo.eigen_geometry(cov[None], top_k=4, amplify=5.0, amplify_top=2)
    np.testing.assert_allclose(amp[0], [25.0, 3.0, 1.0, 0.5], atol=1e-9)  # the largest are scaled
    with pytest.raises(ValueError, match="top_k"):
        geo.eigen_geometry(cov[None], top_k=7)


def test_pca_sketch_recovers_the_principal_subspace() -> None:
    rng = np.random.default_rng(0)
    d, r = 40, 4
    basis_true, _ = np.linalg.qr(rng.normal(size=(d, r)))
    x = rng.normal(0, 1, (3000, r)) * np.array([10, 8, 6, 4]) @ basis_true.T + rng.normal(0, 0.1, (3000, d)) + 3.0
    omega = geo.sketch_matrix(d, r + 6, seed=5)
    parts = [geo.sketch_sums(chunk, omega) for chunk in np.array_split(x, 3)]  # three clients
    n = sum(p[0] for p in parts)
    basis = geo.nystrom_basis(n, sum(p[1] for p in parts), sum(p[2] for p in parts), omega, r)
    # the subspaces coincide: singular values of B^T B_true are all ~1
    s = np.linalg.svd(basis.T @ basis_true, compute_uv=False)
    assert s.min() > 0.999


def test_guided_subset_takes_the_largest_clients_up_to_the_fraction() -> None:
    counts = np.array([[50, 0], [30, 5], [20, 5]])
    mask = geo.guided_subset(counts, 0.8)
    assert mask[:, 0].tolist() == [True, True, False]  # 50 + 30 >= 80
    assert mask[:, 1].tolist() == [False, True, True]


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
    server = GGEURServer(**{k: v for k, v in cfg["strategy"].items() if k != "name"})
    task = load_task(cfg["task"], seed=int(cfg["seed"]))
    server.setup(SimpleNamespace(cfg=cfg, task=task, build_model=None, run_dir=None,  # type: ignore[arg-type]
                                 task_of_round=lambda r: 0))
    return server


class FakeGrid:
    """Answers query.stats with real client halves; nodes in `fail` answer with an error."""

    def __init__(self, cfg: dict[str, Any], nodes: list[int], fail: tuple[int, ...] = ()) -> None:
        self.cfg, self.nodes, self.fail = cfg, nodes, set(fail)
        self.sent: list[Message] = []

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
        return replies


def test_statistics_phase_goes_on_when_a_client_fails() -> None:
    cfg = _cfg()
    server = _server(cfg)
    grid = FakeGrid(cfg, nodes=[100 + p for p in range(10)], fail=(103, 107))
    server.run_statistics_phase(1, grid)  # type: ignore[arg-type]
    assert [m.metadata.message_type for m in grid.sent] == [STATS] * 10
    assert server.phase["clients_used"] == 8 and server.phase["clients_failed"] == 2
    assert server.phase["stats_uplink_bytes"] > 0
    # the geometry is that of the 8 clients that answered
    task = load_task(cfg["task"], seed=0)
    xs, ys = zip(*[(task.client_train(p).x.reshape(-1, 64).numpy(), task.client_train(p).y.numpy())
                   for p in range(10) if p not in (3, 7)])
    x, y = np.concatenate(xs).astype(np.float64), np.concatenate(ys)
    g = server.geometry
    assert g is not None and server.digest
    np.testing.assert_array_equal(g["counts"], np.bincount(y, minlength=10))
    for c in range(10):
        cov = np.cov(x[y == c], rowvar=False, bias=True)
        w = np.clip(np.linalg.eigvalsh(cov)[::-1], 0, None)
        np.testing.assert_allclose(g["eigvals"][c], w, atol=1e-4)
    # the failed clients still get every class's geometry with their first training message
    geometry, meta = server.payload_for(None)
    assert geometry["classes"].numpy().tolist() == [c for c in range(10) if g["counts"][c] > 0]
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
    with pytest.raises(GGEURConfigError) as err:
        server.run_statistics_phase(1, FakeGrid(cfg, nodes=[100 + p for p in range(10)]))  # type: ignore[arg-type]
    text = str(err.value)
    assert f"client {pid} class {cls}: 1" in text and "strategy.min_class_samples=2" in text


def test_bad_config_names_the_key() -> None:
    with pytest.raises(StrategyConfigError, match="strategy.noise"):
        GGEURServer(noise="gaussian")
    with pytest.raises(StrategyConfigError, match="proximal_mu"):
        GGEURServer(base="fedavg", proximal_mu=0.1)  # FedAvg has no mu
    assert GGEURServer(base="fedprox", proximal_mu=0.1).base.proximal_mu == 0.1
    with pytest.raises(StrategyConfigError, match="base=ggeur"):
        GGEURServer(base="ggeur")


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
    targets = server.geometry["counts"]
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
    a = generate(x, y, geometry, meta, np.random.default_rng(5))
    b = generate(x, y, geometry, meta, np.random.default_rng(5))
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
    held = np.flatnonzero(g["counts"])
    assert geometry["classes"].numpy().tolist() == held.tolist()  # also the classes client 0 lacks
    np.testing.assert_allclose(geometry["prototypes"].numpy(), g["mean"][held])
    assert int(meta["multi-domain"]) == 1
    task = load_task(cfg["task"], seed=0)
    real = task.client_train(0)
    x, y = real.x.reshape(len(real), -1).numpy(), real.y.numpy()
    _, new_y = generate(x, y, geometry, meta, np.random.default_rng(0))
    counts = np.bincount(np.concatenate([y, new_y]), minlength=10)
    np.testing.assert_array_equal(counts[held], g["counts"][held])  # every class at its global count


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
        np.testing.assert_array_equal(fresh.geometry[key], server.geometry[key])
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
