"""`corolla deploy ...`: the Flower command lines, checked against Flower 1.42's own argument parsers."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from deploy import certs, launch
from deploy.launch import main


@pytest.fixture(scope="module")
def certdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("launch") / "certs"
    assert certs.main([str(out), "--supernodes", "2"]) == 0
    return out


def _printed(capsys: pytest.CaptureFixture[str], argv: list[str]) -> list[str]:
    capsys.readouterr()
    assert main([argv[0], "--print", *argv[1:]]) == 0  # before any `--`: what follows it goes to Flower
    return shlex.split(capsys.readouterr().out.strip())


def _flag(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def parse_superlink(args: list[str]):  # noqa: ANN201
    from flwr.superlink.cli.flower_superlink import _parse_args_run_superlink

    return _parse_args_run_superlink().parse_args(args)


def parse_supernode(args: list[str]):  # noqa: ANN201
    from flwr.supernode.cli.flower_supernode import _parse_args_run_supernode

    return _parse_args_run_supernode().parse_args(args)


def parse_superexec(args: list[str]):  # noqa: ANN201
    from flwr.supercore.cli.flower_superexec import _parse_args

    return _parse_args().parse_args(args)


def test_superlink_command(certdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "state" / "link.db"
    cmd = _printed(capsys, ["superlink", "--certs", str(certdir), "--database", str(db), "--port", "19093"])
    assert cmd[0] == "flower-superlink"
    ns = parse_superlink(cmd[1:])
    assert ns.ssl_ca_certfile == str(certdir / "ca.crt")
    assert ns.ssl_certfile == str(certdir / "superlink.crt") and ns.ssl_keyfile == str(certdir / "superlink.key")
    assert ns.enable_supernode_auth is True and ns.insecure is False
    assert ns.runtime_dependency_install is False
    assert ns.database == str(db) and ns.port == 19093 and ns.host == "127.0.0.1"  # behind the gateway
    assert ns.isolation == "process"
    assert ns.superexec_auth_secret_file == str(certdir / "superexec.secret")
    assert not db.parent.exists()  # --print does not touch the file system


def test_superlink_defaults_to_a_database_file_not_memory(certdir: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    cmd = _printed(capsys, ["superlink", "--certs", str(certdir)])
    assert _flag(cmd, "--database") == str(tmp_path / "superlink.db")
    assert _flag(cmd, "--port") == str(launch.SUPERLINK_PORT)


def test_superlink_process_isolation_and_extra_flags(certdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cmd = _printed(capsys, ["superlink", "--certs", str(certdir), "--isolation", "process", "--host", "127.0.0.1",
                            "--health", "127.0.0.1:9098", "--", "--log-file", "/tmp/x.log"])
    ns = parse_superlink(cmd[1:])
    assert ns.isolation == "process" and ns.host == "127.0.0.1" and ns.log_file == "/tmp/x.log"
    assert ns.health_server_address == "127.0.0.1:9098"
    # subprocess isolation: Flower ignores the secret, so none is passed (the README says what that means).
    cmd = _printed(capsys, ["superlink", "--certs", str(certdir), "--isolation", "subprocess"])
    assert parse_superlink(cmd[1:]).superexec_auth_secret_file is None


def test_superlink_needs_the_certificates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["superlink", "--print", "--certs", str(tmp_path)]) == 2
    assert "corolla certs" in capsys.readouterr().err


def test_supernode_command(certdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cmd = _printed(capsys, ["supernode", "--certs", str(certdir), "--key", "2", "--superlink", "10.1.2.3:9093",
                            "--partition-id", "1", "--num-partitions", "3", "--data-dir", "/data/site b",
                            "--port", "9105"])
    assert cmd[0] == "flower-supernode"
    ns = parse_supernode(cmd[1:])
    assert ns.superlink == "10.1.2.3:9093" and ns.insecure is False
    assert ns.root_certificates == str(certdir / "ca.crt")
    assert ns.auth_supernode_private_key == str(certdir / "supernode-2.key")
    assert ns.port == 9105 and ns.host == "127.0.0.1" and ns.isolation == "process"
    assert ns.superexec_auth_secret_file == str(certdir / "supernode-2.secret")  # its own, not the SuperLink's
    assert ns.runtime_dependency_install is False  # Flower's SuperNode default; never turned on
    assert "--allow-runtime-dependency-installation" not in cmd
    from flwr.common.config import parse_config_args

    assert parse_config_args([ns.node_config]) == {"partition-id": 1, "num-partitions": 3, "data-dir": "/data/site b"}


def test_supernode_key_by_path_and_retries(certdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = certdir / "supernode-1.key"
    cmd = _printed(capsys, ["supernode", "--certs", str(certdir), "--key", str(key), "--superlink", "h:1",
                            "--partition-id", "0", "--num-partitions", "2", "--max-retries", "3",
                            "--max-wait-time", "30"])
    ns = parse_supernode(cmd[1:])
    assert ns.auth_supernode_private_key == str(key) and ns.max_retries == 3 and ns.max_wait_time == 30.0
    assert ns.node_config == "partition-id=0 num-partitions=2"


@pytest.mark.parametrize("argv, message", [
    (["--key", "9"], "supernode-9.key"),
    (["--key", "1", "--partition-id", "3"], "--partition-id"),
    (["--key", "1", "--data-dir", 'a"b'], "--data-dir"),
])
def test_supernode_errors(certdir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    base = {"--partition-id": "0", "--num-partitions": "3"}
    for flag, value in zip(argv[::2], argv[1::2]):
        base[flag] = value
    args = ["supernode", "--print", "--certs", str(certdir), "--superlink", "h:1",
            *[x for kv in base.items() for x in kv]]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_superexec_command(certdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cmd = _printed(capsys, ["superexec", "--runtime-api-address", "127.0.0.1:9091", "--ca", str(certdir / "ca.crt"),
                            "--secret", str(certdir / "superexec.secret")])
    ns = parse_superexec(cmd[1:])
    assert ns.runtime_api_address == "127.0.0.1:9091" and ns.root_certificates == str(certdir / "ca.crt")
    assert not ns.insecure and not ns.runtime_dependency_install
    assert ns.superexec_auth_secret_file == str(certdir / "superexec.secret")
    cmd = _printed(capsys, ["superexec", "--runtime-api-address", "127.0.0.1:9094", "--insecure",
                            "--secret", str(certdir / "supernode-1.secret")])
    assert parse_superexec(cmd[1:]).insecure is True
    with pytest.raises(SystemExit):  # no executor without its secret
        launch._parser().parse_args(["superexec", "--runtime-api-address", "127.0.0.1:9094", "--insecure"])
    assert main(["superexec", "--print", "--runtime-api-address", "h:1", "--insecure", "--secret", "/nope"]) == 2


def test_connection_writes_flower_config(certdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tomli
    from flwr.cli.flower_config import read_superlink_connection

    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "home"))
    assert main(["connection", "site", "--superlink", "127.0.0.1:9093", "--certs", str(certdir)]) == 0
    assert main(["connection", "other", "--superlink", "10.0.0.1:9093", "--certs", str(certdir)]) == 0
    conn = read_superlink_connection("site")
    assert conn.address == "127.0.0.1:9093" and conn.root_certificates == str(certdir / "ca.crt")
    assert conn.insecure is False
    data = tomli.loads((tmp_path / "home" / "config.toml").read_text())
    assert data["superlink"]["default"] == "site"  # the first one became the default
    assert main(["connection", "other", "--superlink", "10.0.0.2:9093", "--certs", str(certdir), "--default"]) == 0
    assert read_superlink_connection(None).address == "10.0.0.2:9093"


def test_flower_env_puts_this_interpreter_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin")
    monkeypatch.delenv("FLWR_TELEMETRY_ENABLED", raising=False)
    env = launch.flower_env()
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    assert env["FLWR_TELEMETRY_ENABLED"] == "0" and env["FLWR_DISABLE_UPDATE_CHECK"] == "1"
    assert Path(launch.flower_binary("flower-superexec", env)).parent == Path(sys.executable).parent


def test_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert all(word in out for word in ("superlink", "supernode", "superexec", "connection", "gateway", "operator"))


def test_print_after_double_dash_still_only_prints(certdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["superlink", "--certs", str(certdir), "--", "--log-file", "x.log", "--print"]) == 0
    cmd = shlex.split(capsys.readouterr().out.strip())
    assert cmd[0] == "flower-superlink" and cmd[-2:] == ["--log-file", "x.log"]


def test_supernode_with_its_own_data(certdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site a"
    site.mkdir()
    cmd = _printed(capsys, ["supernode", "--certs", str(certdir), "--key", "1", "--superlink", "h:1",
                            "--partition-id", "0", "--num-partitions", "3", "--data", str(site)])
    from flwr.common.config import parse_config_args

    ns = parse_supernode(cmd[1:])
    assert parse_config_args([ns.node_config]) == {"partition-id": 0, "num-partitions": 3, "data": str(site)}
    args = ["supernode", "--print", "--certs", str(certdir), "--key", "1", "--superlink", "h:1",
            "--partition-id", "0", "--num-partitions", "3", "--data", str(tmp_path / "missing")]
    assert main(args) == 2
    assert "--data" in capsys.readouterr().err


def test_gateway_config_is_valid_nginx_and_routes_by_path(certdir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """nginx -t accepts it; the Fleet port routes only Fleet paths, the Control port only Control paths and
    only with the operator's certificate; the Runtime API is on neither."""
    import shutil
    import subprocess

    from deploy import gateway

    capsys.readouterr()
    assert main(["gateway", "--print", "--certs", str(certdir), "--dir", str(tmp_path / "gw")]) == 0
    conf = capsys.readouterr().out.rsplit("\n", 2)[0]
    fleet, control = conf.split("# sites:")[1].split("# the operator:")
    assert "/v1/fleet/" in fleet and "/v1/control/" not in fleet and "ssl_verify_client" not in fleet
    assert "/v1/control/" in control and "ssl_verify_client on;" in control and "CN=corolla operator" in control
    assert "/v1/runtime" not in conf and "proxy_ssl_verify on;" in conf
    assert "listen 0.0.0.0:9093 ssl;" in conf and "listen 0.0.0.0:9095 ssl;" in conf
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists(), "nginx is needed for the gateway: apt-get install nginx-light"
    for what, extra in (("gateway", ["--certs", str(certdir)]),
                        ("operator", ["--certs", str(certdir), "--gateway", "localhost:9095"])):
        prefix = tmp_path / what
        args = launch._parser().parse_args([what, *extra, "--dir", str(prefix)])
        conf_path = gateway.prepare(prefix, launch.nginx_config(args))
        done = subprocess.run([nginx, "-t", "-p", str(prefix), "-c", str(conf_path)], capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr


def test_operator_forwarder_listens_on_loopback_only(certdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["operator", "--print", "--certs", str(certdir), "--gateway", "10.0.0.1:9095",
                 "--listen", "0.0.0.0:9095"]) == 2
    assert "loopback" in capsys.readouterr().err
    assert main(["connection", "op", "--superlink", "10.0.0.1:9095", "--operator"]) == 2


def test_supervisor_restarts_with_backoff_until_the_supernode_stays(tmp_path: Path) -> None:
    """A SuperNode that exits (refused) is started again, waits doubling, until one run lasts."""
    import os
    import signal
    import threading
    import time

    from deploy.supervise import supervise

    counter = tmp_path / "attempts"
    script = ("import pathlib, sys, time; p = pathlib.Path(sys.argv[1]); n = int(p.read_text() or 0) + 1 "
              "if p.exists() else 1; p.write_text(str(n)); sys.exit(1) if n < 3 else time.sleep(60)")
    timer = threading.Timer(4.0, lambda: os.kill(os.getpid(), signal.SIGTERM))
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    t0 = time.monotonic()
    timer.start()
    try:
        supervise([sys.executable, "-c", script, str(counter)], dict(os.environ), first_wait=0.5, max_wait=1.0)
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
    assert counter.read_text() == "3"  # two refusals, then it stayed up until SIGTERM ended both
    assert 1.5 <= time.monotonic() - t0 < 30


def test_supernode_without_retry_bounds_is_supervised(certdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["supernode", "--certs", str(certdir), "--key", "1", "--superlink", "h:1", "--partition-id", "0",
            "--num-partitions", "2"]
    assert launch._parser().parse_args(argv).max_retries is None  # main() then supervises instead of exec


def test_resubmit_plans_a_resume_and_refuses_what_it_must(tmp_path: Path) -> None:
    import json

    from deploy.resubmit import AlreadyComplete, ResubmitError, plan

    run = tmp_path / "run"
    with pytest.raises(ResubmitError, match="flower-run.json"):
        plan(run, "finished:failed")
    run.mkdir()
    (run / "flower-run.json").write_text(json.dumps({"run_id": 42, "run_ids": [42], "overrides": "num_rounds=3"}))
    (run / "config.yaml").write_text("num_rounds: 3\n")
    (run / "metrics.jsonl").write_text('{"round": 1}\n{"round": 2}\n')
    run_config, message = plan(run, "finished:failed")
    assert run_config == f'overrides="num_rounds=3" run-dir="{run.resolve()}"'
    assert "Flower run 42 ended 'finished:failed'" in message and "resumes after round 2 of 3" in message
    with pytest.raises(ResubmitError, match="still running"):
        plan(run, "running")
    (run / "summary.json").write_text("{}")
    with pytest.raises(AlreadyComplete, match="completed"):
        plan(run, "finished:completed")
