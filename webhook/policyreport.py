"""Findings as `wgpolicyk8s.io/v1alpha2` PolicyReports (wire layer: an output format).

Shaped as Kyverno writes its per-resource reports, so Policy Reporter and similar UIs show them:
one report per object with findings, in the object's namespace (a PolicyReport) or cluster-wide
for cluster-scoped objects (a ClusterPolicyReport); `scope` and an ownerReference name the
object (the report goes when the object does), each finding is a result (policy
`gpu-rdma-injector`, rule = the check id, result `fail` for errors and `warn` otherwise,
severity high, medium or info, the fix in `properties`), and `summary` counts them. The reports
carry the label `app.kubernetes.io/managed-by: gpu-rdma-injector` (not Kyverno's, whose
controller would delete them) and are named after the object's uid with our prefix (Kyverno
names its own after the bare uid, so the two never collide).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from webhook.findings import Finding, ObjectRef, Severity

API_VERSION = "wgpolicyk8s.io/v1alpha2"
POLICY = "gpu-rdma-injector"
SOURCE = "gpu-rdma-injector"
CATEGORY = "RDMA networks"
MANAGED_BY = "app.kubernetes.io/managed-by"
LABELS = {MANAGED_BY: "gpu-rdma-injector"}
NAME_PREFIX = "gpu-rdma-injector-"

_RESULT: dict[Severity, str] = {"error": "fail", "warning": "warn", "info": "warn"}
_SEVERITY: dict[Severity, str] = {"error": "high", "warning": "medium", "info": "info"}


def reports(findings: Iterable[Finding], now: float) -> list[dict[str, Any]]:
    """One report per object with findings, ordered by kind, namespace and name."""
    by_object: dict[ObjectRef, list[Finding]] = {}
    for finding in findings:
        by_object.setdefault(finding.object, []).append(finding)
    return [
        report(ref, found, now)
        for ref, found in sorted(
            by_object.items(), key=lambda item: (item[0].namespace, item[0].kind, item[0].name)
        )
    ]


def report(ref: ObjectRef, findings: list[Finding], now: float) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": report_name(ref), "labels": dict(LABELS)}
    scope: dict[str, Any] = {"apiVersion": ref.api_version, "kind": ref.kind, "name": ref.name}
    if ref.namespace:
        metadata["namespace"] = ref.namespace
        scope["namespace"] = ref.namespace
    if ref.uid:
        scope["uid"] = ref.uid
        metadata["ownerReferences"] = [
            {"apiVersion": ref.api_version, "kind": ref.kind, "name": ref.name, "uid": ref.uid}
        ]
    results = [result(finding, now) for finding in findings]
    return {
        "apiVersion": API_VERSION,
        "kind": "PolicyReport" if ref.namespace else "ClusterPolicyReport",
        "metadata": metadata,
        "scope": scope,
        "results": results,
        "summary": {
            "pass": 0,
            "fail": sum(1 for r in results if r["result"] == "fail"),
            "warn": sum(1 for r in results if r["result"] == "warn"),
            "error": 0,
            "skip": 0,
        },
    }


def result(finding: Finding, now: float) -> dict[str, Any]:
    return {
        "category": CATEGORY,
        "message": finding.message,
        "policy": POLICY,
        "properties": {"fix": finding.fix},
        "result": _RESULT[finding.severity],
        "rule": finding.check,
        "scored": True,
        "severity": _SEVERITY[finding.severity],
        "source": SOURCE,
        "timestamp": {"nanos": 0, "seconds": int(now)},
    }


def report_name(ref: ObjectRef) -> str:
    """Our prefix and the object's uid; without a uid (an object that does not exist, such as
    a missing webhook configuration) a digest of kind, namespace and name."""
    if ref.uid:
        return NAME_PREFIX + ref.uid
    digest = hashlib.sha256(f"{ref.kind}/{ref.namespace}/{ref.name}".encode()).hexdigest()
    return NAME_PREFIX + digest[:32]


def without_timestamps(report_object: dict[str, Any]) -> Any:
    """A report's content for comparison: results without their timestamps (an unchanged
    finding found again is the same result)."""
    results = [
        {k: v for k, v in item.items() if k != "timestamp"}
        for item in report_object.get("results") or ()
    ]
    return (report_object.get("scope"), results, report_object.get("summary"))
