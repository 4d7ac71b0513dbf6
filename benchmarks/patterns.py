"""Open-loop load patterns against ours and the floor: 500/s evenly, 500/s in bursts, a Job's burst.

Each pattern runs its generator in a process of its own (benchmarks.rateload, benchmarks.burst)
against a fresh webhook and a fresh floor answering with the webhook's own answer, one after the
other, repeated `repeat` times. Every generator also reads the server's CPU time (utime + stime
of its process tree, /proc) over the reviews it measured, so each row carries CPU per review.
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import subprocess
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from benchmarks.bodies import ROOT
from benchmarks.targets import BenchError, Served, die_with_parent, process_tree

if TYPE_CHECKING:
    from benchmarks.harness import Prepared, Session, Settings

SERVERS = ("ours", "floor")


def json_from(command: list[str], timeout: float) -> dict[str, Any]:
    """Run a measuring process; its last stdout line is its JSON result."""
    # Run from the first PYTHONPATH entry (the code copy) so that `webhook` is the copy.
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        cwd=os.environ.get("PYTHONPATH", str(ROOT)).split(os.pathsep)[0],
        preexec_fn=die_with_parent,
    )
    if completed.returncode != 0:
        raise BenchError(f"{shlex.join(command[1:4])} failed: {completed.stderr.strip()[-800:]}")
    return dict(json.loads(completed.stdout.strip().splitlines()[-1]))


def _pids(server: Served) -> str:
    return ",".join(str(pid) for pid in process_tree(server.pid))


def _generator(module: str, server: Served, item: Prepared, ca: str, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        module,
        "--port",
        str(server.port),
        "--cafile",
        ca,
        "--body",
        str(item.body_file),
        "--cpu-pids",
        _pids(server),
        *args,
    ]


def _each_server(
    session: Session,
    item: Prepared,
    s: Settings,
    measure: Callable[[Served], dict[str, Any]],
    describe: Callable[[dict[str, Any]], str],
) -> list[dict[str, Any]]:
    from benchmarks.harness import checked_answer, log

    runs = []
    for rep in range(1, s.repeat + 1):
        ours = session.webhook(item.policy_file)
        canned = checked_answer(ours, item, session.certs.ca)
        floor = session.floor(canned)
        for name, server in (("ours", ours), ("floor", floor)):
            result = measure(server)
            result.update(server=name, rep=rep)
            runs.append(result)
            log(f"rep {rep} {name:5} {describe(result)}  errors {result['errors']}")
        session.stop(ours)
        session.stop(floor)
    return runs


def at_rate(
    session: Session, item: Prepared, s: Settings, burst: int, connections: int
) -> list[dict[str, Any]]:
    """`s.rate` reviews/s, sent `burst` at a time on `connections` connections."""

    def measure(server: Served) -> dict[str, Any]:
        command = _generator(
            "benchmarks.rateload",
            server,
            item,
            str(session.certs.ca),
            *("--rate", f"{s.rate:g}", "--duration", f"{s.rate_duration:g}"),
            *("--warmup", f"{s.rate_warmup:g}", "--connections", str(connections)),
            *("--burst", str(burst)),
        )
        return json_from(command, timeout=s.rate_duration + s.rate_warmup + 60)

    def describe(result: dict[str, Any]) -> str:
        return (
            f"{s.rate:g}/s x{burst}: p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms"
            f"  CPU {result['cpu_us_per_review'] or 0:.0f} us/review"
        )

    return _each_server(session, item, s, measure, describe)


def job_burst(session: Session, item: Prepared, s: Settings) -> list[dict[str, Any]]:
    """`s.burst_size` reviews released at once on `s.burst_connections` warm connections."""

    def measure(server: Served) -> dict[str, Any]:
        command = _generator(
            "benchmarks.burst",
            server,
            item,
            str(session.certs.ca),
            *("--size", str(s.burst_size), "--connections", str(s.burst_connections)),
            *("--bursts", str(s.bursts), "--gap", f"{s.burst_gap:g}"),
        )
        return json_from(command, timeout=s.bursts * (s.burst_gap + 30) + 60)

    def describe(result: dict[str, Any]) -> str:
        return (
            f"{s.burst_size} at once: median {result['median_ms']:.2f} ms  "
            f"p90 {result['p90_ms']:.2f} ms  CPU {result['cpu_us_per_review'] or 0:.0f} us/review"
        )

    return _each_server(session, item, s, measure, describe)


def _ratios(rows: list[dict[str, Any]], fields: tuple[str, ...]) -> list[dict[str, Any]]:
    floor = next((r for r in rows if r["server"] == "floor"), None)
    for row in rows:
        if row["server"] == "ours" and floor:
            for field in fields:
                row[f"{field}_ratio"] = row[field] / floor[field] if floor[field] else None
    rows.sort(key=lambda r: r["server"] != "ours")
    return rows


def _medians(runs: list[dict[str, Any]], fields: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = []
    for server in SERVERS:
        group = [run for run in runs if run["server"] == server]
        if not group:
            continue
        row: dict[str, Any] = {"server": server, "runs": len(group)}
        for field in fields:
            values = [run[field] for run in group if run.get(field) is not None]
            row[field] = statistics.median(values) if values else None
        row["errors"] = sum(run["errors"] for run in group)
        rows.append(row)
    return rows


RATE_FIELDS = (
    "achieved_rps",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
    "dispatch_lag_p99_ms",
    "cpu_us_per_review",
)
BURST_FIELDS = (
    "median_ms",
    "p90_ms",
    "min_ms",
    "max_ms",
    "review_p50_ms",
    "review_p99_ms",
    "cpu_us_per_review",
)


def rate_medians(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = _medians(runs, RATE_FIELDS)
    for row in rows:  # (max - min) / median of the achieved rate, as in the closed loop
        rates = [r["achieved_rps"] for r in runs if r["server"] == row["server"]]
        middle = statistics.median(rates)
        row["spread_pct"] = 100 * (max(rates) - min(rates)) / middle if middle else 0.0
    return _ratios(rows, ("p99_ms", "cpu_us_per_review"))


def burst_medians(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return _ratios(_medians(runs, BURST_FIELDS), ("median_ms", "p90_ms", "cpu_us_per_review"))
