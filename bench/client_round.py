"""Where a client-round goes on tiny work: `python -m bench.client_round` (engine=inline, cProfile).

Runs FedAvg on digits with the mlp, 100 clients per round, through engine=inline's grid (the same
client and server code as engine=ray, without Ray's transport), and prints the milliseconds per
client-round spent in each part. cProfile adds its own overhead to Python-heavy parts: read the
shares, not the absolute figures.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time

import torch

ARGS = ["strategy=fedavg", "train.epochs=1", "seed=0", "task=digits", "model=mlp", "task.num_clients=100",
        "strategy.fraction_train=1.0", "engine=inline", "progress=false", "plots=false"]
ROUNDS = 3
# (label, file suffix, function name): cumulative time of these functions.
PARTS = [
    ("client: whole train message", "strategies/fedavg.py", "train"),
    ("client: local training (train_local)", "training.py", "train_local"),
    ("client: model for the weights", "strategies/base.py", "model_to_overwrite"),
    ("client: models built (build_model)", "strategies/base.py", "build_model"),
    ("client: weights -> state dict (decode)", "arrayrecord.py", "to_torch_state_dict"),
    ("client: state dict -> reply arrays (encode)", "arrayrecord.py", "from_torch_state_dict"),
    ("client: config + env per message (dispatch minus handle)", "client/app.py", "dispatch"),
    ("server: reply validation", "strategies/validation.py", "check_weights_reply"),
    ("server: aggregation", "strategy_utils.py", "aggregate_arrayrecords"),
    ("server: evaluation", "server/recorder.py", "_evaluate_tasks"),
]


def main() -> None:
    from simulation.inline import run_inline

    torch.set_num_threads(1)
    run_inline([*ARGS, "num_rounds=1"])  # imports and first-use costs out of the way
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    _, records, _ = run_inline([*ARGS, f"num_rounds={ROUNDS}"])
    profile.disable()
    wall = time.perf_counter() - started
    client_rounds = sum(int(r["num_replies"]) for r in records)
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    cumulative: dict[tuple[str, str], float] = {}
    for (path, _, name), (_, _, _, cum, _) in stats.items():
        for _, suffix, func in PARTS:
            if name == func and path.endswith(suffix):
                cumulative[(suffix, func)] = cumulative.get((suffix, func), 0.0) + cum
    handle = sum(cum for (path, _, name), (_, _, _, cum, _) in stats.items()
                 if name == "handle" and path.endswith("strategies/base.py"))
    print(f"{client_rounds} client-rounds in {wall:.2f}s under cProfile "
          f"({1000 * sum(float(r['wall_s']) for r in records) / client_rounds:.2f} ms per client-round)")
    for label, suffix, func in PARTS:
        ms = 1000 * cumulative.get((suffix, func), 0.0) / client_rounds
        if func == "dispatch":
            ms -= 1000 * handle / client_rounds
        print(f"  {label:<58} {ms:7.2f} ms")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
