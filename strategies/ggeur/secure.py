"""GGEUR under secagg=true: the statistics phase as secure sums, so the server sees totals only.

Every quantity the geometry needs is a sum over clients: per class n_c, sum x and sum z z^T (the
pooled covariance is S2/N - mu mu^T), the PCA sketch (n, sum x, (sum x x^T) Omega), and, on
multi-domain tasks, per domain and class the count and sum x (each client adds its values in its
domain's slot, zeros elsewhere). Two more sums replace per-client checks: the number of classes
held with fewer than `min_class_samples` samples, and the number of clients per domain (a domain
held by one client has its prototypes, i.e. that client's class means, revealed: logged).

What the server still learns: the totals above, hence the global class counts and, per domain,
the class counts and means. Not which client holds which classes or domain: the geometry goes to
every client alike and each picks its part (`augment.for_client`).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from conf.errors import ConfigError
from strategies.ggeur import geometry as geo
from strategies.ggeur import protocol as proto
from strategies.secagg import FixedPoint, secure_sum

log = logging.getLogger("corolla")

DOMAINS_KEY = "ggeur-domains"


def refusal(section: dict[str, Any]) -> None:
    """Raise ConfigError for GGEUR settings that need each client's own values under secagg=true."""
    from strategies.registry import get_strategy
    from strategies.secagg.strategy import refusal as base_refusal

    if section.get("guided_fraction") is not None:
        raise ConfigError(
            f"secagg=true cannot run with strategy.guided_fraction={section['guided_fraction']}: it keeps, per "
            "class, the sums of the clients with the most samples, so the server must see each client's class "
            "counts. Set strategy.guided_fraction=null (every client's sums count) or secagg=false.",
            key="strategy.guided_fraction")
    base = str(section.get("base", "fedavg"))
    why = base_refusal(get_strategy(base).server)
    if why:
        raise ConfigError(f"secagg=true cannot run with strategy.base={base}: {why}", key="strategy.base")


def _fixed_point(secure: Any, parties: int) -> FixedPoint:
    return FixedPoint(clip=float(secure.stats_clip), modulus_bits=64, max_parties=max(parties, 2))


def _summed(server: Any, grid: Grid, nodes: list[int], content: RecordDict,
            shapes: dict[str, tuple[int, ...]]) -> tuple[dict[str, np.ndarray], int, int]:
    """The secure sum over `nodes` of what they compute for `content`; (sums, survivors, uplink bytes)."""
    secure = server.secure
    fixed_point = _fixed_point(secure, len(nodes))
    result = secure_sum(grid, nodes, request=lambda n: RecordDict(dict(content.items())), message_type=proto.STATS,
                        shapes=shapes, fixed_point=fixed_point, max_dropout=secure.max_dropout,
                        timeout=server.timeout, neighbours=secure.neighbours)
    if result.clipped:
        raise ConfigError(f"ggeur: {result.clipped} class-statistics values lay outside +-{fixed_point.clip:g} and "
                          "were clipped; raise secure_aggregation.stats_clip", key="secure_aggregation.stats_clip")
    size = sum(int(np.prod(s)) for s in shapes.values())
    return result.sums, len(result.survivors), size * fixed_point.dtype(0).itemsize * len(result.survivors)


def sketch_basis(server: Any, grid: Grid, nodes: list[int], server_round: int) -> tuple[np.ndarray, int]:
    """The PCA reduction's basis from a secure sum of the sketches; (basis, uplink bytes)."""
    cols = min(server.r + server.config.sketch_oversample, server.dim)
    content = proto.sketch_query(server_round=server_round, seed=server._projection_seed(), cols=cols)
    sums, _, up = _summed(server, grid, nodes, content, {"n": (), "s1": (server.dim,), "y": (server.dim, cols)})
    n = float(sums["n"])
    if n < 0.5:
        raise RuntimeError("ggeur: the summed sketch holds no samples; cannot build the PCA basis")
    omega = geo.sketch_matrix(server.dim, cols, server._projection_seed())
    return geo.nystrom_basis(round(n), sums["s1"], sums["y"], omega, server.r), up


def domain_names(server: Any) -> list[str]:
    """The task's domains in a fixed order (the slots of the per-domain sums); [] without domains."""
    if not server.multi_domain:
        return []
    return sorted(set(server.env.task.client_domains or [""]))


def statistics(server: Any, grid: Grid, nodes: list[int], content: RecordDict,
               basis: np.ndarray | None) -> tuple[geo.Geometry, int, int]:
    """The pooled geometry from secure sums of the class statistics; (geometry, clients, uplink bytes)."""
    cfg, C, d, r = server.config, server.num_classes, server.dim, server.r
    domains = domain_names(server)
    shapes = {"n": (C,), "s1": (C, d), "s2": (C, r * (r + 1) // 2), "small": ()}
    if domains:
        content["config"][DOMAINS_KEY] = domains
        shapes.update({"domain_n": (len(domains), C), "domain_s1": (len(domains), C, d),
                       "domain_clients": (len(domains),)})
    sums, clients, up = _summed(server, grid, nodes, content, shapes)
    small = int(round(float(sums["small"])))
    if small:
        raise ConfigError(
            f"ggeur: {small} client class(es) hold fewer real samples than strategy.min_class_samples="
            f"{cfg.min_class_samples} (under secagg=true only their number is known). Lower "
            "strategy.min_class_samples, or use a partition with more samples per class (e.g. a larger task.alpha).",
            key="strategy.min_class_samples")
    counts = np.rint(sums["n"]).astype(np.int64)
    pooled = geo.ClassSums(counts, sums["s1"], geo.unpack_sym(sums["s2"], r))
    per_domain: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for i, dom in enumerate(domains):
        held_by = int(round(float(sums["domain_clients"][i])))
        if held_by == 1:
            log.warning("ggeur with secagg=true: domain %r is held by one client, so its prototypes (that client's "
                        "per-class means and class counts) are revealed to the server", dom)
        if held_by:
            per_domain[dom] = (np.rint(sums["domain_n"][i]), sums["domain_s1"][i])
    geometry = geo.geometry_from_sums(pooled, counts, basis=basis, top_k=cfg.top_k, amplify=cfg.amplify,
                                      amplify_top=cfg.amplify_top, target_count=cfg.target_count, domains=per_domain)
    return geometry, clients, up


# ---- the client half ---------------------------------------------------------------------------

def client_values(client: Any, message: Message) -> dict[str, np.ndarray]:
    """What one client adds to the secure sums of the statistics phase (sketch or class sums)."""
    query = proto.parse_query(message.content)
    x, y = client._features(query.task_id)
    d = x.shape[1]
    if query.phase == "sketch":
        n, s1, yk = geo.sketch_sums(x, geo.sketch_matrix(d, query.sketch_cols, query.seed))
        return {"n": np.asarray(float(n)), "s1": s1, "y": yk}
    C = int(client.env.task.num_classes)
    r = query.dim if query.dim is not None else d
    sums = geo.class_sums(x, y, C, client._basis(query.reduce, d, r, query.seed, query.basis))
    minimum = int(client.config.min_class_samples)
    values = {"n": sums.n.astype(np.float64), "s1": sums.s1, "s2": geo.pack_sym(sums.s2),
              "small": np.asarray(float(np.count_nonzero((sums.n > 0) & (sums.n < minimum))))}
    domains = [str(v) for v in message.content["config"].get(DOMAINS_KEY, [])]
    if domains:
        own = client.env.task.client_domain(client.env.partition_id) or ""
        if own not in domains:
            raise ValueError(f"ggeur: this client's domain {own!r} is not one of the task's {domains}")
        slot = domains.index(own)
        values["domain_n"] = np.zeros((len(domains), C))
        values["domain_n"][slot] = sums.n
        values["domain_s1"] = np.zeros((len(domains), C, d))
        values["domain_s1"][slot] = sums.s1
        values["domain_clients"] = np.zeros(len(domains))
        values["domain_clients"][slot] = 1.0
    return values
