"""deploy/'s Dockerfile, docker-compose.yml, Kubernetes manifests and README agree with each other,
with Flower 1.42's own argument parsers and with the command lines the e2e test runs."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

import flwr
from deploy import certs, launch

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
FLWR_MINOR = ".".join(flwr.__version__.split(".")[:2])  # "1.42"
APP_IMAGE = "corolla-app:0.1.0"
CERTS_IN_CONTAINER = Path("/app/certs")
DATABASE_IN_CONTAINER = "/app/state/superlink.db"
SITES = (1, 2, 3)


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def k8s_docs() -> dict[tuple[str, str], dict[str, Any]]:
    docs: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[(doc["kind"], doc["metadata"]["name"])] = doc
    return docs


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())


def readme() -> str:
    return (DEPLOY / "README.md").read_text()


# What the e2e test runs (through `corolla deploy`), with container paths: the single source of flags.
def expected_superlink() -> list[str]:
    return launch.superlink_args(CERTS_IN_CONTAINER, DATABASE_IN_CONTAINER, host="0.0.0.0",
                                 port=launch.SUPERLINK_PORT, isolation="process")


def expected_supernode(site: int, superlink: str) -> list[str]:
    return launch.supernode_args(CERTS_IN_CONTAINER / certs.CA_CERT, CERTS_IN_CONTAINER / "supernode.key", superlink,
                                 launch.node_config(site - 1, len(SITES), "/data"), host="127.0.0.1",
                                 port=launch.SUPERNODE_RUNTIME_PORT, isolation="process")


def expected_serverapp() -> list[str]:
    return launch.superexec_args(f"127.0.0.1:{launch.SUPERLINK_PORT}", CERTS_IN_CONTAINER / certs.CA_CERT)


def expected_clientapp() -> list[str]:
    return launch.superexec_args(f"127.0.0.1:{launch.SUPERNODE_RUNTIME_PORT}", None)


def test_security_flags_are_the_ones_the_e2e_test_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The container command lines differ from `corolla deploy` only in host, isolation and paths."""
    assert certs.main([str(tmp_path / "c"), "--supernodes", "1"]) == 0
    capsys.readouterr()
    assert launch.main(["superlink", "--print", "--certs", str(tmp_path / "c"), "--database", "/x.db"]) == 0
    local = shlex.split(capsys.readouterr().out)[1:]
    security = {"--ssl-ca-certfile", "--ssl-certfile", "--ssl-keyfile", "--enable-supernode-auth", "--database",
                "--disable-runtime-dependency-installation"}
    assert security <= set(local) and security <= set(expected_superlink())
    assert not {"--insecure", "--allow-runtime-dependency-installation"} & set(local + expected_superlink())


# docker-compose.yml ---------------------------------------------------------------------------
def test_compose_images_match_the_installed_flower() -> None:
    services = compose()["services"]
    assert services["superlink"]["image"] == f"flwr/superlink:{flwr.__version__}"
    for site in SITES:
        assert services[f"supernode-{site}"]["image"] == f"flwr/supernode:{flwr.__version__}"
        assert services[f"clientapp-{site}"]["image"] == APP_IMAGE
    assert services["serverapp"]["image"] == APP_IMAGE
    assert flwr.__version__.startswith(FLWR_MINOR + ".")
    for name in ("serverapp", *(f"clientapp-{s}" for s in SITES)):
        assert services[name]["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}


def test_compose_superlink() -> None:
    from flwr.superlink.cli.flower_superlink import _parse_args_run_superlink

    link = compose()["services"]["superlink"]
    assert link["command"] == expected_superlink()
    ns = _parse_args_run_superlink().parse_args(link["command"])
    assert ns.enable_supernode_auth and not ns.insecure and not ns.runtime_dependency_install
    assert link["ports"] == [f"{launch.SUPERLINK_PORT}:{launch.SUPERLINK_PORT}"]
    # The database lives on a mounted directory, the certificates arrive as secrets.
    assert any(v.split(":")[1] == str(Path(ns.database).parent) for v in link["volumes"])
    targets = {s["target"] for s in link["secrets"]}
    assert {ns.ssl_ca_certfile, ns.ssl_certfile, ns.ssl_keyfile} == targets


def test_compose_supernodes_and_clientapps() -> None:
    from flwr.supercore.cli.flower_superexec import _parse_args as parse_superexec
    from flwr.supernode.cli.flower_supernode import _parse_args_run_supernode

    doc = compose()
    services, secrets = doc["services"], doc["secrets"]
    partitions = []
    for site in SITES:
        node = services[f"supernode-{site}"]
        assert node["command"] == expected_supernode(site, f"superlink:{launch.SUPERLINK_PORT}")
        ns = _parse_args_run_supernode().parse_args(node["command"])
        assert not ns.insecure and not ns.runtime_dependency_install and ns.isolation == "process"
        partitions.append(node["command"][node["command"].index("--node-config") + 1])
        by_target = {s["target"]: s["source"] for s in node["secrets"]}
        assert set(by_target) == {ns.root_certificates, ns.auth_supernode_private_key}
        assert secrets[by_target[ns.auth_supernode_private_key]]["file"] == f"./certs/{certs.node_key_name(site)}"
        assert secrets[by_target[ns.root_certificates]]["file"] == f"./certs/{certs.CA_CERT}"
        app = services[f"clientapp-{site}"]
        assert app["network_mode"] == f"service:supernode-{site}"  # the Runtime API stays on loopback
        assert app["command"] == expected_clientapp()
        parse_superexec().parse_args(app["command"])
        assert f"${{SITE_{site}_DATA:-./data/site-{site}}}:/data:ro" in app["volumes"]
    assert len(set(partitions)) == len(SITES)


def test_compose_serverapp() -> None:
    from flwr.supercore.cli.flower_superexec import _parse_args as parse_superexec

    app = compose()["services"]["serverapp"]
    assert app["network_mode"] == "service:superlink"
    assert app["command"] == expected_serverapp()
    ns = parse_superexec().parse_args(app["command"])
    assert {s["target"] for s in app["secrets"]} == {ns.root_certificates}
    assert "runs:/app/runs" in app["volumes"]


def test_compose_secret_files_are_what_corolla_certs_writes() -> None:
    written = {p.name for p in certs.planned_files(Path("certs"), len(SITES))}
    for secret in compose()["secrets"].values():
        assert secret["file"].startswith("./certs/") and Path(secret["file"]).name in written


# Kubernetes -----------------------------------------------------------------------------------
def _containers(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in doc["spec"]["template"]["spec"]["containers"]}


def _mounts(container: dict[str, Any]) -> dict[str, str]:
    return {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}


def _volumes(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in doc["spec"]["template"]["spec"]["volumes"]}


def test_k8s_resources_exist_and_kustomization_lists_them() -> None:
    docs = k8s_docs()
    kinds = {k for k, _ in docs}
    assert {"Namespace", "Deployment", "Service", "PersistentVolumeClaim"} <= kinds
    assert ("Deployment", "superlink") in docs and ("Service", "superlink") in docs
    assert ("PersistentVolumeClaim", "superlink-state") in docs
    for site in SITES:
        assert ("Deployment", f"supernode-{site}") in docs
    kust = kustomization()
    assert kust["namespace"] == "corolla"
    assert sorted(kust["resources"]) == sorted(p.name for p in (DEPLOY / "k8s").glob("*.yaml")
                                               if p.name != "kustomization.yaml")


def test_k8s_superlink() -> None:
    docs = k8s_docs()
    dep = docs[("Deployment", "superlink")]
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    pods = dep["spec"]["template"]["spec"]
    assert pods["securityContext"]["runAsUser"] == 49999 and pods["securityContext"]["fsGroup"] == 49999
    cont = _containers(dep)
    assert cont["superlink"]["image"] == f"flwr/superlink:{flwr.__version__}"
    assert cont["superlink"]["args"] == expected_superlink()
    assert cont["serverapp"]["image"] == APP_IMAGE and cont["serverapp"]["args"] == expected_serverapp()
    vols = _volumes(dep)
    link_mounts = _mounts(cont["superlink"])
    assert vols[link_mounts["/app/certs"]]["secret"]["secretName"] == "superlink-tls"
    assert vols[link_mounts[str(Path(DATABASE_IN_CONTAINER).parent)]]["persistentVolumeClaim"]["claimName"] \
        == "superlink-state"
    assert vols[_mounts(cont["serverapp"])["/app/runs"]]["persistentVolumeClaim"]["claimName"] == "runs"
    svc = docs[("Service", "superlink")]
    assert svc["spec"]["ports"][0]["port"] == launch.SUPERLINK_PORT
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]


def test_k8s_supernodes() -> None:
    docs = k8s_docs()
    generated = {s["name"]: s["files"] for s in kustomization()["secretGenerator"]}
    assert generated["superlink-tls"] == [f"{n}=certs/{n}" for n in (certs.CA_CERT, certs.SERVER_CERT,
                                                                      certs.SERVER_KEY)]
    for site in SITES:
        dep = docs[("Deployment", f"supernode-{site}")]
        cont = _containers(dep)
        assert cont["supernode"]["image"] == f"flwr/supernode:{flwr.__version__}"
        assert cont["supernode"]["args"] == expected_supernode(site, f"superlink:{launch.SUPERLINK_PORT}")
        assert cont["clientapp"]["image"] == APP_IMAGE and cont["clientapp"]["args"] == expected_clientapp()
        vols = _volumes(dep)
        secret = vols[_mounts(cont["supernode"])["/app/certs"]]["secret"]["secretName"]
        assert generated[secret] == [f"ca.crt=certs/{certs.CA_CERT}", f"supernode.key=certs/{certs.node_key_name(site)}"]
        claim = vols[_mounts(cont["clientapp"])["/data"]]["persistentVolumeClaim"]["claimName"]
        assert ("PersistentVolumeClaim", claim) in docs


# Dockerfile -----------------------------------------------------------------------------------
def test_dockerfile_installs_cpu_torch_first() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines()]
    torch_at = next(i for i, line in enumerate(lines) if "download.pytorch.org/whl/cpu" in line)
    corolla_at = next(i for i, line in enumerate(lines) if line.startswith("RUN pip install ."))
    assert torch_at < corolla_at
    assert "ARG TORCH_VERSION=2.13.0" in lines
    assert re.search(r'pip install --index-url "\$TORCH_INDEX_URL" "torch==\$\{TORCH_VERSION\}"', text)
    pyproject = (DEPLOY.parent / "pyproject.toml").read_text()
    assert '"torch==2.13.0"' in pyproject  # the pin the image satisfies before corolla's install
    assert 'ENTRYPOINT ["flower-superexec"]' in lines and "USER app" in lines
    assert "--uid 49999" in text  # the same uid as Flower's official images


# README ---------------------------------------------------------------------------------------
def test_readme_agrees_with_the_files() -> None:
    text = readme()
    for needle in (f"flwr/superlink:{flwr.__version__}", f"flwr/supernode:{flwr.__version__}", APP_IMAGE,
                   str(launch.SUPERLINK_PORT), "corolla certs", "flwr supernode register", "corolla deploy superlink",
                   "corolla deploy supernode", "corolla deploy connection", "flwr run .", "config.toml",
                   "--disable-runtime-dependency-installation", "--enable-supernode-auth", "docker compose",
                   "kubectl apply -k deploy/k8s", "tests/e2e"):
        assert needle in text, needle
    assert "[tool.flwr.federations]" not in text or "never" in text


def _readme_commands(prefix: str) -> list[list[str]]:
    commands = []
    for line in readme().splitlines():
        line = line.strip().removeprefix("$ ")
        for start in (".venv/bin/corolla ", "corolla "):
            if line.startswith(start + prefix):
                commands.append(shlex.split(line.removeprefix(start).split(" #")[0].rstrip(" \\")))
    return commands


def test_readme_deploy_commands_parse() -> None:
    commands = _readme_commands("deploy ")
    assert len(commands) >= 4
    parser = launch._parser()
    for argv in commands:
        parser.parse_args(argv[1:])


def test_readme_certs_commands_parse() -> None:
    commands = _readme_commands("certs ")
    assert commands
    for argv in commands:
        certs.parse_args(argv[1:])
