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
    assert ns.database == str(db) and ns.port == 19093 and ns.host == "0.0.0.0"
    assert ns.isolation == "subprocess"
    assert not db.parent.exists()  # --print does not touch the file system


def test_superlink_defaults_to_a_database_file_not_memory(certdir: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    cmd = _printed(capsys, ["superlink", "--certs", str(certdir)])
    assert _flag(cmd, "--database") == str(tmp_path / "superlink.db")
    assert _flag(cmd, "--port") == str(launch.SUPERLINK_PORT)


def test_superlink_process_isolation_and_extra_flags(certdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cmd = _printed(capsys, ["superlink", "--certs", str(certdir), "--isolation", "process", "--host", "127.0.0.1",
                            "--", "--log-file", "/tmp/x.log"])
    ns = parse_superlink(cmd[1:])
    assert ns.isolation == "process" and ns.host == "127.0.0.1" and ns.log_file == "/tmp/x.log"


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
    assert ns.port == 9105 and ns.host == "127.0.0.1" and ns.isolation == "subprocess"
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
    cmd = _printed(capsys, ["superexec", "--runtime-api-address", "127.0.0.1:9093", "--ca", str(certdir / "ca.crt")])
    ns = parse_superexec(cmd[1:])
    assert ns.runtime_api_address == "127.0.0.1:9093" and ns.root_certificates == str(certdir / "ca.crt")
    assert not ns.insecure and not ns.runtime_dependency_install
    cmd = _printed(capsys, ["superexec", "--runtime-api-address", "127.0.0.1:9094", "--insecure"])
    assert parse_superexec(cmd[1:]).insecure is True


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
    assert all(word in out for word in ("superlink", "supernode", "superexec", "connection"))


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
