"""GGEUR with secagg=true: the geometry from secure sums equals the plain one; what needs per-client values is refused."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from bench.inline import run_inline
from conf.compose import compose
from conf.errors import ConfigError
from server.config_check import check_config
from strategies.ggeur import geometry as geo
from strategies.ggeur.augment import GeometryPayload, for_client

TINY = ["strategy=ggeur", "task=digit-domains", "task.num_clients=4", "model=linear", "num_rounds=2",
        "strategy.fraction_train=1.0", "strategy.reduce=random", "strategy.reduce_dim=16",
        "strategy.target_count=300", "train.lr=0.01", "plots=false", "progress=false"]


def _geometry(run_dir) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)["strategy"]["geometry"]


def _coarse_digest(geometry: geo.Geometry, settings: str) -> str:
    """A digest of what both runs share exactly (counts, settings): the same seeds for the generated samples."""
    return geo.hashlib.sha256(geometry.targets.tobytes() + geometry.counts.tobytes() + settings.encode()).hexdigest()[:16]


def test_secure_ggeur_has_the_plain_geometry_and_accuracy(tmp_path, caplog, monkeypatch):
    # The generated samples are seeded by a digest of the geometry, whose last float bits differ
    # under quantisation: both runs hash only the exact parts, so the accuracy compares like with like.
    monkeypatch.setattr(geo, "geometry_digest", _coarse_digest)
    plain, _, plain_dir = run_inline(TINY, tmp_path / "plain")
    with caplog.at_level(logging.WARNING, logger="corolla"):
        secure, records, secure_dir = run_inline([*TINY, "secagg=true"], tmp_path / "secure")
    assert records[0]["ggeur_clients_used"] == 4 and records[-1]["secagg_survivors"] == 4
    a, b = _geometry(plain_dir), _geometry(secure_dir)
    assert (a["counts"] == b["counts"]).all()
    # float64 sums in a 64-bit ring (step 2.2e-7 at stats_clip 1e9): equal up to the float32 the geometry is kept in
    assert np.abs(a["eigvals"] - b["eigvals"]).max() <= 1e-5 * max(1.0, float(a["eigvals"].max()))
    top = np.abs(np.einsum("crk,crk->ck", a["eigvecs"][:, :, :3], b["eigvecs"][:, :, :3]))
    assert top.min() > 0.999  # the same leading eigenvectors (up to sign)
    assert np.abs(a["mean"] - b["mean"]).max() < 1e-5
    assert sorted(a["prototypes"]) == sorted(b["prototypes"]) == ["digits", "mnist", "mnistm", "synth"]
    assert max(np.abs(a["prototypes"][k] - b["prototypes"][k]).max() for k in a["prototypes"]) < 1e-5
    # what is left: the training updates' quantisation (and the few values clipped at secure_aggregation.clip)
    assert abs(plain["final"]["accuracy"] - secure["final"]["accuracy"]) <= 0.005
    # one client per domain: what that reveals is said
    assert sum("is held by one client" in r.getMessage() for r in caplog.records) == 4


def test_options_that_need_each_clients_values_are_refused():
    with pytest.raises(ConfigError, match="strategy.guided_fraction=0.8") as err:
        check_config(compose(["strategy=ggeur", "task=digits", "secagg=true", "strategy.guided_fraction=0.8"]))
    assert err.value.key == "strategy.guided_fraction" and "guided_fraction=null" in str(err.value)
    with pytest.raises(ConfigError, match="strategy.base=fedmedian") as err:
        check_config(compose(["strategy=ggeur", "task=digits", "secagg=true", "strategy.base=fedmedian"]))
    assert err.value.key == "strategy.base"
    for ok in (["strategy.reduce=pca"], ["strategy.base=fedprox", "+strategy.proximal_mu=0.1"], []):
        check_config(compose(["strategy=ggeur", "task=digits", "secagg=true", *ok]))


def test_a_client_picks_from_the_shared_payload_what_the_server_picks_otherwise():
    rng = np.random.default_rng(0)
    C, d = 5, 4
    counts = {"a": np.array([3, 0, 2, 1, 0]), "b": np.array([0, 4, 2, 0, 0]), "c": np.array([1, 1, 0, 0, 0])}
    g = geo.Geometry(eigvals=rng.random((C, 2)).astype(np.float32), eigvecs=rng.random((C, d, 2)).astype(np.float32),
                     mean=rng.random((C, d)).astype(np.float32), counts=sum(counts.values()),
                     targets=np.full(C, 5), basis=None,
                     prototypes={k: rng.random((C, d)).astype(np.float32) for k in counts}, prototype_counts=counts)
    for glob in (False, True):
        shared = geo.select_for(g, classes_held=None, domain=None, multi_domain=True, global_prototypes=glob)
        payload = GeometryPayload(classes=shared.classes, eigvals=g.eigvals[shared.classes],
                                  eigvecs=g.eigvecs[shared.classes], targets=g.targets, noise="geometry",
                                  reduce="none", dim=d, seed=0, digest="x", multi_domain=True,
                                  prototypes=shared.prototypes, prototype_classes=shared.prototype_classes,
                                  prototype_domains=shared.prototype_domains)
        for dom, held in (("a", [0, 2, 3]), ("b", [1, 2]), ("c", [0, 1])):
            own = geo.select_for(g, classes_held=held, domain=dom, multi_domain=True, global_prototypes=glob)
            mine = for_client(payload, held=set(held), domain=dom)
            assert mine.classes.tolist() == own.classes.tolist()
            assert np.array_equal(mine.prototypes, own.prototypes)
            assert np.array_equal(mine.prototype_classes, own.prototype_classes)
