"""Tests of the Helm chart in charts/gpu-rdma-injector.

The chart is linted, rendered once per certificate mode and per notable option (module-scoped
cache, so each combination costs one `helm template`), and every rendered object is validated
against the official Kubernetes OpenAPI schemas bundled with kubernetes-validate, for the oldest
supported Kubernetes (1.28) and the newest the package ships. On top of that: the webhook
configuration field by field, the restricted Pod Security Standard, least-privilege RBAC, the
policy ConfigMap, the values schema and the examples.

helm comes from <repo>/.tools/bin (scripts/install-tools); without it the tests fail, not skip.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "gpu-rdma-injector"
EXAMPLES = REPO / "examples"
HELM = REPO / ".tools" / "bin" / "helm"

RELEASE = "gri"
NAMESPACE = "gpu-system"
FULLNAME = f"{RELEASE}-gpu-rdma-injector"
WEBHOOK_NAME = "pods.gpu-rdma-injector.io"
LONG_RELEASE = "long-release-name-to-test-truncation-of-the-fullname"  # helm allows 53

OLDEST_KUBERNETES = "1.28.0"
NEWEST_KUBERNETES = kubernetes_validate.utils.latest_version()
# Custom resources kubernetes-validate has no schema for; asserted by structure below.
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "Certificate"),
}

FAKE_CA_PEM = (
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBdzCCAR2gAwIBAgIUZmFrZS1jYS1mb3ItY2hhcnQtdGVzdHMwCgYIKoZIzj0EAwIw\n"
    "-----END CERTIFICATE-----\n"
)
FAKE_CA_BUNDLE = base64.b64encode(FAKE_CA_PEM.encode()).decode()

SECRET_MODE = {
    "certificates": {
        "mode": "secret",
        "secret": {"name": "corp-webhook-tls", "caBundle": FAKE_CA_BUNDLE},
    }
}

# name -> (release name, values files under examples/, values)
COMBINATIONS: dict[str, tuple[str, list[str], dict[str, Any]]] = {
    "self-signed": (RELEASE, [], {}),
    "cert-manager": (RELEASE, [], {"certificates": {"mode": "cert-manager"}}),
    "cert-manager-issuer": (
        RELEASE,
        [],
        {
            "certificates": {
                "mode": "cert-manager",
                "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}},
            },
            "clusterDomain": "k8s.example.internal",
        },
    ),
    "secret": (RELEASE, [], SECRET_MODE),
    "multi-rail": (RELEASE, ["values-multi-rail.yaml"], {}),
    "custom-label": (
        RELEASE,
        [],
        {
            "webhook": {
                "optInLabel": {"key": "example.com/rdma", "value": "yes"},
                "excludedNamespaces": ["monitoring", NAMESPACE],
            }
        },
    ),
    "ignore": (RELEASE, [], {"webhook": {"failurePolicy": "Ignore", "timeoutSeconds": 10}}),
    "selectors": (
        RELEASE,
        [],
        {
            "webhook": {
                "objectSelector": {
                    "matchExpressions": [{"key": "example.com/no-rdma", "operator": "DoesNotExist"}]
                },
                "matchConditions": [
                    {
                        "name": "gpu-or-networks",
                        "expression": (
                            "object.spec.containers.exists(c, has(c.resources) && "
                            "has(c.resources.limits) && 'nvidia.com/gpu' in c.resources.limits)"
                            " || (has(object.metadata.annotations) && "
                            "'k8s.v1.cni.cncf.io/networks' in object.metadata.annotations)"
                        ),
                    }
                ],
            }
        },
    ),
    "monitoring": (
        RELEASE,
        [],
        {
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "networkPolicy": {
                "enabled": True,
                "ingressFrom": [{"ipBlock": {"cidr": "10.0.0.0/16"}}],
                "egress": {"apiServerCIDRs": ["10.0.0.1/32"]},
            },
        },
    ),
    "replicas-3": (RELEASE, [], {"replicaCount": 3}),
    "single-replica": (RELEASE, [], {"replicaCount": 1}),
    # Every optional branch of the templates at once, with a release name past 63 characters.
    "kitchen-sink": (
        LONG_RELEASE,
        [],
        {
            **SECRET_MODE,
            "commonLabels": {"team": "ml-platform"},
            "commonAnnotations": {"example.com/owner": "ml-platform"},
            "image": {
                "digest": "sha256:" + "ab" * 32,
                "pullSecrets": [{"name": "regcred"}],
            },
            "extraArgs": ["--reload-interval=5"],
            "logLevel": "debug",
            "priorityClassName": "system-cluster-critical",
            "podAnnotations": {"example.com/scrape": "true"},
            "podLabels": {"example.com/tier": "control"},
            "podAntiAffinity": "hard",
            "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}],
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "ScheduleAnyway",
                }
            ],
            "serviceAccount": {"annotations": {"example.com/role": "webhook"}},
            "service": {"annotations": {"example.com/svc": "webhook"}},
            "podDisruptionBudget": {"maxUnavailable": 1},
            "serviceMonitor": {"enabled": True, "insecureSkipVerify": True},
            "networkPolicy": {"enabled": True, "egress": {"enabled": False}},
        },
    ),
}
MODE_OF = {
    name: values.get("certificates", {}).get("mode", "self-signed")
    for name, (_, _, values) in COMBINATIONS.items()
}

CLUSTER_SCOPED_KINDS = {"ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration"}

Objects = list[dict[str, Any]]


# --- helpers -------------------------------------------------------------------------------------


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    if not HELM.is_file():
        pytest.fail(
            f"helm is not installed at {HELM}: run scripts/install-tools first.", pytrace=False
        )
    return subprocess.run(
        [str(HELM), *args], capture_output=True, text=True, timeout=60, check=False
    )


def values_file(directory: Path, name: str, values: dict[str, Any]) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


def template_args(release: str, files: list[Path]) -> list[str]:
    args = ["template", release, str(CHART), "--namespace", NAMESPACE]
    for path in files:
        args += ["--values", str(path)]
    return args


def find(objects: Objects, kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objects: Objects, kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def fullname_of(combination: str) -> str:
    release = COMBINATIONS[combination][0]
    return f"{release}-gpu-rdma-injector"[:63].rstrip("-")


def parse_flags(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """Split a container's args into positionals and --flag values (--f=v and --f v)."""
    positional: list[str] = []
    flags: dict[str, str] = {}
    items = iter(args)
    for item in items:
        if item.startswith("--"):
            name, sep, value = item[2:].partition("=")
            flags[name] = value if sep else next(items)
        else:
            positional.append(item)
    return positional, flags


def deep_merge(base: Any, override: Any) -> Any:
    """Helm's values merge: maps merge key by key, anything else is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = deep_merge(base.get(key), value) if key in base else value
        return merged
    return override


def default_values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# --- restricted Pod Security Standard ------------------------------------------------------------

RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
VOLUME_META_KEYS = {"name"}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}


def restricted_pss_violations(pod_spec: dict[str, Any]) -> list[str]:
    """What in a pod spec breaks the restricted Pod Security Standard (plus a read-only rootfs).

    After https://kubernetes.io/docs/concepts/security/pod-security-standards/ (baseline and
    restricted controls). A container-level setting overrides the pod-level one.
    """
    problems: list[str] = []
    pod_sc = pod_spec.get("securityContext") or {}
    problems += [
        f"spec.{field} is true"
        for field in ("hostNetwork", "hostPID", "hostIPC")
        if pod_spec.get(field)
    ]
    for volume in pod_spec.get("volumes") or []:
        kinds = set(volume) - VOLUME_META_KEYS
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            problems.append(f"volume {volume['name']} uses {sorted(kinds)}")
    problems += [
        f"unsafe sysctl {sysctl['name']}"
        for sysctl in pod_sc.get("sysctls") or []
        if sysctl["name"] not in SAFE_SYSCTLS
    ]
    selinux = pod_sc.get("seLinuxOptions") or {}
    if selinux.get("user") or selinux.get("role"):
        problems.append("pod sets seLinuxOptions user/role")
    if pod_sc.get("runAsUser") == 0:
        problems.append("pod runAsUser is 0")

    containers = [
        *pod_spec.get("initContainers", []),
        *pod_spec.get("containers", []),
        *pod_spec.get("ephemeralContainers", []),
    ]
    for container in containers:
        name = container["name"]
        sc = container.get("securityContext") or {}

        def effective(field: str, sc: dict[str, Any] = sc) -> Any:
            return sc[field] if field in sc else pod_sc.get(field)

        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        capabilities = sc.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{name}: capabilities do not drop ALL")
        added = set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}
        if added:
            problems.append(f"{name}: adds capabilities {sorted(added)}")
        if effective("runAsNonRoot") is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        if effective("runAsUser") == 0:
            problems.append(f"{name}: runAsUser is 0")
        seccomp = (effective("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile is {seccomp!r}")
        if sc.get("procMount", "Default") != "Default":
            problems.append(f"{name}: procMount {sc['procMount']}")
        if any(port.get("hostPort") for port in container.get("ports") or []):
            problems.append(f"{name}: uses a hostPort")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: readOnlyRootFilesystem is not true")
    return problems


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def values_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("values")


@pytest.fixture(scope="module")
def rendered(values_dir: Path) -> Callable[[str], Objects]:
    """Renders a combination on first use and caches the parsed objects."""
    cache: dict[str, Objects] = {}

    def render(combination: str) -> Objects:
        if combination not in cache:
            release, example_files, values = COMBINATIONS[combination]
            files = [EXAMPLES / name for name in example_files]
            if values:
                files.append(values_file(values_dir, combination, values))
            result = run_helm(*template_args(release, files))
            assert result.returncode == 0, f"helm template {combination} failed:\n{result.stderr}"
            cache[combination] = [o for o in yaml.safe_load_all(result.stdout) if o]
        return cache[combination]

    return render


@pytest.fixture(scope="module")
def validated() -> set[tuple[str, str]]:
    """(version, canonical JSON) of objects already validated: identical objects recur."""
    return set()


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))


# --- lint and schema -----------------------------------------------------------------------------

EXAMPLE_VALUES = sorted(p.name for p in EXAMPLES.glob("values-*.yaml"))


@pytest.mark.parametrize("values_name", [None, *EXAMPLE_VALUES])
def test_helm_lint_strict(values_name: str | None) -> None:
    args = ["lint", "--strict", str(CHART), "--namespace", NAMESPACE]
    if values_name:
        args += ["--values", str(EXAMPLES / values_name)]
    result = run_helm(*args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_examples_include_a_values_file() -> None:
    assert "values-multi-rail.yaml" in EXAMPLE_VALUES


def _object_schemas(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        types = node.get("type")
        if types == "object" or (isinstance(types, list) and "object" in types):
            yield where, node
        for key, value in node.items():
            yield from _object_schemas(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _object_schemas(value, f"{where}/{index}")


def test_schema_closes_every_object(schema: dict[str, Any]) -> None:
    """Every object level rejects unknown keys: additionalProperties is false, or a schema for
    the values of a free-form map (labels, annotations, resource lists)."""
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    open_objects = [
        where
        for where, node in _object_schemas(schema, "#")
        if node.get("additionalProperties") is not False
        and not isinstance(node.get("additionalProperties"), dict)
    ]
    assert open_objects == []


def test_schema_accepts_defaults_and_examples(schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(schema)
    validator.validate(default_values())
    for name in EXAMPLE_VALUES:
        validator.validate(load_yaml(EXAMPLES / name))


def test_values_schema_covers_every_default_key(schema: dict[str, Any]) -> None:
    def walk(values: dict[str, Any], node: dict[str, Any], path: str) -> Iterator[str]:
        if "$ref" in node:
            node = schema["definitions"][node["$ref"].rsplit("/", 1)[1]]
        for key, value in values.items():
            props = node.get("properties", {})
            if key not in props:
                if not isinstance(node.get("additionalProperties"), dict):
                    yield f"{path}{key}"
                continue
            if isinstance(value, dict):
                yield from walk(value, props[key], f"{path}{key}.")

    assert list(walk(default_values(), schema, "")) == []


BAD_VALUES = {
    "unknown-top-level-key": ({"replicas": 2}, "replicas"),
    "unknown-nested-key": ({"webhook": {"failurePolicyy": "Fail"}}, "failurePolicyy"),
    "wrong-type": ({"replicaCount": "two"}, "replicaCount"),
    "unknown-certificates-mode": ({"certificates": {"mode": "vault"}}, "mode"),
    "failure-policy-not-fail-or-ignore": ({"webhook": {"failurePolicy": "Retry"}}, "failurePolicy"),
    "network-without-name": ({"policy": {"networks": [{"resourceName": "x/y"}]}}, "name"),
    "unknown-networks-not-deny-or-warn": ({"policy": {"unknownNetworks": "x"}}, "unknownNetworks"),
    "timeout-above-30": ({"webhook": {"timeoutSeconds": 31}}, "timeoutSeconds"),
    "annotation-not-a-string": ({"podAnnotations": {"a": 1}}, "podAnnotations"),
}


@pytest.mark.parametrize("case", BAD_VALUES)
def test_schema_rejects_bad_values(case: str, values_dir: Path) -> None:
    values, key = BAD_VALUES[case]
    result = run_helm(*template_args(RELEASE, [values_file(values_dir, f"bad-{case}", values)]))
    assert result.returncode != 0, f"{case} was accepted"
    assert "schema" in result.stderr, result.stderr
    assert key in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ({"name": "corp-webhook-tls"}, "certificates.secret.caBundle is required"),
        ({"caBundle": FAKE_CA_BUNDLE}, "certificates.secret.name is required"),
        (
            {"name": "x", "caBundle": base64.b64encode(b"not a certificate").decode()},
            "certificates.secret.caBundle must be base64-encoded PEM",
        ),
    ],
    ids=["no-ca-bundle", "no-name", "ca-bundle-not-pem"],
)
def test_secret_mode_fails_clearly_without_its_values(
    secret: dict[str, str], message: str, values_dir: Path
) -> None:
    path = values_file(
        values_dir, f"secret-{message[:30]}", {"certificates": {"mode": "secret", "secret": secret}}
    )
    result = run_helm(*template_args(RELEASE, [path]))
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("kube_version", "accepted"), [("1.28.0", True), ("1.27.9", False)], ids=["1.28", "1.27"]
)
def test_chart_kube_version_constraint(kube_version: str, accepted: bool) -> None:
    result = run_helm(*template_args(RELEASE, []), "--kube-version", kube_version)
    assert (result.returncode == 0) is accepted, result.stderr


@pytest.mark.parametrize(
    ("set_args", "label"),
    [
        ([], "gpu-rdma-injector.io/inject=enabled"),
        (["--set", "webhook.optInLabel.key=example.com/rdma"], "example.com/rdma=enabled"),
    ],
    ids=["default", "custom-label"],
)
def test_notes_explain_opt_in_and_checks(set_args: list[str], label: str) -> None:
    result = run_helm(
        "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client", *set_args
    )
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert f"kubectl label namespace team-a {label}" in notes
    assert "k8s\\.v1\\.cni\\.cncf\\.io/networks" in notes  # the pod's annotation
    assert ".resources.limits" in notes  # and its resources


def test_chart_readme_values_table_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_chart_readme.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_chart_metadata() -> None:
    chart = load_yaml(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == "0.1.0"
    templates = {p.name for p in (CHART / "templates").iterdir()}
    assert {
        "_helpers.tpl",
        "NOTES.txt",
        "deployment.yaml",
        "service.yaml",
        "serviceaccount.yaml",
        "rbac.yaml",
        "configmap.yaml",
        "mutatingwebhookconfiguration.yaml",
        "poddisruptionbudget.yaml",
        "certificate.yaml",
        "servicemonitor.yaml",
        "networkpolicy.yaml",
    } <= templates


# --- every object against the Kubernetes OpenAPI schemas -----------------------------------------


@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, NEWEST_KUBERNETES])
@pytest.mark.parametrize("combination", COMBINATIONS)
def test_objects_match_kubernetes_openapi(
    combination: str,
    version: str,
    rendered: Callable[[str], Objects],
    validated: set[tuple[str, str]],
) -> None:
    for obj in rendered(combination):
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            continue
        canonical = json.dumps(obj, sort_keys=True)
        if (version, canonical) in validated:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            # Reported outside the except block: the chained schema error is pages long.
            path = ".".join(str(p) for p in error.path)
            problem = (
                f"{obj['kind']}/{obj['metadata']['name']} is invalid for Kubernetes {version}"
                f" at {path}: {error.message}"
            )
        else:
            validated.add((version, canonical))
            continue
        pytest.fail(problem)


def test_newest_kubernetes_is_newer_than_oldest() -> None:
    major_minor = tuple(int(x) for x in NEWEST_KUBERNETES.split(".")[:2])
    assert major_minor > (1, 28)


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_only_known_custom_resources(combination: str, rendered: Callable[[str], Objects]) -> None:
    kinds = {(o["apiVersion"], o["kind"]) for o in rendered(combination)}
    builtin = {
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "Service"),
        ("v1", "ServiceAccount"),
        ("apps/v1", "Deployment"),
        ("policy/v1", "PodDisruptionBudget"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    }
    assert kinds <= builtin | CRD_KINDS


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_names_and_labels_fit_kubernetes_limits(
    combination: str, rendered: Callable[[str], Objects]
) -> None:
    dns_label = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    dns_subdomain = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    label_value = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
    for obj in rendered(combination):
        name = obj["metadata"]["name"]
        assert dns_subdomain.match(name), name
        assert len(name) <= 253, name
        if obj["kind"] == "Service":
            assert dns_label.match(name), name
            assert len(name) <= 63, name
        for key, value in obj["metadata"].get("labels", {}).items():
            assert label_value.match(value), (name, key, value)
            assert len(value) <= 63, (name, key, value)
        if obj["kind"] not in CLUSTER_SCOPED_KINDS:
            assert obj["metadata"]["namespace"] == NAMESPACE, name


def test_long_release_name_is_truncated(rendered: Callable[[str], Objects]) -> None:
    service = one(rendered("kitchen-sink"), "Service")
    assert len(service["metadata"]["name"]) == 63
    assert service["metadata"]["name"] == fullname_of("kitchen-sink")


def test_standard_labels(rendered: Callable[[str], Objects]) -> None:
    for obj in rendered("self-signed"):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "gpu-rdma-injector"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/version"] == "0.1.0"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "gpu-rdma-injector-0.1.0"


def test_common_labels_and_annotations_reach_every_object(
    rendered: Callable[[str], Objects],
) -> None:
    for obj in rendered("kitchen-sink"):
        assert obj["metadata"]["labels"]["team"] == "ml-platform", obj["kind"]
        assert obj["metadata"]["annotations"]["example.com/owner"] == "ml-platform", obj["kind"]


# --- MutatingWebhookConfiguration ----------------------------------------------------------------


def the_webhook(objects: Objects) -> tuple[dict[str, Any], dict[str, Any]]:
    configuration = one(objects, "MutatingWebhookConfiguration")
    assert len(configuration["webhooks"]) == 1
    return configuration, configuration["webhooks"][0]


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_webhook_configuration_fields(combination: str, rendered: Callable[[str], Objects]) -> None:
    objects = rendered(combination)
    fullname = fullname_of(combination)
    configuration, webhook = the_webhook(objects)
    assert configuration["metadata"]["name"] == fullname
    assert webhook["name"] == WEBHOOK_NAME
    assert webhook["admissionReviewVersions"] == ["v1"]
    assert webhook["sideEffects"] == "None"
    assert webhook["reinvocationPolicy"] == "IfNeeded"
    assert webhook["matchPolicy"] == "Equivalent"
    assert webhook["rules"] == [
        {
            "operations": ["CREATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    assert webhook["clientConfig"]["service"] == {
        "name": fullname,
        "namespace": NAMESPACE,
        "path": "/mutate",
        "port": 443,
    }
    assert "url" not in webhook["clientConfig"]
    # The Service behind clientConfig forwards 443 to the container's 8443.
    service = one(objects, "Service", fullname)
    assert service["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}
    ]
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"] == [{"name": "https", "containerPort": 8443, "protocol": "TCP"}]


@pytest.mark.parametrize(
    ("combination", "policy", "timeout"),
    [("self-signed", "Fail", 5), ("ignore", "Ignore", 10)],
)
def test_failure_policy_and_timeout_pass_through(
    combination: str, policy: str, timeout: int, rendered: Callable[[str], Objects]
) -> None:
    _, webhook = the_webhook(rendered(combination))
    assert webhook["failurePolicy"] == policy
    assert webhook["timeoutSeconds"] == timeout


@pytest.mark.parametrize(
    ("combination", "label", "excluded"),
    [
        ("self-signed", ("gpu-rdma-injector.io/inject", "enabled"), ["kube-system", NAMESPACE]),
        ("custom-label", ("example.com/rdma", "yes"), ["kube-system", NAMESPACE, "monitoring"]),
    ],
)
def test_namespace_selector(
    combination: str,
    label: tuple[str, str],
    excluded: list[str],
    rendered: Callable[[str], Objects],
) -> None:
    _, webhook = the_webhook(rendered(combination))
    selector = webhook["namespaceSelector"]
    assert selector["matchLabels"] == {label[0]: label[1]}
    assert selector["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": excluded}
    ]


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_kube_system_and_release_namespace_always_excluded(
    combination: str, rendered: Callable[[str], Objects]
) -> None:
    _, webhook = the_webhook(rendered(combination))
    (expression,) = [
        e
        for e in webhook["namespaceSelector"]["matchExpressions"]
        if e["key"] == "kubernetes.io/metadata.name"
    ]
    assert expression["operator"] == "NotIn"
    assert {"kube-system", NAMESPACE} <= set(expression["values"])


def test_object_selector_and_match_conditions(rendered: Callable[[str], Objects]) -> None:
    values = COMBINATIONS["selectors"][2]["webhook"]
    _, webhook = the_webhook(rendered("selectors"))
    assert webhook["objectSelector"] == values["objectSelector"]
    assert webhook["matchConditions"] == values["matchConditions"]
    _, default_webhook = the_webhook(rendered("self-signed"))
    assert "objectSelector" not in default_webhook
    assert "matchConditions" not in default_webhook


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_ca_bundle_and_ca_injection_per_mode(
    combination: str, rendered: Callable[[str], Objects]
) -> None:
    objects = rendered(combination)
    configuration, webhook = the_webhook(objects)
    annotations = configuration["metadata"].get("annotations", {})
    mode = MODE_OF[combination]
    if mode == "secret":
        assert webhook["clientConfig"]["caBundle"] == FAKE_CA_BUNDLE
    else:
        # Rendered empty (absent): the webhook or cainjector fills it, and helm upgrade must not
        # overwrite what they wrote.
        assert not webhook["clientConfig"].get("caBundle")
    if mode == "cert-manager":
        certificate_name = f"{fullname_of(combination)}-tls"
        assert annotations["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/{certificate_name}"
        one(objects, "Certificate", certificate_name)
    else:
        assert "cert-manager.io/inject-ca-from" not in annotations


# --- Deployment ----------------------------------------------------------------------------------


def pod_spec_of(objects: Objects) -> dict[str, Any]:
    return one(objects, "Deployment")["spec"]["template"]["spec"]


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_deployment_meets_restricted_pod_security_standard(
    combination: str, rendered: Callable[[str], Objects]
) -> None:
    assert restricted_pss_violations(pod_spec_of(rendered(combination))) == []


def test_restricted_pss_check_catches_violations(rendered: Callable[[str], Objects]) -> None:
    spec = json.loads(json.dumps(pod_spec_of(rendered("self-signed"))))
    spec["hostNetwork"] = True
    spec["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    container = spec["containers"][0]
    container["securityContext"] = {
        "privileged": True,
        "capabilities": {"add": ["SYS_ADMIN", "NET_BIND_SERVICE"]},
        "runAsNonRoot": False,
        "seccompProfile": {"type": "Unconfined"},
    }
    problems = "\n".join(restricted_pss_violations(spec))
    for expected in (
        "hostNetwork",
        "hostPath",
        "privileged",
        "allowPrivilegeEscalation",
        "drop ALL",
        "SYS_ADMIN",
        "runAsNonRoot",
        "seccompProfile",
        "readOnlyRootFilesystem",
    ):
        assert expected in problems
    assert "NET_BIND_SERVICE" not in problems


def test_deployment_defaults(rendered: Callable[[str], Objects]) -> None:
    objects = rendered("self-signed")
    deployment = one(objects, "Deployment", FULLNAME)
    spec = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2
    assert spec["automountServiceAccountToken"] is True
    assert spec["serviceAccountName"] == FULLNAME
    assert one(objects, "ServiceAccount", FULLNAME)["automountServiceAccountToken"] is False
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    term = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert term[0]["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector
    (container,) = spec["containers"]
    assert container["image"] == "ghcr.io/gpu-rdma-injector/gpu-rdma-injector:0.1.0"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["resources"] == {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"memory": "256Mi"},
    }
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert container[probe]["httpGet"] == {"path": path, "port": "https", "scheme": "HTTPS"}
    assert container["env"] == [
        {
            "name": "GPU_RDMA_INJECTOR_POD_NAMESPACE",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        }
    ]
    assert "priorityClassName" not in spec
    assert "topologySpreadConstraints" not in spec


def test_deployment_options(rendered: Callable[[str], Objects]) -> None:
    fullname = fullname_of("kitchen-sink")
    deployment = one(rendered("kitchen-sink"), "Deployment", fullname)
    template = deployment["spec"]["template"]
    spec = template["spec"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert spec["priorityClassName"] == "system-cluster-critical"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["tolerations"][0]["operator"] == "Exists"
    required = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert required == [
        {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": selector}}
    ]
    (constraint,) = spec["topologySpreadConstraints"]
    assert constraint["labelSelector"] == {"matchLabels": selector}
    assert template["metadata"]["annotations"] == {"example.com/scrape": "true"}
    assert template["metadata"]["labels"]["example.com/tier"] == "control"
    assert template["metadata"]["labels"]["team"] == "ml-platform"
    container = spec["containers"][0]
    assert container["image"] == "ghcr.io/gpu-rdma-injector/gpu-rdma-injector@sha256:" + "ab" * 32
    _, flags = parse_flags(container["args"])
    assert flags["log-level"] == "debug"
    assert flags["reload-interval"] == "5"


@pytest.mark.parametrize("combination", ["self-signed", "replicas-3", "single-replica"])
def test_replicas_and_disruption_budget(
    combination: str, rendered: Callable[[str], Objects]
) -> None:
    objects = rendered(combination)
    replicas = COMBINATIONS[combination][2].get("replicaCount", 2)
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == replicas
    budgets = find(objects, "PodDisruptionBudget")
    if replicas == 1:
        assert budgets == []
    else:
        (budget,) = budgets
        assert budget["spec"]["minAvailable"] == 1
        assert "maxUnavailable" not in budget["spec"]
        assert budget["spec"]["selector"] == deployment["spec"]["selector"]


def test_disruption_budget_max_unavailable(rendered: Callable[[str], Objects]) -> None:
    budget = one(rendered("kitchen-sink"), "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in budget["spec"]


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_serve_flags_and_mounts_per_mode(
    combination: str, rendered: Callable[[str], Objects]
) -> None:
    objects = rendered(combination)
    fullname = fullname_of(combination)
    spec = pod_spec_of(objects)
    container = spec["containers"][0]
    assert "command" not in container  # the image's ENTRYPOINT: gpu-rdma-injector
    positional, flags = parse_flags(container["args"])
    assert positional == ["serve"]
    assert flags["config"] == "/etc/gpu-rdma-injector/policy/policy.yaml"
    assert flags["port"] == "8443"
    assert flags["log-level"] in {"info", "debug"}
    assert "kubeconfig" not in flags
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    # The policy ConfigMap as a directory, never a subPath, so updates reach the file.
    assert mounts["policy"]["mountPath"] == "/etc/gpu-rdma-injector/policy"
    assert "subPath" not in mounts["policy"]
    assert volumes["policy"]["configMap"]["name"] == f"{fullname}-policy"
    assert mounts["tmp"]["mountPath"] == "/tmp"
    assert "emptyDir" in volumes["tmp"]
    assert all("subPath" not in m and "subPathExpr" not in m for m in mounts.values())

    mode = MODE_OF[combination]
    if mode == "self-signed":
        assert flags["self-signed-secret"] == f"{fullname}-tls"
        assert flags["webhook-configuration"] == fullname
        assert flags["service-name"] == fullname
        assert flags["tls-cert-file"] == "/tmp/tls/tls.crt"
        assert flags["tls-key-file"] == "/tmp/tls/tls.key"
        assert "tls" not in mounts
        secret = one(objects, "Secret", f"{fullname}-tls")
        assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert "data" not in secret
        assert "stringData" not in secret
    else:
        for flag in ("self-signed-secret", "webhook-configuration", "service-name"):
            assert flag not in flags
        assert flags["tls-cert-file"] == "/etc/gpu-rdma-injector/tls/tls.crt"
        assert flags["tls-key-file"] == "/etc/gpu-rdma-injector/tls/tls.key"
        assert mounts["tls"]["mountPath"] == "/etc/gpu-rdma-injector/tls"
        assert mounts["tls"]["readOnly"] is True
        expected_secret = "corp-webhook-tls" if mode == "secret" else f"{fullname}-tls"
        assert volumes["tls"]["secret"]["secretName"] == expected_secret
        assert find(objects, "Secret") == []


# --- RBAC ----------------------------------------------------------------------------------------

WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "escalate", "bind"}
WRITE_VERBS |= {"impersonate", "approve", "sign", "*"}


def rules_of(objects: Objects) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [
        (role, rule)
        for role in objects
        if role["kind"] in {"Role", "ClusterRole"}
        for rule in role.get("rules", [])
    ]


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_rbac_is_least_privilege(combination: str, rendered: Callable[[str], Objects]) -> None:
    objects = rendered(combination)
    fullname = fullname_of(combination)
    mode = MODE_OF[combination]
    reads: set[tuple[str, str]] = set()
    writes: list[tuple[str, str, str, tuple[str, ...], tuple[str, ...]]] = []
    for role, rule in rules_of(objects):
        assert "*" not in rule["apiGroups"], rule
        assert "*" not in rule["resources"], rule
        assert "nonResourceURLs" not in rule
        written = set(rule["verbs"]) & WRITE_VERBS
        if not written:
            assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    reads.add((group, resource))
            continue
        assert "create" not in written, f"{role['kind']} {role['metadata']['name']}: {rule}"
        writes += [
            (
                role["kind"],
                rule["apiGroups"][0],
                resource,
                tuple(sorted(rule["verbs"])),
                tuple(rule.get("resourceNames", [])),
            )
            for resource in rule["resources"]
        ]
    assert reads == {
        ("k8s.cni.cncf.io", "network-attachment-definitions"),
        ("", "namespaces"),
    }
    if mode == "self-signed":
        assert sorted(writes) == sorted(
            [
                ("Role", "", "secrets", ("get", "patch", "update"), (f"{fullname}-tls",)),
                (
                    "ClusterRole",
                    "admissionregistration.k8s.io",
                    "mutatingwebhookconfigurations",
                    ("get", "patch", "update"),
                    (fullname,),
                ),
            ]
        )
        role = one(objects, "Role")
        assert role["metadata"]["namespace"] == NAMESPACE
    else:
        assert writes == []
        assert find(objects, "Role") == []


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_rbac_bindings_grant_the_webhook_service_account(
    combination: str, rendered: Callable[[str], Objects]
) -> None:
    objects = rendered(combination)
    service_account = pod_spec_of(objects)["serviceAccountName"]
    roles = {(r["kind"], r["metadata"]["name"]) for r in objects if r["kind"].endswith("Role")}
    bindings = [b for b in objects if b["kind"] in {"RoleBinding", "ClusterRoleBinding"}]
    assert len(bindings) == len(roles)
    for binding in bindings:
        assert (binding["roleRef"]["kind"], binding["roleRef"]["name"]) in roles
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": service_account, "namespace": NAMESPACE}
        ]


# --- policy ConfigMap ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("combination", "expected"),
    [
        ("self-signed", lambda: default_values()["policy"]),
        ("multi-rail", lambda: load_yaml(EXAMPLES / "policy-multi-rail.yaml")),
    ],
)
def test_policy_configmap_is_values_policy(
    combination: str, expected: Callable[[], Any], rendered: Callable[[str], Objects]
) -> None:
    configmap = one(rendered(combination), "ConfigMap", f"{FULLNAME}-policy")
    assert set(configmap["data"]) == {"policy.yaml"}
    policy = yaml.safe_load(configmap["data"]["policy.yaml"])
    assert policy == expected()
    merged = default_values()
    for name in COMBINATIONS[combination][1]:
        merged = deep_merge(merged, load_yaml(EXAMPLES / name))
    assert policy == merged["policy"]


# --- cert-manager, ServiceMonitor, NetworkPolicy -------------------------------------------------


def test_cert_manager_bootstrap_chain(rendered: Callable[[str], Objects]) -> None:
    objects = rendered("cert-manager")
    selfsigned = one(objects, "Issuer", f"{FULLNAME}-selfsigned")
    assert selfsigned["spec"] == {"selfSigned": {}}
    ca = one(objects, "Certificate", f"{FULLNAME}-ca")
    assert ca["spec"]["isCA"] is True
    assert ca["spec"]["issuerRef"] == {
        "name": f"{FULLNAME}-selfsigned",
        "kind": "Issuer",
        "group": "cert-manager.io",
    }
    ca_issuer = one(objects, "Issuer", f"{FULLNAME}-ca")
    assert ca_issuer["spec"] == {"ca": {"secretName": ca["spec"]["secretName"]}}
    serving = one(objects, "Certificate", f"{FULLNAME}-tls")
    assert serving["spec"]["issuerRef"] == {
        "name": f"{FULLNAME}-ca",
        "kind": "Issuer",
        "group": "cert-manager.io",
    }
    service = f"{FULLNAME}.{NAMESPACE}"
    assert serving["spec"]["dnsNames"] == [
        FULLNAME,
        service,
        f"{service}.svc",
        f"{service}.svc.cluster.local",
    ]
    assert "server auth" in serving["spec"]["usages"]
    assert serving["spec"]["secretName"] == f"{FULLNAME}-tls"
    for certificate in (ca, serving):
        assert certificate["spec"]["privateKey"]["rotationPolicy"] == "Always"
        assert certificate["metadata"]["namespace"] == NAMESPACE


def test_cert_manager_user_issuer(rendered: Callable[[str], Objects]) -> None:
    objects = rendered("cert-manager-issuer")
    assert find(objects, "Issuer") == []
    (serving,) = find(objects, "Certificate")
    assert serving["spec"]["issuerRef"] == {
        "name": "corp-ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
    assert serving["spec"]["dnsNames"][-1] == f"{FULLNAME}.{NAMESPACE}.svc.k8s.example.internal"


def test_service_monitor(rendered: Callable[[str], Objects]) -> None:
    objects = rendered("monitoring")
    monitor = one(objects, "ServiceMonitor", FULLNAME)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    service = one(objects, "Service", FULLNAME)
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["scheme"] == "https"
    assert endpoint["path"] == "/metrics"
    assert endpoint["tlsConfig"] == {
        "serverName": f"{FULLNAME}.{NAMESPACE}.svc",
        "ca": {"secret": {"name": f"{FULLNAME}-tls", "key": "ca.crt"}},
    }
    assert find(rendered("self-signed"), "ServiceMonitor") == []
    skip_verify = one(rendered("kitchen-sink"), "ServiceMonitor")
    assert skip_verify["spec"]["endpoints"][0]["tlsConfig"]["insecureSkipVerify"] is True


def test_network_policy(rendered: Callable[[str], Objects]) -> None:
    policy = one(rendered("monitoring"), "NetworkPolicy", FULLNAME)
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == [
        {
            "ports": [{"port": 8443, "protocol": "TCP"}],
            "from": [{"ipBlock": {"cidr": "10.0.0.0/16"}}],
        }
    ]
    assert spec["egress"] == [
        {
            "ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}],
            "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}],
        }
    ]
    ingress_only = one(rendered("kitchen-sink"), "NetworkPolicy")["spec"]
    assert ingress_only["policyTypes"] == ["Ingress"]
    assert ingress_only["ingress"] == [{"ports": [{"port": 8443, "protocol": "TCP"}]}]
    assert "egress" not in ingress_only
    assert find(rendered("self-signed"), "NetworkPolicy") == []


# --- examples ------------------------------------------------------------------------------------


def test_multi_rail_policy_and_values_agree() -> None:
    policy = load_yaml(EXAMPLES / "policy-multi-rail.yaml")
    assert load_yaml(EXAMPLES / "values-multi-rail.yaml") == {"policy": policy}
    assert [n["name"] for n in policy["networks"]] == [f"rail-{i}" for i in range(1, 9)]
    assert [n["resourceName"] for n in policy["networks"]] == [
        f"nvidia.com/sriov_rdma_rail_{i}" for i in range(1, 9)
    ]


def test_example_nad_matches_default_policy() -> None:
    nad = load_yaml(EXAMPLES / "nad-sriov-rdma-net.yaml")
    (network,) = default_values()["policy"]["networks"]
    assert nad["apiVersion"] == "k8s.cni.cncf.io/v1"
    assert nad["kind"] == "NetworkAttachmentDefinition"
    assert nad["metadata"]["name"] == network["name"] == "sriov-rdma-net"
    resource = nad["metadata"]["annotations"]["k8s.v1.cni.cncf.io/resourceName"]
    assert resource == network["resourceName"] == "openshift.io/mellanoxnics"
    config = json.loads(nad["spec"]["config"])
    assert config["type"] == "sriov"
    assert config["name"] == "sriov-rdma-net"
    assert config["ipam"]["type"] == "whereabouts"


@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, NEWEST_KUBERNETES])
def test_example_pods_are_valid(version: str) -> None:
    for name in ("gpu-pod.yaml", "gpu-pod-after.yaml"):
        kubernetes_validate.validate(load_yaml(EXAMPLES / name), version, strict=True)


def test_example_pod_after_is_the_pod_plus_the_injection() -> None:
    before = load_yaml(EXAMPLES / "gpu-pod.yaml")
    after = load_yaml(EXAMPLES / "gpu-pod-after.yaml")
    assert "annotations" not in before["metadata"]
    expected = json.loads(json.dumps(before))
    expected["metadata"]["annotations"] = {"k8s.v1.cni.cncf.io/networks": "sriov-rdma-net"}
    resources = expected["spec"]["containers"][0]["resources"]
    assert resources["limits"] == {"nvidia.com/gpu": 1}
    for kind in ("requests", "limits"):
        resources[kind]["openshift.io/mellanoxnics"] = "1"
    assert after == expected


# --- the chart and the webhook agree -------------------------------------------------------------


@pytest.mark.parametrize("combination", sorted(COMBINATIONS))
def test_webhook_accepts_the_rendered_args_and_policy(
    combination: str, rendered: Callable[[str], Objects]
) -> None:
    """The Deployment's args parse with the real CLI, and the ConfigMap's policy loads."""
    from webhook.__main__ import parse
    from webhook.policy import parse_policy

    objects = rendered(combination)
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value", "from-the-downward-api") for e in container.get("env", [])}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        invocation = parse(container["args"])
    args = invocation.settings
    assert invocation.command == "serve"
    assert args.port == 8443
    assert not args.no_kube
    failure_policy = one(objects, "MutatingWebhookConfiguration")["webhooks"][0]["failurePolicy"]
    assert args.on_internal_error == {"Fail": "deny", "Ignore": "allow"}[failure_policy]
    if args.self_signed_secret:
        assert args.webhook_configuration
        assert args.service_name
        assert str(args.tls_cert_file).startswith("/tmp/")
    configmap = one(objects, "ConfigMap")
    policy = parse_policy(configmap["data"]["policy.yaml"], combination)
    assert policy.networks
