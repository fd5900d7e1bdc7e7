"""`corolla certs <dir>`: a CA, the SuperLink's TLS certificate, the operator's client certificate,
the SuperExec secret and SuperNode authentication keys."""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# File names inside the certificate directory (the launchers, compose and k8s files use the same).
CA_CERT = "ca.crt"
CA_KEY = "ca.key"
SERVER_CERT = "superlink.crt"
SERVER_KEY = "superlink.key"
# The operator's TLS client certificate: the gateway lets only its holder reach the Control API.
OPERATOR_CERT = "operator.crt"
OPERATOR_KEY = "operator.key"
OPERATOR_CN = "corolla operator"
# Shared secret of the SuperLink/SuperNode and their SuperExecs (Runtime API requests are HMAC-signed).
SUPEREXEC_SECRET = "superexec.secret"
LOOPBACK_DNS = ("localhost",)
LOOPBACK_IPS = ("127.0.0.1",)
# Flower's docs generate SuperNode keys with `ssh-keygen -t ecdsa -b 384`: P-384, OpenSSH format.
NODE_CURVE = ec.SECP384R1
TLS_CURVE = ec.SECP384R1
CA_DAYS = 3650
SERVER_DAYS = 825


def node_key_name(index: int) -> str:
    """Private key file of SuperNode `index` (1-based); its public key adds `.pub`."""
    return f"supernode-{index}.key"


def node_pub_name(index: int) -> str:
    return f"supernode-{index}.pub"


def node_secret_name(index: int) -> str:
    """Site `index`'s SuperExec secret: its SuperNode and ClientApp executor share it, nobody else."""
    return f"supernode-{index}.secret"


def new_secret() -> bytes:
    """A SuperExec secret; Flower reads the file as raw bytes: 64 hex characters, no newline."""
    return secrets.token_hex(32).encode()


@dataclass(frozen=True)
class Sans:
    """Subject alternative names of the SuperLink certificate."""

    dns: tuple[str, ...]
    ips: tuple[str, ...]

    def extension(self) -> x509.SubjectAlternativeName:
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in self.dns]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in self.ips]
        return x509.SubjectAlternativeName(names)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _write(path: Path, data: bytes, private: bool) -> None:
    """Write atomically; private files are created with mode 0600 (never world-readable, even briefly)."""
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600 if private else 0o644)
    os.replace(tmp, path)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca(common_name: str = "corolla federation CA") -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA that may sign server certificates only (path length 0)."""
    key = ec.generate_private_key(TLS_CURVE())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "corolla")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA384())
    )
    return key, cert


def _leaf_cert(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, *, common_name: str,
               usage: x509.ObjectIdentifier, sans: "Sans | None" = None
               ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A fresh TLS key and its certificate for one extended key usage, signed by the CA."""
    key = ec.generate_private_key(TLS_CURVE())
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if sans is not None:
        builder = builder.add_extension(sans.extension(), critical=False)
    cert = (
        builder
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    return key, cert


def make_server_cert(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, sans: Sans,
                     common_name: str = "corolla SuperLink") -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The SuperLink's TLS key and certificate, signed by the CA, valid for `sans`."""
    return _leaf_cert(ca_key, ca_cert, common_name=common_name, usage=ExtendedKeyUsageOID.SERVER_AUTH, sans=sans)


def make_operator_cert(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate
                       ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The operator's TLS client key and certificate (clientAuth only), signed by the CA."""
    return _leaf_cert(ca_key, ca_cert, common_name=OPERATOR_CN, usage=ExtendedKeyUsageOID.CLIENT_AUTH)


def make_node_keys(comment: str) -> tuple[bytes, bytes]:
    """A SuperNode's EC P-384 key pair: (OpenSSH private key, OpenSSH public key line).

    `flower-supernode --auth-supernode-private-key` reads the first with `load_ssh_private_key`;
    `flwr supernode register` reads the second with `load_ssh_public_key`.
    """
    key = ec.generate_private_key(NODE_CURVE())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public + f" {comment}\n".encode()


def planned_files(out: Path, supernodes: int) -> list[Path]:
    files = [out / CA_KEY, out / CA_CERT, out / SERVER_KEY, out / SERVER_CERT, out / OPERATOR_KEY,
             out / OPERATOR_CERT, out / SUPEREXEC_SECRET]
    for i in range(1, supernodes + 1):
        files += [out / node_key_name(i), out / node_pub_name(i), out / node_secret_name(i)]
    return files


def generate(out: Path, sans: Sans, supernodes: int, force: bool = False) -> list[Path]:
    """Write the CA, the SuperLink certificate and `supernodes` key pairs into `out`; return the files."""
    files = planned_files(out, supernodes)
    existing = [f for f in files if f.exists()]
    if existing and not force:
        names = ", ".join(f.name for f in existing)
        raise FileExistsError(f"{out} already holds {names}; refusing to overwrite keys "
                              f"(pass --force to replace them, which invalidates registered SuperNodes)")
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    ca_key, ca_cert = make_ca()
    server_key, server_cert = make_server_cert(ca_key, ca_cert, sans)
    _write(out / CA_KEY, _pem_key(ca_key), private=True)
    _write(out / CA_CERT, ca_cert.public_bytes(serialization.Encoding.PEM), private=False)
    _write(out / SERVER_KEY, _pem_key(server_key), private=True)
    _write(out / SERVER_CERT, server_cert.public_bytes(serialization.Encoding.PEM), private=False)
    operator_key, operator_cert = make_operator_cert(ca_key, ca_cert)
    _write(out / OPERATOR_KEY, _pem_key(operator_key), private=True)
    _write(out / OPERATOR_CERT, operator_cert.public_bytes(serialization.Encoding.PEM), private=False)
    _write(out / SUPEREXEC_SECRET, new_secret(), private=True)
    for i in range(1, supernodes + 1):
        private, public = make_node_keys(f"corolla-supernode-{i}")
        _write(out / node_key_name(i), private, private=True)
        _write(out / node_pub_name(i), public, private=False)
        _write(out / node_secret_name(i), new_secret(), private=True)
    return files


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="corolla certs",
        description="Make a CA, the SuperLink's TLS certificate (signed by the CA) and SuperNode "
                    "authentication keys (EC P-384, OpenSSH format) in DIR.")
    parser.add_argument("dir", type=Path, help="output directory (created with mode 0700)")
    parser.add_argument("--san-dns", action="append", default=[], metavar="NAME",
                        help="a DNS name SuperNodes and `flwr` use to reach the SuperLink (repeatable)")
    parser.add_argument("--san-ip", action="append", default=[], metavar="IP",
                        help="an IP address SuperNodes and `flwr` use to reach the SuperLink (repeatable)")
    parser.add_argument("--no-loopback", action="store_true",
                        help="leave localhost/127.0.0.1 out of the SANs (the SuperLink's own ServerApp "
                             "process connects over 127.0.0.1, so keep them unless you know why)")
    parser.add_argument("--supernodes", type=int, default=3, metavar="N",
                        help="number of SuperNode key pairs (supernode-1 .. supernode-N; default 3)")
    parser.add_argument("--force", action="store_true", help="overwrite existing keys and certificates")
    args = parser.parse_args(argv)
    if args.supernodes < 0:
        parser.error("--supernodes must be >= 0")
    for ip in args.san_ip:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            parser.error(f"--san-ip {ip!r} is not an IP address")
    return args


def sans_from_args(args: argparse.Namespace) -> Sans:
    """The SANs asked for; a --san-dns value that is an IP address becomes an IP SAN (clients match IPs
    against IP SANs only)."""
    dns = [] if args.no_loopback else list(LOOPBACK_DNS)
    ips = [] if args.no_loopback else list(LOOPBACK_IPS)
    for name in args.san_dns:
        (ips if is_ip(name) else dns).append(name)
    ips += list(args.san_ip)
    dns, ips = list(dict.fromkeys(dns)), list(dict.fromkeys(ips))
    if not dns and not ips:
        raise ValueError("the SuperLink certificate needs at least one SAN (--san-dns or --san-ip)")
    return Sans(tuple(dns), tuple(ips))


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _load_ca(out: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    for name in (CA_KEY, CA_CERT):
        if not (out / name).is_file():
            raise FileNotFoundError(f"{out / name} not found: make the CA first with `corolla certs {out}`")
    key = serialization.load_pem_private_key((out / CA_KEY).read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key, x509.load_pem_x509_certificate((out / CA_CERT).read_bytes())


def existing_sites(out: Path) -> list[int]:
    """Indices of the SuperNode key pairs in `out` (supernode-<i>.key)."""
    found = []
    for path in out.glob("supernode-*.key"):
        index = path.stem.removeprefix("supernode-")
        if index.isdigit():
            found.append(int(index))
    return sorted(found)


def add_site(out: Path, index: int | None = None) -> list[Path]:
    """A new SuperNode key pair next to the existing ones (which stay untouched); return its files."""
    sites = existing_sites(out)
    index = index if index is not None else (max(sites) + 1 if sites else 1)
    files = [out / node_key_name(index), out / node_pub_name(index), out / node_secret_name(index)]
    if any(f.exists() for f in files) or (out / "revoked" / node_key_name(index)).exists():
        raise FileExistsError(f"site {index} already has keys in {out}; pick another --index")
    private, public = make_node_keys(f"corolla-supernode-{index}")
    _write(files[0], private, private=True)
    _write(files[1], public, private=False)
    _write(files[2], new_secret(), private=True)
    return files


def renew_server(out: Path, sans: Sans) -> list[Path]:
    """A new SuperLink certificate and key from the same CA, with the old SANs plus `sans`.

    Sites keep their keys and `ca.crt`; only the SuperLink (and its gateway) reload.
    """
    ca_key, ca_cert = _load_ca(out)
    if (out / SERVER_CERT).is_file():
        old = x509.load_pem_x509_certificate((out / SERVER_CERT).read_bytes())
        ext = old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = [*ext.get_values_for_type(x509.DNSName), *sans.dns]
        ips = [*(str(i) for i in ext.get_values_for_type(x509.IPAddress)), *sans.ips]
        sans = Sans(tuple(dict.fromkeys(dns)), tuple(dict.fromkeys(ips)))
    key, cert = make_server_cert(ca_key, ca_cert, sans)
    _write(out / SERVER_KEY, _pem_key(key), private=True)
    _write(out / SERVER_CERT, cert.public_bytes(serialization.Encoding.PEM), private=False)
    return [out / SERVER_CERT, out / SERVER_KEY]


def retire_site(out: Path, index: int) -> list[Path]:
    """Move site `index`'s key pair into <out>/revoked/ (so it is never handed out or reused)."""
    files = [out / node_key_name(index), out / node_pub_name(index), out / node_secret_name(index)]
    if not files[1].is_file():
        raise FileNotFoundError(f"{files[1]} not found: no site {index} in {out}")
    revoked = out / "revoked"
    revoked.mkdir(mode=0o700, exist_ok=True)
    moved = []
    for f in files:
        if f.exists():
            os.replace(f, revoked / f.name)
            moved.append(revoked / f.name)
    return moved


def _unregister(node_id: int, connection: str | None) -> None:
    """`flwr supernode unregister NODE_ID [CONNECTION]` (the operator's gateway connection)."""
    flwr = Path(sys.executable).with_name("flwr")
    cmd = [str(flwr if flwr.exists() else "flwr"), "supernode", "unregister", str(node_id)]
    cmd += [connection] if connection else []
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0 or "unregistered successfully" not in done.stdout:
        raise RuntimeError(f"{' '.join(cmd)} failed: {(done.stdout + done.stderr).strip()[-500:]}")


LIFECYCLE = ("add-site", "renew", "revoke")


def lifecycle_parser(command: str) -> argparse.ArgumentParser:
    """The parser of `corolla certs add-site | renew | revoke DIR ...`."""
    parser = argparse.ArgumentParser(prog=f"corolla certs {command}")
    parser.add_argument("dir", type=Path)
    if command == "add-site":
        parser.add_argument("--index", type=int, default=None, help="site number (default: the next free one)")
    elif command == "renew":
        parser.add_argument("--san-dns", action="append", default=[], metavar="NAME")
        parser.add_argument("--san-ip", action="append", default=[], metavar="IP")
    else:
        parser.add_argument("--site", type=int, required=True, help="the site whose key to revoke")
        parser.add_argument("--node-id", type=int, default=None,
                            help="its SuperNode id (`flwr supernode list`): unregister it on the SuperLink too")
        parser.add_argument("--connection", default=None, help="the `flwr` connection for --node-id")
    return parser


def _lifecycle(argv: list[str]) -> int:
    """`corolla certs add-site | renew | revoke DIR ...`: change one party's files, keep the others'."""
    parser = lifecycle_parser(argv[0])
    args = parser.parse_args(argv[1:])
    try:
        if argv[0] == "add-site":
            files = add_site(args.dir, args.index)
            print(f"wrote {files[0].name} and {files[2].name} (give to the new site only) and {files[1].name} "
                  f"(register with `flwr supernode register {files[1]} <connection>`)")
        elif argv[0] == "renew":
            for ip in args.san_ip:
                if not is_ip(ip):
                    parser.error(f"--san-ip {ip!r} is not an IP address")
            args.no_loopback = True
            extra = sans_from_args(args) if (args.san_dns or args.san_ip) else Sans((), ())
            renew_server(args.dir, extra)
            print(f"renewed {SERVER_CERT}/{SERVER_KEY} in {args.dir}; restart the SuperLink and its gateway")
        else:
            if args.node_id is not None:
                _unregister(args.node_id, args.connection)
                print(f"unregistered SuperNode {args.node_id} (site {args.site})")
            else:
                print("now run `flwr supernode unregister <its node id> <connection>` "
                      "(ids: `flwr supernode list <connection>`)")
            moved = retire_site(args.dir, args.site)
            print(f"moved {', '.join(p.name for p in moved)} to {args.dir / 'revoked'}")
    except (FileExistsError, FileNotFoundError, ValueError, RuntimeError) as ex:
        print(f"corolla certs {argv[0]}: error: {ex}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIFECYCLE:
        return _lifecycle(argv)
    args = parse_args(argv)
    try:
        sans = sans_from_args(args)
        files = generate(args.dir, sans, args.supernodes, force=args.force)
    except (FileExistsError, ValueError) as ex:
        print(f"corolla certs: error: {ex}", file=sys.stderr)
        return 1
    print(f"wrote {len(files)} files to {args.dir}")
    print(f"  CA:        {CA_CERT} (give to every SuperNode and `flwr` user), {CA_KEY} (keep offline)")
    print(f"  SuperLink: {SERVER_CERT}, {SERVER_KEY}; SANs: {', '.join(sans.dns + sans.ips)}; "
          f"{SUPEREXEC_SECRET} (the SuperLink and its SuperExec)")
    print(f"  operator:  {OPERATOR_CERT}, {OPERATOR_KEY} (the operator's gateway client certificate)")
    if args.supernodes:
        print(f"  SuperNodes: {node_key_name(1)} .. {node_key_name(args.supernodes)} and supernode-<i>.secret "
              f"(private, each to its site only), "
              f"*.pub (register with `flwr supernode register <pub> <connection>`)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
