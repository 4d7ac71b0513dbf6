"""One pod asking for a huge count of an SR-IOV resource must not take the webhook down.

The API server accepts `openshift.io/mellanoxnics: "1000000"` as a quantity and calls the webhook
before it validates anything else, so any user who may create pods in an opted-in namespace can
send it. The decision once appended one attachment per missing unit, each append scanning every
entry so far (quadratic), on the event loop: the process stopped answering everything, /healthz
included, for minutes. Now a pod that would need more than 256 attachments is denied at once,
whatever the count. Timings: tests/reliability/out/resource-bombs.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from reliability_support import (
    capture,
    open_tls,
    read_response,
    request_head,
    running_server,
    tls_context,
    write_report,
)

from webhook.mutation import decide
from webhook.policy import default_policy

GPU_REVIEW = "create-gpu-pod-no-annotations.json"
NIC = "openshift.io/mellanoxnics"


def _review_asking_for(units: int) -> dict:  # type: ignore[type-arg]
    review = capture(GPU_REVIEW)
    resources = review["request"]["object"]["spec"]["containers"][0]["resources"]
    resources["limits"][NIC] = resources["requests"][NIC] = str(units)
    return review


def _is_the_attachment_limit(message: str) -> bool:
    return "at most 256 per pod are supported" in message and "\n" not in message


def test_a_huge_resource_count_is_denied_by_the_attachment_bound() -> None:
    """Every count past 256 attachments is denied the same way, whatever its size (the time each
    took goes to the report, not into an assertion)."""
    timings = {}
    for units in (257, 1000, 8000, 1_000_000):
        pod = _review_asking_for(units)["request"]["object"]
        started = time.perf_counter()
        decision = decide(pod, "team-a", default_policy())
        timings[str(units)] = round(time.perf_counter() - started, 4)
        assert (decision.allowed, decision.reason, decision.code) == (
            False,
            "too-many-attachments",
            400,
        )
        assert _is_the_attachment_limit(decision.message), decision.message
    at_limit = decide(_review_asking_for(256)["request"]["object"], "team-a", default_policy())
    assert at_limit.allowed
    write_report("resource-bombs", {"decide_seconds_by_units": timings})


def test_the_real_server_answers_the_bomb_and_keeps_serving(tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        body = json.dumps(_review_asking_for(1_000_000)).encode()
        bomb = open_tls(server)
        try:
            bomb.sendall(request_head(len(body)) + body)
            status, answer = read_response(bomb, 30)
        finally:
            bomb.close()
        assert status == 200
        response = json.loads(answer)["response"]
        assert response["allowed"] is False
        assert _is_the_attachment_limit(response["status"]["message"])
        with httpx.Client(verify=tls_context(server), timeout=10) as client:
            assert client.get(f"{server.url}/healthz").status_code == 200
