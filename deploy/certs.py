"""`corolla certs <dir>`: a CA, the SuperLink's TLS certificate and SuperNode authentication keys."""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
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


def make_server_cert(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, sans: Sans,
                     common_name: str = "corolla SuperLink") -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The SuperLink's TLS key and certificate, signed by the CA, valid for `sans`."""
    key = ec.generate_private_key(TLS_CURVE())
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
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
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(sans.extension(), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    return key, cert


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
    files = [out / CA_KEY, out / CA_CERT, out / SERVER_KEY, out / SERVER_CERT]
    for i in range(1, supernodes + 1):
        files += [out / node_key_name(i), out / node_pub_name(i)]
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
    for i in range(1, supernodes + 1):
        private, public = make_node_keys(f"corolla-supernode-{i}")
        _write(out / node_key_name(i), private, private=True)
        _write(out / node_pub_name(i), public, private=False)
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
    dns = [] if args.no_loopback else list(LOOPBACK_DNS)
    ips = [] if args.no_loopback else list(LOOPBACK_IPS)
    dns += [d for d in args.san_dns if d not in dns]
    ips += [i for i in args.san_ip if i not in ips]
    if not dns and not ips:
        raise ValueError("the SuperLink certificate needs at least one SAN (--san-dns or --san-ip)")
    return Sans(tuple(dns), tuple(ips))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        sans = sans_from_args(args)
        files = generate(args.dir, sans, args.supernodes, force=args.force)
    except (FileExistsError, ValueError) as ex:
        print(f"corolla certs: error: {ex}", file=sys.stderr)
        return 1
    print(f"wrote {len(files)} files to {args.dir}")
    print(f"  CA:        {CA_CERT} (give to every SuperNode and `flwr` user), {CA_KEY} (keep offline)")
    print(f"  SuperLink: {SERVER_CERT}, {SERVER_KEY}; SANs: {', '.join(sans.dns + sans.ips)}")
    if args.supernodes:
        print(f"  SuperNodes: {node_key_name(1)} .. {node_key_name(args.supernodes)} (private, one per site), "
              f"*.pub (register with `flwr supernode register <pub> <connection>`)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
