"""AdmissionReview `admission.k8s.io/v1` wire format (edge layer, no HTTP).

Bytes in, bytes out: parse the review the API server sent, ask the core for a decision, and
build the one well-formed response every answer goes through (`build_response`). A body that
is not a review is a `ReviewError` (the server turns it into a 4xx); everything with a uid is
answered with a review that echoes it.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from webhook.mutation import Decision, decide, skipped
from webhook.nads import NadLookup
from webhook.patch import serialize
from webhook.policy import Policy

API_VERSION = "admission.k8s.io/v1"
INTERNAL_ERROR_WARNING = (
    "gpu-rdma-injector: internal error, pod admitted unchanged; see the webhook's logs"
)

_STATUS_REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    408: "Timeout",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    500: "InternalError",
}


class ReviewError(ValueError):
    """A request body that is not an AdmissionReview; answered with `status` and this message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    """The parts of `request` the webhook reads."""

    uid: str
    kind: str
    group: str
    sub_resource: str
    operation: str
    namespace: str
    name: str
    object: Any
    dry_run: bool


def parse_review(body: bytes) -> AdmissionRequest:
    """Decode an AdmissionReview; ReviewError with one line saying what is wrong."""
    try:
        review = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise ReviewError(f"request body is not valid JSON ({error})") from None
    if not isinstance(review, dict):
        raise ReviewError("request body must be a JSON object (an AdmissionReview)")
    if review.get("kind") != "AdmissionReview" or review.get("apiVersion") != API_VERSION:
        raise ReviewError(
            f"request body must be an AdmissionReview {API_VERSION}, got kind "
            f"{review.get('kind')!r} apiVersion {review.get('apiVersion')!r}; register the "
            'webhook with admissionReviewVersions: ["v1"]'
        )
    request = review.get("request")
    if not isinstance(request, dict):
        raise ReviewError("AdmissionReview has no request object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise ReviewError("AdmissionReview request has no uid")
    kind = request.get("kind")
    kind = kind if isinstance(kind, dict) else {}
    obj = request.get("object")
    metadata = obj.get("metadata") if isinstance(obj, dict) else None
    metadata = metadata if isinstance(metadata, dict) else {}
    namespace = request.get("namespace") or metadata.get("namespace") or ""
    name = request.get("name") or metadata.get("name") or ""
    if not name and isinstance(metadata.get("generateName"), str):
        name = metadata["generateName"] + "*"
    return AdmissionRequest(
        uid=uid,
        kind=_text(kind.get("kind")),
        group=_text(kind.get("group")),
        sub_resource=_text(request.get("subResource")),
        operation=_text(request.get("operation")),
        namespace=_text(namespace),
        name=_text(name),
        object=obj,
        dry_run=request.get("dryRun") is True,
    )


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


NamespaceAnnotations = Callable[[str], Mapping[str, str] | None]


def decide_request(
    request: AdmissionRequest,
    policy: Policy,
    nads: NadLookup,
    namespace_annotations: NamespaceAnnotations,
    excluded_namespaces: frozenset[str] = frozenset(),
) -> Decision:
    """The decision for a review: only pod CREATEs are mutated, everything else is allowed as is.

    Pods in the policy's excludedNamespaces (kube-system by default) and in
    `excluded_namespaces` (the webhook's own) are never touched, whatever the registration's
    namespaceSelector says. dryRun requests get the same answer: the webhook has no side effects.
    """
    if request.kind != "Pod" or request.group != "" or request.sub_resource:
        return skipped("not-a-pod")
    if request.operation != "CREATE":
        return skipped("not-a-create")
    if not isinstance(request.object, dict):
        return Decision(
            allowed=False,
            outcome="denied",
            reason="malformed-pod",
            message="the AdmissionReview's request.object is not a pod",
            code=400,
        )
    if request.namespace in policy.excluded_namespaces or request.namespace in excluded_namespaces:
        return skipped("excluded-namespace")
    if not request.namespace:
        return Decision(
            allowed=False,
            outcome="denied",
            reason="no-namespace",
            message="the AdmissionReview names no namespace for the pod",
            code=400,
        )
    return decide(
        request.object, request.namespace, policy, nads, namespace_annotations(request.namespace)
    )


def internal_error() -> Decision:
    """Fail open inside the webhook: the chart's failurePolicy decides what the API server does."""
    return Decision(
        allowed=True, outcome="error", reason="internal-error", warnings=(INTERNAL_ERROR_WARNING,)
    )


def build_response(uid: str, decision: Decision) -> bytes:
    """The AdmissionReview answering `uid`: every answer the webhook gives goes through here."""
    response: dict[str, Any] = {"uid": uid, "allowed": decision.allowed}
    if decision.allowed and decision.patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(serialize(decision.patch)).decode("ascii")
    if not decision.allowed:
        response["status"] = {
            "metadata": {},
            "status": "Failure",
            "message": decision.message,
            "reason": _STATUS_REASONS.get(decision.code, "BadRequest"),
            "code": decision.code,
        }
    if decision.warnings:
        response["warnings"] = list(decision.warnings)
    return orjson.dumps(
        {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}
    )


def error_body(message: str, status: int) -> bytes:
    """A Kubernetes-style Status for requests that are not reviews (4xx answers)."""
    return orjson.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": _STATUS_REASONS.get(status, "BadRequest"),
            "code": status,
        }
    )
