"""The `corolla` command: run, runs, strategies, bench, certs, deploy."""

from __future__ import annotations

import importlib
import sys

USAGE = """usage: corolla <command> [args]

commands:
  run [hydra overrides]        run an experiment, e.g. corolla run strategy=fedprox task=digits
                               (--multirun strategy=fedavg,fedprox seed=0,1,2 sweeps)
  runs ls [DIR]                list run directories (default: runs/)
  runs compare DIR...|GLOB     group runs by differing settings: mean ± std over seeds, curves PNG
  strategies                   list built-in and plugin strategies
  bench <name> [--quick] [--out DIR]
                               run a side-by-side benchmark (corolla bench --list)
  certs <dir> [...]            make a CA, SuperLink certificate and SuperNode keys
  deploy superlink|supernode   start Flower's deployment processes with TLS and node auth
"""


# Commands of the packages above the engine, by "module:function" (as bench/cli.py names its
# benches): `corolla` dispatches to bench/ and deploy/, which themselves run simulation/'s engines.
SUBCOMMANDS = {"bench": "bench.cli:main", "certs": "deploy.certs:main", "deploy": "deploy.launch:main"}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = args[0], args[1:]
    if command == "run":
        from simulation.run import main as run_main

        return run_main(rest)
    if command == "runs":
        from simulation.runs import main as runs_main

        return runs_main(rest)
    if command == "strategies":
        from strategies.registry import available_strategies, get_strategy

        for name, origin in available_strategies().items():
            try:
                description = get_strategy(name).description
            except Exception as ex:  # show a broken plugin instead of hiding it
                description = f"(fails to load: {ex})"
            print(f"{name:<12} {origin:<40} {description}")
        return 0
    if command in SUBCOMMANDS:
        module, _, func = SUBCOMMANDS[command].partition(":")
        return int(getattr(importlib.import_module(module), func)(rest))
    print(f"corolla: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
