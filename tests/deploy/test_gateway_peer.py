"""The gateway tells the SuperLink who the site is: X-Forwarded-For carries the site's own address and port,
and a site cannot choose it (a real nginx from `corolla deploy gateway`, a stand-in TLS SuperLink)."""

from __future__ import annotations

import http.client
import http.server
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy import certs

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Echo(http.server.BaseHTTPRequestHandler):
    """Answers every POST with the X-Forwarded-For values it received (one per line)."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = "\n".join(self.headers.get_all("X-Forwarded-For") or []).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    """`corolla deploy gateway` in front of an echoing TLS server with the SuperLink's certificate."""
    if not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
        pytest.fail("nginx is needed for the gateway: apt-get install nginx-light")
    root = tmp_path_factory.mktemp("gw-peer")
    assert certs.main([str(root / "certs"), "--supernodes", "1"]) == 0
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(root / "certs" / certs.SERVER_CERT, root / "certs" / certs.SERVER_KEY)
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    upstream.socket = ctx.wrap_socket(upstream.socket, server_side=True)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    fleet, control = _free_port(), _free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulation.cli", "deploy", "gateway", "--certs", str(root / "certs"),
         "--superlink", f"127.0.0.1:{upstream.server_address[1]}", "--fleet", f"127.0.0.1:{fleet}",
         "--control", f"127.0.0.1:{control}", "--dir", str(root / "gw")],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", fleet), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the gateway did not start"
                time.sleep(0.1)
        yield root / "certs", fleet
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: nginx's master and worker
        proc.wait(timeout=10)
        upstream.shutdown()


def _post(ca: Path, port: int, headers: dict[str, str]) -> tuple[int, str]:
    """POST a Fleet path through the gateway; (the client's own port, what the SuperLink saw)."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30,
                                       context=ssl.create_default_context(cafile=str(ca)))
    try:
        conn.connect()
        local_port = conn.sock.getsockname()[1]
        conn.request("POST", "/v1/fleet/pull-messages", body=b"", headers=headers)
        response = conn.getresponse()
        assert response.status == 200, response.status
        return local_port, response.read().decode()
    finally:
        conn.close()


def test_the_superlink_sees_the_sites_address_and_port(gateway: tuple[Path, int]) -> None:
    certdir, port = gateway
    local_port, seen = _post(certdir / certs.CA_CERT, port, {})
    assert seen == f"127.0.0.1:{local_port}"


def test_a_site_cannot_choose_the_address_the_superlink_logs(gateway: tuple[Path, int]) -> None:
    certdir, port = gateway
    local_port, seen = _post(certdir / certs.CA_CERT, port, {"X-Forwarded-For": "203.0.113.7:1"})
    assert seen == f"127.0.0.1:{local_port}"  # replaced, not appended
