"""Hyperparameters of `corolla bench fot`, chosen on the validation split (`python -m bench.fot_tuning`).

Every method gets the same number of trials per setting (`TRIALS`): FedAvg spends them all on its
learning rate, FedProx and FOT split them between the learning rate and their own knob (mu,
epsilon), so the baseline gets the finest learning-rate grid. Each trial is one full-size run (seed 0, the bench's full clients and rounds) with
`evaluate.split=val`: the accuracy matrix then comes from the validation split carved from the
training data before partitioning (no client trains on it), and the test split is never looked at.
The trial with the best validation ACC wins (ties: the earlier trial). A trial that fails (e.g.
diverges into NaN weights, which corolla rejects) scores nothing.

Trials already in bench/results/fot_tuning.json are reused (`--rerun` runs them again).
`--write` merges the results into bench/results/fot_tuning.json, rewrites the `settings:`
section of conf/bench/fot.yaml with the chosen values and, in comments, the validation numbers of
every trial, and writes the headline's choices to conf/tuned/permuted-fmnist_mlp_<method>.yaml, so
that `corolla run strategy=<method> task=permuted-fmnist` is the bench's headline run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from bench.fot import CONF, COMMON, HEADLINE, METHODS, SETTINGS, load_conf, method_overrides, run_many, size_overrides

TRIALS = 8
GRIDS: dict[str, list[dict[str, Any]]] = {
    "fedavg": [{"lr": lr} for lr in (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2)],
    "fedprox": [{"lr": lr, "proximal_mu": mu} for lr in (0.005, 0.01, 0.02, 0.05) for mu in (0.01, 0.1)],
    "fot": [{"lr": lr, "eps_start": eps} for lr in (0.01, 0.02) for eps in (0.7, 0.8, 0.9, 0.96)],
}
TUNE_SEED = 0
RESULTS = Path(__file__).resolve().parent / "results" / "fot_tuning.json"
MARKER = "settings:"
TUNED_DIR = CONF.parents[1] / "tuned"


def label(params: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in params.items())


def trial_overrides(conf: dict[str, Any], setting: str, method: str, params: dict[str, Any]) -> list[str]:
    return [*SETTINGS[setting], *COMMON, *size_overrides(conf, setting, quick=False),
            *method_overrides(method, params), "evaluate.split=val", f"seed={TUNE_SEED}"]


def pick(scores: dict[str, dict[str, float] | None], grid: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The grid entry with the best validation ACC (first one on ties); None if every trial failed."""
    best, best_acc = None, float("-inf")
    for params in grid:
        res = scores.get(label(params))
        if res is not None and res["acc"] > best_acc:
            best, best_acc = params, res["acc"]
    return best


def tune(settings: list[str], methods: list[str], workers: int, *, reuse: bool = True) -> dict[str, Any]:
    """Run every trial not already in RESULTS (reuse=True) and pick each method's best per setting."""
    conf = load_conf()
    done = json.loads(RESULTS.read_text()) if reuse and RESULTS.exists() else {}

    def known(setting: str, method: str, trial: str) -> bool:
        return trial in done.get(setting, {}).get(method, {}).get("val", {})

    jobs = [((setting, method, label(params)), trial_overrides(conf, setting, method, params))
            for setting in settings for method in methods for params in GRIDS[method]
            if not known(setting, method, label(params))]
    results = run_many(jobs, workers=workers, label="fot tuning") if jobs else {}
    out: dict[str, Any] = {}
    for setting in settings:
        out[setting] = {}
        for method in methods:
            scores = {}
            for params in GRIDS[method]:
                trial = label(params)
                if known(setting, method, trial):
                    scores[trial] = done[setting][method]["val"][trial]
                    continue
                res = results[(setting, method, trial)]
                scores[trial] = None if isinstance(res, BaseException) else {
                    k: round(res[k], 4) for k in ("acc", "fgt", "plasticity")}
            out[setting][method] = {"chosen": pick(scores, GRIDS[method]), "val": scores}
    return out


def merge(results: dict[str, Any], path: Path = RESULTS) -> dict[str, Any]:
    old = json.loads(path.read_text()) if path.exists() else {}
    for setting, methods in results.items():
        old.setdefault(setting, {}).update(methods)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(old, indent=1) + "\n")
    return old


def render_settings(all_results: dict[str, Any]) -> str:
    """The `settings:` section of conf/bench/fot.yaml: chosen values, every trial's val numbers as comments."""
    lines = [MARKER]
    for setting in SETTINGS:
        if setting not in all_results:
            continue
        lines.append(f"  {setting}:")
        lines.append("    methods:")
        for method in METHODS:
            entry = all_results[setting].get(method)
            if not entry or not entry["chosen"]:
                continue
            chosen = entry["chosen"]
            lines.append(f"      {method}: {{{', '.join(f'{k}: {v}' for k, v in chosen.items())}}}")
            for trial, res in entry["val"].items():
                shown = "failed" if res is None else f"val acc {res['acc']:.4f} fgt {res['fgt']:.4f} plast {res['plasticity']:.4f}"
                mark = "  <- chosen" if trial == label(chosen) else ""
                lines.append(f"      #   {trial}: {shown}{mark}")
    return "\n".join(lines) + "\n"


def write_conf(all_results: dict[str, Any], path: Path = CONF) -> None:
    text = path.read_text()
    head = text[: text.index(f"\n{MARKER}") + 1] if f"\n{MARKER}" in text else text
    path.write_text(head + render_settings(all_results))
    load_conf(path)  # still valid YAML


def write_tuned(all_results: dict[str, Any], conf_dir: Path = TUNED_DIR) -> list[Path]:
    """The headline setting's choices as conf/tuned/<task>_mlp_<method>.yaml (the bench's sizes included)."""
    conf = load_conf()
    task = HEADLINE.split("/")[0]
    sizes = dict(override.split("=", 1) for override in size_overrides(conf, HEADLINE, quick=False))
    written = []
    for method in METHODS:
        entry = all_results.get(HEADLINE, {}).get(method)
        if not entry or not entry["chosen"]:
            continue
        params = dict(entry["chosen"])
        train = {k.split(".", 1)[1]: yaml.safe_load(v) for k, v in sizes.items() if k.startswith("train.")}
        train["lr"] = params.pop("lr")
        body = {
            "model": {"hidden": [200, 200], "bias": False},
            "task": {"num_clients": int(sizes["task.num_clients"])},
            "num_rounds": int(sizes["num_rounds"]),
            "train": train,
            "strategy": {"fraction_train": float(sizes["strategy.fraction_train"]), **params},
        }
        path = conf_dir / f"{task}_mlp_{method}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "# @package _global_\n"
            f"# {method} on {task} with the MLP: `corolla bench fot`'s headline setting ({HEADLINE}), its\n"
            "# hyperparameters chosen on the validation split (python -m bench.fot_tuning --write; every\n"
            "# trial's numbers are in conf/bench/fot.yaml). Generated: edit by re-running the tuning.\n"
            + yaml.safe_dump(body, default_flow_style=None, sort_keys=False))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fot_tuning")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--rerun", action="store_true", help="run trials already in fot_tuning.json again")
    parser.add_argument("--write", action="store_true", help="merge into fot_tuning.json and rewrite conf/bench/fot.yaml")
    args = parser.parse_args(argv)
    results = tune(args.settings.split(","), args.methods.split(","), args.jobs, reuse=not args.rerun)
    print(json.dumps(results, indent=1))
    if args.write:
        merged = merge(results)
        write_conf(merged)
        tuned = write_tuned(merged)
        print(f"wrote {RESULTS}, {CONF} and {', '.join(map(str, tuned))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
