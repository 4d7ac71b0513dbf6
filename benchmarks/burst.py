"""A Job's burst: N identical reviews released at once on warm keep-alive connections.

A Job or JobSet creates its pods in slow-start batches (1, 2, 4, ... 64 at once), so the last
pod of a batch waits for every review before it. This generator opens `--connections` TLS
connections, warms each with one exchange, then `--bursts` times releases `--size` requests at
the same instant into a queue the connections take from (a connection sends its next request
when its answer has arrived, as the API server's client does; no pipelining). A burst's time
is from its release to its last answer; the next burst is released `--gap` seconds after the
previous one was released (or as soon as it has finished, if later). With `--cpu-pids` the
server's CPU time (utime + stime) over all bursts is reported per review.

The connections are threads with blocking sockets (benchmarks.rateload's), the same client for
ours and for the floor, so the floor's time includes the client's own share of the burst.

Run in its own process: python -m benchmarks.burst --port P --cafile CA --body FILE
"""

from __future__ import annotations

import argparse
import json
import queue
import ssl
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.rateload import (
    Connection,
    add_target_arguments,
    build_request,
    cpu_seconds,
    parse_cpu_pids,
    percentile,
)

_STOP = -1.0


def run(
    port: int,
    cafile: Path,
    body: bytes,
    size: int,
    connections: int,
    bursts: int,
    gap: float,
    cpu_pids: list[int],
) -> dict[str, Any]:
    sys.setswitchinterval(0.0002)  # hand the GIL over quickly to a thread whose answer arrived
    context = ssl.create_default_context(cafile=str(cafile))
    request = build_request(port, body)
    pool = [Connection(port, context) for _ in range(connections)]
    for connection in pool:  # handshakes and a first exchange, outside the measurement
        connection.exchange(request)

    work: queue.SimpleQueue[float] = queue.SimpleQueue()
    lock = threading.Lock()
    finished: list[float] = []
    latencies: list[float] = []
    failures: list[str] = []
    statuses: dict[int, int] = {}
    burst_done = threading.Event()

    def worker(connection: Connection) -> None:
        while (released := work.get()) != _STOP:
            try:
                status = connection.exchange(request)
            except (OSError, ValueError, IndexError) as error:
                status = -1
                with lock:
                    failures.append(f"{type(error).__name__}: {error}")
            done = time.perf_counter()
            with lock:
                finished.append(done)
                latencies.append((done - released) * 1000)
                if status > 0:
                    statuses[status] = statuses.get(status, 0) + 1
                if len(finished) == size:
                    burst_done.set()

    threads = [
        threading.Thread(target=worker, args=(c,), daemon=True, name=f"conn-{i}")
        for i, c in enumerate(pool)
    ]
    for thread in threads:
        thread.start()

    times: list[float] = []
    cpu_start = cpu_seconds(cpu_pids)
    next_release = time.perf_counter() + 0.05
    for _ in range(bursts):
        delay = next_release - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        with lock:
            finished.clear()
        burst_done.clear()
        released = time.perf_counter()
        for _ in range(size):
            work.put(released)
        if not burst_done.wait(timeout=30):
            failures.append("a burst was not answered within 30 s")
            break
        times.append((max(finished) - released) * 1000)
        next_release = max(released + gap, time.perf_counter())
    cpu_end = cpu_seconds(cpu_pids)
    for _ in threads:
        work.put(_STOP)
    for thread in threads:
        thread.join(timeout=30)
    for connection in pool:
        connection.close()

    reviews = size * len(times)
    server_cpu = cpu_end - cpu_start if cpu_pids else None
    ordered = sorted(times)
    by_latency = sorted(latencies)
    non2xx = sum(n for status, n in statuses.items() if not 200 <= status < 300)
    return {
        "size": size,
        "connections": connections,
        "bursts": len(times),
        "gap_s": gap,
        "burst_ms": times,
        "median_ms": statistics.median(times) if times else 0.0,
        "p90_ms": percentile(ordered, 90),
        "min_ms": ordered[0] if ordered else 0.0,
        "max_ms": ordered[-1] if ordered else 0.0,
        "review_p50_ms": percentile(by_latency, 50),
        "review_p99_ms": percentile(by_latency, 99),
        "server_cpu_s": server_cpu,
        "cpu_us_per_review": 1e6 * server_cpu / reviews
        if server_cpu is not None and reviews
        else None,
        "non2xx": non2xx,
        "socket_errors": len(failures),
        "errors": non2xx + len(failures),
        "first_failures": failures[:3],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_target_arguments(parser)
    parser.add_argument("--size", type=int, default=64, help="reviews released at once (64)")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections (16)")
    parser.add_argument("--bursts", type=int, default=50, help="bursts measured (50)")
    parser.add_argument("--gap", type=float, default=0.2, help="seconds between releases (0.2)")
    args = parser.parse_args()
    if min(args.size, args.connections, args.bursts) < 1 or args.gap < 0:
        parser.error("--size, --connections and --bursts must be positive, --gap not negative")
    result = run(
        args.port,
        args.cafile,
        args.body.read_bytes(),
        args.size,
        args.connections,
        args.bursts,
        args.gap,
        parse_cpu_pids(args),
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
