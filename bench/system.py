"""system: time-to-accuracy under stragglers and flaky clients (`corolla bench system`).

Settings (the `system` group): `ideal`; `stragglers` (10 % of clients 10x slower); `flaky` (30 %
offline per round, 10 % of the sampled drop out); `stragglers+flaky` (both).
Variants: `fedavg` (every sampled client, the round waits for the slowest), `fedavg-deadline`
(`system.deadline_s`: later replies are left out), `fedprox-partial` (FedProx with the deadline and
`system.partial_work=true`: a slow client sends the steps it finished), `fedbuff` (asynchronous,
`concurrency` = every client, K = half of them; as many client updates in all as FedAvg's rounds).
Metrics: `accuracy` (test split, after the last round), `sim_time_to_target_s` (simulated seconds
until the global accuracy first reached the target; the run's total simulated time when it never
did, with `reached` 0 for that seed), `bytes` (uplink + downlink), over seeds.

The target and the deadline come from the `ideal` `fedavg` runs, which go first: the target is
TARGET_SHARE of their mean final accuracy; the deadline is DEADLINE_FACTOR x their mean round
(in `ideal` every client is as fast, so a round lasts one client's local work and transfers).

The local learning rate of each row family is chosen first, on the validation split of `ideal`
(seed 0) among LR_GRID, the same four trials for each family: `fedavg` (used by `fedavg` and
`fedavg-deadline`), `fedprox` (used by `fedprox-partial`) and `fedbuff` (its `server_lr` stays 1.0).
In `ideal` no reply is late, so a deadline and partial work change nothing there and the family's
plain strategy stands for its variants.

Full: `fmnist-dirichlet` (alpha 0.3) with the CNN, 20 clients, 20 rounds, 3 seeds, each client
taking at most 20 local steps (batch 32) per round, as in the robust bench (a full local epoch is
~85 steps and would make the full bench about four times longer). `--quick`:
`digits` with the MLP, 10 clients, 6 rounds, 3 seeds, every setting and variant. Every client is
sampled in every FedAvg round. Runs go through bench/inline.py (in-process, no Ray).
"""

from __future__ import annotations

import statistics
from typing import Any

from bench import inline
from bench.report import BenchReport

SETTINGS: dict[str, list[str]] = {
    "ideal": ["system=ideal"],
    "stragglers": ["system=stragglers"],
    "flaky": ["system=flaky"],
    "stragglers+flaky": ["system=flaky", "system.speed=slow_fraction", "system.slow_fraction=0.1",
                         "system.slow_factor=10"],
}
VARIANTS = ("fedavg", "fedavg-deadline", "fedprox-partial", "fedbuff")
SIZES: dict[bool, dict[str, Any]] = {
    True: {"task": ["task=digits", "model=mlp"], "clients": 10, "rounds": 6, "seeds": (0, 1, 2)},
    False: {"task": ["task=fmnist-dirichlet", "task.alpha=0.3", "model=cnn", "train.max_steps=20"], "clients": 20,
            "rounds": 20, "seeds": (0, 1, 2)},
}
COMMON = ["progress=false", "plots=false", "checkpoint_every=100000", "failures.max_fraction=1.0"]
TARGET_SHARE = 0.9
DEADLINE_FACTOR = 1.5
LR_GRID = (0.02, 0.05, 0.1, 0.2)
FAMILY = {"fedavg": "fedavg", "fedavg-deadline": "fedavg", "fedprox-partial": "fedprox", "fedbuff": "fedbuff"}


def overrides(variant: str, setting: str, *, quick: bool, seed: int, deadline_s: float | None = None,
              lr: float | None = None) -> list[str]:
    """Hydra overrides of one run (`variant` a VARIANT, or `fedprox`: a FAMILY tuned without a deadline)."""
    size = SIZES[quick]
    n, rounds = int(size["clients"]), int(size["rounds"])
    args = [*size["task"], *COMMON, *SETTINGS[setting], f"task.num_clients={n}", f"seed={seed}"]
    if lr is not None:
        args.append(f"train.lr={lr}")
    if variant == "fedbuff":
        k = max(1, n // 2)
        return [*args, "strategy=fedbuff", f"strategy.concurrency={n}", f"strategy.buffer_size={k}",
                f"num_rounds={rounds * n // k}"]
    strategy = "fedprox" if variant.startswith("fedprox") else "fedavg"
    args += [f"strategy={strategy}", "strategy.fraction_train=1.0", f"num_rounds={rounds}"]
    if variant in ("fedavg-deadline", "fedprox-partial"):
        if deadline_s is None:
            raise ValueError(f"variant {variant!r} needs deadline_s")
        args.append(f"system.deadline_s={deadline_s}")
    if variant == "fedprox-partial":
        args.append("system.partial_work=true")
    return args


def _one(args: list[str]) -> dict[str, Any]:
    summary, records = inline.run_in_tempdir(args, prefix="corolla-system-")
    comm = summary["communication"]
    return {"accuracy": float(summary["final"]["accuracy"]), "sim_time_s": float(summary["timing"]["sim_time_s"]),
            "bytes": int(comm["uplink_bytes"]) + int(comm["downlink_bytes"]),
            "curve": [[r["sim_time_s"], r["accuracy"]] for r in records],  # lists: kept as JSON (bench/cells.py)
            "failures": int(summary["failures"]["total"]), "rounds": len(records)}


def time_to_target(result: dict[str, Any], target: float) -> tuple[float, bool]:
    """(simulated seconds until accuracy >= target, True), or (the run's total simulated time, False)."""
    hit = next((t for t, acc in result["curve"] if acc is not None and acc >= target), None)
    return (float(hit), True) if hit is not None else (result["sim_time_s"], False)


def run(*, quick: bool = False, workers: int | None = None) -> BenchReport:
    workers = workers or inline.default_workers()
    size = SIZES[quick]
    seeds = size["seeds"]
    families = sorted(set(FAMILY.values()))
    tuning_jobs = [((f, lr), [*overrides(f, "ideal", quick=quick, seed=0, lr=lr), "evaluate.split=val"])
                   for f in families for lr in LR_GRID]
    tuned = inline.run_many(_one, tuning_jobs, workers=workers, label="system lr", shown=("accuracy",))
    family_lr = {f: inline.best_lr(tuned, f) for f in families}
    lrs = {v: family_lr[FAMILY[v]] for v in VARIANTS}
    base = inline.run_many(_one, [(("ideal", "fedavg", s), overrides("fedavg", "ideal", quick=quick, seed=s,
                                                                     lr=lrs["fedavg"]))
                                  for s in seeds], workers=workers, label="system ideal", shown=("accuracy",))
    ok = [r for r in base.values() if isinstance(r, dict)]
    if not ok:
        raise RuntimeError(f"every ideal fedavg run failed: {inline.failures(base)}")
    target = round(TARGET_SHARE * statistics.fmean(r["accuracy"] for r in ok), 4)
    round_s = statistics.fmean(r["sim_time_s"] / r["rounds"] for r in ok)
    deadline = round(DEADLINE_FACTOR * round_s, 4)
    jobs = [((s, v, seed), overrides(v, s, quick=quick, seed=seed, deadline_s=deadline, lr=lrs[v]))
            for s in SETTINGS for v in VARIANTS for seed in seeds if (s, v) != ("ideal", "fedavg")]
    results = {**base, **inline.run_many(_one, jobs, workers=workers, label="system",
                                         shown=("accuracy", "sim_time_s"))}
    report = BenchReport("system", quick=quick, setting={
        "task": size["task"], "num_clients": size["clients"], "rounds": size["rounds"], "seeds": list(seeds),
        "engine": "bench/inline.py (in-process)", "settings": SETTINGS,
        "variants": {v: overrides(v, "ideal", quick=quick, seed=0, deadline_s=deadline)[len(size["task"]) + len(COMMON) + 3:]
                     for v in VARIANTS},
        "lr": lrs, "lr_grid": list(LR_GRID), "lr_chosen_on": "ideal setting, validation split, seed 0, per family",
        "lr_family": FAMILY,
        "target_accuracy": target, "target_rule": f"{TARGET_SHARE} x mean final accuracy of ideal fedavg",
        "deadline_s": deadline, "deadline_rule": f"{DEADLINE_FACTOR} x mean simulated round of ideal fedavg",
        "failures": inline.failures(results, name=lambda k: "/".join(map(str, k)))})
    times: dict[tuple[str, str], list[float]] = {}
    for s in SETTINGS:
        for v in VARIANTS:
            done = [results[(s, v, seed)] for seed in seeds if isinstance(results[(s, v, seed)], dict)]
            hits = [time_to_target(r, target) for r in done]
            times[(s, v)] = [t for t, _ in hits]
            report.add(s, v, accuracy=[r["accuracy"] for r in done], sim_time_to_target_s=[t for t, _ in hits],
                       reached=[float(h) for _, h in hits], bytes=[r["bytes"] for r in done],
                       clients_lost=[r["failures"] for r in done])
    report.setting["checks"] = stragglers_check(report.rows)
    return report


def stragglers_check(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Under `stragglers`: each variant's mean time to target over fedavg's, and whether it is <= 0.5 (reached on every seed)."""
    by = {r["variant"]: r for r in rows if r["setting"] == "stragglers"}
    fedavg = by["fedavg"]["sim_time_to_target_s"]["mean"]
    out: dict[str, Any] = {}
    for v in VARIANTS[1:]:
        row = by[v]
        ratio = row["sim_time_to_target_s"]["mean"] / fedavg if fedavg else None
        reached = row["reached"]["mean"] == 1.0 and by["fedavg"]["reached"]["mean"] == 1.0
        out[v] = {"time_ratio_to_fedavg": None if ratio is None else round(ratio, 3),
                  "at_most_half": bool(ratio is not None and ratio <= 0.5 and reached)}
    return out
