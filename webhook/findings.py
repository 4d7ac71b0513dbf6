"""The audit's vocabulary (core layer): checks, findings, and the cluster objects they judge.

A finding names a stable check id, a severity (`error`, `warning`, `info`), the object it is
about, one sentence of what is wrong and one of how to fix it. An `Inventory` holds the objects
the audit reads, as the API server returns them (or as `kubectl get -o yaml` prints them); a
kind the input could not show is None, and the checks that need it are skipped, saying why.
Nothing here reads a cluster or a file: that is the edges' job (webhook.audit_dump,
webhook.audit_cluster).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")

Kind = Literal["pods", "nads", "namespaces", "nodes", "events", "webhooks"]
KIND_NAMES: dict[Kind, str] = {
    "pods": "Pods",
    "nads": "NetworkAttachmentDefinitions",
    "namespaces": "Namespaces",
    "nodes": "Nodes",
    "events": "Events",
    "webhooks": "MutatingWebhookConfigurations",
}

SHORT_KINDS = {"NetworkAttachmentDefinition": "NAD"}
"""How objects are named in messages and tables (as `kubectl get net-attach-def` users say)."""

MAX_FINDINGS = 10_000
"""Findings kept per audit (the most severe first); the rest are counted, not kept."""

WEBHOOK_NAME = "pods.gpu-rdma-injector.io"
"""The webhook's name in its MutatingWebhookConfiguration (the chart's, whatever the release)."""
DEFAULT_OPT_IN: Mapping[str, str] = {"gpu-rdma-injector.io/inject": "enabled"}
"""The chart's default namespace label, used when no webhook configuration can be seen."""


@dataclass(frozen=True, slots=True)
class Check:
    id: str
    severity: Severity
    """The usual severity; a finding may say otherwise (a pool nearly full is a warning)."""
    summary: str
    needs: tuple[Kind, ...]
    """What the input must show for the check to be judged at all."""


CHECKS: dict[str, Check] = {
    check.id: check
    for check in (
        Check(
            "half-configured",
            "error",
            "a pod's attachments and SR-IOV units differ for some resource",
            ("pods",),
        ),
        Check(
            "unknown-nad", "error", "a pod references a NAD that does not exist", ("pods", "nads")
        ),
        Check(
            "namespace-not-allowed",
            "error",
            "a pod references a NAD outside the namespaces the policy allows",
            ("pods",),
        ),
        Check(
            "nad-no-resource",
            "error",
            "an sriov, ib-sriov or host-device NAD names no device resource",
            ("nads",),
        ),
        Check(
            "nad-bad-config",
            "error",
            "a NAD's spec.config is not JSON or names no CNI type",
            ("nads",),
        ),
        Check(
            "ipam-host-local",
            "warning",
            "a host-local IPAM NAD is used by pods on more than one node",
            ("nads", "pods"),
        ),
        Check(
            "ipam-pool-small",
            "error",
            "a whereabouts range is smaller than its attachments, or over 90 % used",
            ("nads", "pods"),
        ),
        Check(
            "no-ip",
            "error",
            "a running pod's network-status lacks an attachment's IP",
            ("pods", "nads"),
        ),
        Check(
            "no-rdma-device",
            "error",
            "a running pod's network-status lacks an attachment's PCI or RDMA device",
            ("pods", "nads"),
        ),
        Check(
            "duplicate-ip",
            "error",
            "two running pods hold the same IP on one network",
            ("pods",),
        ),
        Check(
            "vf-exhausted",
            "error",
            "pods need more of an SR-IOV resource than a node has, or wait for one",
            ("pods",),
        ),
        Check(
            "not-opted-in",
            "warning",
            "a namespace with GPU pods is not opted in to the webhook",
            ("pods", "namespaces"),
        ),
        Check(
            "webhook-config",
            "error",
            "the webhook's registration is missing, has a bad caBundle, or fails open",
            ("webhooks",),
        ),
    )
}


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """The object a finding is about; `namespace` is "" for cluster-scoped objects."""

    kind: str
    name: str
    namespace: str = ""
    uid: str = ""
    api_version: str = "v1"

    def display(self) -> str:
        kind = SHORT_KINDS.get(self.kind, self.kind)
        return f"{kind} {self.namespace}/{self.name}" if self.namespace else f"{kind} {self.name}"


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    severity: Severity
    object: ObjectRef
    message: str
    """One sentence: what is wrong."""
    fix: str
    """One sentence: how to fix it."""


@dataclass(frozen=True, slots=True)
class Inventory:
    """The objects the audit judges, each kind as a list of API objects, or None when the input
    cannot show that kind (a dump without Nodes, a list the audit may not read)."""

    pods: Sequence[Mapping[str, Any]] | None = None
    nads: Sequence[Mapping[str, Any]] | None = None
    namespaces: Sequence[Mapping[str, Any]] | None = None
    nodes: Sequence[Mapping[str, Any]] | None = None
    events: Sequence[Mapping[str, Any]] | None = None
    webhooks: Sequence[Mapping[str, Any]] | None = None
    serving_certificate: bytes | None = None
    """The webhook's serving certificate (PEM), to check the caBundle against; None if unseen."""
    namespaces_read: frozenset[str] | None = None
    """When namespaced kinds were read in these namespaces only (live `--namespace`); None: all."""
    notes: tuple[str, ...] = ()
    """Why some kind is missing, said once (e.g. "not allowed to list nodes")."""

    def has(self, kind: Kind) -> bool:
        return getattr(self, kind) is not None

    def counts(self) -> dict[str, int]:
        return {
            kind: len(getattr(self, kind)) for kind in KIND_NAMES if getattr(self, kind) is not None
        }


@dataclass(frozen=True, slots=True)
class AuditOptions:
    """What to audit, and what the audit assumes about the webhook's registration."""

    checks: frozenset[str] = frozenset(CHECKS)
    namespace: str | None = None
    """Only findings about objects in this namespace (and the Namespace itself)."""
    webhook_name: str = WEBHOOK_NAME
    webhook_configuration: str | None = None
    """The MutatingWebhookConfiguration's name, when known; else found by `webhook_name`."""
    opt_in: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_OPT_IN))
    max_findings: int = MAX_FINDINGS
    now: float | None = None
    """Unix time for certificate validity; None: the certificate's dates are not judged."""


@dataclass(frozen=True, slots=True)
class AuditResult:
    findings: tuple[Finding, ...]
    """The findings kept, most severe first, then by check, object and message."""
    counts: dict[tuple[str, Severity], int]
    """Findings per (check, severity), including those not kept."""
    skipped: tuple[tuple[str, str], ...]
    """(check, why) for each selected check the input could not show."""
    objects: dict[str, int]
    notes: tuple[str, ...] = ()

    @property
    def dropped(self) -> int:
        return sum(self.counts.values()) - len(self.findings)

    def total(self, severity: Severity) -> int:
        return sum(n for (_, level), n in self.counts.items() if level == severity)

    @property
    def exit_code(self) -> int:
        """0 when no error finding, 1 when some."""
        return 1 if self.total("error") else 0


def sort_key(finding: Finding) -> tuple[int, str, str, str, str, str]:
    return (
        SEVERITIES.index(finding.severity),
        finding.check,
        finding.object.namespace,
        finding.object.kind,
        finding.object.name,
        finding.message,
    )


def ref_of(obj: Mapping[str, Any], kind: str, api_version: str = "v1") -> ObjectRef:
    """The ObjectRef of an API object (its kind given: list items carry none)."""
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    return ObjectRef(
        kind=kind,
        name=_text(metadata.get("name")),
        namespace=_text(metadata.get("namespace")),
        uid=_text(metadata.get("uid")),
        api_version=_text(obj.get("apiVersion")) or api_version,
    )


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""
