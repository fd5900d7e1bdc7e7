"""`corolla certs`: chain, SANs, key formats Flower loads, permissions and overwrite refusal."""

from __future__ import annotations

import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_ssh_private_key

from deploy import certs
from deploy.certs import main


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _sans(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return ext.get_values_for_type(x509.DNSName), [str(i) for i in ext.get_values_for_type(x509.IPAddress)]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("certs") / "c"
    assert main([str(out), "--san-dns", "superlink.example.org", "--san-ip", "10.0.0.5", "--supernodes", "3"]) == 0
    return out


def test_files_and_private_key_modes(made: Path) -> None:
    names = {p.name for p in made.iterdir()}
    assert names == {"ca.crt", "ca.key", "superlink.crt", "superlink.key", "operator.crt", "operator.key",
                     "superexec.secret", *(f"supernode-{i}.{ext}" for i in (1, 2, 3) for ext in ("key", "pub", "secret"))}
    for path in made.iterdir():
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.suffix in (".key", ".secret"):
            assert mode == 0o600, (path.name, oct(mode))
        else:
            assert mode & 0o077 in (0o044, 0o004, 0o040, 0), (path.name, oct(mode))
    assert stat.S_IMODE(made.stat().st_mode) == 0o700


def test_chain_verifies_and_roles(made: Path) -> None:
    ca, server = _cert(made / "ca.crt"), _cert(made / "superlink.crt")
    server.verify_directly_issued_by(ca)
    ca.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in eku
    # The server key matches the certificate, and the CA key matches the CA.
    key = load_pem_private_key((made / "superlink.key").read_bytes(), None)
    assert key.public_key().public_numbers() == server.public_key().public_numbers()  # type: ignore[union-attr]
    ca_key = load_pem_private_key((made / "ca.key").read_bytes(), None)
    assert ca_key.public_key().public_numbers() == ca.public_key().public_numbers()  # type: ignore[union-attr]


def test_python_ssl_accepts_the_pair_and_verifies_the_chain(made: Path) -> None:
    """What uvicorn (server side) and httpx (SuperNode, flwr side) do with these files."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(made / "superlink.crt", made / "superlink.key")
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(cafile=made / "ca.crt")
    assert client_ctx.check_hostname and client_ctx.verify_mode == ssl.CERT_REQUIRED


def test_sans_default_loopback_plus_given(made: Path) -> None:
    dns, ips = _sans(_cert(made / "superlink.crt"))
    assert dns == ["localhost", "superlink.example.org"]
    assert ips == ["127.0.0.1", "10.0.0.5"]


def test_no_loopback_keeps_only_given_sans(tmp_path: Path) -> None:
    assert main([str(tmp_path / "c"), "--no-loopback", "--san-dns", "a.example", "--supernodes", "0"]) == 0
    assert _sans(_cert(tmp_path / "c" / "superlink.crt")) == (["a.example"], [])
    assert main([str(tmp_path / "d"), "--no-loopback", "--supernodes", "0"]) == 1  # no SAN at all


def test_node_keys_load_with_flowers_own_functions(made: Path) -> None:
    """The exact loaders of `flower-supernode --auth-supernode-private-key` and `flwr supernode register`."""
    from flwr.cli.supernode.register import try_load_public_key
    from flwr.supercore.primitives.asymmetric import bytes_to_public_key, uses_nist_ec_curve

    for i in (1, 2, 3):
        private = load_ssh_private_key((made / f"supernode-{i}.key").read_bytes(), None)
        assert isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP384R1)
        public = bytes_to_public_key(try_load_public_key(made / f"supernode-{i}.pub"))
        assert uses_nist_ec_curve(public)
        assert public.public_numbers() == private.public_key().public_numbers()
    keys = {(made / f"supernode-{i}.pub").read_text().split()[1] for i in (1, 2, 3)}
    assert len(keys) == 3


def test_supernode_cli_parses_the_private_key(made: Path) -> None:
    import argparse

    from flwr.supernode.cli.flower_supernode import _try_setup_client_authentication

    keys = _try_setup_client_authentication(argparse.Namespace(
        auth_supernode_private_key=str(made / "supernode-2.key"), auth_supernode_public_key=None))
    assert keys is not None and isinstance(keys[0], ec.EllipticCurvePrivateKey)


def test_refuses_to_overwrite_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "c"
    assert main([str(out), "--supernodes", "1"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main([str(out), "--supernodes", "1"]) == 1
    err = capsys.readouterr().err
    assert "--force" in err and "refusing to overwrite" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # Adding more SuperNode keys also refuses (ca.key exists); --force replaces everything.
    assert main([str(out), "--supernodes", "2"]) == 1
    assert main([str(out), "--supernodes", "2", "--force"]) == 0
    assert (out / "ca.key").read_bytes() != before["ca.key"]
    assert stat.S_IMODE((out / "supernode-2.key").stat().st_mode) == 0o600


def test_bad_ip_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main([str(tmp_path / "c"), "--san-ip", "not-an-ip"])


def test_generate_api(tmp_path: Path) -> None:
    files = certs.generate(tmp_path / "x", certs.Sans(("h",), ("::1",)), 1)
    assert [f.name for f in files][:4] == ["ca.key", "ca.crt", "superlink.key", "superlink.crt"]
    ips = _sans(_cert(tmp_path / "x" / "superlink.crt"))[1]
    assert ipaddress.ip_address(ips[0]) == ipaddress.ip_address("::1")


def test_secrets_are_distinct_random_bytes(made: Path) -> None:
    """Flower reads a SuperExec secret as raw bytes: 64 hex characters, no newline; one per SuperLink/site."""
    values = [(made / n).read_bytes() for n in ("superexec.secret", *(f"supernode-{i}.secret" for i in (1, 2, 3)))]
    assert all(len(v) == 64 and int(v, 16) >= 0 for v in values) and len(set(values)) == 4


def test_operator_certificate_is_a_client_certificate(made: Path) -> None:
    ca, op = _cert(made / "ca.crt"), _cert(made / "operator.crt")
    op.verify_directly_issued_by(ca)
    eku = op.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
    assert op.subject.rfc4514_string() == "CN=corolla operator"
    server_eku = _cert(made / "superlink.crt").extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH not in server_eku  # the server key cannot act as operator


def test_ip_given_as_dns_becomes_an_ip_san(tmp_path: Path) -> None:
    assert main([str(tmp_path / "c"), "--san-dns", "10.1.2.3", "--san-dns", "host.example", "--supernodes", "0"]) == 0
    dns, ips = _sans(_cert(tmp_path / "c" / "superlink.crt"))
    assert "10.1.2.3" in ips and "10.1.2.3" not in dns and "host.example" in dns


def test_lifecycle_changes_one_party_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "c"
    assert main([str(out), "--san-dns", "a.example", "--supernodes", "2"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # add-site: a third key pair and secret; nothing else changes.
    assert main(["add-site", str(out)]) == 0
    added = {p.name for p in out.iterdir()} - set(before)
    assert added == {"supernode-3.key", "supernode-3.pub", "supernode-3.secret"}
    assert stat.S_IMODE((out / "supernode-3.key").stat().st_mode) == 0o600
    assert all((out / n).read_bytes() == b for n, b in before.items())
    assert main(["add-site", str(out), "--index", "3"]) == 1  # never overwrites
    # renew: a new server certificate from the same CA with the old SANs plus new ones; sites untouched.
    assert main(["renew", str(out), "--san-dns", "b.example", "--san-dns", "10.9.8.7"]) == 0
    server = _cert(out / "superlink.crt")
    server.verify_directly_issued_by(_cert(out / "ca.crt"))
    dns, ips = _sans(server)
    assert {"localhost", "a.example", "b.example"} <= set(dns) and {"127.0.0.1", "10.9.8.7"} <= set(ips)
    assert (out / "superlink.crt").read_bytes() != before["superlink.crt"]
    unchanged = [n for n in before if n not in ("superlink.crt", "superlink.key")]
    assert all((out / n).read_bytes() == before[n] for n in unchanged)
    # revoke: site 2's files leave the directory (into revoked/); the others stay as they were.
    assert main(["revoke", str(out), "--site", "2"]) == 0
    assert not (out / "supernode-2.key").exists() and (out / "revoked" / "supernode-2.key").read_bytes() \
        == before["supernode-2.key"]
    assert all((out / n).read_bytes() == before[n] for n in ("supernode-1.key", "supernode-1.secret", "ca.key"))
    assert main(["add-site", str(out), "--index", "2"]) == 1  # a revoked index is not handed out again
    assert main(["revoke", str(out), "--site", "7"]) == 1
