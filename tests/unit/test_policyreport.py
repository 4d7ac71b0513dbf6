"""PolicyReports validated against the wgpolicyk8s.io CRDs Kyverno installs (copied into
tests/fixtures/policyreport-crds/ with where they came from), and shaped as Kyverno writes them.

The CRDs' openAPIV3Schema is applied with jsonschema, made strict: an object with listed
properties takes no others (the API server would silently prune them, so a field we write
that the CRD does not know is a bug here).
"""

from __future__ import annotations

import base64
import copy
from typing import Any

import jsonschema
import pytest
from audit_shapes import inventory, one_of_each
from policyreport_crds import validator

from webhook.audit import audit
from webhook.certs import generate_ca
from webhook.findings import Finding, ObjectRef
from webhook.policy import default_policy
from webhook.policyreport import LABELS, NAME_PREFIX, report, report_name, reports

NOW = 1_764_400_000.0


def all_reports() -> list[dict[str, Any]]:
    bundle = base64.b64encode(generate_ca().cert_pem()).decode()
    result = audit(inventory(*one_of_each(bundle)), default_policy())
    return reports(result.findings, NOW)


def test_every_report_is_valid_under_its_crd() -> None:
    found = all_reports()
    kinds = {r["kind"] for r in found}
    assert kinds == {"PolicyReport", "ClusterPolicyReport"}
    for item in found:
        assert item["apiVersion"] == "wgpolicyk8s.io/v1alpha2"
        validator(item["kind"]).validate(item)


def test_the_validation_can_fail() -> None:
    item = copy.deepcopy(all_reports()[0])
    item["results"][0]["severity"] = "error"  # not in the CRD's enum
    with pytest.raises(jsonschema.ValidationError):
        validator(item["kind"]).validate(item)
    item = copy.deepcopy(all_reports()[0])
    item["results"][0]["fixedBy"] = "nobody"  # a field the CRD would prune
    with pytest.raises(jsonschema.ValidationError):
        validator(item["kind"]).validate(item)


def test_reports_are_shaped_as_kyverno_writes_them() -> None:
    found = all_reports()
    by_scope = {
        (r["scope"]["kind"], r["scope"].get("namespace", ""), r["scope"]["name"]): r for r in found
    }
    pod = by_scope[("Pod", "team-a", "dup-b")]
    assert pod["kind"] == "PolicyReport"
    uid = pod["scope"]["uid"]
    assert pod["metadata"] == {
        "name": NAME_PREFIX + uid,
        "labels": LABELS,
        "namespace": "team-a",
        "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "dup-b", "uid": uid}],
    }
    assert pod["scope"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "dup-b",
        "namespace": "team-a",
        "uid": uid,
    }
    (result,) = pod["results"]
    assert result["policy"] == "gpu-rdma-injector"
    assert result["rule"] == "duplicate-ip"
    assert (result["result"], result["severity"], result["scored"]) == ("fail", "high", True)
    assert result["source"] == "gpu-rdma-injector"
    assert result["timestamp"] == {"nanos": 0, "seconds": int(NOW)}
    assert result["properties"]["fix"].startswith("Delete the newer pod")
    assert pod["summary"] == {"pass": 0, "fail": 1, "warn": 0, "error": 0, "skip": 0}
    namespace = by_scope[("Namespace", "", "team-b")]
    assert namespace["kind"] == "ClusterPolicyReport"
    assert "namespace" not in namespace["metadata"]
    assert namespace["results"][0]["result"] == "warn"
    assert namespace["results"][0]["severity"] == "medium"
    nad = by_scope[("NetworkAttachmentDefinition", "team-a", "small-pool-net")]
    assert nad["scope"]["apiVersion"] == "k8s.cni.cncf.io/v1"
    webhook = by_scope[("MutatingWebhookConfiguration", "", "zz-gpu-rdma-injector")]
    assert webhook["scope"]["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert webhook["results"][0]["severity"] == "info"


def test_one_report_per_object_and_names_that_never_collide_with_kyvernos() -> None:
    ref = ObjectRef("Pod", "p", "ns", uid="0b7e5c1a-3d94-4f6e-8c2a-9e1f7d6b4a30")
    two = [
        Finding("no-ip", "error", ref, "a.", "b."),
        Finding("no-rdma-device", "error", ref, "c.", "d."),
    ]
    (only,) = reports(two, NOW)
    assert [r["rule"] for r in only["results"]] == ["no-ip", "no-rdma-device"]
    assert only["summary"]["fail"] == 2
    assert only["metadata"]["name"] != ref.uid  # Kyverno's report of the pod is named ref.uid
    missing = ObjectRef("MutatingWebhookConfiguration", "pods.gpu-rdma-injector.io")
    name = report_name(missing)
    assert name.startswith(NAME_PREFIX)
    assert len(name) <= 63
    assert report_name(missing) == name  # stable across runs
    cluster = report(missing, [Finding("webhook-config", "error", missing, "a.", "b.")], NOW)
    assert "ownerReferences" not in cluster["metadata"]
    validator("ClusterPolicyReport").validate(cluster)
