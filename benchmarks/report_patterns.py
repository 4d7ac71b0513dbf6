"""RESULTS.md's sections on the open-loop patterns: 500/s evenly and in bursts, a Job's burst,
and what one replica serves at the chart's CPU request (from the CPU per review measured)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from benchmarks.bodies import ROOT
from benchmarks.tables import OURS, SERVER_NAMES, TIMES, ms, ratio, table, us

CHART_VALUES = ROOT / "charts" / "gpu-rdma-injector" / "values.yaml"


def noise_sentence(results: dict[str, Any], section: str, what: str = "this") -> str:
    measured = (results.get("noise") or {}).get("sections", {}).get(section)
    if not measured:
        return ""
    return (
        f"While {what} was measured other processes used {measured['others_cpu_percent']:.0f}% "
        f"of the machine's CPU (load average {measured['loadavg_start']} before, "
        f"{measured['loadavg_end']} after)."
    )


def _cpu_cores(quantity: str) -> float:
    text = str(quantity).strip()
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def capacity(results: dict[str, Any], values: Path = CHART_VALUES) -> dict[str, Any] | None:
    """Reviews per second one replica serves within the chart's CPU request, and where the
    chart's autoscaler (at its target utilisation) adds a replica."""
    cpus = [
        row["cpu_us_per_review"]
        for key in ("fixed_rate", "burst_rate")
        for row in results.get(key, {}).get("median", [])
        if row["server"] == OURS and row.get("cpu_us_per_review")
    ]
    if not cpus or not values.exists():
        return None
    chart = yaml.safe_load(values.read_text())
    request = chart["resources"]["requests"]["cpu"]
    autoscaling = chart.get("autoscaling") or {}
    target = autoscaling.get("targetCPUUtilizationPercentage")
    cpu_us = max(cpus)  # the dearer of even and bursty arrival: the conservative figure
    per_replica = _cpu_cores(request) / (cpu_us / 1e6)
    return {
        "cpu_request": str(request),
        "cpu_us_per_review": cpu_us,
        "reviews_per_second": per_replica,
        "target_utilization_percent": target,
        "scale_out_above": per_replica * target / 100 if target else None,
    }


def sections(results: dict[str, Any]) -> list[str]:
    out: list[str] = []
    fixed, bursty = results["fixed_rate"], results.get("burst_rate")
    out += [
        f"## Fixed rate: {fixed['rate']:g} reviews/s, {fixed['body']} body (open loop)",
        "",
        f"A Python generator ({fixed['generator']}) sends request i at start + i/rate on "
        f"{fixed['connections']} keep-alive TLS connections whatever happened before, and times "
        "each from its *scheduled* send time, so a stall is not hidden (no coordinated "
        f"omission); {fixed['duration']:g} s measured after {fixed['warmup']:g} s at rate. "
        + (
            f"*In bursts*: the same rate from {bursty['clients']} clients on a connection each, "
            f"every client sending {fixed['rate'] / bursty['clients']:g}/s in step with the "
            f"others, so {bursty['clients']} reviews arrive at once every "
            f"{1000 * bursty['clients'] / fixed['rate']:g} ms. "
            if bursty
            else ""
        )
        + "`lag` is the generator's own delay in picking a request up (its measurement floor); "
        "`CPU` is the server's CPU time over the measured reviews, per review.",
        "",
    ]
    rows = []
    for pattern, section in (("evenly", fixed), ("in bursts", bursty)):
        if not section:
            continue
        for row in section["median"]:
            ours = row["server"] == OURS
            rows.append(
                [
                    pattern,
                    SERVER_NAMES[row["server"]],
                    f"{row['achieved_rps']:.0f}",
                    ms(row["p50_ms"]),
                    ms(row["p90_ms"]),
                    ms(row["p99_ms"]),
                    ms(row["p999_ms"]),
                    ms(row["max_ms"]),
                    ratio(row.get("p99_ms_ratio")) if ours else "",
                    us(row.get("cpu_us_per_review")),
                    str(row["errors"]),
                    ms(row["dispatch_lag_p99_ms"]),
                ]
            )
    out += table(
        [
            *("arrival", "server", "req/s", "p50", "p90", "p99", "p99.9", "max"),
            *(f"p99 {TIMES} floor", "CPU µs/review", "errors", "lag p99"),
        ],
        rows,
    )
    out += ["", noise_sentence(results, "fixed_rate", "the even rate"), ""]
    if bursty:
        out += [noise_sentence(results, "burst_rate", "the rate in bursts"), ""]

    job = results.get("job_burst")
    if job:
        out += [
            f"## A Job's burst: {job['size']} reviews at once on {job['connections']} warm "
            "connections",
            "",
            f"benchmarks/burst.py opens {job['connections']} keep-alive TLS connections, warms "
            f"each with one exchange, then releases {job['size']} identical {job['body']} "
            "reviews at the same instant into a queue the connections take from (each sends its "
            "next when its answer has arrived, as the API server's client does). A burst's time "
            f"is from the release to its last answer; {job['bursts']} bursts, one every "
            f"{job['gap']:g} s. The client is the same Python generator for both servers, so "
            "the floor's time includes the client's own share. Times in ms.",
            "",
        ]
        rows = [
            [
                SERVER_NAMES[row["server"]],
                ms(row["median_ms"]),
                ms(row["p90_ms"]),
                ms(row["min_ms"]),
                ms(row["max_ms"]),
                ratio(row.get("median_ms_ratio")) if row["server"] == OURS else "",
                ms(row["review_p50_ms"]),
                ms(row["review_p99_ms"]),
                us(row.get("cpu_us_per_review")),
                str(row["errors"]),
            ]
            for row in job["median"]
        ]
        out += table(
            [
                *("server", "burst median", "burst p90", "min", "max", f"{TIMES} floor"),
                *("review p50", "review p99", "CPU µs/review", "errors"),
            ],
            rows,
        )
        out += ["", noise_sentence(results, "job_burst"), ""]

    sized = results.get("capacity")
    if sized:
        out += [
            "## One replica at its CPU request",
            "",
            f"The chart requests `{sized['cpu_request']}` of CPU per replica. At "
            f"{sized['cpu_us_per_review']:.0f} µs per review (the dearer of the two arrivals "
            f"at {fixed['rate']:g}/s above) one replica serves about "
            f"**{sized['reviews_per_second']:.0f} reviews/s** within its request (more when "
            "its node has idle CPU: the chart sets no CPU limit)."
            + (
                f" With `autoscaling.enabled` the HorizontalPodAutoscaler aims at "
                f"{sized['target_utilization_percent']}% of the request, so it adds a replica "
                f"once the replicas average above about {sized['scale_out_above']:.0f} "
                "reviews/s each."
                if sized.get("scale_out_above")
                else ""
            ),
            "",
        ]
    return out
