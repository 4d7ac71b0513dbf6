"""Tests of the Helm chart in charts/gpu-rdma-injector.

The chart is linted, rendered once per certificate mode and per notable option (module-scoped
cache, so each combination costs one `helm template`), and every rendered object is validated
against the official Kubernetes OpenAPI schemas bundled with kubernetes-validate, for the oldest
supported Kubernetes (1.28) and the newest the package ships. On top of that: the webhook
configuration field by field, the restricted Pod Security Standard, least-privilege RBAC, the
policy ConfigMap, the values schema and the examples. OpenShift renderings (helm's
`--api-versions security.openshift.io/v1`, as `helm install` sees it there) are checked against
the restricted-v2 SecurityContextConstraints, and service-ca mode object by object, including a
rotation of its mounted Secret the way kubelet performs it.

helm comes from <repo>/.tools/bin (scripts/install-tools); without it the tests fail, not skip.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import ssl
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
from cryptography.hazmat.primitives import serialization

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "gpu-rdma-injector"
EXAMPLES = REPO / "examples"
HELM = REPO / ".tools" / "bin" / "helm"

RELEASE = "gri"
NAMESPACE = "gpu-system"
FULLNAME = f"{RELEASE}-gpu-rdma-injector"
CONFIGURATION_NAME = f"zz-{FULLNAME}"  # the MutatingWebhookConfiguration
WEBHOOK_NAME = "pods.gpu-rdma-injector.io"
# The SR-IOV network operator's registration of network-resources-injector
# (k8snetworkplumbingwg/sriov-network-operator pkg/consts/constants.go, InjectorWebHookName).
PEER_CONFIGURATION_NAME = "network-resources-injector-config"
OPENSHIFT_API = "security.openshift.io/v1"
LONG_RELEASE = "long-release-name-to-test-truncation-of-the-fullname"  # helm allows 53

OLDEST_KUBERNETES = "1.28.0"
NEWEST_KUBERNETES = kubernetes_validate.utils.latest_version()
# Custom resources kubernetes-validate has no schema for; asserted by structure below.
# Kinds whose API version came with Kubernetes 1.30: the chart refuses to render them for an
# older cluster, so they are validated against the newest schema only.
SINCE_1_30 = {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
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
    "service-ca": (RELEASE, [], {"certificates": {"mode": "service-ca"}}),
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
    "renamed": (RELEASE, [], {"webhook": {"configurationName": "example.com-gpu-rdma"}}),
    # OpenShift: rendered with --api-versions security.openshift.io/v1 (OPENSHIFT_RENDERINGS).
    "openshift": (RELEASE, [], {}),
    "openshift-service-ca": (
        RELEASE,
        [],
        {
            "certificates": {"mode": "service-ca"},
            "serviceMonitor": {"enabled": True},
            "networkPolicy": {"enabled": True},
            "service": {"annotations": {"example.com/svc": "webhook"}},
        },
    ),
    "openshift-disabled": (RELEASE, [], {"openshift": {"adaptSecurityContext": "disabled"}}),
    # Adapted without the API (manifests rendered offline for OpenShift), and no SCC pin.
    "openshift-force": (
        RELEASE,
        [],
        {
            "openshift": {"adaptSecurityContext": "force", "requiredSCC": ""},
            "certificates": {"mode": "cert-manager"},
        },
    ),
    "single-replica": (RELEASE, [], {"replicaCount": 1}),
    "autoscaling": (
        RELEASE,
        [],
        {
            "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 8},
            "podDisruptionBudget": {"minAvailable": 2},
        },
    ),
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
# Combinations rendered as on a cluster that serves OpenShift's security API.
OPENSHIFT_RENDERINGS = {"openshift", "openshift-service-ca", "openshift-disabled"}
# Combinations whose pods must leave their IDs to OpenShift (detected, or forced).
OPENSHIFT_ADAPTED = {"openshift", "openshift-service-ca", "openshift-force"}

CLUSTER_SCOPED_KINDS = {
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
}

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


def install_notes(*set_args: str) -> str:
    """The NOTES `helm install --dry-run=client` prints with `set_args`; fails when it fails."""
    result = run_helm(
        "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client", *set_args
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split("NOTES:", 1)[1]


def values_file(directory: Path, name: str, values: dict[str, Any]) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


def template_args(release: str, files: list[Path], api_versions: tuple[str, ...] = ()) -> list[str]:
    args = ["template", release, str(CHART), "--namespace", NAMESPACE]
    for path in files:
        args += ["--values", str(path)]
    for api_version in api_versions:
        args += ["--api-versions", api_version]
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


def configuration_name_of(combination: str) -> str:
    configured = COMBINATIONS[combination][2].get("webhook", {}).get("configurationName")
    return configured or f"zz-{fullname_of(combination)}"


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
            api_versions = (OPENSHIFT_API,) if combination in OPENSHIFT_RENDERINGS else ()
            result = run_helm(*template_args(release, files, api_versions))
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
    "adapt-security-context-not-an-option": (
        {"openshift": {"adaptSecurityContext": "true"}},
        "adaptSecurityContext",
    ),
    "configuration-name-not-a-dns-name": (
        {"webhook": {"configurationName": "GPU_RDMA"}},
        "configurationName",
    ),
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
    # Below 1.30 the update guard (a v1 ValidatingAdmissionPolicy) must be turned off.
    result = run_helm(
        *template_args(RELEASE, []),
        "--kube-version",
        kube_version,
        "--set",
        "updateGuard.enabled=false",
    )
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
    notes = install_notes(*set_args)
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
        "validatingadmissionpolicy.yaml",
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
        if obj["kind"] in SINCE_1_30 and version == OLDEST_KUBERNETES:
            continue  # not rendered for clusters before 1.30 (tests/chart/test_update_guard.py)
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
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy"),
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding"),
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
        assert labels["helm.sh/chart"] == "gpu-rdma-injector-0.2.0"


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
    assert configuration["metadata"]["name"] == configuration_name_of(combination)
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
    if mode == "service-ca":
        assert annotations["service.beta.openshift.io/inject-cabundle"] == "true"
    else:
        assert "service.beta.openshift.io/inject-cabundle" not in annotations


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
    assert "annotations" not in deployment["spec"]["template"]["metadata"]


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
        assert flags["webhook-configuration"] == configuration_name_of(combination)
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
        expected_secret = {
            "secret": "corp-webhook-tls",
            "cert-manager": f"{fullname}-tls",
            "service-ca": f"{fullname}-service-ca-tls",
        }[mode]
        assert volumes["tls"]["secret"]["secretName"] == expected_secret
        # The whole Secret as a directory: kubelet swaps renewed files in atomically.
        assert "items" not in volumes["tls"]["secret"]
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
        # to notice network-resources-injector's registration (webhook/peers.py)
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
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
                    (configuration_name_of(combination),),
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
    # service-ca: the CA OpenShift publishes in every namespace, not a key of the serving Secret.
    (service_ca_endpoint,) = one(rendered("openshift-service-ca"), "ServiceMonitor")["spec"][
        "endpoints"
    ]
    assert service_ca_endpoint["tlsConfig"] == {
        "serverName": f"{FULLNAME}.{NAMESPACE}.svc",
        "ca": {"configMap": {"name": "openshift-service-ca.crt", "key": "service-ca.crt"}},
    }


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


# --- OpenShift: the restricted-v2 SecurityContextConstraints -------------------------------------
#
# restricted-v2 as OpenShift ships it: openshift/cluster-kube-apiserver-operator,
# bindata/bootkube/scc-manifests/0000_20_kube-apiserver-operator_00_scc-restricted-v2.yaml:
#   allowHostDirVolumePlugin/IPC/Network/PID/Ports: false, allowPrivilegedContainer: false,
#   allowPrivilegeEscalation: false, requiredDropCapabilities: [ALL],
#   allowedCapabilities: [NET_BIND_SERVICE], defaultAddCapabilities: null,
#   runAsUser: MustRunAsRange, seLinuxContext: MustRunAs, fsGroup: MustRunAs,
#   supplementalGroups: RunAsAny, seccompProfiles: [runtime/default],
#   readOnlyRootFilesystem: false (not required), volumes: configMap, downwardAPI, emptyDir,
#   persistentVolumeClaim, projected, secret (newer releases add csi, ephemeral and image; the
#   oldest list is checked). How SCC admission applies them, field by field:
#   openshift/apiserver-library-go, pkg/securitycontextconstraints/sccmatching/provider.go
#   (host namespace checks, volumes, hostPort, capabilities, fsGroup and supplementalGroups
#   strategies, seccomp). The ranges behind MustRunAsRange/MustRunAs are the namespace's
#   annotations openshift.io/sa.scc.uid-range, openshift.io/sa.scc.supplemental-groups and
#   openshift.io/sa.scc.mcs, assigned per namespace at creation: a chart cannot know them, so a
#   pod passes for every namespace only by leaving runAsUser, fsGroup and seLinuxOptions unset
#   (admission then fills them in from the ranges).

RESTRICTED_V2_VOLUME_TYPES = {
    "configMap",
    "downwardAPI",
    "emptyDir",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
RESTRICTED_V2_ALLOWED_CAPABILITIES = {"NET_BIND_SERVICE"}
REQUIRED_SCC_ANNOTATION = "openshift.io/required-scc"


def restricted_v2_violations(metadata: dict[str, Any], pod_spec: dict[str, Any]) -> list[str]:
    """What in a pod template restricted-v2 would reject in some namespace, plus what the chart
    keeps of the restricted profile on top (runAsNonRoot, read-only root filesystem, the SCC pin).

    runAsGroup: restricted-v2 sets no runAsGroup strategy (RunAsAny), but an image for an
    arbitrary UID runs with group 0 (OpenShift's convention), so a fixed group is flagged too.
    """
    problems: list[str] = []
    pod_sc = pod_spec.get("securityContext") or {}
    problems += [
        f"spec.{field} is true (allowHost*: false)"
        for field in ("hostNetwork", "hostPID", "hostIPC")
        if pod_spec.get(field)
    ]
    for volume in pod_spec.get("volumes") or []:
        kinds = set(volume) - VOLUME_META_KEYS
        if not kinds <= RESTRICTED_V2_VOLUME_TYPES:
            problems.append(f"volume {volume['name']} uses {sorted(kinds)} (volumes)")
    for field, strategy in (
        ("runAsUser", "runAsUser: MustRunAsRange"),
        ("runAsGroup", "group 0 for an arbitrary UID"),
        ("fsGroup", "fsGroup: MustRunAs"),
        ("seLinuxOptions", "seLinuxContext: MustRunAs"),
    ):
        if field in pod_sc:
            problems.append(f"pod securityContext.{field} is fixed ({strategy})")
    problems += [
        f"unsafe sysctl {sysctl['name']}"
        for sysctl in pod_sc.get("sysctls") or []
        if sysctl["name"] not in SAFE_SYSCTLS
    ]
    if (metadata.get("annotations") or {}).get(REQUIRED_SCC_ANNOTATION) != "restricted-v2":
        problems.append(f"pod template lacks {REQUIRED_SCC_ANNOTATION}: restricted-v2")

    containers = [
        *pod_spec.get("initContainers", []),
        *pod_spec.get("containers", []),
        *pod_spec.get("ephemeralContainers", []),
    ]
    for container in containers:
        name = container["name"]
        sc = container.get("securityContext") or {}
        for field in ("runAsUser", "runAsGroup", "seLinuxOptions"):
            if field in sc:
                problems.append(f"{name}: securityContext.{field} is fixed")
        if sc.get("privileged"):
            problems.append(f"{name}: privileged (allowPrivilegedContainer: false)")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        capabilities = sc.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{name}: capabilities do not drop ALL (requiredDropCapabilities)")
        added = set(capabilities.get("add") or []) - RESTRICTED_V2_ALLOWED_CAPABILITIES
        if added:
            problems.append(f"{name}: adds capabilities {sorted(added)} (allowedCapabilities)")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp != "RuntimeDefault":
            problems.append(f"{name}: seccompProfile is {seccomp!r} (seccompProfiles)")
        if any(port.get("hostPort") for port in container.get("ports") or []):
            problems.append(f"{name}: uses a hostPort (allowHostPorts: false)")
        non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        if non_root is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: readOnlyRootFilesystem is not true")
    return problems


def pod_templates(objects: Objects) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(kind/name, metadata, spec) of every pod the objects would create."""
    found = []
    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] == "Pod":
            found.append((where, obj["metadata"], obj["spec"]))
        elif obj["kind"] == "CronJob":
            template = obj["spec"]["jobTemplate"]["spec"]["template"]
            found.append((where, template.get("metadata", {}), template["spec"]))
        elif "template" in obj.get("spec", {}) and "spec" in obj["spec"]["template"]:
            template = obj["spec"]["template"]
            found.append((where, template.get("metadata", {}), template["spec"]))
    return found


@pytest.mark.parametrize("combination", sorted(OPENSHIFT_ADAPTED - {"openshift-force"}))
def test_every_pod_template_passes_restricted_v2(
    combination: str, rendered: Callable[[str], Objects]
) -> None:
    templates = pod_templates(rendered(combination))
    assert [where for where, _, _ in templates] == [f"Deployment/{fullname_of(combination)}"]
    for where, metadata, spec in templates:
        assert restricted_v2_violations(metadata, spec) == [], where


def test_openshift_keeps_the_rest_of_the_restricted_profile(
    rendered: Callable[[str], Objects],
) -> None:
    for combination in sorted(OPENSHIFT_ADAPTED):
        spec = pod_spec_of(rendered(combination))
        assert spec["securityContext"] == {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        }, combination
        assert spec["containers"][0]["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }, combination


def test_restricted_v2_check_catches_violations(rendered: Callable[[str], Objects]) -> None:
    """A check that passes everything proves nothing: each rule is broken once and flagged."""
    ((_, metadata, clean),) = pod_templates(rendered("openshift"))
    breakages: dict[str, Callable[[dict[str, Any], dict[str, Any]], None]] = {
        "runAsUser: MustRunAsRange": lambda m, s: s["securityContext"].update(runAsUser=65532),
        "fsGroup: MustRunAs": lambda m, s: s["securityContext"].update(fsGroup=65532),
        "group 0": lambda m, s: s["securityContext"].update(runAsGroup=65532),
        "seLinuxContext: MustRunAs": lambda m, s: s["securityContext"].update(
            seLinuxOptions={"level": "s0:c1,c2"}
        ),
        "webhook: securityContext.runAsUser is fixed": lambda m, s: s["containers"][0][
            "securityContext"
        ].update(runAsUser=1000),
        "allowHost*": lambda m, s: s.update(hostNetwork=True),
        "(volumes)": lambda m, s: s["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
        "allowPrivilegedContainer": lambda m, s: s["containers"][0]["securityContext"].update(
            privileged=True
        ),
        "allowPrivilegeEscalation": lambda m, s: s["containers"][0]["securityContext"].pop(
            "allowPrivilegeEscalation"
        ),
        "requiredDropCapabilities": lambda m, s: s["containers"][0]["securityContext"].update(
            capabilities={}
        ),
        "allowedCapabilities": lambda m, s: s["containers"][0]["securityContext"].update(
            capabilities={"drop": ["ALL"], "add": ["NET_RAW"]}
        ),
        "seccompProfiles": lambda m, s: s["securityContext"].update(
            seccompProfile={"type": "Unconfined"}
        ),
        "allowHostPorts": lambda m, s: s["containers"][0]["ports"][0].update(hostPort=8443),
        "runAsNonRoot": lambda m, s: s["securityContext"].pop("runAsNonRoot"),
        "readOnlyRootFilesystem": lambda m, s: s["containers"][0]["securityContext"].pop(
            "readOnlyRootFilesystem"
        ),
        REQUIRED_SCC_ANNOTATION: lambda m, s: m["annotations"].pop(REQUIRED_SCC_ANNOTATION),
        "unsafe sysctl": lambda m, s: s["securityContext"].update(
            sysctls=[{"name": "kernel.msgmax", "value": "1"}]
        ),
    }
    for expected, breaking in breakages.items():
        broken_metadata, broken = json.loads(json.dumps([metadata, clean]))
        breaking(broken_metadata, broken)
        problems = "\n".join(restricted_v2_violations(broken_metadata, broken))
        assert expected in problems, f"{expected!r} not flagged: {problems!r}"
    # NET_BIND_SERVICE is the one capability restricted-v2 allows to add.
    allowed_metadata, allowed = json.loads(json.dumps([metadata, clean]))
    allowed["containers"][0]["securityContext"]["capabilities"]["add"] = ["NET_BIND_SERVICE"]
    assert restricted_v2_violations(allowed_metadata, allowed) == []


@pytest.mark.parametrize("combination", ["self-signed", "service-ca", "openshift-disabled"])
def test_fixed_ids_without_openshift_adaptation(
    combination: str, rendered: Callable[[str], Objects]
) -> None:
    """Without the OpenShift API (or with adaptation disabled) the pods keep today's fixed IDs,
    which restricted-v2 would reject: the adaptation is what makes OpenShift admit them."""
    objects = rendered(combination)
    spec = pod_spec_of(objects)
    assert {key: spec["securityContext"].get(key) for key in ("runAsUser", "runAsGroup")} == {
        "runAsUser": 65532,
        "runAsGroup": 65532,
    }
    assert spec["securityContext"]["fsGroup"] == 65532
    ((_, metadata, pod_spec),) = pod_templates(objects)
    problems = "\n".join(restricted_v2_violations(metadata, pod_spec))
    assert "runAsUser: MustRunAsRange" in problems
    assert REQUIRED_SCC_ANNOTATION in problems
    assert restricted_pss_violations(pod_spec) == []


def test_required_scc_pin(rendered: Callable[[str], Objects]) -> None:
    def annotations(combination: str) -> dict[str, str]:
        template = one(rendered(combination), "Deployment")["spec"]["template"]
        return template["metadata"].get("annotations", {})

    assert annotations("openshift")[REQUIRED_SCC_ANNOTATION] == "restricted-v2"
    assert REQUIRED_SCC_ANNOTATION not in annotations("openshift-force")  # requiredSCC: ""
    assert REQUIRED_SCC_ANNOTATION not in annotations("openshift-disabled")
    assert REQUIRED_SCC_ANNOTATION not in annotations("self-signed")


# --- service-ca mode -----------------------------------------------------------------------------
#
# OpenShift's service-ca operator (openshift/service-ca-operator):
# pkg/controller/servingcert/controller/secret_creating_controller.go creates a kubernetes.io/tls
# Secret named by the Service annotation service.beta.openshift.io/serving-cert-secret-name, for
# <service>.<namespace>.svc and <service>.<namespace>.svc.<cluster domain>, owned by the Service,
# and refuses a Secret of that name it did not create ("does not have corresponding service
# UID"); pkg/controller/cabundleinjector/admissionwebhook.go writes the CA bundle into every
# webhook's caBundle of a MutatingWebhookConfiguration annotated
# service.beta.openshift.io/inject-cabundle: "true".

SERVICE_CA_SECRET = f"{FULLNAME}-service-ca-tls"


@pytest.mark.parametrize("combination", ["service-ca", "openshift-service-ca"])
def test_service_ca_mode_objects(combination: str, rendered: Callable[[str], Objects]) -> None:
    objects = rendered(combination)
    service = one(objects, "Service", FULLNAME)
    annotations = service["metadata"]["annotations"]
    assert annotations["service.beta.openshift.io/serving-cert-secret-name"] == SERVICE_CA_SECRET
    if combination == "openshift-service-ca":  # the user's own Service annotations stay
        assert annotations["example.com/svc"] == "webhook"
    configuration, webhook = the_webhook(objects)
    assert configuration["metadata"]["annotations"] == {
        "service.beta.openshift.io/inject-cabundle": "true"
    }
    assert "caBundle" not in webhook["clientConfig"]
    # service-ca creates the Secret; the chart renders none and asks for no writes at all.
    assert find(objects, "Secret") == []
    for kind in ("Certificate", "Issuer", "Role", "RoleBinding"):
        assert find(objects, kind) == [], kind
    for _, rule in rules_of(objects):
        assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule
    spec = pod_spec_of(objects)
    (container,) = spec["containers"]
    _, flags = parse_flags(container["args"])
    assert flags["tls-cert-file"] == "/etc/gpu-rdma-injector/tls/tls.crt"
    assert flags["tls-key-file"] == "/etc/gpu-rdma-injector/tls/tls.key"
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "tls"]
    assert mount == {"name": "tls", "mountPath": "/etc/gpu-rdma-injector/tls", "readOnly": True}
    (volume,) = [v for v in spec["volumes"] if v["name"] == "tls"]
    assert volume["secret"] == {"secretName": SERVICE_CA_SECRET, "defaultMode": 0o440}


def test_service_ca_secret_name_never_collides(rendered: Callable[[str], Objects]) -> None:
    """Switching modes on a running release must not point service-ca at a Secret it did not
    create: the kept self-signed Secret or cert-manager's have other names."""
    others = {
        volume["secret"]["secretName"]
        for combination in ("cert-manager", "secret")
        for volume in pod_spec_of(rendered(combination))["volumes"]
        if "secret" in volume
    }
    others.add(one(rendered("self-signed"), "Secret")["metadata"]["name"])
    assert SERVICE_CA_SECRET not in others


def _served_certificate(server_context: ssl.SSLContext, ca_pem: bytes, hostname: str) -> bytes:
    """The DER certificate a TLS handshake gets from `server_context`, verified as the API
    server verifies a webhook: against the caBundle, for <service>.<namespace>.svc."""
    client_context = ssl.create_default_context(cadata=ca_pem.decode())
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_context.wrap_bio(client_in, client_out, server_hostname=hostname)
    server = server_context.wrap_bio(server_in, server_out, server_side=True)
    sides = [(client, client_out, server_in), (server, server_out, client_in)]
    done = [False, False]
    for _ in range(10):
        for index, (side, outgoing, incoming) in enumerate(sides):
            if not done[index]:
                with contextlib.suppress(ssl.SSLWantReadError):
                    side.do_handshake()
                    done[index] = True
            incoming.write(outgoing.read())
        if all(done):
            break
    assert all(done), "the TLS handshake did not complete"
    certificate = client.getpeercert(binary_form=True)
    assert certificate is not None
    return certificate


def _atomic_write(directory: Path, files: dict[str, bytes], generation: int) -> None:
    """Update a Secret volume the way kubelet's AtomicWriter does: the files go into a new
    timestamped directory, the `..data` symlink is swapped to it with one rename, and the
    visible names are symlinks through `..data` (pkg/volume/util/atomic_writer.go)."""
    payload = directory / f"..2026_01_01_00_00_0{generation}.000000001"
    payload.mkdir()
    for name, content in files.items():
        (payload / name).write_bytes(content)
    staging = directory / "..data_tmp"
    staging.symlink_to(payload.name)
    os.rename(staging, directory / "..data")
    for name in files:
        if not (directory / name).is_symlink():
            (directory / name).symlink_to(f"..data/{name}")


def test_service_ca_rotation_reaches_the_running_server(
    rendered: Callable[[str], Objects], tmp_path: Path
) -> None:
    """The rendered args point into the Secret's directory mount; a renewed service-ca Secret,
    written the way kubelet writes it, is served by the running server's next reload check.
    tls.crt carries the chain as service-ca writes it (serving certificate, then the CA)."""
    from webhook.certs import generate_ca, generate_serving
    from webhook.tls import ReloadingTLS

    container = pod_spec_of(rendered("openshift-service-ca"))["containers"][0]
    _, flags = parse_flags(container["args"])
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "tls"]
    mount_path = Path(mount["mountPath"])
    cert_name = Path(flags["tls-cert-file"]).relative_to(mount_path)
    key_name = Path(flags["tls-key-file"]).relative_to(mount_path)
    # The keys of a kubernetes.io/tls Secret, directly under the mount.
    assert (str(cert_name), str(key_name)) == ("tls.crt", "tls.key")

    hostname = f"{FULLNAME}.{NAMESPACE}.svc"
    names = [hostname, f"{hostname}.cluster.local"]
    service_ca = generate_ca("openshift-service-serving-signer")
    volume = tmp_path / "tls"
    volume.mkdir()

    def issue(generation: int) -> bytes:
        serving = generate_serving(service_ca, names)
        chain = serving.cert_pem() + service_ca.cert_pem()
        _atomic_write(volume, {"tls.crt": chain, "tls.key": serving.key_pem()}, generation)
        return serving.cert.public_bytes(serialization.Encoding.DER)

    first = issue(1)
    tls = ReloadingTLS(volume / cert_name, volume / key_name)
    assert _served_certificate(tls.context, service_ca.cert_pem(), hostname) == first
    assert tls.reload_if_changed() is False

    renewed = issue(2)
    assert (volume / "..data").resolve().name.endswith("2.000000001")
    assert tls.reload_if_changed() is True
    assert _served_certificate(tls.context, service_ca.cert_pem(), hostname) == renewed
    assert renewed != first


def test_notes_for_service_ca_mode() -> None:
    notes = install_notes("--set", "certificates.mode=service-ca")
    assert f"kubectl -n {NAMESPACE} get secret {SERVICE_CA_SECRET}" in notes
    assert f"kubectl get mutatingwebhookconfiguration {CONFIGURATION_NAME} " in notes
    # Not an OpenShift cluster (dry-run=client has no security.openshift.io/v1): said plainly.
    assert "needs OpenShift's service-ca operator" in notes


# --- webhook order beside network-resources-injector ---------------------------------------------
#
# kube-apiserver runs mutating webhook configurations sorted by name (Go string order), each
# one's webhooks in list order: kubernetes/kubernetes,
# staging/src/k8s.io/apiserver/pkg/admission/configuration/mutating_webhook_manager.go
# (sort.SliceStable(..., MutatingWebhookConfigurationSorter(...).ByName)).


@pytest.mark.parametrize("combination", sorted(set(COMBINATIONS) - {"renamed"}))
def test_default_configuration_name_sorts_after_the_peer_injector(
    combination: str, rendered: Callable[[str], Objects]
) -> None:
    name = one(rendered(combination), "MutatingWebhookConfiguration")["metadata"]["name"]
    assert name == f"zz-{fullname_of(combination)}"
    # Python compares str by code point, as Go compares strings by byte, for these ASCII names.
    assert name > PEER_CONFIGURATION_NAME


@pytest.mark.parametrize("release", ["a", "gpu-rdma-injector", "network-resources-injector", "zz"])
def test_configuration_name_order_does_not_depend_on_the_release(release: str) -> None:
    result = run_helm(
        *template_args(release, []), "--show-only", "templates/mutatingwebhookconfiguration.yaml"
    )
    assert result.returncode == 0, result.stderr
    name = yaml.safe_load(result.stdout)["metadata"]["name"]
    assert name > PEER_CONFIGURATION_NAME, name


def test_configured_name_is_used_everywhere(rendered: Callable[[str], Objects]) -> None:
    objects = rendered("renamed")
    configuration, _ = the_webhook(objects)
    assert configuration["metadata"]["name"] == "example.com-gpu-rdma"
    _, flags = parse_flags(pod_spec_of(objects)["containers"][0]["args"])
    assert flags["webhook-configuration"] == "example.com-gpu-rdma"
    (rule,) = [
        rule
        for _, rule in rules_of(objects)
        if rule["resources"] == ["mutatingwebhookconfigurations"] and "update" in rule["verbs"]
    ]
    assert rule["resourceNames"] == ["example.com-gpu-rdma"]


@pytest.mark.parametrize(
    ("set_args", "warned"),
    [
        ([], False),
        (["--set", "webhook.configurationName=zz-anything"], False),
        (["--set", "webhook.configurationName=gpu-rdma-injector"], True),
        (["--set", f"webhook.configurationName={PEER_CONFIGURATION_NAME}"], True),
    ],
    ids=["default", "after", "before", "equal"],
)
def test_notes_warn_when_the_name_sorts_before_the_peer(set_args: list[str], warned: bool) -> None:
    notes = install_notes(*set_args)
    assert (f"sorts before\n   {PEER_CONFIGURATION_NAME}" in notes) is warned, notes
