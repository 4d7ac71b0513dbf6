"""AdmissionReview parsing and the single response builder."""

from __future__ import annotations

import base64
import json

import orjson
import pytest
from conftest import FIXTURES
from hypothesis import given
from hypothesis import strategies as st

from webhook.admission import (
    ReviewError,
    build_response,
    decide_request,
    error_body,
    internal_error,
    parse_review,
    response_head,
    response_tail,
)
from webhook.mutation import NO_NADS, Decision, denied
from webhook.nads import NO_NAMESPACES
from webhook.patch import Op, serialize
from webhook.policy import default_policy

REAL = FIXTURES / "admission-reviews"


def test_parse_real_generate_name_review() -> None:
    request = parse_review(
        (REAL / "create-generatename-json-annotation-sidecar-8gpu.json").read_bytes()
    )
    assert request.uid == "eb0a5339-c084-4404-9204-e68ce8032c87"
    assert (request.kind, request.operation, request.namespace) == ("Pod", "CREATE", "team-a")
    assert request.name == "llm-train-*"
    assert request.dry_run is False


def test_parse_real_dry_run() -> None:
    assert parse_review((REAL / "create-dry-run.json").read_bytes()).dry_run is True


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"kind": "Pod"}', "must be an AdmissionReview admission.k8s.io/v1"),
        (b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1beta1"}', "v1beta1"),
        (b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}', "no request object"),
        (
            b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {}}',
            "no uid",
        ),
        (
            b'{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":7}}',
            "no uid",
        ),
    ],
)
def test_not_a_review(body: bytes, fragment: str) -> None:
    with pytest.raises(ReviewError) as caught:
        parse_review(body)
    assert fragment in str(caught.value)
    assert caught.value.status == 400


def _request(**overrides: object) -> bytes:
    review = json.loads((REAL / "create-gpu-pod-no-annotations.json").read_bytes())
    review["request"].update(overrides)
    return json.dumps(review).encode()


def _decide(body: bytes):  # type: ignore[no-untyped-def]
    return decide_request(parse_review(body), default_policy(), NO_NADS, NO_NAMESPACES)


def test_only_pod_creates_are_mutated() -> None:
    assert _decide(_request()).outcome == "mutated"
    assert _decide(_request(operation="UPDATE")).reason == "not-a-create"
    assert (
        _decide(_request(kind={"group": "", "version": "v1", "kind": "Service"})).reason
        == "not-a-pod"
    )
    assert _decide(_request(subResource="ephemeralcontainers")).reason == "not-a-pod"
    assert (
        _decide(_request(kind={"group": "apps", "version": "v1", "kind": "Pod"})).reason
        == "not-a-pod"
    )


def test_object_not_a_pod_and_missing_namespace_are_denied() -> None:
    assert (
        _decide(_request(object=[1])).message == "the AdmissionReview's request.object is not a pod"
    )
    review = json.loads(_request(namespace=None))
    review["request"]["object"]["metadata"].pop("namespace")
    assert _decide(json.dumps(review).encode()).reason == "no-namespace"


def test_response_with_patch() -> None:
    decision = _decide(_request())
    review = json.loads(build_response("u-1", decision))
    assert review["apiVersion"] == "admission.k8s.io/v1"
    assert review["kind"] == "AdmissionReview"
    response = review["response"]
    assert response["uid"] == "u-1"
    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(response["patch"]))[0]["path"] == "/metadata/annotations"
    assert "status" not in response


def test_response_denied_has_status_and_no_patch() -> None:
    review = json.loads(build_response("u-2", denied("bad value", 403, "x")))
    assert review["response"] == {
        "uid": "u-2",
        "allowed": False,
        "status": {
            "metadata": {},
            "status": "Failure",
            "message": "bad value",
            "reason": "Forbidden",
            "code": 403,
        },
    }


def test_internal_error_allowed_admits_with_a_warning() -> None:
    response = json.loads(build_response("u-3", internal_error("allow")))["response"]
    assert response["allowed"] is True
    assert "patch" not in response
    assert "status" not in response
    assert response["warnings"][0].startswith("gpu-rdma-injector: internal error")


def test_internal_error_denied_refuses_with_code_500_and_one_sentence() -> None:
    response = json.loads(build_response("u-4", internal_error("deny")))["response"]
    assert response["uid"] == "u-4"
    assert response["allowed"] is False
    assert "patch" not in response
    assert "warnings" not in response
    status = response["status"]
    assert (status["code"], status["reason"], status["status"]) == (500, "InternalError", "Failure")
    assert status["message"].count(". ") == 0
    assert "\n" not in status["message"]
    assert "failurePolicy Fail" in status["message"]


def test_error_body_is_a_status() -> None:
    assert json.loads(error_body("nope", 413)) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "nope",
        "reason": "RequestEntityTooLarge",
        "code": 413,
    }


def test_excluded_namespaces_are_never_mutated() -> None:
    request = parse_review(_request(namespace="gpu-rdma-injector"))
    own = frozenset({"gpu-rdma-injector"})
    decision = decide_request(request, default_policy(), NO_NADS, NO_NAMESPACES, own)
    assert (decision.outcome, decision.reason) == ("skipped", "excluded-namespace")
    kube_system = parse_review(_request(namespace="kube-system"))
    assert _decide(json.dumps(json.loads(_request(namespace="kube-system"))).encode()).reason == (
        "excluded-namespace"
    )
    assert decide_request(kube_system, default_policy(), NO_NADS, NO_NAMESPACES).patch == ()


_DECISIONS = st.builds(
    Decision,
    allowed=st.booleans(),
    outcome=st.sampled_from(["mutated", "unchanged", "skipped", "denied", "error"]),
    reason=st.text(max_size=20),
    patch=st.lists(
        st.builds(
            Op,
            op=st.sampled_from(["add", "replace", "remove"]),
            path=st.text(max_size=30),
            value=st.one_of(st.text(), st.integers(0, 64), st.dictionaries(st.text(), st.text())),
        ),
        max_size=4,
    ).map(tuple),
    warnings=st.lists(st.text(max_size=40), max_size=3).map(tuple),
    message=st.text(max_size=40),
    code=st.sampled_from([200, 400, 403, 422, 500, 599]),
)


@given(uid=st.text(), decision=_DECISIONS)
def test_the_answer_in_two_pieces_is_the_whole_review_as_orjson_writes_it(
    uid: str, decision: Decision
) -> None:
    """`build_response` writes head and tail separately (the tail is what is kept); the bytes
    are those of the whole typed review serialised at once."""
    response: dict[str, object] = {"uid": uid, "allowed": decision.allowed}
    if decision.allowed and decision.patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(serialize(decision.patch)).decode("ascii")
    if not decision.allowed:
        response["status"] = json.loads(build_response("x", decision))["response"]["status"]
    if decision.warnings:
        response["warnings"] = list(decision.warnings)
    whole = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
    assert build_response(uid, decision) == orjson.dumps(whole)
    assert build_response(uid, decision) == response_head(uid) + response_tail(decision)
