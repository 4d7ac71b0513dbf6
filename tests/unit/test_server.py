"""The app in-process: one place turns a crash inside the decision into a safe answer."""

from __future__ import annotations

import json

import pytest
from conftest import FIXTURES, AppClient

from webhook import server
from webhook.policy import default_policy
from webhook.reload import PolicyStore
from webhook.server import AppContext, create_app

BODY = (FIXTURES / "admission-reviews" / "create-gpu-pod-no-annotations.json").read_bytes()
JSON = {"content-type": "application/json"}


def test_a_crash_in_the_decision_admits_the_pod_unchanged_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(server, "decide_request", broken)
    context = AppContext(policy=PolicyStore(default_policy()))
    answer = AppClient(create_app(context)).post("/mutate", content=BODY, headers=JSON)
    assert answer.status_code == 200
    response = answer.json()["response"]
    assert response["uid"] == json.loads(BODY)["request"]["uid"]
    assert response["allowed"] is True
    assert "patch" not in response
    assert response["warnings"] == [
        "gpu-rdma-injector: internal error, pod admitted unchanged; see the webhook's logs"
    ]
    assert 'outcome="error"' in context.metrics.render().decode()


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
