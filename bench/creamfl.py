"""creamfl: CreamFL against its ablations and baselines on the captioned task.

Variants (3 seeds on the same data, `task.data_seed` fixed): `public-only` (the server alone on the
public pairs), `mean` (mean ensemble, no client regularisers), `contrastive` (contrastive ensemble,
no regularisers), `creamfl` (the published method), `centralised` (the server on public + every
private pair: an upper bound) and improved `creamfl-<what it changes>` variants.

Every variant runs corolla's own ServerApp code (`server.coordinator.run_federation`) and ClientApp
dispatch (`client.app.dispatch`), with one Flower Context per node, through an in-process grid:
the same messages, validation, byte metering, metrics.jsonl and summary.json as `corolla run`, but
without Ray's ~10 s start-up per run, which would dominate a bench of 27 short runs on 2 cores.
Seconds per round are therefore the method's compute, not Ray's transport.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


from bench.inline import run_inline
from bench.report import BenchReport

# Variant -> strategy overrides (on top of conf/strategy/creamfl.yaml).
NO_REG = ["strategy.inter=false", "strategy.intra=false"]
VARIANTS: dict[str, list[str]] = {
    "public-only": ["strategy.fraction_train=0"],
    "mean": ["strategy.ensemble=mean", *NO_REG],
    "contrastive": ["strategy.ensemble=contrastive", *NO_REG],
    "creamfl": [],
    "centralised": ["strategy.fraction_train=0", "strategy.server_data=all"],
}
# Improved variants (see the README's CreamFL section for why each exists).
IMPROVED: dict[str, list[str]] = {
    "creamfl-gated": ["strategy.kd_gate=item"],              # distil only items the ensemble aligns better
    "creamfl-joint": ["strategy.distill_mode=joint"],        # distillation as a term of the InfoNCE steps
    "creamfl-before": ["strategy.distill_order=before_public"],  # distil, then the public step repairs
}
COMMON = ["task=captioned", "strategy=creamfl", "progress=false", "plots=false", "checkpoint_every=1000"]
FULL = {"seeds": [0, 1, 2], "rounds": 10}
QUICK = {"seeds": [0, 1], "rounds": 3,
         "extra": ["task.public_size=300", "task.private_size=1200", "task.val_size=200", "task.test_size=300",
                   "task.num_clients=6", "task.clients={image:2,text:2,image_text:2}"]}


def _per_round(runs: list[list[dict[str, Any]]], key: str) -> list[float | None]:
    """The mean over seeds of a per-round metric (None where no seed has it)."""
    rounds = max(len(r) for r in runs)
    out: list[float | None] = []
    for i in range(rounds):
        vals = [r[i][key] for r in runs if i < len(r) and r[i].get(key) is not None]
        out.append(round(statistics.fmean(vals), 4) if vals else None)
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


def run(quick: bool, variants: list[str] | None = None, threads: int | None = None) -> BenchReport:
    import torch

    # One thread: on 2 shared cores, torch's default intra-op threads oversubscribe (13x slower here).
    torch.set_num_threads(threads or int(os.environ.get("COROLLA_BENCH_THREADS", "1")))
    plan = QUICK if quick else FULL
    seeds, rounds = plan["seeds"], plan["rounds"]
    extra = [*COMMON, *plan.get("extra", []), f"num_rounds={rounds}"]
    every = {**VARIANTS, **IMPROVED}
    names = variants or list(every)
    report = CreamFLReport("creamfl", quick, setting={
        "task": "captioned", "rounds": rounds, "seeds": seeds, "overrides": extra,
        "engine": "in-process grid (corolla's ServerApp + ClientApp code, no Ray)",
        "variants": {name: every[name] for name in names},
        "model_bytes_fp32": _model_bytes(extra),
        "selection": "none: every number is the last round's; test is never used to choose anything",
    })
    client_bytes = report.setting["model_bytes_fp32"]
    started = time.monotonic()
    for name in names:
        summaries, histories = [], []
        for seed in seeds:
            with tempfile.TemporaryDirectory(prefix="corolla-creamfl-") as tmp:
                summary, metrics, _ = run_inline([*extra, *every[name], f"seed={seed}"], Path(tmp) / "run")
            summaries.append(summary)
            histories.append(metrics)
            print(f"  {name} seed={seed}: rsum={summary['retrieval'].get('rsum', float('nan')):.4f} "
                  f"({time.monotonic() - started:.0f}s)", flush=True)
        last = [h[-1] for h in histories]
        replies = [r["num_replies"] for h in histories for r in h if r["num_replies"]]
        uplink = [r["uplink_bytes"] / r["num_replies"] for h in histories for r in h if r["num_replies"]]
        report.add(
            "captioned", name,
            rsum=[s["retrieval"]["rsum"] for s in summaries],
            i2t_r1=[s["retrieval"]["i2t_r1"] for s in summaries],
            t2i_r1=[s["retrieval"]["t2i_r1"] for s in summaries],
            val_rsum=[r["val_rsum"] for r in last],
            s_per_round=[statistics.fmean(r["wall_s"] for r in h) for h in histories],
            uplink_bytes_per_client_round=statistics.fmean(uplink) if uplink else 0.0,
            fedavg_bytes_per_client_round=client_bytes["client_mean"] if replies else 0.0,
            per_round={key: _per_round(histories, key) for key in PER_ROUND},
        )
    report.setting["checks"] = _checks(report)
    if torch.cuda.is_available():
        report.setting["server_step_cuda"] = server_step_timing(extra)
    report.setting["wall_s"] = round(time.monotonic() - started, 1)
    return report


def _checks(report: BenchReport) -> dict[str, Any]:
    """The issue's targets, paired by seed: creamfl vs mean, and each creamfl-* vs public-only."""
    rows = {row["variant"]: row for row in report.rows}

    def diff(a: str, b: str) -> list[float] | None:
        if a not in rows or b not in rows:
            return None
        return [round(x - y, 4) for x, y in zip(rows[a]["rsum"]["values"], rows[b]["rsum"]["values"])]

    out: dict[str, Any] = {"creamfl_minus_mean_rsum": diff("creamfl", "mean")}
    for name in rows:
        if name.startswith("creamfl"):
            out[f"{name}_minus_public_only_rsum"] = diff(name, "public-only")
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


PER_ROUND = ["rsum", "val_rsum", "global_alignment", "alignment_img", "alignment_txt", "alignment_agg_img",
             "alignment_agg_txt", "weight_spread_img", "weight_spread_txt", "kd_kept_img", "kd_kept_txt",
             "wall_s", "uplink_bytes"]
TABLE_KEYS = ["rsum", "i2t_r1", "t2i_r1", "val_rsum", "s_per_round", "uplink_bytes_per_client_round",
              "fedavg_bytes_per_client_round"]


class CreamFLReport(BenchReport):
    """The bench table, then the per-round series (mean over seeds) that explain it."""

    def table(self, metrics: list[str] | None = None) -> str:
        lines = [super().table(metrics or TABLE_KEYS), "", "per round (mean over seeds):"]
        for row in self.rows:
            series = row.get("per_round", {})
            for key in ("rsum", "alignment_img", "alignment_txt", "weight_spread_img", "weight_spread_txt"):
                values = series.get(key) or []
                if any(v is not None for v in values):
                    shown = " ".join("-" if v is None else f"{v:.3g}" for v in values)
                    lines.append(f"  {row['variant']:<22} {key:<18} {shown}")
        return "\n".join(lines)


def main() -> None:  # python -m bench.creamfl [--quick] [variant ...]
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on 2 shared cores)")
    parser.add_argument("variants", nargs="*")
    args = parser.parse_args()
    report = run(args.quick, args.variants or None, threads=args.threads)
    path = report.write(args.out) if not args.variants else None
    print(report.table())
    if path:
        print(f"results: {path}")
    else:
        print(json.dumps(report.to_json(), indent=1)[:20000])


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
