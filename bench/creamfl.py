"""creamfl: CreamFL against its ablations and baselines on the captioned task, at a validated budget.

Settings: `captioned/pixels` (towers on pixels and word ids), `captioned/frozen` (trainable heads on
frozen EfficientNet-Lite0 and all-MiniLM-L6-v2 features) and `captioned/frozen-private4x` (frozen,
the image-text clients together holding four times as many private pairs as the public set).

The budget: per setting, the server's public-set epochs per round and learning rate are chosen for
`public-only` on the validation split (a small grid, mean over the seeds), and every row then uses
them: each federated row's public steps, and `centralised`'s epochs over its public + private pairs
(the same epochs, not the same steps). At that server budget, the clients' local epochs and learning
rate and the fraction of clients sampled per round are chosen the same way for `creamfl` and then
used by every federated row alike. Variants: `public-only`, `mean` (mean ensemble, no client
regularisers), `contrastive` (contrastive ensemble, no regularisers), `creamfl` (the published
method), `centralised` (the ceiling) and `creamfl-*` candidates; the best candidate per setting is
the one with the highest mean validation rsum. Test numbers are reported, never used to choose.

Every run uses corolla's own ServerApp and ClientApp code through an in-process grid (bench.inline):
the same messages, validation, byte metering, metrics.jsonl and summary.json as `corolla run`,
without Ray's start-up per run, which would dominate a bench of many short runs on 2 cores.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.inline import default_workers, failures, run_inline, run_many
from bench.report import BenchReport

NO_REG = ["strategy.inter=false", "strategy.intra=false"]
BASELINES: dict[str, list[str]] = {
    "public-only": ["strategy.fraction_train=0"],
    "mean": ["strategy.ensemble=mean", *NO_REG],
    "contrastive": ["strategy.ensemble=contrastive", *NO_REG],
    "creamfl": [],
    "centralised": ["strategy.fraction_train=0", "strategy.server_data=all"],
}
JOINT_REL = ["strategy.distill_mode=joint", "strategy.kd_loss=relational"]
HOLDOUT = ["strategy.align_holdout=0.2"]
# Candidates beyond the paper (the README's CreamFL section says why each exists).
CANDIDATES: dict[str, list[str]] = {
    "creamfl-joint": ["strategy.distill_mode=joint"],
    "creamfl-joint-normalised": ["strategy.distill_mode=joint", "strategy.kd_normalise=true"],
    "creamfl-joint-relational": JOINT_REL,
    "creamfl-aligned": [*JOINT_REL, *HOLDOUT, "strategy.kd_clients=aligned"],
    "creamfl-alignment-weighted": [*JOINT_REL, *HOLDOUT, "strategy.kd_client_weights=alignment"],
}
FROZEN = ["task.image_features=effnet-lite0", "task.text_features=minilm"]
COMMON = ["task=captioned", "strategy=creamfl", "progress=false", "plots=false", "checkpoint_every=1000"]
SIZES = {  # (public, private, val, test, clients per type)
    False: {"public": 500, "private": 2400, "val": 300, "test": 500, "per_type": 4},
    True: {"public": 300, "private": 1200, "val": 200, "test": 300, "per_type": 2},
}
FULL = {"seeds": [0, 1, 2], "rounds": 10, "grid": {"server_epochs": [1, 3, 5], "server_lr": [0.001, 0.003]},
        "client_grid": {"fraction_train": [0.5, 1.0], "local_epochs": [1, 3], "client_lr": [0.001, 0.003]}}
QUICK = {"seeds": [0, 1], "rounds": 3, "grid": {"server_epochs": [1, 3], "server_lr": [0.001, 0.003]},
         "client_grid": {"fraction_train": [0.5, 1.0], "local_epochs": [1, 3], "client_lr": [0.001, 0.003]}}
# The clients' budget is tuned on the published method, at the server's budget, and then used by
# every federated row alike (public-only and centralised have no clients).
CLIENT_TUNED_ON = "creamfl"
ALIGN_KEYS = ["align_image_img", "align_text_txt", "align_image_text_img", "align_image_text_txt",
              "align_server_img", "align_server_txt"]
PER_ROUND = ["rsum", "val_rsum", "global_alignment", "alignment_img", "alignment_txt", "alignment_agg_img",
             "alignment_agg_txt", "weight_spread_img", "weight_spread_txt", "kd_kept_img", "kd_kept_txt",
             "kd_clients_kept_img", "kd_clients_kept_txt", "kd_target_norm_img", "kd_target_norm_txt",
             "kd_target_cos_img", "kd_target_cos_txt", *ALIGN_KEYS, "wall_s", "uplink_bytes"]


def private4x_size(public: int, per_type: int) -> int:
    """task.private_size at which the image-text clients together hold 4 x public_size private
    pairs: the pool is shared out over the three client types in proportion to their counts
    (`per_type` each), so the image-text share is a third."""
    num_clients, image_text = 3 * per_type, per_type
    return 4 * public * num_clients // image_text


def task_overrides(quick: bool) -> dict[str, list[str]]:
    """Each setting's task overrides."""
    size = SIZES[quick]
    n = size["per_type"]
    base = [f"task.public_size={size['public']}", f"task.val_size={size['val']}", f"task.test_size={size['test']}",
            f"task.num_clients={3 * n}", f"task.clients={{image:{n},text:{n},image_text:{n}}}"]
    return {
        "captioned/pixels": [*base, f"task.private_size={size['private']}"],
        "captioned/frozen": [*base, f"task.private_size={size['private']}", *FROZEN],
        "captioned/frozen-private4x": [*base, f"task.private_size={private4x_size(size['public'], n)}", *FROZEN],
    }


def one_run(overrides: list[str]) -> dict[str, Any]:
    """One inline run: its test and validation retrieval, timing, bytes and per-round series."""
    with tempfile.TemporaryDirectory(prefix="corolla-creamfl-") as tmp:
        summary, metrics, _ = run_inline(overrides, Path(tmp) / "run")
    last = metrics[-1]
    replied = [r for r in metrics if r["num_replies"]]
    return {
        **{k: summary["retrieval"][k] for k in ("rsum", "i2t_r1", "t2i_r1")},
        "val_rsum": last["val_rsum"],
        "s_per_round": statistics.fmean(r["wall_s"] for r in metrics),
        "uplink_per_reply": statistics.fmean(r["uplink_bytes"] / r["num_replies"] for r in replied) if replied else 0.0,
        "series": {key: [r.get(key) for r in metrics] for key in PER_ROUND},
    }


def has_clients(overrides: list[str]) -> bool:
    """Whether a variant federates (public-only and centralised sample no clients)."""
    return "strategy.fraction_train=0" not in overrides


def choose_budget(val: dict[tuple[float, ...], list[float]]) -> tuple[float, ...]:
    """The grid point with the highest mean validation rsum (the server's: (server_epochs,
    server_lr); the clients': (fraction_train, local_epochs, client_lr)); ties: the smaller
    values, the first coordinate first (fewer epochs, fewer clients)."""
    return max(sorted(val), key=lambda k: (statistics.fmean(val[k]), *(-x for x in k)))


def best_candidate(val: dict[str, list[float]]) -> str:
    """The candidate with the highest mean validation rsum (ties: the first in CANDIDATES order)."""
    names = [n for n in CANDIDATES if n in val] + sorted(set(val) - set(CANDIDATES))
    return max(names, key=lambda n: (statistics.fmean(val[n]), -names.index(n)))


def _mean_series(series: list[list[Any]]) -> list[float | None]:
    """The mean over seeds of a per-round series (None where no seed has it)."""
    out: list[float | None] = []
    for i in range(max(len(s) for s in series)):
        vals = [s[i] for s in series if i < len(s) and s[i] is not None]
        out.append(round(statistics.fmean(vals), 4) if vals else None)
    return out


def _run_mean(values: list[Any]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.fmean(vals) if vals else None


def run(quick: bool = False, variants: list[str] | None = None, threads: int | None = None,
        workers: int | None = None, settings: list[str] | None = None) -> BenchReport:
    import torch

    # One thread per run: on 2 shared cores torch's default intra-op threads oversubscribe.
    threads = threads or int(os.environ.get("COROLLA_BENCH_THREADS", "1"))
    torch.set_num_threads(threads)
    workers = workers or default_workers()
    plan = QUICK if quick else FULL
    seeds, rounds = plan["seeds"], plan["rounds"]
    common = [*COMMON, f"num_rounds={rounds}"]
    tasks = task_overrides(quick)
    chosen_settings = settings or list(tasks)
    every = {**BASELINES, **CANDIDATES}
    names = variants or list(every)
    started = time.monotonic()
    grid = list(itertools.product(plan["grid"]["server_epochs"], plan["grid"]["server_lr"]))
    tuning = run_many(one_run, [((s, e, lr, seed), [*common, *tasks[s], *BASELINES["public-only"],
                                                    f"strategy.server_epochs={e}", f"strategy.server_lr={lr}",
                                                    f"seed={seed}"])
                                for s in chosen_settings for e, lr in grid for seed in seeds],
                      workers=workers, threads=threads, label="creamfl budget", shown=("val_rsum",))
    failed = failures(tuning)
    budget: dict[str, Any] = {}
    for s in chosen_settings:
        val = {(e, lr): [tuning[(s, e, lr, seed)]["val_rsum"] for seed in seeds]  # type: ignore[index]
               for e, lr in grid if all(not isinstance(tuning[(s, e, lr, seed)], BaseException) for seed in seeds)}
        epochs, lr = choose_budget(val)
        budget[s] = {"server_epochs": epochs, "server_lr": lr,
                     "val_rsum": {f"epochs={e},lr={l}": round(statistics.fmean(v), 4) for (e, l), v in val.items()}}
    server_of = {s: [f"strategy.server_epochs={b['server_epochs']}", f"strategy.server_lr={b['server_lr']}"]
                 for s, b in budget.items()}
    client_keys = list(plan["client_grid"])
    client_grid = list(itertools.product(*plan["client_grid"].values()))
    client_tuning = run_many(one_run, [((s, *point, seed), [*common, *tasks[s], *server_of[s], *every[CLIENT_TUNED_ON],
                                                            *(f"strategy.{k}={v}" for k, v in zip(client_keys, point)),
                                                            f"seed={seed}"])
                                       for s in chosen_settings for point in client_grid for seed in seeds],
                             workers=workers, threads=threads, label="creamfl client budget", shown=("val_rsum",))
    failed.update(failures(client_tuning))
    for s in chosen_settings:
        val = {point: [client_tuning[(s, *point, seed)]["val_rsum"] for seed in seeds]  # type: ignore[index]
               for point in client_grid
               if all(not isinstance(client_tuning[(s, *point, seed)], BaseException) for seed in seeds)}
        budget[s].update(dict(zip(client_keys, choose_budget(val))))
        budget[s]["client_val_rsum"] = {",".join(f"{k}={v}" for k, v in zip(client_keys, point)):
                                        round(statistics.fmean(vals), 4) for point, vals in val.items()}
    client_of = {s: [f"strategy.{k}={budget[s][k]}" for k in client_keys] for s in chosen_settings}
    jobs = [((s, name, seed), [*common, *tasks[s], *server_of[s], *(client_of[s] if has_clients(every[name]) else []),
                               *every[name], f"seed={seed}"])
            for s in chosen_settings for name in names for seed in seeds]
    results = run_many(one_run, jobs, workers=workers, threads=threads, label="creamfl", shown=("rsum", "val_rsum"))
    failed.update(failures(results))
    report = CreamFLReport("creamfl", quick, setting={
        "task": "captioned", "rounds": rounds, "seeds": seeds, "overrides": common,
        "settings": {s: tasks[s] for s in chosen_settings},
        "engine": "in-process grid (corolla's ServerApp + ClientApp code, no Ray)",
        "variants": {name: every[name] for name in names},
        "budget": {**budget, "how": (
            "per setting, public-only's server_epochs x server_lr grid "
            f"{plan['grid']} chosen on the validation split (mean over the seeds, last round); every row "
            "uses that budget: the federated rows' public steps and centralised's epochs over its public + "
            "private pairs (the same number of epochs, not of steps); then, at that server budget, the clients' "
            f"budget (fraction_train x local_epochs x client_lr) grid {plan['client_grid']} chosen on the "
            "validation split for "
            f"{CLIENT_TUNED_ON} (mean over the seeds, last round), used by every federated row alike (mean, "
            "contrastive, creamfl and every creamfl-* candidate)")},
        "model_bytes_fp32": _model_bytes([*common, *tasks["captioned/pixels"]]),
        "selection": ("the budget and the best creamfl-* candidate per setting are chosen on the validation "
                      "split; every number is the last round's; test is never used to choose anything"),
        "alignment": ("align_<client type>_<modality>: R@1 of a client's public-set representations against the "
                      "server's representations of the other modality (a hit: the same caption), mean over the "
                      "sampled clients of that type and over rounds; on the held-out public pairs when "
                      "strategy.align_holdout > 0 (never distillation targets), else on every public pair; "
                      "align_server_*: the server's own"),
    })
    client_bytes = report.setting["model_bytes_fp32"]
    for s in chosen_settings:
        for name in names:
            runs = [results[(s, name, seed)] for seed in seeds]
            if any(isinstance(r, BaseException) for r in runs):
                continue
            replied = any(r["uplink_per_reply"] for r in runs)  # type: ignore[index]
            row = report.add(
                s, name, **{k: [r[k] for r in runs] for k in ("rsum", "i2t_r1", "t2i_r1", "val_rsum",  # type: ignore[index]
                                                                "s_per_round")},
                uplink_bytes_per_client_round=statistics.fmean(r["uplink_per_reply"] for r in runs),  # type: ignore[index]
                fedavg_bytes_per_client_round=client_bytes["client_mean"] if replied else 0.0,
                per_round={k: _mean_series([r["series"][k] for r in runs]) for k in PER_ROUND},  # type: ignore[index]
            )
            for key in ALIGN_KEYS:
                per_seed = [_run_mean(r["series"][key]) for r in runs]  # type: ignore[index]
                if all(v is not None for v in per_seed):
                    row[key] = {"mean": statistics.fmean(per_seed), "values": per_seed}
    report.setting["checks"] = _checks(report, chosen_settings)
    if failed:
        report.setting["failed"] = failed
    if torch.cuda.is_available():
        report.setting["server_step_cuda"] = server_step_timing([*common, *tasks["captioned/pixels"]])
    report.setting["wall_s"] = round(time.monotonic() - started, 1)
    return report


def _checks(report: BenchReport, settings: list[str]) -> dict[str, Any]:
    """The issue's targets, paired by seed, per setting: creamfl vs mean, and the best creamfl-*
    candidate (chosen on validation) vs public-only."""
    out: dict[str, Any] = {}
    for s in settings:
        rows = {row["variant"]: row for row in report.rows if row["setting"] == s}

        def diff(a: str, b: str) -> list[float] | None:
            if a not in rows or b not in rows:
                return None
            return [round(x - y, 4) for x, y in zip(rows[a]["rsum"]["values"], rows[b]["rsum"]["values"])]

        check: dict[str, Any] = {"creamfl_minus_mean_rsum": diff("creamfl", "mean")}
        candidates = {n: rows[n]["val_rsum"]["values"] for n in rows if n in CANDIDATES}
        if candidates:
            best = best_candidate(candidates)
            gap = diff(best, "public-only")
            check.update({"best_candidate": best,
                          "best_candidate_val_rsum": round(statistics.fmean(candidates[best]), 4),
                          "best_minus_public_only_rsum": gap,
                          "best_minus_public_only_rsum_mean": None if gap is None else round(statistics.fmean(gap), 4)})
        for name in candidates:
            check[f"{name}_minus_public_only_rsum"] = diff(name, "public-only")
        out[s] = check
    return out


def _model_bytes(overrides: list[str]) -> dict[str, int]:
    """Float32 bytes of each client type's model and of the server model (what FedAvg would send)."""
    import torch  # noqa: F401

    from conf.compose import compose
    from data import load_task
    from data.captioned import captioned_of
    from models.multimodal import num_parameters
    from strategies.creamfl import CreamFLConfig, build_client_model, build_server_model

    cfg = compose(overrides)
    config = CreamFLConfig.parse(cfg["strategy"])
    data = captioned_of(load_task(cfg["task"], seed=int(cfg["seed"])))
    out = {f"client_{m}": 4 * num_parameters(build_client_model(config, data, m, 10))
           for m in sorted(set(data.client_types))}
    # FedAvg's uplink per client and round: the whole model, averaged over the client population.
    out["client_mean"] = round(sum(out[f"client_{m}"] for m in data.client_types) / len(data.client_types))
    out["server"] = 4 * num_parameters(build_server_model(config, data))
    return out


def server_step_timing(overrides: list[str], steps: int = 50) -> dict[str, float]:
    """Milliseconds per server InfoNCE step on one GPU: the CUDA path (bf16 autocast, fused AdamW,
    channels-last, SDPA) against fp32 eager (no autocast, unfused AdamW, contiguous)."""
    import torch

    from conf.compose import compose
    from data import load_task
    from data.captioned import captioned_of
    from models.accel import autocast, make_optimizer, prepare_model, to_device_batch
    from strategies.creamfl import CreamFLConfig, build_server_model
    from strategies.creamfl.losses import info_nce

    cfg = compose(overrides)
    config = CreamFLConfig.parse(cfg["strategy"])
    data = captioned_of(load_task(cfg["task"], seed=0))
    pub = data.public()
    dev = torch.device("cuda")
    bs = config.server_batch_size
    out: dict[str, float] = {}
    for name, fast in (("cuda_path_ms", True), ("fp32_eager_ms", False)):
        torch.manual_seed(0)
        model = build_server_model(config, data)
        model = prepare_model(model, dev) if fast else model.to(dev)
        opt = (make_optimizer("adamw", model.parameters(), 1e-3, 0.0, 0.0, dev) if fast
               else torch.optim.AdamW(model.parameters(), lr=1e-3))
        images, tokens = pub.images[:bs].to(dev), pub.tokens[:bs].to(dev)

        def step() -> None:
            ctx = autocast(dev) if fast else torch.autocast("cuda", enabled=False)
            with ctx:
                zi = model.encode_image(to_device_batch(images, dev) if fast else images)
                zt = model.encode_text(tokens)
            loss = info_nce(zi, zt, 0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        for _ in range(10):
            step()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        out[name] = 1000 * (time.perf_counter() - t0) / steps
    out["speedup"] = out["fp32_eager_ms"] / out["cuda_path_ms"]
    out["device"] = torch.cuda.get_device_name(0)  # type: ignore[assignment]
    return out


TABLE_KEYS = ["rsum", "i2t_r1", "t2i_r1", "val_rsum", "s_per_round", "uplink_bytes_per_client_round",
              "fedavg_bytes_per_client_round"]


class CreamFLReport(BenchReport):
    """The bench table, then the per-round series (mean over seeds) that explain it."""

    def table(self, metrics: list[str] | None = None) -> str:
        lines = [super().table(metrics or TABLE_KEYS), "", "alignment per client type (mean over rounds and seeds):"]
        for row in self.rows:
            shown = " ".join(f"{k[len('align_'):]}={row[k]['mean']:.3f}" for k in ALIGN_KEYS if k in row)
            if shown:
                lines.append(f"  {row['setting']:<27} {row['variant']:<27} {shown}")
        lines += ["", "checks:", json.dumps(self.setting.get("checks", {}), indent=1)]
        return "\n".join(lines)


def main() -> None:  # python -m bench.creamfl [--quick] [--setting S ...] [variant ...]
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on 2 shared cores)")
    parser.add_argument("--workers", type=int, default=None, help="parallel runs (default: bench.inline's)")
    parser.add_argument("--setting", action="append", choices=list(task_overrides(False)), help="only these settings")
    parser.add_argument("variants", nargs="*")
    args = parser.parse_args()
    report = run(args.quick, args.variants or None, threads=args.threads, workers=args.workers, settings=args.setting)
    path = report.write(args.out) if not args.variants else None  # a subset of settings is still a report
    print(report.table())
    if path:
        print(f"results: {path}")
    else:
        print(json.dumps(report.to_json(), indent=1)[:20000])


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
