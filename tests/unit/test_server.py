"""The app in-process: one place turns a crash inside the decision into a safe answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
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


def _crash(context: AppContext) -> tuple[dict[str, object], str]:
    """A review answered by an app whose decision crashes: (its response, the metrics)."""
    answer = AppClient(create_app(context, decide=broken)).post(
        "/mutate", content=BODY, headers=JSON
    )
    assert answer.status_code == 200
    response = answer.json()["response"]
    assert response["uid"] == json.loads(BODY)["request"]["uid"]
    assert "patch" not in response
    return response, context.metrics.render().decode()


def test_a_crash_in_the_decision_refuses_the_pod_with_code_500_by_default() -> None:
    response, metrics = _crash(AppContext(policy=PolicyStore(default_policy())))
    assert response["allowed"] is False
    status = response["status"]
    assert isinstance(status, dict)
    assert status["code"] == 500
    assert "internal error" in status["message"]
    assert 'gpu_rdma_injector_internal_errors_total{answer="deny"} 1.0' in metrics
    assert 'outcome="error"' in metrics


def test_a_crash_in_the_decision_admits_the_pod_unchanged_when_told_to_allow() -> None:
    context = AppContext(policy=PolicyStore(default_policy()), on_internal_error="allow")
    response, metrics = _crash(context)
    assert response["allowed"] is True
    assert response["warnings"] == [
        "gpu-rdma-injector: internal error, pod admitted unchanged; see the webhook's logs"
    ]
    assert 'gpu_rdma_injector_internal_errors_total{answer="allow"} 1.0' in metrics


def test_the_decision_seam_receives_the_review_and_the_facts() -> None:
    seen = []

    def spy(*args: object) -> Decision:
        seen.append(args)
        return Decision(allowed=True, outcome="unchanged", reason="spy")

    context = AppContext(policy=PolicyStore(default_policy()))
    answer = AppClient(create_app(context, decide=spy)).post("/mutate", content=BODY, headers=JSON)
    assert answer.json()["response"] == {"uid": json.loads(BODY)["request"]["uid"], "allowed": True}
    ((request, policy, nads, namespaces, _excluded, claims),) = seen
    assert request.namespace == "team-a"
    assert (policy, nads, namespaces, claims) == (
        context.policy.current,
        context.nads,
        context.namespaces,
        context.claims,
    )


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


def test_the_body_budget_takes_a_body_at_the_limit_and_refuses_one_past_it() -> None:
    context = AppContext(policy=PolicyStore(default_policy()), body_budget=1000)
    client = AppClient(create_app(context))
    at_limit = client.post("/mutate", content=b"{" + b" " * 999, headers=JSON)
    assert at_limit.status_code == 400  # read and judged: not a review
    past = client.post("/mutate", content=b"{" + b" " * 1000, headers=JSON)
    assert past.status_code == 503
    assert past.headers["connection"] == "close"
    assert past.json()["message"] == (
        "the webhook is already receiving 1000 bytes of request bodies; retry"
    )


def test_bodies_in_flight_share_the_budget() -> None:
    """While one body of 600 bytes is arriving, a second of 600 does not fit in 1000; once the
    first is answered its bytes are free again."""
    app = create_app(AppContext(policy=PolicyStore(default_policy()), body_budget=1000))
    release = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b"{" + b" " * 299
        await release.wait()
        yield b" " * 300

    async def scenario() -> tuple[int, int, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://t") as client:
            headers = {**JSON, "content-length": "600"}
            first = asyncio.create_task(
                client.post("/mutate", content=slow_body(), headers=headers)
            )
            await asyncio.sleep(0)  # let the first request start
            for _ in range(100):
                second = await client.post("/mutate", content=b"{" + b" " * 599, headers=JSON)
                if second.status_code == 503:
                    break
                await asyncio.sleep(0.01)
            release.set()
            first_status = (await first).status_code
            third = await client.post("/mutate", content=b"{" + b" " * 599, headers=JSON)
            return first_status, second.status_code, third.status_code

    assert asyncio.run(scenario()) == (400, 503, 400)
