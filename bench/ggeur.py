"""ggeur: GGEUR against FedAvg, its controls and the centralised ceiling (`corolla bench ggeur`).

Every federated variant runs corolla's own ServerApp and ClientApp code (the statistics phase's
messages included) on bench/inline.py's in-process grid, `--jobs` runs at a time: the code path of
`corolla run` with the same overrides, without Ray's start-up per run (FedAvg gives the same
accuracy to the last digit as through Ray; GGEUR's sampled embeddings can differ in the last bits
with the number of torch threads). The frozen
features come from the disk cache (filled once before the runs start). FedAvg and every GGEUR
variant of a setting and seed run on the same partition and the same cached features; the
centralised ceiling trains the same head on the pooled training data, for as many epochs as a
federated client trains in all rounds.

Metrics per (setting, variant), over seeds: `accuracy` (test; on digit-domains the mean over the
four domains, with each domain's in `acc_<domain>`), `bytes_per_client` (all uplink + downlink
bytes of the run over the number of clients: model traffic plus GGEUR's statistics and geometry),
and `gap_closed` = (acc - acc_fedavg) / (acc_centralised - acc_fedavg) per seed.

Payload rows (`fmnist-dirichlet/payload`, one seed, the statistics phase only) give the bytes per
client of the class statistics and the broadcast geometry on 1280-d features, by reduction (none,
float32 sums, a random projection, PCA from the clients' sketches).

Learning rates are chosen on the validation split only (`python -m bench.ggeur --tune`), per setting
family and per method (FedAvg and GGEUR on the same grid), and read from conf/bench/ggeur.yaml.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from bench.inline import default_workers, failures, run_inline, run_many
from bench.report import BenchReport

log = logging.getLogger("corolla")

CONF = Path(__file__).resolve().parents[1] / "conf" / "bench" / "ggeur.yaml"

# setting -> (family, Hydra overrides)
FEATURES = ["task.features=effnet-lite0"]
SETTINGS: dict[str, tuple[str, list[str]]] = {
    **{f"digits-dirichlet/alpha={a}": ("pixels", ["task=digits-dirichlet", f"task.alpha={a}",
                                                  "task.num_clients=10"]) for a in (0.05, 0.1, 0.5)},
    **{f"fmnist-dirichlet/alpha={a}": ("features", ["task=fmnist-dirichlet", f"task.alpha={a}",
                                                    "task.num_clients=10", *FEATURES])
       for a in (0.05, 0.1, 0.5)},
    "digit-domains/all-classes": ("domains", ["task=digit-domains", "task.num_clients=4", *FEATURES]),
    **{f"digit-domains/alpha={a}": ("domains", ["task=digit-domains", "task.num_clients=4",
                                                "task.partition=dirichlet", f"task.alpha={a}", *FEATURES])
       for a in (0.5, 0.1)},
}
# variant -> strategy overrides (None: the centralised ceiling, trained in-process)
VARIANTS: dict[str, list[str] | None] = {
    "fedavg": ["strategy=fedavg"],
    "ggeur": ["strategy=ggeur"],
    "ggeur-fedprox": ["strategy=ggeur-fedprox"],
    "oversample": ["strategy=ggeur", "strategy.noise=none"],
    "isotropic": ["strategy=ggeur", "strategy.noise=isotropic"],
    "ggeur-augweights": ["strategy=ggeur", "strategy.weight_by=augmented"],
    "ggeur-globalproto": ["strategy=ggeur", "strategy.global_prototypes=true"],
    "ggeur-samesteps": ["strategy=ggeur", "strategy.local_steps=real"],
    "centralised": None,
}
COMMON = ["model=linear", "progress=false", "plots=false"]


def load_conf() -> dict[str, Any]:
    return yaml.safe_load(CONF.read_text())


def family_overrides(conf: dict[str, Any], family: str) -> list[str]:
    train = conf["families"][family]
    return [f"train.{k}={v}" for k, v in train.items()]


def simulate_once(overrides: list[str], workdir: Path) -> tuple[dict[str, Any], Path, float]:
    """One federated run on bench.inline's in-process grid; returns (summary, run dir, wall seconds)."""
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))
    started = time.monotonic()
    summary, _, _ = run_inline(overrides, run_dir)
    return summary, run_dir, time.monotonic() - started


def evaluate_run(run_dir: Path) -> dict[str, float]:
    """Test accuracy of the final global model (per domain on multi-domain tasks) and val accuracy."""
    from data import load_task
    from models import build_model

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    task = load_task(cfg["task"], seed=int(cfg["seed"]))
    model = build_model(cfg["model"], task.input_shape, task.num_classes)
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    model.load_state_dict(state["model"])
    return accuracies(model, task)


def accuracies(model: torch.nn.Module, task: Any) -> dict[str, float]:
    from models.training import evaluate

    device = torch.device("cpu")
    out: dict[str, float] = {"val": evaluate(model, task.val().x, task.val().y, device=device).accuracy}
    by_domain = task.test_by_domain()
    if by_domain:
        for name, split in by_domain.items():
            out[f"acc_{name}"] = evaluate(model, split.x, split.y, device=device).accuracy
        out["accuracy"] = statistics.fmean(out[f"acc_{n}"] for n in by_domain)
    else:
        test = task.test()
        out["accuracy"] = evaluate(model, test.x, test.y, device=device).accuracy
    return out


def centralised(overrides: list[str], seed: int) -> dict[str, float]:
    """The same head trained on the pooled training data, as many epochs as all rounds of a client."""
    from conf.compose import compose
    from models.training import TrainConfig, train_local
    from data import load_task
    from models import build_model
    from strategies.base import derive_seed

    cfg = compose(overrides)
    task = load_task(cfg["task"], seed=seed)
    torch.manual_seed(derive_seed(seed, "init"))
    model = build_model(cfg["model"], task.input_shape, task.num_classes)
    train = dict(cfg["train"])
    train["epochs"] = int(train["epochs"]) * int(cfg["num_rounds"])
    pool = task.train_pool()
    train_local(model, pool.x, pool.y, TrainConfig.from_mapping(train), device=torch.device("cpu"),
                seed=derive_seed(seed, "centralised"))
    return accuracies(model, task)


CENTRALISED = "+bench=centralised"  # marks a job as the centralised ceiling (no federation)


def run_job(overrides: list[str]) -> dict[str, float]:
    """One (setting, variant, seed) job: a federated run, or the centralised ceiling; its row values."""
    _log_warnings()
    if overrides and overrides[0] == CENTRALISED:
        seed = int(next(o for o in overrides if o.startswith("seed=")).split("=", 1)[1])
        res = centralised(overrides[1:], seed)
        res["bytes_per_client"] = 0.0
        return res
    workdir = Path(tempfile.mkdtemp(prefix="corolla-bench-ggeur-"))
    try:
        summary, run_dir, wall = simulate_once(overrides, workdir)
        res = evaluate_run(run_dir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    comm = summary["communication"]
    res["bytes_per_client"] = (comm["uplink_bytes"] + comm["downlink_bytes"]) / summary["num_clients"]
    res["wall_s"] = wall
    return res


def job_overrides(conf: dict[str, Any], setting: str, variant: str, seed: int, *, quick: bool,
                  rounds: int | None = None, lr: float | None = None) -> list[str]:
    """The Hydra overrides of one job (the same base for every variant of a setting)."""
    family, task_overrides = SETTINGS[setting]
    fam = conf["families"][family]
    n_rounds = rounds or int(fam["rounds_quick" if quick else "rounds"])
    extra = VARIANTS[variant]
    ggeur_based = extra is not None and extra[0].startswith("strategy=ggeur")
    # Each method runs its own lr chosen on val: fedavg's for fedavg and the ceiling, ggeur's for
    # every GGEUR-based row (the controls change one knob of GGEUR, not its lr).
    method_lr = fam.get("ggeur_lr") if ggeur_based else None
    train = {**fam["train"], **({"lr": method_lr} if method_lr is not None else {}),
             **({"lr": lr} if lr is not None else {})}
    base = [*task_overrides, *COMMON, *(f"train.{k}={v}" for k, v in train.items()), f"num_rounds={n_rounds}",
            f"seed={seed}"]
    if extra is None:
        return [CENTRALISED, *base]
    if ggeur_based:
        extra = [*extra, *(f"strategy.{k}={v}" for k, v in fam.get("ggeur", {}).items())]
    return [*base, *extra]


def run(quick: bool, *, settings: list[str] | None = None, variants: list[str] | None = None,
        seeds: list[int] | None = None, rounds: int | None = None, workers: int | None = None) -> BenchReport:
    """Every setting x seed x variant, `workers` runs at a time (COROLLA_BENCH_JOBS, default 2)."""
    conf = load_conf()
    seeds = seeds if seeds is not None else ([0] if quick else [0, 1, 2])
    chosen = settings or list(SETTINGS)
    names = variants or list(VARIANTS)
    workers = workers or default_workers()
    report = BenchReport("ggeur", quick, setting={
        "seeds": seeds, "clients": "10 (digits, fmnist), 4 (digit-domains: one per domain)",
        "model": "linear", "fraction_train": 0.5, "features": "effnet-lite0, 96 px (fmnist, domains)",
        "train": conf["families"], "lr_chosen_on": "validation split (python -m bench.ggeur --tune)",
        "engine": "in-process grid (corolla's ServerApp + ClientApp code, no Ray; bench/inline.py)",
    })
    warm_feature_cache(chosen)
    jobs = [((setting, variant, seed), job_overrides(conf, setting, variant, seed, quick=quick, rounds=rounds))
            for setting in chosen for seed in seeds for variant in names]
    started = time.monotonic()
    results = run_many(run_job, jobs, workers=workers, label="ggeur bench", shown=("accuracy", "val"))
    failed = failures(results, lambda k: " ".join(map(str, k)))
    walls: dict[str, list[float]] = {}
    for setting in chosen:
        rows: dict[str, list[dict[str, float]]] = {v: [] for v in names}
        for variant in names:
            for seed in seeds:
                res = results[(setting, variant, seed)]
                if not isinstance(res, BaseException):
                    rows[variant].append(res)
                    if "wall_s" in res:
                        walls.setdefault(variant, []).append(res["wall_s"])
        add_rows(report, setting, rows)
    if settings is None and variants is None:
        failed.update(add_payload_rows(report, workers))
    report.setting["failed_runs"] = failed
    report.setting["wall_s"] = round(time.monotonic() - started, 1)
    report.setting["workers"] = workers
    report.setting["rounds"] = {f: rounds or v["rounds_quick" if quick else "rounds"]
                                for f, v in conf["families"].items()}
    report.setting["mean_sim_wall_s"] = {v: round(statistics.fmean(w), 2) for v, w in walls.items()}
    return report


def warm_feature_cache(settings: list[str]) -> None:
    """Embed each feature task once here, so parallel workers read the disk cache instead of racing."""
    from conf.compose import compose
    from data import load_task

    seen = set()
    for setting in settings:
        task_overrides = tuple(o for o in SETTINGS[setting][1] if not o.startswith("task.alpha"))
        if FEATURES[0] in task_overrides and task_overrides not in seen:
            seen.add(task_overrides)
            load_task(compose(list(task_overrides))["task"], seed=0)


# ---- payload: what the statistics phase costs on 1280-d features, by reduction -------------------

PAYLOAD_SETTING = "fmnist-dirichlet/payload"
PAYLOAD_BASE = [*SETTINGS["fmnist-dirichlet/alpha=0.1"][1], *COMMON, "strategy=ggeur", "num_rounds=1",
                "train.max_steps=1", "seed=0"]
# variant -> strategy overrides; the statistics phase only (one training step), one seed: bytes are
# deterministic given the task and the reduction.
PAYLOAD_VARIANTS: dict[str, list[str]] = {
    "ggeur/reduce=none": ["strategy.reduce=none"],
    "ggeur/reduce=none-float32": ["strategy.reduce=none", "strategy.stats_dtype=float32"],
    "ggeur/reduce=random128": ["strategy.reduce=random", "strategy.reduce_dim=128"],
    "ggeur/reduce=pca128": ["strategy.reduce=pca", "strategy.reduce_dim=128"],
}


def run_payload(overrides: list[str]) -> dict[str, float]:
    """The statistics phase's bytes per client of one run (uplink sums, downlink geometry)."""
    workdir = Path(tempfile.mkdtemp(prefix="corolla-bench-ggeur-"))
    try:
        summary, _, _ = simulate_once(overrides, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    phase = summary["ggeur"]
    return {"stats_uplink_per_client": float(phase["stats_uplink_bytes_per_client"]),
            "geometry_downlink_per_client": float(phase["geometry_bytes_per_client"]),
            "bytes_per_client": float(phase["bytes_per_client"]), "dim": float(phase["dim"])}


def add_payload_rows(report: BenchReport, workers: int) -> dict[str, str]:
    """Rows `fmnist-dirichlet/payload` x reduction; returns the failed runs."""
    jobs = [(name, [*PAYLOAD_BASE, *extra]) for name, extra in PAYLOAD_VARIANTS.items()]
    results = run_many(run_payload, jobs, workers=workers, label="ggeur payload", shown=("bytes_per_client",))
    for name in PAYLOAD_VARIANTS:
        res = results[name]
        if not isinstance(res, BaseException):
            report.add(PAYLOAD_SETTING, name, **{k: [v] for k, v in res.items()})
    return failures(results, lambda k: f"{PAYLOAD_SETTING} {k}")


def add_rows(report: BenchReport, setting: str, results: dict[str, list[dict[str, float]]]) -> None:
    base = [r["accuracy"] for r in results.get("fedavg", [])]
    top = [r["accuracy"] for r in results.get("centralised", [])]
    for variant, runs in results.items():
        if not runs:
            continue
        acc = [r["accuracy"] for r in runs]
        gap = None
        if base and top:
            gap = [(a - b) / (t - b) if abs(t - b) > 1e-9 else float("nan") for a, b, t in zip(acc, base, top)]
        extra = {k: [r[k] for r in runs] for k in sorted(runs[0]) if k.startswith("acc_")}
        report.add(setting, variant, accuracy=acc, bytes_per_client=[r["bytes_per_client"] for r in runs],
                   gap_closed=gap, val_accuracy=[r["val"] for r in runs], **extra)


# ---- learning-rate selection on the validation split -------------------------------------------

TUNE_SETTINGS = {"pixels": "digits-dirichlet/alpha=0.1", "features": "fmnist-dirichlet/alpha=0.1",
                 "domains": "digit-domains/alpha=0.1"}


def best_lr(grid: list[float], val: dict[float, float]) -> float:
    """The lr with the best validation accuracy (the smaller lr on ties); a failed trial (NaN) never wins."""
    return max(grid, key=lambda lr: (-math.inf if math.isnan(val[lr]) else val[lr], -lr))


def tune(grid: list[float], families: list[str], workers: int | None = None) -> dict[str, Any]:
    """Validation accuracy of FedAvg and GGEUR for each lr of `grid` (seed 0, the full rounds).

    Each method keeps the lr with its own best validation accuracy (the same grid, so the same
    number of trials for the baseline and the method): conf/bench/ggeur.yaml's `train.lr` (fedavg)
    and `ggeur_lr` (every GGEUR-based row). The test split is never looked at.
    """
    conf = load_conf()
    workers = workers or default_workers()
    warm_feature_cache([TUNE_SETTINGS[f] for f in families])
    jobs = [((family, lr, variant), job_overrides(conf, TUNE_SETTINGS[family], variant, 0, quick=False, lr=lr))
            for family in families for lr in grid for variant in ("fedavg", "ggeur")]
    results = run_many(run_job, jobs, workers=workers, label="ggeur tune", shown=("val",))
    out: dict[str, Any] = {}
    for family in families:
        scores = {lr: {v: (r["val"] if not isinstance(r := results[(family, lr, v)], BaseException) else float("nan"))
                       for v in ("fedavg", "ggeur")} for lr in grid}
        best = {v: best_lr(grid, {lr: scores[lr][v] for lr in grid}) for v in ("fedavg", "ggeur")}
        out[family] = {"best_lr": best, "val": {str(k): v for k, v in scores.items()}}
    return out


def merge_reports(paths: list[Path]) -> BenchReport:
    """One report from the rows of several ggeur.json files (runs split across processes)."""
    parts = [json.loads(p.read_text()) for p in paths]
    report = BenchReport("ggeur", all(p["quick"] for p in parts), setting=dict(parts[0]["setting"]))
    report.setting["wall_s"] = [p["setting"].get("wall_s") for p in parts]
    report.setting["merged_from"] = [str(p) for p in paths]
    for part in parts:
        report.rows.extend(part["rows"])
    return report


def _log_warnings() -> None:
    """Show corolla's warnings (failed clients, rejected replies) on stderr."""
    logger = logging.getLogger("corolla")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s corolla: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    _log_warnings()
    parser = argparse.ArgumentParser(prog="python -m bench.ggeur")
    parser.add_argument("--tune", action="store_true", help="choose lrs on the validation split")
    parser.add_argument("--grid", default="0.01,0.03,0.1,0.3")
    parser.add_argument("--families", default="pixels,features,domains")
    parser.add_argument("--settings", default=None, help="comma-separated subset of settings")
    parser.add_argument("--variants", default=None)
    parser.add_argument("--seeds", default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--jobs", type=int, default=None, help="parallel runs (default COROLLA_BENCH_JOBS or 2)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--merge", nargs="+", type=Path, default=None,
                        help="merge ggeur.json files (rows in the order given) into --out")
    args = parser.parse_args(argv)
    if args.merge:
        merged = merge_reports(args.merge)
        print(merged.table(["accuracy", "bytes_per_client", "gap_closed"]))
        print(merged.write(args.out or Path(__file__).resolve().parent / "results"))
        return 0
    if args.tune:
        result = tune([float(v) for v in args.grid.split(",")], args.families.split(","), workers=args.jobs)
        path = (args.out or Path(__file__).resolve().parent / "results") / "ggeur_tuning.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result, indent=2))
        print(f"wrote {path}; put each family's best lrs into {CONF} (train.lr: fedavg, ggeur_lr: ggeur)")
        return 0
    report = run(args.quick, settings=args.settings.split(",") if args.settings else None,
                 variants=args.variants.split(",") if args.variants else None,
                 seeds=[int(s) for s in args.seeds.split(",")] if args.seeds else None, rounds=args.rounds,
                 workers=args.jobs)
    print(report.table(["accuracy", "bytes_per_client", "gap_closed"]))
    if args.out:
        print(report.write(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
