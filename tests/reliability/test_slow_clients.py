"""Slow and stalled clients against the real `serve` process over TLS.

- Slowloris: N connections complete the TLS handshake, then send the request head one byte every
  0.5 s; meanwhile normal reviews keep being answered, with latency measured.
- Stalled probes, opened at the start and left alone: a request head cut off half-way, a head
  announcing a 1 MiB body of which 1 KiB arrives, a TCP connection that never starts TLS, and an
  idle keep-alive connection after one answered request. A watcher records when (if ever) the
  server closes each one.

What the server does: an idle keep-alive connection is closed after uvicorn's
`timeout_keep_alive` (5 s); a request head must be complete within 10 s (webhook.protocol) and a
body within 10 s of its head (webhook.server, answered 408 and closed); a TCP connection that
never starts TLS is closed by the TLS handshake deadline (10 s, webhook.listener). The timeline is
written to tests/reliability/out/slow-clients.json.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from reliability_support import (
    JSON_HEADERS,
    capture,
    open_tls,
    peer_closed,
    percentile,
    print_table,
    read_response,
    request_head,
    running_server,
    scaled,
    tls_context,
    write_report,
)
from serverproc import ServerProcess

SLOWLORIS_CONNECTIONS = scaled(50, 200)
TRICKLE_SECONDS = scaled(10.0, 60.0)
TRICKLE_INTERVAL = 0.5
STALL_LIMIT = 10.0
"""How long a half-sent request may sit before the server should give up on it. The API server
abandons a webhook call after the registration's timeoutSeconds (chart default 5, at most 30)."""
OBSERVE_SECONDS = STALL_LIMIT + 1
REVIEW = json.dumps(capture("create-gpu-pod-no-annotations.json")).encode()


@dataclass
class Probe:
    kind: str
    sock: socket.socket
    opened: float
    closed_after: float | None = None


@dataclass
class Watcher:
    probes: list[Probe] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        deadline = time.monotonic() + 300
        while not self.stop.wait(0.25) and time.monotonic() < deadline:
            for probe in self.probes:
                if probe.closed_after is None and _closed(probe.sock):
                    probe.closed_after = round(time.monotonic() - probe.opened, 2)

    def by_kind(self) -> dict[str, list[float | None]]:
        result: dict[str, list[float | None]] = {}
        for probe in self.probes:
            result.setdefault(probe.kind, []).append(probe.closed_after)
        return result


def _closed(sock: socket.socket) -> bool:
    if isinstance(sock, ssl.SSLSocket):
        return peer_closed(sock)
    sock.settimeout(0.0)
    try:
        while True:
            if sock.recv(65536) == b"":
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


REPORT: dict[str, object] = {}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("slow-clients")) as process:
        yield process
    REPORT["server_log_lines"] = len(process.log().splitlines())
    path = write_report("slow-clients", REPORT)
    print(f"\nslow clients report: {path}")


@pytest.fixture(scope="module")
def watcher(server: ServerProcess) -> Iterator[Watcher]:
    watcher = Watcher()
    now = time.monotonic()
    for _ in range(3):
        sock = open_tls(server)
        sock.sendall(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Ty")
        watcher.probes.append(Probe("partial-head", sock, now))
    for _ in range(3):
        sock = open_tls(server)
        sock.sendall(request_head(1024 * 1024) + b" " * 1024)
        watcher.probes.append(Probe("stalled-body", sock, now))
    for _ in range(2):
        watcher.probes.append(
            Probe("no-tls-handshake", socket.create_connection(("127.0.0.1", server.port)), now)
        )
    sock = open_tls(server)
    sock.sendall(request_head(len(REVIEW)) + REVIEW)
    assert read_response(sock, 10)[0] == 200
    watcher.probes.append(Probe("idle-keep-alive", sock, time.monotonic()))
    thread = threading.Thread(target=watcher.run, name="probe-watcher", daemon=True)
    thread.start()
    yield watcher
    watcher.stop.set()
    thread.join(5)
    REPORT["probes_closed_after_seconds"] = watcher.by_kind()
    for probe in watcher.probes:
        probe.sock.close()


def _observe(watcher: Watcher) -> dict[str, list[float | None]]:
    """Wait until every probe has been open OBSERVE_SECONDS (or closed), then report."""
    deadline = min(probe.opened for probe in watcher.probes) + OBSERVE_SECONDS
    while time.monotonic() < deadline and any(p.closed_after is None for p in watcher.probes):
        time.sleep(0.25)
    observed = watcher.by_kind()
    if REPORT.get("probes_closed_after_seconds") == observed:
        return observed  # already reported by an earlier test
    REPORT["probes_observed_for_seconds"] = OBSERVE_SECONDS
    REPORT["probes_closed_after_seconds"] = observed
    print_table(
        f"stalled connections, watched for {OBSERVE_SECONDS:.0f} s",
        ["kind", "closed by the server after (s)"],
        [
            [kind, ", ".join("never" if t is None else str(t) for t in times)]
            for kind, times in observed.items()
        ],
    )
    return observed


def _trickle(
    server: ServerProcess, closed: list[float], stop: threading.Event, opened: threading.Event
) -> None:
    """Slowloris: handshake, then one byte of a never-ending head every TRICKLE_INTERVAL."""
    head = request_head(len(REVIEW)) * 100  # far more bytes than the trickle will ever send
    connections: list[ssl.SSLSocket | None] = [
        open_tls(server) for _ in range(SLOWLORIS_CONNECTIONS)
    ]
    opened.set()
    started = time.monotonic()
    position = 0
    try:
        while time.monotonic() - started < TRICKLE_SECONDS and not stop.is_set():
            for index, sock in enumerate(connections):
                if sock is None:
                    continue
                try:
                    sock.sendall(head[position : position + 1])
                except OSError:  # the server cut it off (its request-head deadline)
                    closed.append(round(time.monotonic() - started, 2))
                    sock.close()
                    connections[index] = None
            position += 1
            stop.wait(TRICKLE_INTERVAL)
    finally:
        for sock in connections:
            if sock is not None:
                sock.close()


@pytest.mark.slow
@pytest.mark.timeout(scaled(120, 600))
def test_slowloris_does_not_starve_admissions(server: ServerProcess, watcher: Watcher) -> None:
    closed: list[float] = []
    stop, opened = threading.Event(), threading.Event()
    trickler = threading.Thread(target=_trickle, args=(server, closed, stop, opened), daemon=True)
    trickler.start()
    assert opened.wait(60), "the slow connections did not get through their handshakes"
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    started = time.monotonic()
    try:
        with httpx.Client(base_url=server.url, verify=tls_context(server), timeout=10) as client:
            while trickler.is_alive() and time.monotonic() - started < TRICKLE_SECONDS + 30:
                if len(latencies) % 10 == 0:  # every tenth on a new connection (handshake too)
                    client.close()
                    client = httpx.Client(
                        base_url=server.url, verify=tls_context(server), timeout=10
                    )
                sent = time.perf_counter()
                response = client.post("/mutate", content=REVIEW, headers=JSON_HEADERS)
                latencies.append(time.perf_counter() - sent)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                assert response.json()["response"]["patch"]
                time.sleep(0.02)
            client.close()
    finally:
        stop.set()
        trickler.join(10)
    REPORT["slowloris"] = {
        "connections": SLOWLORIS_CONNECTIONS,
        "trickle_seconds": TRICKLE_SECONDS,
        "byte_every_seconds": TRICKLE_INTERVAL,
        "closed_by_server_during_trickle": len(closed),
        "normal_reviews": len(latencies),
        "statuses": statuses,
        "latency_ms": {
            "p50": round(percentile(latencies, 0.5) * 1000, 1),
            "p95": round(percentile(latencies, 0.95) * 1000, 1),
            "p99": round(percentile(latencies, 0.99) * 1000, 1),
            "max": round(max(latencies) * 1000, 1),
        },
    }
    print_table(
        "slowloris",
        ["what", "value"],
        [[k, v] for k, v in REPORT["slowloris"].items()],  # type: ignore[union-attr]
    )
    assert statuses == {200: len(latencies)}
    assert len(latencies) >= 50
    assert percentile(latencies, 0.95) < 0.5, REPORT["slowloris"]
    assert max(latencies) < 3.0, REPORT["slowloris"]
    with httpx.Client(base_url=server.url, verify=tls_context(server), timeout=5) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert client.post("/mutate", content=REVIEW, headers=JSON_HEADERS).status_code == 200


def test_idle_keep_alive_connections_are_closed(watcher: Watcher) -> None:
    """uvicorn's timeout_keep_alive (5 s) applies between requests."""
    observed = _observe(watcher)
    assert all(t is not None and t < 8 for t in observed["idle-keep-alive"]), observed


def test_a_half_sent_request_head_is_cut_off(watcher: Watcher) -> None:
    observed = _observe(watcher)
    assert all(t is not None and t <= STALL_LIMIT + 1 for t in observed["partial-head"]), observed


def test_a_stalled_request_body_is_cut_off(watcher: Watcher) -> None:
    observed = _observe(watcher)
    assert all(t is not None and t <= STALL_LIMIT + 1 for t in observed["stalled-body"]), observed


def test_connections_that_never_start_tls_are_closed(watcher: Watcher) -> None:
    """The TLS handshake deadline (10 s, webhook.listener)."""
    observed = _observe(watcher)
    assert all(t is not None and t <= STALL_LIMIT + 1 for t in observed["no-tls-handshake"]), (
        observed
    )


def test_the_server_is_healthy_afterwards(server: ServerProcess, watcher: Watcher) -> None:
    with httpx.Client(base_url=server.url, verify=tls_context(server), timeout=5) as client:
        assert client.get("/healthz").status_code == 200
        response = client.post("/mutate", content=REVIEW, headers=JSON_HEADERS)
    assert response.status_code == 200
    assert server.process.poll() is None


def test_a_review_sent_in_small_pieces_is_answered(server: ServerProcess) -> None:
    """Sanity for the raw-socket helpers: a review sent 512 bytes at a time is answered."""
    sock = open_tls(server)
    payload = request_head(len(REVIEW)) + REVIEW
    for start in range(0, len(payload), 512):
        sock.sendall(payload[start : start + 512])
        time.sleep(0.01)
    status, body = read_response(sock, 10)
    sock.close()
    assert status == 200
    assert json.loads(body)["response"]["allowed"] is True
