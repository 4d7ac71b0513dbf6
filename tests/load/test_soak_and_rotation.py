"""Soak and certificate rotation under load, against the real server process, driven by wrk.

Short mode by default (CI); `GPU_RDMA_INJECTOR_LONG=1` runs the figures the README reports:
100,000 reviews at concurrency 64. wrk comes from Debian (`benchmarks/run --install-only`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import FIXTURES
from serverproc import ServerProcess

from webhook.certs import generate_ca, generate_serving, write_bundle

HERE = Path(__file__).resolve().parent
LONG = os.environ.get("GPU_RDMA_INJECTOR_LONG") == "1"
BODY = FIXTURES / "admission-reviews" / "create-gpu-pod-no-annotations.json"


def wrk() -> str:
    path = shutil.which("wrk")
    assert path, "wrk is not installed: run benchmarks/run --install-only (as root)"
    return path


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def run_wrk(port: int, connections: int, seconds: int) -> dict[str, int]:
    """wrk for `seconds`; its counts of requests and errors, p99 and max latency."""
    result = subprocess.run(
        [
            wrk(),
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "5s",
            "-s",
            str(HERE / "soak.lua"),
            f"https://127.0.0.1:{port}/mutate",
            "--",
            str(BODY),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    line = [line for line in result.stdout.splitlines() if line.startswith("{")][-1]
    return dict(json.loads(line))


def errors(stats: dict[str, int]) -> int:
    return sum(stats[key] for key in ("connect", "read", "write", "timeout", "status"))


@pytest.mark.timeout(1800 if LONG else 120)
def test_soak_no_errors_and_bounded_memory(tmp_path: Path) -> None:
    total = 100_000 if LONG else 6_000
    ca = generate_ca()
    paths = write_bundle(tmp_path / "tls", ca, generate_serving(ca, ["localhost", "127.0.0.1"]))
    server = ServerProcess.with_certificate(
        paths,
        tmp_path,
        "--log-level",
        "info",
    )
    try:
        server.wait_ready()
        warm = run_wrk(server.port, 64, 3)  # warm-up: caches, arenas, buffers, calibration
        before = rss_kib(server.process.pid)
        rate = max(warm["requests"] / (warm["duration_us"] / 1e6), 100.0)
        done, failed, seconds, p99 = 0, 0, 0.0, 0
        while done < total:  # wrk stops by time, so run it in chunks until the count is reached
            chunk = run_wrk(server.port, 64, min(20, int((total - done) / rate) + 1))
            done += chunk["requests"]
            failed += errors(chunk)
            seconds += chunk["duration_us"] / 1e6
            p99 = max(p99, chunk["p99_us"])
        after = rss_kib(server.process.pid)
        figures = {
            "reviews": done,
            "warm_up_reviews": warm["requests"],
            "errors": failed + errors(warm),
            "rss_before_kib": before,
            "rss_after_kib": after,
            "rss_growth": round((after - before) / before, 4),
            "worst_chunk_p99_ms": p99 / 1000,
            "seconds": round(seconds, 1),
        }
        print("soak:", json.dumps(figures))
        assert done >= total
        assert figures["errors"] == 0
        assert after < before * 1.10, figures
        with server.client() as client:
            assert client.get("/healthz").status_code == 200
    finally:
        assert server.stop() == 0, server.log()


def test_certificate_rotation_under_load(tmp_path: Path) -> None:
    ca = generate_ca()
    tls_dir = tmp_path / "tls"
    paths = write_bundle(tls_dir, ca, generate_serving(ca, ["localhost", "127.0.0.1"]))
    server = ServerProcess.with_certificate(
        paths,
        tmp_path,
        "--reload-interval",
        "0.2",
    )
    rotations: list[float] = []
    try:
        server.wait_ready()
        stats: dict[str, int] = {}
        load = threading.Thread(
            target=lambda: stats.update(run_wrk(server.port, 16, 12 if LONG else 6))
        )
        load.start()
        for _ in range(3):
            time.sleep(1.5)
            renewed = generate_serving(ca, ["localhost", "127.0.0.1"])
            write_bundle(tls_dir, ca, renewed)
            started = time.monotonic()
            while server.served_serial() != renewed.cert.serial_number:
                assert time.monotonic() - started < 10, "renewed certificate not served"
                time.sleep(0.05)
            rotations.append(time.monotonic() - started)
        load.join(60)
        print("rotation:", json.dumps({"rotations_s": rotations, **stats}))
        assert stats["requests"] > 0
        assert errors(stats) == 0, stats
    finally:
        assert server.stop() == 0, server.log()
