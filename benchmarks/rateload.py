"""Open-loop HTTPS load at a constant rate, measured from the *scheduled* time of each request.

wrk keeps N requests in flight and waits for each answer before sending the next, so a stall
delays the requests that would have been sent meanwhile and they are never timed: coordinated
omission. wrk2 fixes that, but Debian does not package it. This generator sends request i at
start + i / rate whatever happened before, on a pool of keep-alive TLS connections; a request
that finds every connection busy waits in the queue, and that wait counts in its latency.

Threads with blocking sockets rather than asyncio: asyncio's timers go through epoll, whose
timeout is in whole milliseconds, which would add up to a millisecond to every latency;
`time.sleep` is precise to tens of microseconds. The generator's own lateness (dispatch lag)
is reported so it can be told apart from the server's.

With `--burst N` requests are sent N at a time, a group every N / rate seconds, as N clients
that each send at rate / N on their own connection and happen to tick together would (10 x 50/s
is 500/s arriving as 10 at once every 20 ms). With `--cpu-pids` it also reads the server's CPU
time (utime + stime, /proc) when the measured window starts and after the last answer, and
reports it per measured review.

Run in its own process: python -m benchmarks.rateload --port P --cafile CA --body FILE
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import socket
import ssl
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
_STOP = -1.0


class Connection:
    """One keep-alive HTTPS connection speaking just enough HTTP/1.1 for Content-Length answers."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        self._port = port
        self._context = context
        self._sock: ssl.SSLSocket | None = None
        self._buffer = b""

    def _connect(self) -> ssl.SSLSocket:
        raw = socket.create_connection((HOST, self._port), timeout=10)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""
        return self._context.wrap_socket(raw, server_hostname=HOST)

    def exchange(self, request: bytes) -> int:
        """Send one request, read its whole answer; the status code."""
        if self._sock is None:
            self._sock = self._connect()
        try:
            self._sock.sendall(request)
            head = self._read_until(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            self._read_exactly(length)
            return status
        except Exception:
            self.close()
            raise

    def _read_until(self, marker: bytes) -> bytes:
        while (end := self._buffer.find(marker)) < 0:
            self._fill()
        head, self._buffer = self._buffer[:end], self._buffer[end + len(marker) :]
        return head

    def _read_exactly(self, length: int) -> bytes:
        while len(self._buffer) < length:
            self._fill()
        data, self._buffer = self._buffer[:length], self._buffer[length:]
        return data

    def _fill(self) -> None:
        assert self._sock is not None
        chunk = self._sock.recv(262144)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self._buffer += chunk

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def build_request(port: int, body: bytes) -> bytes:
    head = (
        f"POST /mutate HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        "Content-Type: application/json\r\nAccept: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def percentile(sorted_values: list[float], q: float) -> float:
    """The nearest-rank percentile, as HdrHistogram and wrk report it."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), math.ceil(q / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of `pids` (all their threads) from /proc; a process gone counts 0."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / _CLOCK_TICKS


def run(
    port: int,
    cafile: Path,
    body: bytes,
    rate: float,
    duration: float,
    warmup: float,
    connections: int,
    burst: int = 1,
    cpu_pids: Sequence[int] = (),
) -> dict[str, Any]:
    sys.setswitchinterval(0.0002)  # hand the GIL over quickly to a thread whose answer arrived
    context = ssl.create_default_context(cafile=str(cafile))
    request = build_request(port, body)
    pool = [Connection(port, context) for _ in range(connections)]
    for connection in pool:  # handshakes first, outside the measurement
        connection.exchange(request)

    work: queue.SimpleQueue[float] = queue.SimpleQueue()
    lock = threading.Lock()
    samples: list[tuple[float, float, float]] = []  # (scheduled, picked up, finished)
    failures: list[str] = []
    statuses: dict[int, int] = {}

    def worker(connection: Connection) -> None:
        while (scheduled := work.get()) != _STOP:
            picked = time.perf_counter()
            try:
                status = connection.exchange(request)
            except (OSError, ValueError, IndexError) as error:
                with lock:
                    failures.append(f"{type(error).__name__}: {error}")
                continue
            finished = time.perf_counter()
            with lock:
                samples.append((scheduled, picked, finished))
                statuses[status] = statuses.get(status, 0) + 1

    threads = [
        threading.Thread(target=worker, args=(c,), daemon=True, name=f"conn-{i}")
        for i, c in enumerate(pool)
    ]
    for thread in threads:
        thread.start()

    total = round(rate * (warmup + duration))
    interval = burst / rate  # between groups; a group of `burst` requests is sent at once
    start = time.perf_counter() + 0.05
    measured_from = start + warmup
    cpu_start = None
    for group in range(math.ceil(total / burst)):
        scheduled = start + group * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        if cpu_start is None and scheduled >= measured_from:
            cpu_start = cpu_seconds(cpu_pids)
        for _ in range(min(burst, total - group * burst)):
            work.put(scheduled)
    for _ in threads:
        work.put(_STOP)
    for thread in threads:
        thread.join(timeout=duration + 30)
    cpu_end = cpu_seconds(cpu_pids)
    for connection in pool:
        connection.close()

    kept = sorted((s, p, f) for s, p, f in samples if s >= measured_from)
    latencies = sorted((f - s) * 1000 for s, _, f in kept)
    lags = sorted((p - s) * 1000 for s, p, _ in kept)
    span = (kept[-1][2] - kept[0][0]) if kept else 0.0
    non2xx = sum(n for status, n in statuses.items() if not 200 <= status < 300)
    server_cpu = cpu_end - cpu_start if cpu_pids and cpu_start is not None else None
    return {
        "rate": rate,
        "burst": burst,
        "server_cpu_s": server_cpu,
        "cpu_us_per_review": 1e6 * server_cpu / len(latencies)
        if server_cpu is not None and latencies
        else None,
        "connections": connections,
        "duration_s": duration,
        "warmup_s": warmup,
        "requests": len(latencies),
        "achieved_rps": len(latencies) / span if span else 0.0,
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "p999_ms": percentile(latencies, 99.9),
        "max_ms": latencies[-1] if latencies else 0.0,
        "dispatch_lag_p50_ms": percentile(lags, 50),
        "dispatch_lag_p99_ms": percentile(lags, 99),
        "non2xx": non2xx,
        "socket_errors": len(failures),
        "errors": non2xx + len(failures),
        "first_failures": failures[:3],
    }


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every load driver shares: where the server is, its CA, the body to send, and
    which server processes' CPU time to report."""
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cafile", type=Path, required=True)
    parser.add_argument("--body", type=Path, required=True)
    parser.add_argument(
        "--cpu-pids", default="", help="server process ids whose CPU time to report, a,b,..."
    )


def parse_cpu_pids(args: argparse.Namespace) -> list[int]:
    """`--cpu-pids` as process ids."""
    return [int(pid) for pid in args.cpu_pids.split(",") if pid.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_target_arguments(parser)
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds at rate, not measured")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--burst", type=int, default=1, help="requests sent at once (1)")
    args = parser.parse_args()
    if args.rate <= 0 or args.duration <= 0 or args.connections < 1 or args.burst < 1:
        parser.error("--rate, --duration, --connections and --burst must be positive")
    result = run(
        args.port,
        args.cafile,
        args.body.read_bytes(),
        args.rate,
        args.duration,
        args.warmup,
        args.connections,
        args.burst,
        parse_cpu_pids(args),
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
