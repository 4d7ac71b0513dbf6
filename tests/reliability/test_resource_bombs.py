"""One pod asking for a huge count of an SR-IOV resource must not take the webhook down.

The API server accepts `openshift.io/mellanoxnics: "1000000"` as a quantity and calls the webhook
before it validates anything else, so any user who may create pods in an opted-in namespace can
send it. Today the decision appends one attachment per missing unit, and each append scans every
entry so far (quadratic), on the event loop: the process stops answering everything, /healthz
included, for minutes to hours. Timings: tests/reliability/out/resource-bombs.json.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
from reliability_support import (
    capture,
    open_tls,
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


def test_a_huge_resource_count_does_not_stall_the_server(tmp_path: Path) -> None:
    timings = {}
    for units in (1000, 2000, 4000, 8000):
        pod = _review_asking_for(units)["request"]["object"]
        started = time.perf_counter()
        decide(pod, "team-a", default_policy())
        timings[str(units)] = round(time.perf_counter() - started, 3)
    report: dict[str, object] = {"decide_seconds_by_units": timings}
    try:
        with running_server(tmp_path) as server:
            body = json.dumps(_review_asking_for(1_000_000)).encode()
            bomb = open_tls(server)
            bomb.sendall(request_head(len(body)) + body)
            time.sleep(0.3)
            started = time.monotonic()
            try:
                with httpx.Client(verify=tls_context(server), timeout=2) as client:
                    health = client.get(f"{server.url}/healthz").status_code
            except httpx.TimeoutException:
                health = None
            report["healthz_while_deciding"] = health
            report["healthz_seconds"] = round(time.monotonic() - started, 3)
            bomb.close()
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGKILL)  # stuck in the decision: no grace
    finally:
        write_report("resource-bombs", report)
    assert health == 200, (
        f"/healthz did not answer within 2 s while one review was decided: {report}"
    )
