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
from deploy import certs, gateway, launch

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
HEALTH, APP_HEALTH = "127.0.0.1:9098", "127.0.0.1:9099"
SECRETS_DIR = "${COROLLA_SECRETS:?set COROLLA_SECRETS"


def expected_superlink() -> list[str]:
    return launch.superlink_args(CERTS_IN_CONTAINER, DATABASE_IN_CONTAINER, host="127.0.0.1",
                                 port=launch.SUPERLINK_PORT, isolation="process", health=HEALTH)


def expected_supernode(site: int, superlink: str) -> list[str]:
    return launch.supernode_args(CERTS_IN_CONTAINER / certs.CA_CERT, CERTS_IN_CONTAINER / "supernode.key", superlink,
                                 launch.node_config(site - 1, len(SITES), "/data"), host="127.0.0.1",
                                 port=launch.SUPERNODE_RUNTIME_PORT, isolation="process",
                                 secret=CERTS_IN_CONTAINER / "supernode.secret", health=HEALTH)


def expected_serverapp() -> list[str]:
    return launch.superexec_args(f"127.0.0.1:{launch.SUPERLINK_PORT}", CERTS_IN_CONTAINER / certs.CA_CERT,
                                 CERTS_IN_CONTAINER / certs.SUPEREXEC_SECRET, APP_HEALTH)


def expected_clientapp() -> list[str]:
    return launch.superexec_args(f"127.0.0.1:{launch.SUPERNODE_RUNTIME_PORT}", None,
                                 CERTS_IN_CONTAINER / "supernode.secret", APP_HEALTH)


def expected_gateway_conf() -> str:
    return gateway.render_gateway(str(CERTS_IN_CONTAINER), prefix="/tmp")


def test_security_flags_are_the_ones_the_e2e_test_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The container command lines differ from `corolla deploy` only in paths and the health address."""
    assert certs.main([str(tmp_path / "c"), "--supernodes", "1"]) == 0
    capsys.readouterr()
    assert launch.main(["superlink", "--print", "--certs", str(tmp_path / "c"), "--database", "/x.db"]) == 0
    local = shlex.split(capsys.readouterr().out)[1:]
    security = {"--ssl-ca-certfile", "--ssl-certfile", "--ssl-keyfile", "--enable-supernode-auth", "--database",
                "--disable-runtime-dependency-installation", "--superexec-auth-secret-file", "process", "127.0.0.1"}
    assert security <= set(local) and security <= set(expected_superlink())
    assert not {"--insecure", "--allow-runtime-dependency-installation"} & set(local + expected_superlink())


def _check_health(cmd: list[str], address: str) -> None:
    assert cmd[cmd.index("--health-server-address") + 1] == address


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
    assert re.fullmatch(r"nginx:\d+\.\d+-bookworm", services["gateway"]["image"])


def test_compose_superlink_and_gateway() -> None:
    from flwr.superlink.cli.flower_superlink import _parse_args_run_superlink

    doc = compose()
    link, gate = doc["services"]["superlink"], doc["services"]["gateway"]
    assert link["command"] == expected_superlink()
    ns = _parse_args_run_superlink().parse_args(link["command"])
    assert ns.enable_supernode_auth and not ns.insecure and not ns.runtime_dependency_install
    assert ns.host == "127.0.0.1" and ns.superexec_auth_secret_file  # loopback only, authenticated runtime
    # Only the gateway's two ports are published; the gateway shares the SuperLink's network namespace.
    assert link["ports"] == [f"{gateway.FLEET_PORT}:{gateway.FLEET_PORT}", f"{gateway.CONTROL_PORT}:{gateway.CONTROL_PORT}"]
    assert gate["network_mode"] == "service:superlink"
    # The database lives outside the checkout; the certificates arrive as secrets.
    assert link["volumes"] == ["${COROLLA_STATE:?set COROLLA_STATE to a directory outside the checkout "
                               "(deploy/README.md)}:/app/state"]
    assert {s["target"] for s in link["secrets"]} == {ns.ssl_ca_certfile, ns.ssl_certfile, ns.ssl_keyfile,
                                                      ns.superexec_auth_secret_file}
    assert {s["source"] for s in gate["secrets"]} == {"ca-cert", "superlink-cert", "superlink-key"}
    conf = gate["command"][gate["command"].index("-c") + 1]
    target = next(c for c in gate["configs"] if c["target"] == conf)
    path = DEPLOY / doc["configs"][target["source"]]["file"]
    assert path.read_text().split("\n", 3)[3] == expected_gateway_conf()  # after its 3-line header
    assert "healthcheck" in link and HEALTH in link["healthcheck"]["test"]


def test_compose_supernodes_and_clientapps_hold_only_their_own_secrets() -> None:
    from flwr.supercore.cli.flower_superexec import _parse_args as parse_superexec
    from flwr.supernode.cli.flower_supernode import _parse_args_run_supernode

    doc = compose()
    services, secrets = doc["services"], doc["secrets"]
    partitions = []
    for site in SITES:
        node = services[f"supernode-{site}"]
        assert node["command"] == expected_supernode(site, f"superlink:{gateway.FLEET_PORT}")
        ns = _parse_args_run_supernode().parse_args(node["command"])
        assert not ns.insecure and not ns.runtime_dependency_install and ns.isolation == "process"
        partitions.append(node["command"][node["command"].index("--node-config") + 1])
        by_target = {s["target"]: s["source"] for s in node["secrets"]}
        assert set(by_target) == {ns.root_certificates, ns.auth_supernode_private_key, ns.superexec_auth_secret_file}
        assert secrets[by_target[ns.auth_supernode_private_key]]["file"].endswith(f"/{certs.node_key_name(site)}")
        assert secrets[by_target[ns.superexec_auth_secret_file]]["file"].endswith(f"/{certs.node_secret_name(site)}")
        assert secrets[by_target[ns.root_certificates]]["file"].endswith(f"/{certs.CA_CERT}")
        app = services[f"clientapp-{site}"]
        assert app["network_mode"] == f"service:supernode-{site}"  # the Runtime API stays on loopback
        assert app["command"] == expected_clientapp()
        ens = parse_superexec().parse_args(app["command"])
        assert [s["source"] for s in app["secrets"]] == [by_target[ns.superexec_auth_secret_file]]
        assert {s["target"] for s in app["secrets"]} == {ens.superexec_auth_secret_file}
        assert f"${{SITE_{site}_DATA:-./data/site-{site}}}:/data:ro" in app["volumes"]
        _check_health(app["command"], APP_HEALTH)
    assert len(set(partitions)) == len(SITES)


def test_compose_serverapp() -> None:
    from flwr.supercore.cli.flower_superexec import _parse_args as parse_superexec

    app = compose()["services"]["serverapp"]
    assert app["network_mode"] == "service:superlink"
    assert app["command"] == expected_serverapp()
    ns = parse_superexec().parse_args(app["command"])
    assert {s["target"] for s in app["secrets"]} == {ns.root_certificates, ns.superexec_auth_secret_file}
    assert "runs:/app/runs" in app["volumes"]


def test_compose_secret_files_are_what_corolla_certs_writes_outside_the_checkout() -> None:
    written = {p.name for p in certs.planned_files(Path("certs"), len(SITES))}
    for secret in compose()["secrets"].values():
        assert secret["file"].startswith(SECRETS_DIR) and secret["file"].rsplit("/", 1)[1] in written


def test_compose_containers_are_hardened() -> None:
    for name, service in compose()["services"].items():
        assert service.get("user") == "49999:49999", name
        assert "no-new-privileges:true" in service["security_opt"] and service["cap_drop"] == ["ALL"], name


# Kubernetes -----------------------------------------------------------------------------------
def _containers(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in doc["spec"]["template"]["spec"]["containers"]}


def _mounts(container: dict[str, Any]) -> dict[str, str]:
    return {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}


def _volumes(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in doc["spec"]["template"]["spec"]["volumes"]}


def _secret_files(doc: dict[str, Any], container: dict[str, Any]) -> set[tuple[str, str]]:
    """(Secret, key) pairs a container can read."""
    vols = _volumes(doc)
    out = set()
    for name in _mounts(container).values():
        secret = vols[name].get("secret")
        if secret:
            out |= {(secret["secretName"], item["key"]) for item in secret["items"]}
    return out


def test_k8s_resources_exist_and_kustomization_lists_them() -> None:
    docs = k8s_docs()
    kinds = {k for k, _ in docs}
    assert {"Namespace", "Deployment", "Service", "PersistentVolumeClaim", "NetworkPolicy"} <= kinds
    assert ("Deployment", "superlink") in docs and ("Service", "superlink") in docs
    assert ("PersistentVolumeClaim", "superlink-state") in docs
    for site in SITES:
        assert ("Deployment", f"supernode-{site}") in docs
    kust = kustomization()
    assert kust["namespace"] == "corolla"
    assert sorted(kust["resources"]) == sorted(p.name for p in (DEPLOY / "k8s").glob("*.yaml")
                                               if p.name != "kustomization.yaml")
    assert "secretGenerator" not in kust  # keys never have to lie next to the manifests
    assert kust["configMapGenerator"] == [{"name": "gateway-conf", "files": ["gateway.conf"]}]


def test_k8s_superlink() -> None:
    docs = k8s_docs()
    dep = docs[("Deployment", "superlink")]
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    cont = _containers(dep)
    assert cont["superlink"]["image"] == f"flwr/superlink:{flwr.__version__}"
    assert cont["superlink"]["args"] == expected_superlink()
    assert cont["serverapp"]["image"] == APP_IMAGE and cont["serverapp"]["args"] == expected_serverapp()
    assert cont["gateway"]["command"] == ["nginx", "-p", "/tmp", "-c", "/etc/corolla/gateway.conf", "-g", "daemon off;"]
    vols = _volumes(dep)
    assert vols[_mounts(cont["gateway"])["/etc/corolla"]]["configMap"]["name"] == "gateway-conf"
    assert vols[_mounts(cont["superlink"])[str(Path(DATABASE_IN_CONTAINER).parent)]]["persistentVolumeClaim"][
        "claimName"] == "superlink-state"
    assert vols[_mounts(cont["serverapp"])["/app/runs"]]["persistentVolumeClaim"]["claimName"] == "runs"
    tls = {("superlink-tls", n) for n in (certs.CA_CERT, certs.SERVER_CERT, certs.SERVER_KEY)}
    assert _secret_files(dep, cont["superlink"]) == tls | {("superlink-tls", certs.SUPEREXEC_SECRET)}
    assert _secret_files(dep, cont["gateway"]) == tls
    assert _secret_files(dep, cont["serverapp"]) == {("superlink-tls", certs.CA_CERT),
                                                     ("superlink-tls", certs.SUPEREXEC_SECRET)}
    svc = docs[("Service", "superlink")]
    assert sorted(p["port"] for p in svc["spec"]["ports"]) == [gateway.FLEET_PORT, gateway.CONTROL_PORT]
    assert {p["containerPort"] for p in cont["gateway"]["ports"]} == {gateway.FLEET_PORT, gateway.CONTROL_PORT}
    assert "ports" not in cont["superlink"]  # reachable only through the gateway
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert cont["superlink"]["readinessProbe"]["grpc"]["port"] == int(HEALTH.rsplit(":", 1)[1])


def test_k8s_supernodes_hold_only_their_own_secret() -> None:
    docs = k8s_docs()
    for site in SITES:
        dep = docs[("Deployment", f"supernode-{site}")]
        cont = _containers(dep)
        assert cont["supernode"]["image"] == f"flwr/supernode:{flwr.__version__}"
        assert cont["supernode"]["args"] == expected_supernode(site, f"superlink:{gateway.FLEET_PORT}")
        assert cont["clientapp"]["image"] == APP_IMAGE and cont["clientapp"]["args"] == expected_clientapp()
        own = f"supernode-{site}-auth"
        assert _secret_files(dep, cont["supernode"]) == {(own, "ca.crt"), (own, "supernode.key"),
                                                         (own, "supernode.secret")}
        assert _secret_files(dep, cont["clientapp"]) == {(own, "supernode.secret")}
        claim = _volumes(dep)[_mounts(cont["clientapp"])["/data"]]["persistentVolumeClaim"]["claimName"]
        assert ("PersistentVolumeClaim", claim) in docs
        assert cont["supernode"]["readinessProbe"]["grpc"]["port"] == int(HEALTH.rsplit(":", 1)[1])


def test_k8s_every_container_is_bounded_and_unprivileged() -> None:
    for (kind, name), doc in k8s_docs().items():
        if kind != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 49999
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"]:
            res = c["resources"]
            assert set(res["requests"]) == {"cpu", "memory"} and set(res["limits"]) == {"cpu", "memory"}, (name, c)
            sec = c["securityContext"]
            assert sec["allowPrivilegeEscalation"] is False and sec["capabilities"]["drop"] == ["ALL"], (name, c)
            assert sec["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert "livenessProbe" in c, (name, c["name"])


def test_k8s_network_policies() -> None:
    docs = k8s_docs()
    link = docs[("NetworkPolicy", "superlink")]["spec"]
    assert link["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "superlink"}
    assert sorted(p["port"] for rule in link["ingress"] for p in rule["ports"]) == [gateway.FLEET_PORT,
                                                                                    gateway.CONTROL_PORT]
    assert link["egress"] == [] and set(link["policyTypes"]) == {"Ingress", "Egress"}
    nodes = docs[("NetworkPolicy", "supernodes")]["spec"]
    assert nodes["ingress"] == []
    to_link = nodes["egress"][0]
    assert to_link["ports"] == [{"port": gateway.FLEET_PORT, "protocol": "TCP"}]  # never the control port
    for site in SITES:
        labels = docs[("Deployment", f"supernode-{site}")]["spec"]["template"]["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in nodes["podSelector"]["matchLabels"].items())


# Dockerfile -----------------------------------------------------------------------------------
def test_dockerfile_installs_cpu_torch_first() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines()]
    torch_at = next(i for i, line in enumerate(lines) if "download.pytorch.org/whl/cpu" in line)
    corolla_at = next(i for i, line in enumerate(lines) if line.startswith("RUN pip install --no-deps ."))
    assert torch_at < corolla_at
    assert "ARG TORCH_VERSION=2.13.0" in lines
    assert re.search(r'pip install --index-url "\$TORCH_INDEX_URL" "torch==\$\{TORCH_VERSION\}"', text)
    pyproject = (DEPLOY.parent / "pyproject.toml").read_text()
    assert '"torch==2.13.0"' in pyproject  # the pin the image satisfies before corolla's install
    assert 'ENTRYPOINT ["flower-superexec"]' in lines


def _dockerfile_args_before_from(text: str) -> dict[str, str]:
    head = text[:text.index("\nFROM ")]
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", head, flags=re.M))


def test_app_image_is_built_on_flowers_superexec_image() -> None:
    """Flower publishes flwr/superexec:<version>-py<python>-ubuntu24.04 for each Python its release supports;
    the image uses the one for the installed Flower and the Python the pins were resolved with (this venv)."""
    import importlib.metadata as md
    import sys

    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    text = (DEPLOY / "Dockerfile").read_text()
    froms = re.findall(r"^FROM (.+)$", text, flags=re.M)
    assert froms == ["flwr/superexec:${FLWR_VERSION}-py${PYTHON_VERSION}-ubuntu24.04"], froms  # one stage
    args = _dockerfile_args_before_from(text)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert args == {"FLWR_VERSION": flwr.__version__, "PYTHON_VERSION": python}, args
    meta = md.metadata("flwr")
    assert SpecifierSet(meta["Requires-Python"]).contains(f"{python}.0")
    assert f"Programming Language :: Python :: {python}" in meta.get_all("Classifier")
    # Flower's image installs plain flwr: Ray comes only with its `simulation` extra.
    for text_req in md.requires("flwr") or []:
        req = Requirement(text_req)
        if req.name.lower() == "ray":
            assert req.marker is not None and not req.marker.evaluate({"extra": ""}), text_req
    # Installs as root (the app user cannot alter the installed code), runs as Flower's `app` (uid 49999).
    users = re.findall(r"^USER (\S+)$", text, flags=re.M)
    assert users == ["root", "app"], users
    assert text.index("USER root") < text.index("pip install") and text.rindex("pip install") < text.index("USER app")
    assert "useradd" not in text  # the base image's user, the same uid as flwr/superlink and flwr/supernode
    for check in ("assert sys.version_info[:2]", "assert flwr.__version__ == '${FLWR_VERSION}'"):
        assert check in text  # the build fails if the base image is not what the pins expect


def test_app_containers_have_health_checks_on_flowers_health_service() -> None:
    services = compose()["services"]
    for name in ("serverapp", *(f"clientapp-{s}" for s in SITES)):
        service = services[name]
        _check_health(service["command"], APP_HEALTH)
        assert service["healthcheck"]["test"][-1] == APP_HEALTH and "grpc_health" in service["healthcheck"]["test"][3]
    docs = k8s_docs()
    apps = [_containers(docs[("Deployment", "superlink")])["serverapp"],
            *(_containers(docs[("Deployment", f"supernode-{s}")])["clientapp"] for s in SITES)]
    for cont in apps:
        assert cont["image"] == APP_IMAGE
        _check_health(cont["args"], APP_HEALTH)
        assert cont["livenessProbe"]["grpc"]["port"] == int(APP_HEALTH.rsplit(":", 1)[1]), cont["name"]


# README ---------------------------------------------------------------------------------------
def test_readme_agrees_with_the_files() -> None:
    text = readme()
    for needle in (f"flwr/superlink:{flwr.__version__}", f"flwr/supernode:{flwr.__version__}", APP_IMAGE,
                   str(launch.SUPERLINK_PORT), str(gateway.FLEET_PORT), str(gateway.CONTROL_PORT), "corolla certs",
                   "flwr supernode register", "corolla deploy superlink", "corolla deploy gateway",
                   "corolla deploy operator", "corolla deploy superexec", "corolla deploy supernode",
                   "corolla deploy connection", "flwr run .", "config.toml", "--superexec-auth-secret-file",
                   "--disable-runtime-dependency-installation", "--enable-supernode-auth", "docker compose",
                   "kubectl apply -k deploy/k8s", "tests/e2e", "Threat model", "failures.bounds",
                   "corolla certs add-site", "corolla certs renew", "corolla certs revoke"):
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
    from deploy import resubmit

    parser = launch._parser()
    for argv in commands:
        if argv[1] == "resubmit":
            resubmit.parser().parse_args(argv[2:])
        else:
            parser.parse_args(argv[1:])


def test_readme_certs_commands_parse() -> None:
    commands = _readme_commands("certs ")
    assert commands
    assert {argv[1] for argv in commands} >= set(certs.LIFECYCLE)
    for argv in commands:
        if argv[1] in certs.LIFECYCLE:
            certs.lifecycle_parser(argv[1]).parse_args(argv[2:])
        else:
            certs.parse_args(argv[1:])


def _setup_sh_packages() -> set[str]:
    """What scripts/setup.sh installs besides torch: corolla's dependency closure in this environment
    (extras as requested), the two --no-deps packages, without Ray and the test tools."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    def norm(name: str) -> str:
        return name.lower().replace("_", "-")

    dists = {norm(d.metadata["Name"]): d for d in md.distributions()}
    seen: set[str] = set()
    stack: list[tuple[str, tuple[str, ...]]] = [("corolla", ())]
    while stack:
        name, extras = stack.pop()
        if name in seen or name == "ray":
            continue
        seen.add(name)
        for text in dists[name].requires or [] if name in dists else []:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
                stack.append((norm(req.name), tuple(req.extras)))
    setup = (REPO_ROOT / "scripts" / "setup.sh").read_text()
    no_deps = set(re.findall(r"pip install -q --no-deps ([a-z0-9-]+)", setup))
    assert no_deps == {"animal-mnist", "efficientnet-lite-pytorch"}, no_deps
    return (seen | no_deps) - {"corolla", "torch"}


REPO_ROOT = DEPLOY.parent


def test_app_image_installs_what_setup_sh_does_pinned_and_without_ray() -> None:
    lines = [line for line in (DEPLOY / "requirements-app.txt").read_text().splitlines()
             if line and not line.startswith("#")]
    pins = dict(line.split("==", 1) for line in lines)
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[A-Za-z0-9_.+!-]+", line) for line in lines), lines
    names = {n.lower().replace("_", "-") for n in pins}
    missing = _setup_sh_packages() - names
    assert not missing, f"setup.sh installs these but the image would not: {sorted(missing)}"
    assert not {"ray", "pytest", "pytest-timeout", "torch"} & names
    assert pins["flwr"] == flwr.__version__
    text = (DEPLOY / "Dockerfile").read_text()
    assert "pip install --no-deps -r /tmp/requirements-app.txt" in text and "pip install --no-deps ." in text
    assert '! python -c "import ray"' in text
