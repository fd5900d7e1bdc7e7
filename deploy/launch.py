"""`corolla deploy ...`: start Flower's SuperLink, SuperNodes and app executors with TLS and node auth."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

from deploy.certs import CA_CERT, SERVER_CERT, SERVER_KEY, node_key_name

# corolla's defaults for the one TLS port of the SuperLink (Fleet, Control and Runtime APIs over
# HTTPS) and for a SuperNode's local Runtime (ClientAppIo) API.
SUPERLINK_PORT = 9093
SUPERNODE_RUNTIME_PORT = 9094
DEFAULT_DATABASE = "superlink.db"

USAGE = """usage: corolla deploy <what> [options]   (--help after <what> for its options)

  superlink   start the SuperLink (TLS, SuperNode authentication, persistent --database)
  supernode   start one site's SuperNode with its partition (TLS to the SuperLink, its auth key)
  superexec   start the ServerApp/ClientApp executor next to a SuperLink/SuperNode run with
              --isolation process (what the containers in deploy/ do)
  connection  write a SuperLink connection into $FLWR_HOME/config.toml for `flwr run . <name>`

Every launcher builds Flower's command line and execs it; --print shows it instead.
"""


class LaunchError(RuntimeError):
    """A launcher's inputs are missing or inconsistent."""


def _require_file(path: Path, what: str, hint: str) -> Path:
    if not path.is_file():
        raise LaunchError(f"{what} not found: {path} ({hint})")
    return path


def superlink_args(certs: Path, database: str, *, host: str = "0.0.0.0", port: int = SUPERLINK_PORT,
                   isolation: str = "subprocess") -> list[str]:
    """flower-superlink's arguments: TLS on one port, SuperNode auth, a database, no runtime installs."""
    return [
        "--ssl-ca-certfile", str(certs / CA_CERT),
        "--ssl-certfile", str(certs / SERVER_CERT),
        "--ssl-keyfile", str(certs / SERVER_KEY),
        "--enable-supernode-auth",
        "--database", database,
        "--disable-runtime-dependency-installation",
        "--isolation", isolation,
        "--host", host,
        "--port", str(port),
    ]


def node_config(partition_id: int, num_partitions: int, data_dir: str | None = None,
                data: str | None = None) -> str:
    """The SuperNode's --node-config string that the ClientApp reads (client/, ClientEnv)."""
    if not 0 <= partition_id < num_partitions:
        raise LaunchError(f"--partition-id must be in [0, {num_partitions}), got {partition_id}")
    items = [f"partition-id={partition_id}", f"num-partitions={num_partitions}"]
    for flag, key, value in (("--data-dir", "data-dir", data_dir), ("--data", "data", data)):
        if value:
            if any(c in value for c in "\"'\\\n"):
                raise LaunchError(f"{flag} may not contain quotes, backslashes or newlines: {value!r}")
            items.append(f"{key}={json.dumps(value)}")
    return " ".join(items)


def supernode_args(ca_cert: Path, key: Path, superlink: str, config: str, *, host: str = "127.0.0.1",
                   port: int = SUPERNODE_RUNTIME_PORT, isolation: str = "subprocess",
                   max_retries: int | None = None, max_wait_time: float | None = None) -> list[str]:
    """flower-supernode's arguments: TLS to the SuperLink with the CA, its auth key, its partition.

    Flower 1.42's SuperNode keeps its state in memory (no --database) and installs no app
    dependencies unless given --allow-runtime-dependency-installation, which is never passed.
    """
    args = [
        "--superlink", superlink,
        "--root-certificates", str(ca_cert),
        "--auth-supernode-private-key", str(key),
        "--node-config", config,
        "--isolation", isolation,
        "--host", host,
        "--port", str(port),
    ]
    if max_retries is not None:
        args += ["--max-retries", str(max_retries)]
    if max_wait_time is not None:
        args += ["--max-wait-time", str(max_wait_time)]
    return args


def superexec_args(runtime_api_address: str, ca_cert: Path | None) -> list[str]:
    """flower-superexec's arguments for an app executor (TLS when the Runtime API serves TLS)."""
    tls = ["--root-certificates", str(ca_cert)] if ca_cert is not None else ["--insecure"]
    return ["--runtime-api-address", runtime_api_address, *tls]


def flower_env() -> dict[str, str]:
    """The environment for Flower's processes: this interpreter's bin/ first on PATH.

    The SuperLink and SuperNode start `flower-superexec` by name; from a virtualenv that is not
    activated it would otherwise not be found. Telemetry and the update check are off unless the
    environment turns them on.
    """
    env = dict(os.environ)
    env.setdefault("FLWR_TELEMETRY_ENABLED", "0")  # no phone-home from the sites (set to 1 to allow)
    env.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    return env


def flower_binary(name: str, env: dict[str, str]) -> str:
    found = shutil.which(name, path=env["PATH"])
    if not found:
        raise LaunchError(f"{name} not found on PATH; install corolla (it depends on flwr)")
    return found


def resolve_key(certs: Path, key: str) -> Path:
    """`--key 2` -> <certs>/supernode-2.key; anything else is a path to the private key."""
    path = certs / node_key_name(int(key)) if key.isdigit() else Path(key)
    return _require_file(path, "SuperNode private key", "make keys with `corolla certs DIR --supernodes N`")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--print", action="store_true", dest="print_only",
                        help="print the command instead of running it")
    parser.add_argument("extra", nargs=argparse.REMAINDER,
                        help="after `--`: more flags passed to Flower's command unchanged")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="corolla deploy", usage=USAGE, add_help=False)
    sub = parser.add_subparsers(dest="what")

    link = sub.add_parser("superlink", prog="corolla deploy superlink",
                          help="start the SuperLink", description="Start Flower's SuperLink with TLS "
                          "(one port for the Fleet, Control and Runtime APIs), SuperNode authentication, "
                          "a persistent database and no runtime dependency installation.")
    link.add_argument("--certs", type=Path, required=True, help="directory made by `corolla certs`")
    link.add_argument("--database", default=DEFAULT_DATABASE,
                      help=f"SQLite file for the SuperLink's state (default: ./{DEFAULT_DATABASE}); "
                           "registered SuperNodes and runs survive a restart on the same file")
    link.add_argument("--host", default="0.0.0.0", help="interface to listen on (default: 0.0.0.0)")
    link.add_argument("--port", type=int, default=SUPERLINK_PORT, help=f"TLS port (default: {SUPERLINK_PORT})")
    link.add_argument("--isolation", choices=("subprocess", "process"), default="subprocess",
                      help="subprocess: the SuperLink runs the ServerApp itself (corolla installed here); "
                           "process: a separate `corolla deploy superexec` does")
    _common(link)

    node = sub.add_parser("supernode", prog="corolla deploy supernode", help="start one site's SuperNode",
                          description="Start a SuperNode that connects to the SuperLink over TLS (verified "
                          "with the federation's CA), authenticates with its registered EC key and serves "
                          "one data partition to the ClientApp.")
    node.add_argument("--certs", type=Path, required=True, help="directory holding ca.crt (and the key)")
    node.add_argument("--key", required=True,
                      help="N for <certs>/supernode-N.key, or a path to this site's private key")
    node.add_argument("--superlink", required=True, metavar="HOST:PORT", help="the SuperLink's address")
    node.add_argument("--partition-id", type=int, required=True)
    node.add_argument("--num-partitions", type=int, required=True)
    node.add_argument("--data-dir", default=None, help="this site's copy of the dataset files")
    node.add_argument("--data", default=None, metavar="PATH",
                      help="this site's own data (an image folder, table or dataset directory) read through "
                           "the run's task adapter (task=imagefolder|tabular|hf|plugin): all of it is this "
                           "node's partition; node config key `data`")
    node.add_argument("--host", default="127.0.0.1",
                      help="interface of the local Runtime (ClientAppIo) API (default: 127.0.0.1)")
    node.add_argument("--port", type=int, default=SUPERNODE_RUNTIME_PORT,
                      help=f"port of the local Runtime API; one per SuperNode on a machine "
                           f"(default: {SUPERNODE_RUNTIME_PORT})")
    node.add_argument("--isolation", choices=("subprocess", "process"), default="subprocess")
    node.add_argument("--max-retries", type=int, default=None,
                      help="give up after this many reconnection attempts (default: never)")
    node.add_argument("--max-wait-time", type=float, default=None,
                      help="give up reconnecting after this many seconds (default: never)")
    _common(node)

    exe = sub.add_parser("superexec", prog="corolla deploy superexec",
                         help="start the app executor for --isolation process",
                         description="Start flower-superexec, which runs the ServerApp or ClientApp "
                         "processes for a SuperLink or SuperNode started with --isolation process.")
    exe.add_argument("--runtime-api-address", required=True, metavar="HOST:PORT")
    tls = exe.add_mutually_exclusive_group(required=True)
    tls.add_argument("--ca", type=Path, help="CA certificate (a SuperLink's Runtime API always uses TLS)")
    tls.add_argument("--insecure", action="store_true",
                     help="plain HTTP (only for a SuperNode's Runtime API on loopback)")
    _common(exe)

    conn = sub.add_parser("connection", prog="corolla deploy connection",
                          help="add a SuperLink connection to $FLWR_HOME/config.toml",
                          description="Write [superlink.NAME] (address + CA) into Flower's config file "
                          "($FLWR_HOME/config.toml, default ~/.flwr), used by `flwr run . NAME` and "
                          "`flwr supernode register KEY.pub NAME`.")
    conn.add_argument("name")
    conn.add_argument("--superlink", required=True, metavar="HOST:PORT")
    conn.add_argument("--certs", type=Path, required=True, help="directory holding ca.crt")
    conn.add_argument("--default", action="store_true", help="make it the default connection")
    return parser


def build(args: argparse.Namespace) -> list[str]:
    """Flower's full command line (binary name first) for a parsed `corolla deploy` invocation."""
    extra = [a for a in (args.extra or []) if a != "--"]
    if args.what == "superlink":
        certs = args.certs.resolve()
        for name in (CA_CERT, SERVER_CERT, SERVER_KEY):
            _require_file(certs / name, "certificate file", "make it with `corolla certs DIR`")
        database = Path(args.database).expanduser().resolve()
        return ["flower-superlink", *superlink_args(certs, str(database), host=args.host, port=args.port,
                                                    isolation=args.isolation), *extra]
    if args.what == "supernode":
        certs = args.certs.resolve()
        ca = _require_file(certs / CA_CERT, "CA certificate", "copy ca.crt from the federation's CA")
        key = resolve_key(certs, args.key).resolve()
        if args.data and not Path(args.data).expanduser().exists():
            raise LaunchError(f"--data {args.data}: no such file or directory")
        data = str(Path(args.data).expanduser().resolve()) if args.data else None
        config = node_config(args.partition_id, args.num_partitions, args.data_dir, data)
        return ["flower-supernode", *supernode_args(ca, key, args.superlink, config, host=args.host,
                                                    port=args.port, isolation=args.isolation,
                                                    max_retries=args.max_retries,
                                                    max_wait_time=args.max_wait_time), *extra]
    if args.what == "superexec":
        ca = _require_file(args.ca.resolve(), "CA certificate", "ca.crt from `corolla certs`") if args.ca else None
        return ["flower-superexec", *superexec_args(args.runtime_api_address, ca), *extra]
    raise LaunchError(f"unknown deploy target {args.what!r}")


def write_connection(name: str, address: str, ca_cert: Path, make_default: bool) -> Path:
    """Add or replace [superlink.<name>] in $FLWR_HOME/config.toml; return the file."""
    import tomli
    import tomli_w
    from flwr.supercore.utils import get_flwr_home

    path = get_flwr_home() / "config.toml"
    data = tomli.loads(path.read_text()) if path.exists() else {}
    section = data.setdefault("superlink", {})
    section[name] = {"address": address, "root-certificates": str(ca_cert.resolve())}
    if make_default or "default" not in section:
        section["default"] = name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(data))
    return path


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    args = _parser().parse_args(argv)
    if "--print" in (getattr(args, "extra", None) or []):  # `--print` after `--` still only prints
        args.extra.remove("--print")
        args.print_only = True
    try:
        if args.what == "connection":
            ca = _require_file(args.certs / CA_CERT, "CA certificate", "make it with `corolla certs DIR`")
            path = write_connection(args.name, args.superlink, ca, args.default)
            print(f"wrote [superlink.{args.name}] ({args.superlink}) to {path}")
            return 0
        command = build(args)
        if args.print_only:
            print(shlex.join(command))
            return 0
        env = flower_env()
        binary = flower_binary(command[0], env)
    except LaunchError as ex:
        print(f"corolla deploy {args.what}: error: {ex}", file=sys.stderr)
        return 2
    if args.what == "superlink":
        Path(command[command.index("--database") + 1]).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(binary, [binary, *command[1:]], env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
