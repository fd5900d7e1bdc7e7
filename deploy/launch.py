"""`corolla deploy ...`: start Flower's SuperLink, SuperNodes, app executors and the gateway, all authenticated."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

from deploy import gateway
from deploy.certs import CA_CERT, SERVER_CERT, SERVER_KEY, SUPEREXEC_SECRET, node_key_name

# The SuperLink serves its Fleet, Control and Runtime APIs over HTTPS on one port, which stays on the
# host's loopback; the gateway (nginx) publishes the Fleet API to sites and the Control API to the
# operator. A SuperNode's local Runtime (ClientAppIo) API has its own port.
SUPERLINK_PORT = gateway.SUPERLINK_INTERNAL_PORT
SUPERNODE_RUNTIME_PORT = 9094
DEFAULT_DATABASE = "superlink.db"

USAGE = """usage: corolla deploy <what> [options]   (--help after <what> for its options)

  superlink   start the SuperLink on loopback (TLS, SuperNode authentication, persistent --database,
              authenticated Runtime API)
  gateway     start nginx in front of it: Fleet API for sites, Control API for the operator's certificate
  superexec   start the ServerApp/ClientApp executor next to a SuperLink/SuperNode (with their secret)
  supernode   start one site's SuperNode with its partition (TLS to the gateway, its auth key)
  operator    start the operator's local forwarder that presents the operator certificate for `flwr`
  connection  write a SuperLink connection into $FLWR_HOME/config.toml for `flwr run . <name>`
  resubmit    submit a run that a SuperLink restart failed again, from its run directory (it resumes)

Every launcher builds Flower's command line and execs it; --print shows it instead.
"""


class LaunchError(RuntimeError):
    """A launcher's inputs are missing or inconsistent."""


def _require_file(path: Path, what: str, hint: str) -> Path:
    if not path.is_file():
        raise LaunchError(f"{what} not found: {path} ({hint})")
    return path


def superlink_args(certs: Path, database: str, *, host: str = "127.0.0.1", port: int = SUPERLINK_PORT,
                   isolation: str = "process", health: str | None = None) -> list[str]:
    """flower-superlink's arguments: TLS on one port, SuperNode auth, a database, no runtime installs.

    With process isolation the Runtime API requires requests signed with `superexec.secret` (Flower
    ignores the secret in subprocess isolation, where that API answers anyone who reaches the port).
    """
    return [
        "--ssl-ca-certfile", str(certs / CA_CERT),
        "--ssl-certfile", str(certs / SERVER_CERT),
        "--ssl-keyfile", str(certs / SERVER_KEY),
        "--enable-supernode-auth",
        "--database", database,
        "--disable-runtime-dependency-installation",
        "--isolation", isolation,
        *(["--superexec-auth-secret-file", str(certs / SUPEREXEC_SECRET)] if isolation == "process" else []),
        *(["--health-server-address", health] if health else []),
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
                   port: int = SUPERNODE_RUNTIME_PORT, isolation: str = "process", secret: Path | None = None,
                   health: str | None = None, max_retries: int | None = None,
                   max_wait_time: float | None = None) -> list[str]:
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
        *(["--superexec-auth-secret-file", str(secret)] if isolation == "process" and secret else []),
        *(["--health-server-address", health] if health else []),
        "--host", host,
        "--port", str(port),
    ]
    if max_retries is not None:
        args += ["--max-retries", str(max_retries)]
    if max_wait_time is not None:
        args += ["--max-wait-time", str(max_wait_time)]
    return args


def superexec_args(runtime_api_address: str, ca_cert: Path | None, secret: Path | None,
                   health: str | None = None) -> list[str]:
    """flower-superexec's arguments for an app executor (TLS when the Runtime API serves TLS)."""
    tls = ["--root-certificates", str(ca_cert)] if ca_cert is not None else ["--insecure"]
    auth = ["--superexec-auth-secret-file", str(secret)] if secret is not None else []
    return ["--runtime-api-address", runtime_api_address, *tls, *auth,
            *(["--health-server-address", health] if health else [])]


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
        hint = "apt-get install nginx-light" if name == "nginx" else "install corolla (it depends on flwr)"
        raise LaunchError(f"{name} not found on PATH; {hint}")
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
    isolation_help = ("process (default): a separate `corolla deploy superexec` runs the apps and the Runtime "
                      "API requires the SuperExec secret; subprocess: Flower runs them itself and ignores "
                      "the secret (the Runtime API then answers anyone who reaches it: trying out only)")

    link = sub.add_parser("superlink", prog="corolla deploy superlink",
                          help="start the SuperLink", description="Start Flower's SuperLink with TLS "
                          "(one port for the Fleet, Control and Runtime APIs, on loopback behind "
                          "`corolla deploy gateway`), SuperNode authentication, a persistent database, "
                          "an authenticated Runtime API and no runtime dependency installation.")
    link.add_argument("--certs", type=Path, required=True, help="directory made by `corolla certs`")
    link.add_argument("--database", default=DEFAULT_DATABASE,
                      help=f"SQLite file for the SuperLink's state (default: ./{DEFAULT_DATABASE}); "
                           "registered SuperNodes and runs survive a restart on the same file")
    link.add_argument("--host", default="127.0.0.1",
                      help="interface to listen on (default: 127.0.0.1; the gateway publishes it)")
    link.add_argument("--port", type=int, default=SUPERLINK_PORT, help=f"TLS port (default: {SUPERLINK_PORT})")
    link.add_argument("--isolation", choices=("subprocess", "process"), default="process", help=isolation_help)
    link.add_argument("--health", default=None, metavar="HOST:PORT",
                      help="serve Flower's gRPC health service here (plain text; for probes)")
    _common(link)

    gate = sub.add_parser("gateway", prog="corolla deploy gateway",
                          help="start nginx in front of the SuperLink",
                          description="Start nginx with two TLS ports: the Fleet API for SuperNodes and the "
                          "Control API for holders of the operator's client certificate; nothing else "
                          "of the SuperLink is reachable through it.")
    gate.add_argument("--certs", type=Path, required=True, help="directory made by `corolla certs`")
    gate.add_argument("--superlink", default=f"127.0.0.1:{SUPERLINK_PORT}", metavar="HOST:PORT",
                      help=f"the SuperLink (default: 127.0.0.1:{SUPERLINK_PORT})")
    gate.add_argument("--fleet", default=f"0.0.0.0:{gateway.FLEET_PORT}", metavar="HOST:PORT",
                      help=f"where sites connect (default: 0.0.0.0:{gateway.FLEET_PORT})")
    gate.add_argument("--control", default=f"0.0.0.0:{gateway.CONTROL_PORT}", metavar="HOST:PORT",
                      help=f"where the operator connects (default: 0.0.0.0:{gateway.CONTROL_PORT})")
    gate.add_argument("--dir", type=Path, default=Path("gateway"),
                      help="nginx's working directory (its nginx.conf, pid and temp files; default: ./gateway)")
    _common(gate)

    node = sub.add_parser("supernode", prog="corolla deploy supernode", help="start one site's SuperNode",
                          description="Start a SuperNode that connects to the gateway's Fleet port over TLS "
                          "(verified with the federation's CA), authenticates with its registered EC key and "
                          "serves one data partition to the ClientApp.")
    node.add_argument("--certs", type=Path, required=True, help="directory holding ca.crt (and the key)")
    node.add_argument("--key", required=True,
                      help="N for <certs>/supernode-N.key (and supernode-N.secret), or a path to this site's key")
    node.add_argument("--secret", type=Path, default=None,
                      help="this site's SuperExec secret (default: the key's name with .secret)")
    node.add_argument("--superlink", required=True, metavar="HOST:PORT", help="the gateway's Fleet address")
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
    node.add_argument("--isolation", choices=("subprocess", "process"), default="process", help=isolation_help)
    node.add_argument("--health", default=None, metavar="HOST:PORT",
                      help="serve Flower's gRPC health service here (plain text; for probes)")
    node.add_argument("--max-retries", type=int, default=None,
                      help="give up after this many reconnection attempts (default: never; and without it "
                           "or --max-wait-time the SuperNode is started again with backoff whenever it exits, "
                           "e.g. refused because its key is not registered yet or it crashed moments ago)")
    node.add_argument("--max-wait-time", type=float, default=None,
                      help="give up reconnecting after this many seconds (default: never)")
    _common(node)

    exe = sub.add_parser("superexec", prog="corolla deploy superexec",
                         help="start the app executor for --isolation process",
                         description="Start flower-superexec, which runs the ServerApp or ClientApp "
                         "processes for a SuperLink or SuperNode started with --isolation process, "
                         "signing its Runtime API requests with their shared secret.")
    exe.add_argument("--runtime-api-address", required=True, metavar="HOST:PORT")
    tls = exe.add_mutually_exclusive_group(required=True)
    tls.add_argument("--ca", type=Path, help="CA certificate (a SuperLink's Runtime API always uses TLS)")
    tls.add_argument("--insecure", action="store_true",
                     help="plain HTTP (only for a SuperNode's Runtime API on loopback)")
    exe.add_argument("--secret", type=Path, required=True,
                     help="the SuperExec secret its SuperLink/SuperNode was started with")
    exe.add_argument("--health", default=None, metavar="HOST:PORT",
                     help="serve Flower's gRPC health service here (plain text; for probes)")
    _common(exe)

    op = sub.add_parser("operator", prog="corolla deploy operator",
                        help="start the operator's local forwarder to the gateway's Control port",
                        description="Start nginx on the operator's machine: `flwr` talks plain HTTP to it on "
                        "loopback, it talks TLS to the gateway's Control port with the operator's client "
                        "certificate and checks the gateway's certificate against the federation CA.")
    op.add_argument("--certs", type=Path, required=True, help="directory holding ca.crt, operator.crt, operator.key")
    op.add_argument("--gateway", required=True, metavar="HOST:PORT", help="the gateway's Control address")
    op.add_argument("--listen", default=f"127.0.0.1:{gateway.OPERATOR_LOCAL_PORT}", metavar="HOST:PORT",
                    help=f"where `flwr` connects (default: 127.0.0.1:{gateway.OPERATOR_LOCAL_PORT})")
    op.add_argument("--server-name", default=None,
                    help="the name the gateway's certificate must carry (default: the gateway's host name; "
                         "localhost when it is an IP address)")
    op.add_argument("--dir", type=Path, default=Path("operator-gateway"), help="nginx's working directory")
    _common(op)

    conn = sub.add_parser("connection", prog="corolla deploy connection",
                          help="add a SuperLink connection to $FLWR_HOME/config.toml",
                          description="Write [superlink.NAME] into Flower's config file "
                          "($FLWR_HOME/config.toml, default ~/.flwr), used by `flwr run . NAME` and "
                          "`flwr supernode register KEY.pub NAME`.")
    conn.add_argument("name")
    conn.add_argument("--superlink", required=True, metavar="HOST:PORT")
    where = conn.add_mutually_exclusive_group(required=True)
    where.add_argument("--certs", type=Path, help="directory holding ca.crt (TLS straight to a SuperLink)")
    where.add_argument("--operator", action="store_true",
                       help="plain HTTP to the operator's local forwarder (`corolla deploy operator`)")
    conn.add_argument("--default", action="store_true", help="make it the default connection")
    return parser


def _loopback(address: str, flag: str) -> None:
    host = address.rsplit(":", 1)[0].strip("[]")
    if host not in ("127.0.0.1", "::1", "localhost"):
        raise LaunchError(f"{flag} {address}: the operator's forwarder speaks plain HTTP, so it must listen on "
                          f"loopback (127.0.0.1:PORT)")


def nginx_config(args: argparse.Namespace) -> str:
    """The nginx.conf of `corolla deploy gateway|operator` (paths resolved)."""
    certs, prefix = str(args.certs.resolve()), str(args.dir.resolve())
    as_root = os.geteuid() == 0
    if args.what == "gateway":
        for name in (CA_CERT, SERVER_CERT, SERVER_KEY):
            _require_file(args.certs / name, "certificate file", "make it with `corolla certs DIR`")
        return gateway.render_gateway(certs, prefix=prefix, superlink=args.superlink, fleet_listen=args.fleet,
                                      control_listen=args.control, as_root=as_root)
    from deploy.certs import OPERATOR_CERT, OPERATOR_KEY

    for name in (CA_CERT, OPERATOR_CERT, OPERATOR_KEY):
        _require_file(args.certs / name, "operator credential", "from the operator's `corolla certs DIR`")
    _loopback(args.listen, "--listen")
    return gateway.render_operator(certs, prefix=prefix, gateway=args.gateway, listen=args.listen,
                                   server_name=args.server_name, as_root=as_root)


def _secret(path: Path, hint: str) -> Path:
    return _require_file(path, "SuperExec secret", hint).resolve()


def build(args: argparse.Namespace) -> list[str]:
    """Flower's (or nginx's) full command line (binary name first) for a parsed `corolla deploy` invocation."""
    extra = [a for a in (args.extra or []) if a != "--"]
    if args.what == "superlink":
        certs = args.certs.resolve()
        for name in (CA_CERT, SERVER_CERT, SERVER_KEY):
            _require_file(certs / name, "certificate file", "make it with `corolla certs DIR`")
        if args.isolation == "process":
            _secret(certs / SUPEREXEC_SECRET, "make it with `corolla certs DIR`")
        database = Path(args.database).expanduser().resolve()
        return ["flower-superlink", *superlink_args(certs, str(database), host=args.host, port=args.port,
                                                    isolation=args.isolation, health=args.health), *extra]
    if args.what == "supernode":
        certs = args.certs.resolve()
        ca = _require_file(certs / CA_CERT, "CA certificate", "copy ca.crt from the federation's CA")
        key = resolve_key(certs, args.key).resolve()
        if args.data and not Path(args.data).expanduser().exists():
            raise LaunchError(f"--data {args.data}: no such file or directory")
        data = str(Path(args.data).expanduser().resolve()) if args.data else None
        config = node_config(args.partition_id, args.num_partitions, args.data_dir, data)
        secret = None
        if args.isolation == "process":
            secret = _secret(args.secret or key.with_suffix(".secret"),
                             "each site's supernode-<i>.secret comes from `corolla certs`; or pass --secret")
        return ["flower-supernode", *supernode_args(ca, key, args.superlink, config, host=args.host,
                                                    port=args.port, isolation=args.isolation, secret=secret,
                                                    health=args.health, max_retries=args.max_retries,
                                                    max_wait_time=args.max_wait_time), *extra]
    if args.what == "superexec":
        ca = _require_file(args.ca.resolve(), "CA certificate", "ca.crt from `corolla certs`") if args.ca else None
        secret = _secret(args.secret, "the file its SuperLink/SuperNode was started with")
        return ["flower-superexec", *superexec_args(args.runtime_api_address, ca, secret, args.health), *extra]
    if args.what in ("gateway", "operator"):
        prefix = args.dir.resolve()
        return ["nginx", *gateway.nginx_command("nginx", prefix, prefix / "nginx.conf")[1:], *extra]
    raise LaunchError(f"unknown deploy target {args.what!r}")


def write_connection(name: str, address: str, ca_cert: Path | None, make_default: bool) -> Path:
    """Add or replace [superlink.<name>] in $FLWR_HOME/config.toml; return the file.

    Without `ca_cert` the connection is plain HTTP: only for the operator's forwarder on loopback.
    """
    import tomli
    import tomli_w
    from flwr.supercore.utils import get_flwr_home

    path = get_flwr_home() / "config.toml"
    data = tomli.loads(path.read_text()) if path.exists() else {}
    section = data.setdefault("superlink", {})
    entry: dict[str, object] = {"address": address}
    entry.update({"root-certificates": str(ca_cert.resolve())} if ca_cert else {"insecure": True})
    section[name] = entry
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
    if argv[0] == "resubmit":
        from deploy.resubmit import main as resubmit

        return resubmit(argv[1:])
    args = _parser().parse_args(argv)
    if "--print" in (getattr(args, "extra", None) or []):  # `--print` after `--` still only prints
        args.extra.remove("--print")
        args.print_only = True
    try:
        if args.what == "connection":
            ca = None
            if args.certs is not None:
                ca = _require_file(args.certs / CA_CERT, "CA certificate", "make it with `corolla certs DIR`")
            else:
                _loopback(args.superlink, "--superlink")
            path = write_connection(args.name, args.superlink, ca, args.default)
            print(f"wrote [superlink.{args.name}] ({args.superlink}) to {path}")
            return 0
        command = build(args)
        if args.print_only:
            if args.what in ("gateway", "operator"):
                print(nginx_config(args), end="")
            print(shlex.join(command))
            return 0
        env = flower_env()
        if args.what in ("gateway", "operator"):
            gateway.prepare(args.dir.resolve(), nginx_config(args))
            env["PATH"] = os.pathsep.join([env["PATH"], "/usr/sbin", "/usr/local/sbin"])
        binary = flower_binary(command[0], env)
    except LaunchError as ex:
        print(f"corolla deploy {args.what}: error: {ex}", file=sys.stderr)
        return 2
    if args.what == "superlink":
        Path(command[command.index("--database") + 1]).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    if args.what == "supernode" and args.max_retries is None and args.max_wait_time is None:
        from deploy.supervise import supervise

        return supervise([binary, *command[1:]], env)
    os.execve(binary, [binary, *command[1:]], env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
