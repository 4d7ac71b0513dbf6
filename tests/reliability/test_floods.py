"""Hostile clients that cost memory, against the real `serve` process over real TLS.

- Request heads: a head of exactly 64 KiB (and exactly 100 header lines) is served, one byte (or
  one line) more is answered 431 and the connection closed; then the flood of the issue: five
  TLS connections each sending a 60 MB header at once.
- Connections: with `--max-connections N` connections open past their handshake, the next one
  waits in the listen backlog (no ServerHello) until one of them closes, then it is served; with
  N connections stalled in their handshake, a new client takes the slot of the oldest at once;
  each silent connection is closed by the TLS handshake deadline (10 s); then the flood of the
  issue: 1,500 connections that never send a ClientHello, with the default limit, during which
  a review is still answered.

Peak memory (VmHWM of the server process) before and after each flood is printed and written to
tests/reliability/out/floods.json (the README's Reliability figures come from there); each flood
must leave the server well inside the chart's 256Mi memory limit, and still answering reviews.
"""

from __future__ import annotations

import json
import resource
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_support import (
    JSON_HEADERS,
    capture,
    metric,
    open_tls,
    peer_closed,
    print_table,
    read_response,
    running_server,
    tls_context,
    wait_for,
    write_report,
)
from serverproc import ServerProcess

MAX_HEAD = 64 * 1024
MAX_HEADERS = 100
HANDSHAKE_DEADLINE = 10.0
CHART_MEMORY_LIMIT_MIB = 256
REVIEW = json.dumps(capture("create-gpu-pod-no-annotations.json")).encode()
REPORT: dict[str, object] = {}


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _mib(kib: int) -> float:
    return round(kib / 1024, 1)


def _get_head(size: int, headers: int = 1) -> bytes:
    """A GET /healthz head of exactly `size` bytes with `headers` header lines (Host first)."""
    lines = [b"GET /healthz HTTP/1.1", b"Host: localhost"]
    lines += [b"X-%d: x" % n for n in range(headers - 2)]
    head = b"\r\n".join(lines) + b"\r\nX-Pad: "
    padding = size - len(head) - len(b"\r\n\r\n")
    assert padding >= 0, (size, headers)
    return head + b"p" * padding + b"\r\n\r\n"


def _answer(server: ServerProcess, payload: bytes) -> tuple[int, bool]:
    """Send `payload` on a new connection: (status, whether the server then closed it)."""
    sock = open_tls(server)
    try:
        sock.sendall(payload)
        status, _ = read_response(sock, 10)
        if status == 200:
            return status, peer_closed(sock)
        # Closed at once; a connection left open would only go at the 10 s head deadline.
        return status, wait_for(lambda: peer_closed(sock), 5, "the connection to close", 0.05)
    finally:
        sock.close()


def _review_works(server: ServerProcess) -> None:
    sock = open_tls(server)
    try:
        sock.sendall(
            b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(REVIEW) + REVIEW
        )
        status, body = read_response(sock, 10)
    finally:
        sock.close()
    assert status == 200
    assert json.loads(body)["response"]["patch"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("floods")) as process:
        yield process
    path = write_report("floods", REPORT)
    print(f"\nfloods report: {path}")


def test_a_head_at_the_limit_is_served(server: ServerProcess) -> None:
    assert _answer(server, _get_head(MAX_HEAD)) == (200, False)
    assert _answer(server, _get_head(4096, headers=MAX_HEADERS)) == (200, False)


def test_a_head_past_the_limit_is_refused_with_431_and_closed(server: ServerProcess) -> None:
    assert _answer(server, _get_head(MAX_HEAD + 1)) == (431, True)
    assert _answer(server, _get_head(4096, headers=MAX_HEADERS + 1)) == (431, True)
    with server.client() as client:
        assert client.get("/healthz").status_code == 200


def test_the_431_answer_says_why_in_one_sentence(server: ServerProcess) -> None:
    sock = open_tls(server)
    try:
        sock.sendall(_get_head(MAX_HEAD + 1))
        status, body = read_response(sock, 10)
    finally:
        sock.close()
    assert status == 431
    problem = json.loads(body)
    assert problem["kind"] == "Status"
    assert problem["code"] == 431
    assert problem["message"] == (
        "the request head is larger than 65536 bytes; send at most 65536 bytes of request line "
        "and headers"
    )


def _flood_one(server: ServerProcess, size: int, outcome: list[str]) -> None:
    sock = open_tls(server, timeout=30)
    head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Flood: "
    chunk = b"f" * (1024 * 1024)
    try:
        sock.sendall(head)
        for _ in range(size // len(chunk)):
            sock.sendall(chunk)
        outcome.append(str(read_response(sock, 10)[0]))  # read and dropped until the answer
    except OSError:  # answered 431 and closed: what is left cannot be sent
        outcome.append("cut off")
    finally:
        sock.close()


@pytest.mark.timeout(120)
def test_a_flood_of_huge_heads_stays_within_the_memory_limit(server: ServerProcess) -> None:
    """The issue's attack: 5 TLS connections, each a 60 MB header."""
    pid = server.process.pid
    before = _status_kib(pid, "VmHWM")
    outcome: list[str] = []
    senders = [
        threading.Thread(target=_flood_one, args=(server, 60 * 1024 * 1024, outcome))
        for _ in range(5)
    ]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(100)
    peak = _status_kib(pid, "VmHWM")
    REPORT["head_flood"] = {
        "connections": 5,
        "header_mb": 60,
        "outcome": outcome,
        "peak_rss_before_mib": _mib(before),
        "peak_rss_after_mib": _mib(peak),
    }
    print_table("head flood", ["what", "value"], list(REPORT["head_flood"].items()))  # type: ignore[union-attr]
    assert len(outcome) == 5
    assert set(outcome) <= {"431", "cut off"}, outcome
    assert peak - before < 32 * 1024, REPORT["head_flood"]
    with server.client() as client:
        refused = metric(
            client.get("/metrics").text, "gpu_rdma_injector_request_heads_refused_total"
        )
    assert refused is not None
    assert refused >= 5
    _review_works(server)


def _silent(server: ServerProcess) -> socket.socket:
    """A TCP connection that never sends a ClientHello."""
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _handshake_in_background(server: ServerProcess) -> tuple[threading.Thread, list[object]]:
    result: list[object] = []

    def handshake() -> None:
        try:
            sock = tls_context(server).wrap_socket(
                socket.create_connection(("127.0.0.1", server.port), timeout=30),
                server_hostname="localhost",
            )
            result.append(sock.version())
            sock.close()
        except OSError as error:
            result.append(error)

    thread = threading.Thread(target=handshake, daemon=True)
    thread.start()
    return thread, result


@pytest.mark.timeout(120)
def test_connections_past_the_limit_wait_until_one_closes(tmp_path: Path) -> None:
    """At the limit with every connection past its handshake, the next one waits in the listen
    backlog (no ServerHello) until one closes."""
    with running_server(tmp_path, ["--max-connections", "8"]) as server:
        served = [open_tls(server) for _ in range(8)]  # handshakes done, then idle
        try:
            waiting, result = _handshake_in_background(server)
            waiting.join(1.0)
            assert waiting.is_alive(), f"a ninth connection was served at once: {result}"
            served.pop(0).close()
            waiting.join(20)
            assert result == ["TLSv1.3"]
        finally:
            for sock in served:
                sock.close()
        _review_works(server)


@pytest.mark.timeout(120)
def test_at_the_limit_a_new_client_takes_the_slot_of_a_stalled_handshake(tmp_path: Path) -> None:
    with running_server(tmp_path, ["--max-connections", "8"]) as server:
        silent = [_silent(server) for _ in range(8)]  # never a ClientHello
        try:
            _review_works(server)  # at once, not after the 10 s handshake deadline
            wait_for(lambda: any(_tcp_closed(sock) for sock in silent), 5, "an eviction")
            with server.client() as client:
                text = client.get("/metrics").text
        finally:
            for sock in silent:
                sock.close()
    evicted = metric(text, "gpu_rdma_injector_tls_handshakes_evicted_total")
    assert evicted is not None
    assert evicted >= 1


@pytest.mark.timeout(60)
def test_a_connection_that_never_starts_tls_is_closed_by_the_handshake_deadline(
    server: ServerProcess,
) -> None:
    sock = _silent(server)
    try:
        wait_for(lambda: _tcp_closed(sock), HANDSHAKE_DEADLINE + 5, "the server to close it", 0.25)
    finally:
        sock.close()


def _tcp_closed(sock: socket.socket) -> bool:
    sock.settimeout(0.0)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


@pytest.mark.timeout(180)
def test_a_flood_of_connections_without_client_hello_stays_within_the_memory_limit(
    server: ServerProcess,
) -> None:
    """The issue's attack: 1,500 TCP connections that never send a ClientHello."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    pid = server.process.pid
    before = _status_kib(pid, "VmHWM")
    silent: list[socket.socket] = []
    try:
        silent.extend(_silent(server) for _ in range(1500))
        # A client arriving during the flood takes the slot of a silent connection.
        with server.client() as client:
            metrics = client.get("/metrics").text
            assert client.post("/mutate", content=REVIEW, headers=JSON_HEADERS).status_code == 200
        peak = _status_kib(pid, "VmHWM")
    finally:
        for sock in silent:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    REPORT["connection_flood"] = {
        "connections": 1500,
        "max_connections": metric(metrics, "gpu_rdma_injector_connections_max"),
        "evicted_handshakes": metric(metrics, "gpu_rdma_injector_tls_handshakes_evicted_total"),
        "peak_rss_before_mib": _mib(before),
        "peak_rss_after_mib": _mib(peak),
    }
    print_table("connection flood", ["what", "value"], list(REPORT["connection_flood"].items()))  # type: ignore[union-attr]
    assert peak < CHART_MEMORY_LIMIT_MIB * 1024 / 2, REPORT["connection_flood"]
    _review_works(server)
