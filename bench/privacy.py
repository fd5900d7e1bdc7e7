"""privacy: accuracy against epsilon under Flower's central DP wrappers (`corolla bench privacy`).

Variants: `none` (no DP), `central-fixed/z=<z>` for z in 0.3, 0.6, 1.0, 2.0 (server-side clipping,
Flower's DifferentialPrivacyServerSideFixedClipping) and `client-fixed/z=1.0` (clipping on the
clients with fixedclipping_mod, noise on the server). Every variant clips at CLIP and samples the
same share of clients per round; epsilon is the run's RDP accounting at delta = 1e-5 after the last
round (Poisson-sampling assumption, rate = clients per round / clients: docs/privacy.md).
Metrics: `accuracy` (test split, after the last round) and `epsilon` (none: no value, it is infinite).

Full: `fmnist-dirichlet` (alpha 0.3) with the CNN, 100 clients, 20 per round, 20 rounds, 3 seeds.
`--quick`: `digits` with the MLP, 40 clients, 20 per round, 15 rounds, 1 seed, every variant.
The local learning rate of each variant (a row family) is chosen on the validation split (seed 0)
among LR_GRID; the epsilon reported does not count those tuning runs. A PNG of accuracy against
epsilon is written beside the JSON (`privacy.png`).
Runs go through bench/inline.py (corolla's ServerApp and ClientApp code in-process).
"""

from __future__ import annotations

from pathlib import Path

from bench import inline
from bench.report import BenchReport

VARIANTS: dict[str, list[str]] = {
    "none": ["privacy=none"],
    **{f"central-fixed/z={z}": ["privacy=central-fixed", f"privacy.noise_multiplier={z}"] for z in (0.3, 0.6, 1.0, 2.0)},
    "client-fixed/z=1.0": ["privacy=client-fixed", "privacy.noise_multiplier=1.0"],
}
CLIP = 0.3
DELTA = 1e-5
LR_GRID = (0.05, 0.1, 0.2, 0.5)
SIZES = {
    True: {"task": ["task=digits", "model=mlp"], "setting": "digits/mlp", "clients": 40, "per_round": 20,
           "rounds": 15, "seeds": (0,)},
    False: {"task": ["task=fmnist-dirichlet", "task.alpha=0.3", "model=cnn"], "setting": "fmnist-dirichlet/cnn",
            "clients": 100, "per_round": 20, "rounds": 20, "seeds": (0, 1, 2)},
}
COMMON = ["strategy=fedavg", "progress=false", "plots=false", "checkpoint_every=100000"]


def overrides(variant: str, *, quick: bool, seed: int, lr: float) -> list[str]:
    """Hydra overrides of one run."""
    size = SIZES[quick]
    n, m = int(size["clients"]), int(size["per_round"])
    return [*COMMON, *size["task"], f"task.num_clients={n}", f"strategy.fraction_train={m / n}",
            f"strategy.min_train_nodes={m}", f"num_rounds={size['rounds']}", f"seed={seed}", f"train.lr={lr}",
            *VARIANTS[variant], f"privacy.clipping_norm={CLIP}", f"privacy.delta={DELTA}"]


def _one(args: list[str]) -> dict[str, float]:
    summary, _ = inline.run_in_tempdir(args, prefix="corolla-privacy-")
    out = {"accuracy": float(summary["final"]["accuracy"])}
    if "privacy" in summary:
        out["epsilon"] = float(summary["privacy"]["epsilon"])
    return out


def plot(report: BenchReport, out_dir: Path) -> Path:
    """privacy.png: mean test accuracy against epsilon, one point per variant; `none` as a line."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for row in report.rows:
        acc, eps = row["accuracy"]["mean"], row["epsilon"]["mean"]
        if acc is None:
            continue
        if eps is None:
            ax.axhline(acc, color="gray", linestyle="--", label=f"{row['variant']} (no DP)")
            continue
        client = row["variant"].startswith("client")  # same clipped mean as central: drawn hollow, on top
        ax.errorbar(eps, acc, yerr=row["accuracy"]["std"], fmt="s" if client else "o", capsize=3,
                    markersize=10 if client else 6, mfc="none" if client else None, label=row["variant"])
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel(f"epsilon (RDP, delta={DELTA:g})")
    ax.set_ylabel("test accuracy")
    quick = " (--quick)" if report.quick else ""
    ax.set_title(f"corolla bench privacy{quick}: {report.setting['setting']}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / "privacy.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run(*, quick: bool = False, workers: int | None = None) -> BenchReport:
    workers = workers or inline.default_workers()
    size = SIZES[quick]
    tuning_jobs = [((v, lr), [*overrides(v, quick=quick, seed=0, lr=lr), "evaluate.split=val"])
                   for v in VARIANTS for lr in LR_GRID]
    tuned = inline.run_many(_one, tuning_jobs, workers=workers, label="privacy lr", shown=("accuracy", "epsilon"))
    lrs = {v: inline.best_lr(tuned, v) for v in VARIANTS}
    jobs = [((v, seed), overrides(v, quick=quick, seed=seed, lr=lrs[v])) for v in VARIANTS for seed in size["seeds"]]
    results = inline.run_many(_one, jobs, workers=workers, label="privacy", shown=("accuracy", "epsilon"))
    n, m = int(size["clients"]), int(size["per_round"])
    report = BenchReport("privacy", quick=quick, setting={
        "setting": size["setting"], "task": size["task"], "num_clients": n, "sampled_per_round": m,
        "sampling_rate": m / n, "rounds": size["rounds"], "seeds": list(size["seeds"]), "clipping_norm": CLIP,
        "delta": DELTA, "accountant": "Flower's RdpAccountant (dp-accounting), Poisson sampling assumed",
        "engine": "bench/inline.py (in-process)", "lr": lrs, "lr_grid": list(LR_GRID),
        "lr_chosen_on": "validation split, seed 0 (tuning runs are not in epsilon)",
        "failures": inline.failures(results)})
    for v in VARIANTS:
        done = [results[(v, seed)] for seed in size["seeds"] if isinstance(results[(v, seed)], dict)]
        report.add(size["setting"], v, accuracy=[r["accuracy"] for r in done],
                   epsilon=[r["epsilon"] for r in done if "epsilon" in r])
    report.figures.append(lambda out_dir: plot(report, out_dir))
    return report
