"""AdmissionReview `admission.k8s.io/v1` wire format (wire layer: no HTTP, no cluster).

Bytes in, bytes out: parse the review the API server sent, ask the core for a decision, and
build the one well-formed response every answer goes through (`build_response`). The wire
format is typed (TypedDicts, after kopf's reviews): what arrives is checked field by field into
an `AdmissionRequest`; what leaves is a `ResponseReview`. A body that is not a review is a
`ReviewError` (the server turns it into a 4xx); everything with a uid is answered with a review
that echoes it. In warn mode (the policy's `mode: warn`) the decision is answered as warnings
only: admitted, never patched (webhook.warn_mode).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, Protocol, TypedDict

import orjson

from webhook.claims import NO_CLAIMS, ClaimLookup
from webhook.messages import quote
from webhook.mutation import Decision, decide, skipped
from webhook.nads import NadLookup, NamespaceLookup
from webhook.patch import serialize
from webhook.policy import Policy
from webhook.warn_mode import warn_only

API_VERSION = "admission.k8s.io/v1"
INTERNAL_ERROR_WARNING = (
    "gpu-rdma-injector: internal error, pod admitted unchanged; see the webhook's logs"
)
INTERNAL_ERROR_MESSAGE = (
    "gpu-rdma-injector failed to decide on this pod (an internal error, logged by the webhook); "
    "the pod is refused as its failurePolicy Fail asks, so retry or ask the cluster admin"
)

InternalErrorAnswer = Literal["deny", "allow"]


class GroupVersionKind(TypedDict):
    group: str
    version: str
    kind: str


class RequestPayload(TypedDict, total=False):
    """`request` of an AdmissionReview, as the API server sends it (the fields read here)."""

    uid: str
    kind: GroupVersionKind
    subResource: str
    operation: Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
    namespace: str
    name: str
    object: dict[str, Any]
    dryRun: bool


class RequestReview(TypedDict):
    apiVersion: str
    kind: Literal["AdmissionReview"]
    request: RequestPayload


class StatusPayload(TypedDict):
    """A `metav1.Status` (denials in a review; bodies of 4xx answers)."""

    metadata: dict[str, str]
    status: Literal["Failure"]
    message: str
    reason: str
    code: int


class ResponseTail(TypedDict):
    """`response` without its uid: what every review with the same decision is answered."""

    allowed: bool
    patchType: NotRequired[Literal["JSONPatch"]]
    patch: NotRequired[str]
    status: NotRequired[StatusPayload]
    warnings: NotRequired[list[str]]


class ResponsePayload(ResponseTail):
    uid: str


class ResponseReview(TypedDict):
    apiVersion: str
    kind: Literal["AdmissionReview"]
    response: ResponsePayload


_STATUS_REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    408: "Timeout",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    431: "RequestHeaderFieldsTooLarge",
    422: "Invalid",
    500: "InternalError",
    503: "ServiceUnavailable",
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
            f"{quote(review.get('kind'), 80)} apiVersion {quote(review.get('apiVersion'), 80)}; "
            "register the "
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


class Decide(Protocol):
    """How a review is decided: `decide_request`, or whatever a test puts behind the app."""

    def __call__(
        self,
        request: AdmissionRequest,
        policy: Policy,
        nads: NadLookup,
        namespaces: NamespaceLookup,
        excluded_namespaces: frozenset[str] = frozenset(),
        claims: ClaimLookup = NO_CLAIMS,
    ) -> Decision: ...


def decide_request(
    request: AdmissionRequest,
    policy: Policy,
    nads: NadLookup,
    namespaces: NamespaceLookup,
    excluded_namespaces: frozenset[str] = frozenset(),
    claims: ClaimLookup = NO_CLAIMS,
) -> Decision:
    """The decision for a review: only pod CREATEs are mutated, everything else is allowed as is.

    Pods in the policy's excludedNamespaces (kube-system by default) and in
    `excluded_namespaces` (the webhook's own) are never touched, whatever the registration's
    namespaceSelector says. dryRun requests get the same answer: the webhook has no side effects.
    With the policy's `mode: warn` the same decision is only said (webhook.warn_mode).
    """
    decision = _enforced(request, policy, nads, namespaces, excluded_namespaces, claims)
    return decision if policy.mode == "enforce" else warn_only(decision, request.object)


def _enforced(
    request: AdmissionRequest,
    policy: Policy,
    nads: NadLookup,
    namespaces: NamespaceLookup,
    excluded_namespaces: frozenset[str],
    claims: ClaimLookup,
) -> Decision:
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
        request.object,
        request.namespace,
        policy,
        nads,
        namespaces.annotations(request.namespace),
        claims,
    )


def internal_error(answer: InternalErrorAnswer) -> Decision:
    """The answer to a review whose decision failed with a bug.

    A 200 `allowed: true` is not a failed call, so the API server would not apply the
    registration's failurePolicy: `deny` refuses the pod with code 500 (as failurePolicy Fail
    would), `allow` admits it unchanged with a warning (as Ignore would).
    """
    if answer == "deny":
        return Decision(
            allowed=False,
            outcome="error",
            reason="internal-error",
            message=INTERNAL_ERROR_MESSAGE,
            code=500,
        )
    return Decision(
        allowed=True, outcome="error", reason="internal-error", warnings=(INTERNAL_ERROR_WARNING,)
    )


def build_response(uid: str, decision: Decision) -> bytes:
    """The AdmissionReview answering `uid`: every answer the webhook gives goes through here.

    The bytes are those of `orjson.dumps` of the whole `ResponseReview`, uid first in
    `response`, written in two pieces: `response_head(uid)` and `response_tail(decision)`, the
    part that is the same for every review with this decision (and can be kept)."""
    return response_head(uid) + response_tail(decision)


# {"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":
_HEAD = (
    orjson.dumps({"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": {}})[:-2]
    + b'"uid":'
)


def response_head(uid: str) -> bytes:
    """The answer's bytes up to and with the uid."""
    return _HEAD + orjson.dumps(uid)


def response_tail(decision: Decision) -> bytes:
    """The answer's bytes after the uid: `,"allowed":...}}`."""
    response: ResponseTail = {"allowed": decision.allowed}
    if decision.allowed and decision.patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(serialize(decision.patch)).decode("ascii")
    if not decision.allowed:
        response["status"] = _status(decision.message, decision.code)
    if decision.warnings:
        response["warnings"] = list(decision.warnings)
    return b"," + orjson.dumps(response)[1:] + b"}"


def _status(message: str, code: int) -> StatusPayload:
    return {
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": _STATUS_REASONS.get(code, "BadRequest"),
        "code": code,
    }


def error_body(message: str, status: int) -> bytes:
    """A Kubernetes-style Status for requests that are not reviews (4xx answers)."""
    return orjson.dumps({"kind": "Status", "apiVersion": "v1", **_status(message, status)})
