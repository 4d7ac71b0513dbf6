"""The app in-process: one place turns a crash inside the decision into a safe answer."""

from __future__ import annotations

import json

import pytest
from conftest import FIXTURES, AppClient

from webhook.mutation import Decision
from webhook.policy import default_policy
from webhook.reload import PolicyStore
from webhook.server import AppContext, create_app

BODY = (FIXTURES / "admission-reviews" / "create-gpu-pod-no-annotations.json").read_bytes()
JSON = {"content-type": "application/json"}


def broken(*_args: object) -> Decision:
    raise RuntimeError("a bug")


def test_a_crash_in_the_decision_refuses_the_pod_with_code_500_by_default() -> None:
    context = AppContext(policy=PolicyStore(default_policy()))
    answer = AppClient(create_app(context, decide=broken)).post(
        "/mutate", content=BODY, headers=JSON
    )
    assert answer.status_code == 200
    response = answer.json()["response"]
    assert response["uid"] == json.loads(BODY)["request"]["uid"]
    assert response["allowed"] is False
    assert "patch" not in response
    assert response["status"]["code"] == 500
    assert "internal error" in response["status"]["message"]
    metrics = context.metrics.render().decode()
    assert 'gpu_rdma_injector_internal_errors_total{answer="deny"} 1.0' in metrics
    assert 'outcome="error"' in metrics


def test_a_crash_in_the_decision_admits_the_pod_unchanged_when_told_to_allow() -> None:
    context = AppContext(policy=PolicyStore(default_policy()), on_internal_error="allow")
    answer = AppClient(create_app(context, decide=broken)).post(
        "/mutate", content=BODY, headers=JSON
    )
    assert answer.status_code == 200
    response = answer.json()["response"]
    assert response["uid"] == json.loads(BODY)["request"]["uid"]
    assert response["allowed"] is True
    assert "patch" not in response
    assert response["warnings"] == [
        "gpu-rdma-injector: internal error, pod admitted unchanged; see the webhook's logs"
    ]
    metrics = context.metrics.render().decode()
    assert 'gpu_rdma_injector_internal_errors_total{answer="allow"} 1.0' in metrics


def test_the_decision_seam_receives_the_review_and_the_facts() -> None:
    seen = []

    def spy(*args: object) -> Decision:
        seen.append(args)
        return Decision(allowed=True, outcome="unchanged", reason="spy")

    context = AppContext(policy=PolicyStore(default_policy()))
    answer = AppClient(create_app(context, decide=spy)).post("/mutate", content=BODY, headers=JSON)
    assert answer.json()["response"] == {"uid": json.loads(BODY)["request"]["uid"], "allowed": True}
    ((request, policy, nads, namespaces, _excluded),) = seen
    assert request.namespace == "team-a"
    assert (policy, nads, namespaces) == (context.policy.current, context.nads, context.namespaces)


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect"])
def test_no_openapi_document_or_docs_pages(path: str) -> None:
    answer = AppClient(create_app(AppContext(policy=PolicyStore(default_policy())))).get(path)
    assert answer.status_code == 404


def test_readiness_lists_every_reason() -> None:
    context = AppContext(policy=PolicyStore(default_policy()))
    context.readiness_checks.append(lambda: "caches not synced")
    answer = AppClient(create_app(context)).get("/readyz")
    assert answer.status_code == 503
    assert answer.text == "TLS certificate not loaded\ncaches not synced\n"


def test_wrong_method_on_mutate() -> None:
    context = AppContext(policy=PolicyStore(default_policy()))
    answer = AppClient(create_app(context)).get("/mutate")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"
