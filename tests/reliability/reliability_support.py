"""Shared helpers of the reliability tests: long mode, reports, captures, TLS servers, raw clients.

Long mode is opt-in: `GPU_RDMA_INJECTOR_LONG=1` scales case counts and durations up (this is the
only place that reads it). CI runs the short mode, which keeps the whole folder near a minute.

    GPU_RDMA_INJECTOR_LONG=1 .venv/bin/python -m pytest tests/reliability -s

Reports (fuzz case counts, slow-client and outage timelines, shutdown timings, scanner findings)
are printed and written as JSON under tests/reliability/out/ (not committed).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from serverproc import ServerProcess

from webhook.certs import CertPaths, generate_bundle

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUT = HERE / "out"
CAPTURES = ROOT / "tests" / "fixtures" / "admission-reviews"
JSON_HEADERS = {"content-type": "application/json"}

LONG = os.environ.get("GPU_RDMA_INJECTOR_LONG", "").strip().lower() in {"1", "true", "yes", "on"}
"""Long mode: many more fuzz cases, longer soaks."""

T = TypeVar("T")


def scaled(short: T, long: T) -> T:
    """`long` in long mode, `short` otherwise."""
    return long if LONG else short


def capture_paths() -> list[Path]:
    """The AdmissionReviews a real kube-apiserver sent (see that folder's README)."""
    return sorted(CAPTURES.glob("*.json"))


def capture(name: str) -> dict[str, Any]:
    return json.loads((CAPTURES / name).read_bytes())


def write_report(name: str, report: Any) -> Path:
    """Write a JSON report to tests/reliability/out/<name>.json and return its path."""
    OUT.mkdir(exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
    return path


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain text table on stdout (visible with `pytest -s`)."""
    cells = [list(map(str, header)), *[[str(cell) for cell in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for index, row in enumerate(cells):
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  " + "  ".join("-" * width for width in widths))


def wait_for(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll `condition` until it returns something truthy; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def tls_bundle(directory: Path) -> CertPaths:
    return generate_bundle(directory, ["localhost", "127.0.0.1"])


@contextmanager
def running_server(
    workdir: Path, args: Sequence[str] = (), *, policy: str | None = None
) -> Iterator[ServerProcess]:
    """The real `serve` process (static mode) with generated certificates; stopped afterwards."""
    paths = tls_bundle(workdir / "tls")
    extra = list(args)
    if policy is not None:
        (workdir / "policy.yaml").write_text(policy)
        extra += ["--config", str(workdir / "policy.yaml")]
    server = ServerProcess.with_certificate(paths, workdir, *extra)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def tls_context(server: ServerProcess) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.ca_file))


def open_tls(server: ServerProcess, timeout: float = 5.0) -> ssl.SSLSocket:
    """A TLS connection to the server, handshake done, no HTTP sent yet."""
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    return tls_context(server).wrap_socket(raw, server_hostname="localhost")


def request_head(body_length: int, path: str = "/mutate") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {body_length}\r\n\r\n"
    ).encode()


def read_response(sock: ssl.SSLSocket, timeout: float) -> tuple[int, bytes]:
    """Read one HTTP/1.1 response with a Content-Length body: (status, body)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before the response head: {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(
        int(line.split(":", 1)[1])
        for line in lines[1:]
        if line.lower().startswith("content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed in the middle of the response body")
        body += chunk
    return status, body


def peer_closed(sock: ssl.SSLSocket) -> bool:
    """Whether the server has closed this connection (checked without blocking); whatever it
    sent first (e.g. a 408 answer) is read and dropped."""
    sock.settimeout(0.0)
    try:
        while True:
            if sock.recv(65536) == b"":
                return True
    except (ssl.SSLWantReadError, BlockingIOError):
        return False
    except OSError:
        return True
    finally:
        sock.settimeout(5.0)


def metric(text: str, name: str) -> float | None:
    """The value of an unlabelled sample in Prometheus text, or None."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
