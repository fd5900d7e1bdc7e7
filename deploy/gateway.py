"""nginx configurations that split the SuperLink's one port: sites get the Fleet API, the operator the Control API."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from deploy.certs import CA_CERT, OPERATOR_CERT, OPERATOR_CN, OPERATOR_KEY, SERVER_CERT, SERVER_KEY, is_ip

# Flower 1.42 serves every API of the SuperLink under one HTTPS port, told apart only by path.
FLEET_PATHS = r"^/v1/fleet/[a-z-]+$"
CONTROL_PATHS = r"^/v1/control/[a-z-]+$"
FLEET_PORT = 9093            # the public port: sites (SuperNodes)
CONTROL_PORT = 9095          # the operator's port: client certificate required
SUPERLINK_INTERNAL_PORT = 9091  # the SuperLink itself, on the host's loopback only
OPERATOR_LOCAL_PORT = 9095   # the operator's own forwarder, on the operator's loopback
# The SuperLink's certificate always names localhost (corolla certs' loopback SANs); nginx checks
# names with X509_check_host, which matches DNS names only.
UPSTREAM_NAME = "localhost"
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")

# One line per request, refusals included: who (peer address, client certificate), what, and the status.
LOG_FORMAT = ('$time_iso8601 peer=$remote_addr:$remote_port port=$server_port "$request" status=$status '
              'bytes=$body_bytes_sent tls_client=$ssl_client_verify client_dn="$ssl_client_s_dn"')


def _preamble(prefix: str, *, as_root: bool) -> list[str]:
    lines = []
    if as_root:  # workers drop to nobody; everything they touch lives under the prefix
        lines.append("user nobody nogroup;")
    lines += [
        "worker_processes 1;",
        f"pid {prefix}/nginx.pid;",
        # info: TLS handshake failures (no or wrong client certificate, unknown CA) with the peer address.
        "error_log stderr info;",
        "events { worker_connections 1024; }",
        "http {",
        *(f"  {name}_temp_path {prefix}/{name}_temp;" for name in TEMP_DIRS),
        f"  log_format corolla '{LOG_FORMAT}';",
        "  access_log /dev/stdout corolla;",
        "  server_tokens off;",
        "  client_max_body_size 0;           # model objects are large; Flower bounds them itself",
        "  proxy_http_version 1.1;",
        "  proxy_buffering off;              # log streams and long polls pass through as they come",
        "  proxy_request_buffering off;",
        "  proxy_read_timeout 3600s;",
        "  proxy_send_timeout 3600s;",
    ]
    return lines


# The SuperLink's own log (uvicorn's access line next to Flower's refusal reason) then names the site's
# address and port, not the gateway's: uvicorn trusts X-Forwarded-For from 127.0.0.1 (its default
# FORWARDED_ALLOW_IPS), where the gateway connects from. proxy_set_header replaces any X-Forwarded-For
# a client sends, so a site cannot choose what the SuperLink logs. IPv6 peers get brackets.
PEER_MAP = [
    "  map $remote_addr $corolla_peer {",
    '    "~:"     "[$remote_addr]:$remote_port";',
    '    default "$remote_addr:$remote_port";',
    "  }",
]
FORWARD_PEER = "proxy_set_header X-Forwarded-For $corolla_peer;"


def render_gateway(certs: str, *, prefix: str, superlink: str = f"127.0.0.1:{SUPERLINK_INTERNAL_PORT}",
                   fleet_listen: str = f"0.0.0.0:{FLEET_PORT}", control_listen: str = f"0.0.0.0:{CONTROL_PORT}",
                   as_root: bool = False) -> str:
    """nginx.conf for the SuperLink host: TLS on both ports, each forwarding one API to the SuperLink.

    The fleet port answers only Fleet API paths (SuperNodes authenticate with their registered keys
    inside those requests); the control port requires a client certificate signed by the federation
    CA with the operator's name and answers only Control API paths. The Runtime API is on neither:
    the SuperExec reaches the SuperLink on loopback, with the shared secret.
    """
    tls = [
        f"    ssl_certificate {certs}/{SERVER_CERT};",
        f"    ssl_certificate_key {certs}/{SERVER_KEY};",
        "    ssl_protocols TLSv1.2 TLSv1.3;",
    ]
    upstream_tls = [
        f"    proxy_ssl_trusted_certificate {certs}/{CA_CERT};",
        "    proxy_ssl_verify on;",
        f"    proxy_ssl_name {UPSTREAM_NAME};",
    ]
    lines = _preamble(prefix, as_root=as_root) + PEER_MAP + [
        # No keepalive pool: after a SuperLink restart a pooled connection is dead, and nginx does not
        # retry a POST on a fresh one (it answers 502). A new loopback TLS connection per request is cheap.
        "  upstream superlink {",
        f"    server {superlink};",
        "  }",
        "  server {                          # sites: the Fleet API only",
        f"    listen {fleet_listen} ssl;",
        *tls, *upstream_tls,
        f"    {FORWARD_PEER}",
        f"    location ~ {FLEET_PATHS} {{ proxy_pass https://superlink; }}",
        "    location / { return 403; }",
        "  }",
        "  server {                          # the operator: the Control API, with its client certificate",
        f"    listen {control_listen} ssl;",
        *tls, *upstream_tls,
        f"    ssl_client_certificate {certs}/{CA_CERT};",
        "    ssl_verify_client on;",
        "    ssl_verify_depth 1;",
        f"    {FORWARD_PEER}",
        f"    location ~ {CONTROL_PATHS} {{",
        f'      if ($ssl_client_s_dn !~ "(^|,)CN={OPERATOR_CN}(,|$)") {{ return 403; }}',
        "      proxy_pass https://superlink;",
        "    }",
        "    location / { return 403; }",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def render_operator(certs: str, *, prefix: str, gateway: str, listen: str = f"127.0.0.1:{OPERATOR_LOCAL_PORT}",
                    server_name: str | None = None, as_root: bool = False) -> str:
    """nginx.conf for the operator's machine: `flwr` talks to it on loopback, it adds the client certificate.

    `flwr` cannot present a client certificate itself; this forwarder does, and verifies the
    gateway's certificate against the federation CA (and its name: `server_name`).
    """
    host = gateway.rsplit(":", 1)[0].strip("[]")
    name = server_name or (UPSTREAM_NAME if is_ip(host) else host)
    lines = _preamble(prefix, as_root=as_root) + [
        "  upstream gateway {",
        f"    server {gateway};",
        "  }",
        "  server {",
        f"    listen {listen};",
        "    location / {",
        "      proxy_pass https://gateway;",
        f"      proxy_ssl_certificate {certs}/{OPERATOR_CERT};",
        f"      proxy_ssl_certificate_key {certs}/{OPERATOR_KEY};",
        f"      proxy_ssl_trusted_certificate {certs}/{CA_CERT};",
        "      proxy_ssl_verify on;",
        f"      proxy_ssl_name {name};",
        "      proxy_ssl_server_name on;",
        "    }",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def prepare(prefix: Path, config: str) -> Path:
    """Write `config` into <prefix>/nginx.conf with nginx's temp dirs; return the file."""
    prefix.mkdir(parents=True, exist_ok=True)
    os.chmod(prefix, 0o700 if os.geteuid() != 0 else 0o711)
    for name in TEMP_DIRS:
        path = prefix / f"{name}_temp"
        path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(path, "nobody", "nogroup")
    conf = prefix / "nginx.conf"
    conf.write_text(config)
    return conf


def nginx_command(nginx: str, prefix: Path, conf: Path) -> list[str]:
    return [nginx, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"]
