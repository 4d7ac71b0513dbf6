"""Audit checks on the webhook's registration (core layer): webhook-config, not-opted-in.

The webhook's own entry (named `pods.gpu-rdma-injector.io` by the chart) is looked for in the
MutatingWebhookConfigurations the input shows: a missing entry means no pod is ever sent to
it; a caBundle that holds no certificate, or none that signed the serving certificate the audit
can see, means every call fails TLS verification; `failurePolicy: Ignore` means pods start
unchanged whenever the webhook is down (info: a choice, but worth knowing). The entry's
namespaceSelector, evaluated as the API server evaluates it, then tells which namespaces with
GPU pods the webhook never sees; without an entry, the chart's default opt-in label is assumed.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from webhook.findings import AuditOptions, Finding, ObjectRef, ref_of
from webhook.pod_networks import PodView
from webhook.policy import Policy

CONFIGURATION_KIND = "MutatingWebhookConfiguration"
CONFIGURATION_API = "admissionregistration.k8s.io/v1"
NAME_LABEL = "kubernetes.io/metadata.name"

Entry = tuple[ObjectRef, Mapping[str, Any]]


def our_entries(configurations: Sequence[Mapping[str, Any]], options: AuditOptions) -> list[Entry]:
    """(configuration, webhook) for each registration of this webhook."""
    found: list[Entry] = []
    for configuration in configurations:
        ref = ref_of(configuration, CONFIGURATION_KIND, CONFIGURATION_API)
        if options.webhook_configuration and ref.name != options.webhook_configuration:
            continue
        found.extend(
            (ref, webhook)
            for webhook in configuration.get("webhooks") or ()
            if isinstance(webhook, Mapping) and webhook.get("name") == options.webhook_name
        )
    return found


def registration(
    entries: Sequence[Entry], serving_certificate: bytes | None, options: AuditOptions
) -> Iterator[Finding]:
    if not entries:
        yield Finding(
            "webhook-config",
            "error",
            ObjectRef(
                CONFIGURATION_KIND,
                options.webhook_configuration or options.webhook_name,
                api_version=CONFIGURATION_API,
            ),
            f"No MutatingWebhookConfiguration holds the webhook {options.webhook_name}: the API "
            "server sends it no pod, so nothing is injected or refused.",
            "Install the chart (or restore its MutatingWebhookConfiguration) and check it with "
            "kubectl get mutatingwebhookconfigurations.",
        )
        return
    for ref, webhook in entries:
        problem = _ca_problem(webhook, serving_certificate, options.now)
        if problem:
            yield Finding(
                "webhook-config",
                "error",
                ref,
                f"Its caBundle {problem}: every call fails TLS verification, so pods are "
                f"{'admitted unchanged' if _fails_open(webhook) else 'refused'}.",
                "Put the CA that signed the serving certificate in the caBundle: self-signed mode "
                "writes it at start (see the webhook's logs), cert-manager's cainjector in its "
                "mode, certificates.secret.caBundle in secret mode.",
            )
        elif _fails_open(webhook):
            yield Finding(
                "webhook-config",
                "info",
                ref,
                "Its failurePolicy is Ignore: whenever the webhook is down, GPU pods start "
                "without their RDMA network and nobody is told.",
                "Set webhook.failurePolicy: Fail in the chart, with 2 or more replicas.",
            )


def not_opted_in(
    pods: Sequence[PodView],
    namespaces: Sequence[Mapping[str, Any]],
    entries: Sequence[Entry],
    policy: Policy,
    options: AuditOptions,
) -> Iterator[Finding]:
    gpu_pods: dict[str, int] = {}
    for pod in pods:
        if pod.active and pod.gpus:
            gpu_pods[pod.namespace] = gpu_pods.get(pod.namespace, 0) + 1
    selectors = [webhook.get("namespaceSelector") or {} for _, webhook in entries] or [
        {"matchLabels": dict(options.opt_in)}
    ]
    for namespace in namespaces:
        ref = ref_of(namespace, "Namespace")
        count = gpu_pods.get(ref.name, 0)
        if not count or ref.name in policy.excluded_namespaces:
            continue
        labels = {**_labels(namespace), NAME_LABEL: ref.name}
        if any(matches(selector, labels) for selector in selectors):
            continue
        if any(_excluded_by_name(selector, ref.name) for selector in selectors):
            continue  # left out on purpose (kube-system, the webhook's own namespace)
        wanted = ", ".join(
            f"{key}={value}" for key, value in (selectors[0].get("matchLabels") or {}).items()
        )
        yield Finding(
            "not-opted-in",
            "warning",
            ref,
            f"It has {count} GPU pod{'s' if count > 1 else ''}, but its labels do not match the "
            f"webhook's namespaceSelector{f' ({wanted})' if wanted else ''}: the webhook never "
            "sees its pods.",
            f"Label it (kubectl label namespace {ref.name} {wanted or '<the opt-in label>'}) "
            "so new pods get their RDMA network, then recreate the running ones.",
        )


def matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector evaluated as the API server does ({} matches everything)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or ():
        key, operator = expression.get("key"), expression.get("operator")
        values = expression.get("values") or ()
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _excluded_by_name(selector: Mapping[str, Any], name: str) -> bool:
    return any(
        expression.get("key") == NAME_LABEL
        and expression.get("operator") == "NotIn"
        and name in (expression.get("values") or ())
        for expression in selector.get("matchExpressions") or ()
    )


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    metadata = obj.get("metadata")
    labels = metadata.get("labels") if isinstance(metadata, Mapping) else None
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else {}


def _fails_open(webhook: Mapping[str, Any]) -> bool:
    return webhook.get("failurePolicy") == "Ignore"


def _ca_problem(
    webhook: Mapping[str, Any], serving_certificate: bytes | None, now: float | None
) -> str | None:
    """What is wrong with the entry's caBundle, or None."""
    client = webhook.get("clientConfig")
    bundle = client.get("caBundle") if isinstance(client, Mapping) else None
    if not bundle:
        return "is empty"
    try:
        pem = base64.b64decode(str(bundle), validate=True)
        authorities = x509.load_pem_x509_certificates(pem)
    except (binascii.Error, ValueError):
        return "holds no PEM certificate"
    if serving_certificate is None:
        return None
    try:
        chain = x509.load_pem_x509_certificates(serving_certificate)
    except ValueError:
        return None  # the serving file is the webhook's concern, not the registration's
    when = datetime.fromtimestamp(now, UTC) if now is not None else None
    if not _issued_by_any(chain, authorities, when):
        issuer = chain[0].issuer.rfc4514_string() or "an unnamed CA"
        return f"does not verify the serving certificate (issued by {issuer})"
    return None


def _issued_by_any(
    chain: Sequence[x509.Certificate],
    authorities: Sequence[x509.Certificate],
    when: datetime | None,
) -> bool:
    """Whether the leaf, directly or through the chain's intermediates, was issued by one of
    the authorities, every certificate on the way valid at `when` (when given)."""
    leaf, intermediates = chain[0], list(chain[1:])
    current, seen = leaf, 0
    while seen <= len(intermediates):
        if (
            when is not None
            and not current.not_valid_before_utc <= when <= current.not_valid_after_utc
        ):
            return False
        for authority in authorities:
            if _signed(current, authority):
                return when is None or (
                    authority.not_valid_before_utc <= when <= authority.not_valid_after_utc
                )
        parent = next((c for c in intermediates if _signed(current, c)), None)
        if parent is None:
            return False
        current, seen = parent, seen + 1
    return False


def _signed(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
