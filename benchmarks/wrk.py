"""Closed-loop load with wrk: N keep-alive HTTPS connections, each POSTing as fast as answered."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

from benchmarks.targets import HOST, BenchError, die_with_parent

LUA_SCRIPT = Path(__file__).resolve().parent / "post.lua"
MARKER = "BENCH_JSON "


def wrk_binary() -> str:
    binary = shutil.which("wrk")
    if binary is None:
        raise BenchError("wrk is not installed; run benchmarks/run --install-only")
    return binary


def wrk_command(
    port: int, body_file: Path, connections: int, duration: float, threads: int
) -> list[str]:
    return [
        wrk_binary(),
        f"-t{max(1, min(threads, connections))}",
        f"-c{connections}",
        f"-d{max(1, math.ceil(duration))}s",  # wrk takes whole seconds only
        "--timeout",
        "5s",
        "-s",
        str(LUA_SCRIPT),
        f"https://{HOST}:{port}/mutate",
        "--",
        str(body_file),
        "count",
    ]


def run_wrk(
    port: int, body_file: Path, connections: int, duration: float, threads: int = 1
) -> dict[str, Any]:
    """One wrk run; throughput in requests/s, latencies in milliseconds."""
    command = wrk_command(port, body_file, connections, duration, threads)
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        timeout=duration + 60,
        preexec_fn=die_with_parent,
    )
    line = next((x for x in completed.stdout.splitlines() if x.startswith(MARKER)), None)
    if completed.returncode != 0 or line is None:
        raise BenchError(
            f"wrk failed (status {completed.returncode}): "
            f"{(completed.stderr or completed.stdout).strip()[-500:]}"
        )
    raw = json.loads(line[len(MARKER) :])
    seconds = raw["duration_us"] / 1e6
    latency = raw["latency_us"]
    socket_errors = sum(v for k, v in raw["errors"].items() if k != "status")
    return {
        "requests": raw["requests"],
        "seconds": round(seconds, 3),
        "rps": raw["requests"] / seconds if seconds else 0.0,
        "p50_ms": latency["p50"] / 1000,
        "p90_ms": latency["p90"] / 1000,
        "p99_ms": latency["p99"] / 1000,
        "p999_ms": latency["p999"] / 1000,
        "max_ms": latency["max"] / 1000,
        "mean_ms": latency["mean"] / 1000,
        "non2xx": raw["non2xx"],
        "socket_errors": socket_errors,
        "errors": raw["non2xx"] + socket_errors,
        "wrk_errors": raw["errors"],
        "command": " ".join(command),
    }
