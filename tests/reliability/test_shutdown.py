"""SIGTERM while reviews are in flight: finish them, refuse new connections, exit 0 in time.

The in-flight reviews are made slow from the client side, with no change to the server: each is
a valid review about 1 MiB large (a big unrelated annotation) whose body is sent in pieces over a
couple of seconds. SIGTERM arrives when every one has sent its head and part of its body. Every
one must still be answered 200 with the right patch, a new connection must be refused soon after
the signal, an idle keep-alive connection is closed, and the process exits 0 well within the
chart's terminationGracePeriodSeconds (30); with one process and with `--workers 2`.
Timings: tests/reliability/out/shutdown-*.json.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import pytest
from conftest import decoded_patch
from reliability_support import (
    LONG,
    capture,
    open_tls,
    print_table,
    read_response,
    request_head,
    running_server,
    scaled,
    write_report,
)
from serverproc import ServerProcess

TERMINATION_GRACE_SECONDS = 30  # the chart's terminationGracePeriodSeconds
IN_FLIGHT = scaled(6, 20)
PIECES = 20
PIECE_INTERVAL = 0.1  # 20 pieces, 0.1 s apart: each body takes about 2 s to arrive


def _big_review(index: int) -> bytes:
    review = capture("create-gpu-pod-no-annotations.json")
    review["request"]["uid"] = f"in-flight-{index}"
    # 1 MB in a container's env: a big body whose annotations stay within the API server's limit.
    container = review["request"]["object"]["spec"]["containers"][0]
    container["env"] = [{"name": "BLOB", "value": "b" * 1_000_000}]
    return json.dumps(review).encode()


def _refused(server: ServerProcess) -> bool:
    try:
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


@pytest.mark.slow
@pytest.mark.timeout(scaled(120, 300))
@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])
def test_sigterm_finishes_in_flight_reviews_and_exits_zero(tmp_path: Path, workers: int) -> None:
    """With --workers 2 the parent forwards SIGTERM to each worker; connections are spread by
    SO_REUSEPORT, so the in-flight reviews sit in both."""
    with running_server(tmp_path, ["--workers", str(workers)]) as server:
        bodies = [_big_review(i) for i in range(IN_FLIGHT)]
        sockets = [open_tls(server, timeout=30) for _ in bodies]
        idle = open_tls(server)
        idle.sendall(request_head(len(bodies[0])) + bodies[0])
        assert read_response(idle, 10)[0] == 200  # now an idle keep-alive connection
        for sock, body in zip(sockets, bodies, strict=True):
            sock.sendall(request_head(len(body)) + body[: len(body) // PIECES])

        time.sleep(0.2)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        timings: dict[str, float | None] = {"listener_closed": None}

        piece = len(bodies[0]) // PIECES
        for index in range(1, PIECES + 1):
            time.sleep(PIECE_INTERVAL)
            for sock, body in zip(sockets, bodies, strict=True):
                end = len(body) if index == PIECES else (index + 1) * piece
                sock.sendall(body[index * piece : end])
            if timings["listener_closed"] is None and _refused(server):
                timings["listener_closed"] = round(time.monotonic() - signalled, 3)
        timings["last_body_byte_sent"] = round(time.monotonic() - signalled, 3)

        answers = [read_response(sock, 20) for sock in sockets]
        timings["all_answered"] = round(time.monotonic() - signalled, 3)
        idle.settimeout(5)
        idle_closed = idle.recv(1) == b""
        for sock in [*sockets, idle]:
            sock.close()
        exit_code = server.process.wait(timeout=TERMINATION_GRACE_SECONDS)
        timings["exited"] = round(time.monotonic() - signalled, 3)
        log = server.log()

    report = {
        "in_flight": IN_FLIGHT,
        "body_bytes": len(bodies[0]),
        "seconds_after_sigterm": timings,
        "statuses": [status for status, _ in answers],
        "idle_keep_alive_closed": idle_closed,
        "exit_code": exit_code,
    }
    write_report(f"shutdown-{workers}-worker", report)
    print_table(
        f"shutdown, {workers} worker(s) (seconds after SIGTERM)",
        ["event", "s"],
        list(timings.items()),
    )

    assert exit_code == 0, log
    assert [status for status, _ in answers] == [200] * IN_FLIGHT, answers
    for index, (_, body) in enumerate(answers):
        response = json.loads(body)["response"]
        assert response["uid"] == f"in-flight-{index}"
        assert decoded_patch(response)[0] == {
            "op": "add",
            "path": "/metadata/annotations",
            "value": {"k8s.v1.cni.cncf.io/networks": "sriov-rdma-net"},
        }
    assert timings["listener_closed"] is not None, "new connections were still accepted"
    assert timings["listener_closed"] < 1.0, timings
    assert idle_closed
    assert timings["exited"] < TERMINATION_GRACE_SECONDS, timings
    assert "Shutting down" in log


@pytest.mark.skipif(not LONG, reason="long mode only: waits out uvicorn's 25 s graceful timeout")
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_request_that_never_completes_delays_exit_but_not_past_the_grace_period(
    tmp_path: Path,
) -> None:
    """The stalled body is answered 408 after 10 s, but a client that then neither reads nor
    closes keeps the TLS connection until its close_notify exchange times out, so uvicorn
    waits out its graceful timeout: still within the chart's grace period."""
    with running_server(tmp_path) as server:
        stalled = open_tls(server)
        stalled.sendall(request_head(1_000_000) + b" " * 1000)
        time.sleep(0.2)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        exit_code = server.process.wait(timeout=TERMINATION_GRACE_SECONDS + 10)
        took = time.monotonic() - signalled
        stalled.close()
    write_report("shutdown-stalled", {"exit_code": exit_code, "seconds_to_exit": round(took, 2)})
    assert exit_code == 0
    assert took < TERMINATION_GRACE_SECONDS, took


LOGGED_REVIEWS = 300


@pytest.mark.timeout(scaled(120, 300))
@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])
def test_sigterm_loses_no_admission_line(tmp_path: Path, workers: int) -> None:
    """Admission lines are written in batches (webhook.logs): the lines of the reviews answered
    just before SIGTERM are still waiting for their batch when it arrives, and must all be in
    the log when the process has exited."""
    # A batch gathers for 10 s here: the lines of the last reviews are surely still waiting.
    args = ["--workers", str(workers), "--log-flush-interval", "10"]
    with running_server(tmp_path, args) as server:
        template = capture("create-gpu-pod-no-annotations.json")
        connections = [open_tls(server) for _ in range(4)]
        for index in range(LOGGED_REVIEWS):
            template["request"]["uid"] = f"logged-{index}"
            body = json.dumps(template).encode()
            sock = connections[index % len(connections)]
            sock.sendall(request_head(len(body)) + body)
            assert read_response(sock, 10)[0] == 200
        server.process.send_signal(signal.SIGTERM)  # at once: the last batch is still waiting
        for sock in connections:
            sock.close()
        assert server.process.wait(timeout=TERMINATION_GRACE_SECONDS) == 0
        log = server.log()

    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    logged = [entry["uid"] for entry in entries if entry.get("msg") == "admission"]
    assert sorted(logged) == sorted(f"logged-{index}" for index in range(LOGGED_REVIEWS))
    assert len(logged) == LOGGED_REVIEWS  # each once
