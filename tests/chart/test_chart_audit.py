"""The chart's values for the roll-out: `policy.mode: warn` and the background audit
(`audit.enabled`), rendered with the real helm binary.

With the audit on, the Deployment runs `serve --audit-interval`, and RBAC grows by exactly what
the audit uses (list pods, nodes, events, MutatingWebhookConfigurations; write PolicyReports);
with it off (the default) none of that is rendered. Every rendered object is valid under the
Kubernetes schemas, the args parse with the real CLI, and the policy ConfigMap loads.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml
from test_chart import (
    CHART,
    NAMESPACE,
    NEWEST_KUBERNETES,
    OLDEST_KUBERNETES,
    RELEASE,
    SINCE_1_30,
    WRITE_VERBS,
    install_notes,
    one,
    rules_of,
    run_helm,
)

from webhook.__main__ import parse
from webhook.policy import parse_policy

Objects = list[dict[str, Any]]
AUDIT_READS = {
    ("", "pods"),
    ("", "nodes"),
    ("", "events"),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
}
REPORTS = {("wgpolicyk8s.io", "policyreports"), ("wgpolicyk8s.io", "clusterpolicyreports")}
MWC = ("admissionregistration.k8s.io", "mutatingwebhookconfigurations")


def render(*set_args: str) -> Objects:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for value in set_args:
        args += ["--set", value]
    result = run_helm(*args)
    assert result.returncode == 0, result.stderr
    return [o for o in yaml.safe_load_all(result.stdout) if o]


def serve_args(objects: Objects) -> list[str]:
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return list(container["args"])


def grants(objects: Objects) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for _, rule in rules_of(objects):
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def test_by_default_no_audit_and_enforce() -> None:
    objects = render()
    assert not [a for a in serve_args(objects) if a.startswith("--audit-interval")]
    granted = grants(objects)
    assert not set(granted) & (AUDIT_READS | REPORTS) - {MWC}
    # Webhook configurations are listed and watched anyway, to notice network-resources-injector.
    assert {"list", "watch"} <= granted.get(MWC, set())
    policy = parse_policy(one(objects, "ConfigMap")["data"]["policy.yaml"], "chart")
    assert policy.mode == "enforce"


def test_the_audit_adds_its_flag_and_exactly_its_rbac() -> None:
    objects = render("audit.enabled=true", "audit.intervalSeconds=600")
    args = serve_args(objects)
    assert "--audit-interval=600" in args
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GPU_RDMA_INJECTOR_POD_NAMESPACE", NAMESPACE)  # the downward API's
        invocation = parse(args)
    assert invocation.settings.audit_interval == 600
    before, granted = grants(render()), grants(objects)
    added = {
        key: verbs - before.get(key, set())
        for key, verbs in granted.items()
        if verbs - before.get(key, set())
    }
    assert added == {
        **{read: {"list"} for read in AUDIT_READS - {MWC}},
        **{report: {"get", "list", "create", "update", "patch", "delete"} for report in REPORTS},
    }
    role = one(objects, "ClusterRole", f"{RELEASE}-gpu-rdma-injector-audit")
    writes = [r for r in role["rules"] if set(r["verbs"]) & WRITE_VERBS]
    assert [tuple(r["apiGroups"]) for r in writes] == [("wgpolicyk8s.io",)]
    binding = one(objects, "ClusterRoleBinding", f"{RELEASE}-gpu-rdma-injector-audit")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    service_account = one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": service_account, "namespace": NAMESPACE}
    ]
    # Without RBAC objects from the chart, none for the audit either.
    assert not [
        o for o in render("audit.enabled=true", "rbac.create=false") if o["kind"].endswith("Role")
    ]


def test_warn_mode_reaches_the_policy() -> None:
    objects = render("policy.mode=warn")
    policy = parse_policy(one(objects, "ConfigMap")["data"]["policy.yaml"], "chart")
    assert policy.mode == "warn"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("policy.mode=loud", "value must be one of 'enforce', 'warn'"),
        ("audit.intervalSeconds=30", "minimum: got 30, want 60"),
        ("audit.enabled=yes", "got string, want boolean"),
        ("audit.every=5", "additional properties 'every' not allowed"),
    ],
)
def test_the_schema_refuses_bad_values(value: str, problem: str) -> None:
    result = run_helm("template", RELEASE, str(CHART), "--set", value)
    assert result.returncode != 0
    assert problem in result.stderr


@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, NEWEST_KUBERNETES])
def test_rendered_objects_are_valid(version: str) -> None:
    for obj in render("audit.enabled=true", "policy.mode=warn"):
        if obj["kind"] in SINCE_1_30 and version == OLDEST_KUBERNETES:
            continue
        kubernetes_validate.validate(obj, version, strict=True)


def test_lint_strict_with_the_roll_out_values() -> None:
    result = run_helm(
        "lint", "--strict", str(CHART), "--set", "audit.enabled=true", "--set", "policy.mode=warn"
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_notes_say_warn_mode_and_where_the_reports_are() -> None:
    notes = install_notes("--set", "policy.mode=warn", "--set", "audit.enabled=true")
    assert "WARN MODE (policy.mode=warn): no pod is patched or refused." in notes
    assert "kubectl get policyreports -A -l app.kubernetes.io/managed-by=gpu-rdma-injector" in notes
    plain = run_helm("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client")
    assert "WARN MODE" not in plain.stdout  # anywhere in what helm prints, not only the NOTES
    assert "policyreports" not in plain.stdout.split("NOTES:", 1)[1]
