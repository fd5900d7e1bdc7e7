"""robust: robust aggregators against FedAvg under sign-flip and Gaussian attackers (`corolla bench robust`).

Settings: `clean` and `<attack>/<percent>` (`sign-flip/10|20|30`, `gaussian/10|20|30`): that share
of the clients are attackers (`attack=<attack> attack.fraction=<percent/100>`, the attack's default
scale: sign-flip 4, gaussian std 1), the same partitions for every variant of a seed.
Variants: `fedavg`, `fedmedian`, `fedtrimmedavg`, `krum`, `multikrum`, `bulyan`. Every client takes
part in every round, so a round holds exactly the setting's attackers; the Byzantine rules get that
number as `num_malicious_nodes` f (an oracle: the best case for them), capped where the rule
cannot go (Krum/MultiKrum n >= 2f+3, Bulyan n >= 4f+3); MultiKrum averages the n-f best-scored
updates; FedTrimmedAvg cuts beta = max(0.1, share) at each end (at most 0.4).
Metric: `accuracy` (test split, after the last round), over seeds. A run is never stopped for its
failed replies (`failures.max_fraction=1.0`): when an attack blows the model up so that every reply
is rejected, the rounds go on with the model as it stands, and its accuracy is the run's result.

Full: `fmnist-dirichlet` (alpha 0.3) with the CNN, 20 clients, 20 rounds, 3 seeds, each client
taking at most 20 local steps (batch 32) per round: a full local epoch (~85 steps) would make the
full bench 150 runs of about 15 minutes each, ~20 hours on 2 cores; capped, it takes about 4. `--quick`:
`digits` with the MLP, 10 clients, 6 rounds, 1 seed, every setting and variant. The local
learning rate of each variant (a row family) is chosen on the validation split of the clean
setting among LR_GRID (seed 0), then used on every setting; the bench prints the choice.
Runs go through bench/inline.py (corolla's ServerApp and ClientApp code in-process).
"""

from __future__ import annotations


from bench import inline
from bench.report import BenchReport

VARIANTS = ("fedavg", "fedmedian", "fedtrimmedavg", "krum", "multikrum", "bulyan")
SETTINGS: dict[str, tuple[str, float]] = {
    "clean": ("none", 0.0),
    **{f"{attack}/{pct}": (attack, pct / 100) for attack in ("sign-flip", "gaussian") for pct in (10, 20, 30)},
}
LR_GRID = (0.02, 0.05, 0.1, 0.2)
SIZES = {
    True: {"task": ["task=digits", "model=mlp"], "clients": 10, "rounds": 6, "seeds": (0,)},
    False: {"task": ["task=fmnist-dirichlet", "task.alpha=0.3", "model=cnn", "train.max_steps=20"], "clients": 20,
            "rounds": 20, "seeds": (0, 1, 2)},
}
# failures.max_fraction=1.0: an attack that makes every reply unusable (NaN after the model blew up)
# ends a run with the model it left, instead of stopping the run: the bench measures that model.
COMMON = ["progress=false", "plots=false", "checkpoint_every=100000", "strategy.fraction_train=1.0",
          "failures.max_fraction=1.0"]


def defence(variant: str, *, attackers: int, clients: int, share: float) -> list[str]:
    """The aggregator's own settings for a round of `clients` replies holding `attackers` attackers."""
    if variant in ("krum", "multikrum"):
        f = min(attackers, (clients - 3) // 2)
        extra = [f"strategy.num_nodes_to_select={clients - f}"] if variant == "multikrum" else []
        return [f"strategy.num_malicious_nodes={f}", *extra]
    if variant == "bulyan":
        return [f"strategy.num_malicious_nodes={min(attackers, (clients - 3) // 4)}"]
    if variant == "fedtrimmedavg":
        return [f"strategy.beta={min(0.4, max(0.1, share))}"]
    return []


def overrides(variant: str, setting: str, *, quick: bool, seed: int, lr: float) -> list[str]:
    """Hydra overrides of one run."""
    size = SIZES[quick]
    attack, share = SETTINGS[setting]
    n = int(size["clients"])
    count = int(round(share * n))
    return [f"strategy={variant}", *size["task"], *COMMON, f"task.num_clients={n}", f"num_rounds={size['rounds']}",
            f"attack={attack}", f"attack.fraction={share}", f"seed={seed}", f"train.lr={lr}",
            *defence(variant, attackers=count, clients=n, share=share)]


def _one(args: list[str]) -> dict[str, float]:
    summary, _ = inline.run_in_tempdir(args, prefix="corolla-robust-")
    return {"accuracy": float(summary["final"]["accuracy"])}


def run(*, quick: bool = False, workers: int | None = None) -> BenchReport:
    workers = workers or inline.default_workers()
    size = SIZES[quick]
    tuning_jobs = [((v, lr), [*overrides(v, "clean", quick=quick, seed=0, lr=lr), "evaluate.split=val"])
                   for v in VARIANTS for lr in LR_GRID]
    tuned = inline.run_many(_one, tuning_jobs, workers=workers, label="robust lr", shown=("accuracy",))
    lrs = {v: inline.best_lr(tuned, v) for v in VARIANTS}
    jobs = [((s, v, seed), overrides(v, s, quick=quick, seed=seed, lr=lrs[v]))
            for s in SETTINGS for v in VARIANTS for seed in size["seeds"]]
    results = inline.run_many(_one, jobs, workers=workers, label="robust", shown=("accuracy",))
    report = BenchReport("robust", quick=quick, setting={
        "task": size["task"], "num_clients": size["clients"], "rounds": size["rounds"], "seeds": list(size["seeds"]),
        "sampled_per_round": size["clients"], "engine": "bench/inline.py (in-process)",
        "lr": lrs, "lr_grid": list(LR_GRID), "lr_chosen_on": "clean setting, validation split, seed 0",
        "attack_scale": {"sign-flip": 4.0, "gaussian": 1.0},
        "failures": inline.failures(results)})
    for s in SETTINGS:
        for v in VARIANTS:
            values = [results[(s, v, seed)]["accuracy"] for seed in size["seeds"]
                      if isinstance(results[(s, v, seed)], dict)]
            report.add(s, v, accuracy=values)
    return report
