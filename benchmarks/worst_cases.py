"""The worst input of each category a client controls, and what one review of it costs.

A review runs on the server's event loop: while one is decided, no other is. Every category of
input an API client can shape (the networks annotation in both forms and every field of the
JSON form, the default-network annotation, containers, resources, the body's size) is taken to
its worst within the webhook's bounds and the API server's own (256 KiB of annotations, a
3 MiB request body), plus the first input past each bound. Each review is timed in-process from
body bytes to response bytes (`parse_review`, the decision, `build_response`): the CPU one
request takes from the event loop, without TLS and HTTP, which do not depend on the pod.

    .venv/bin/python -m benchmarks.worst_cases            # writes benchmarks/WORST-CASES.md
    .venv/bin/python -m benchmarks.worst_cases --quick --out DIR

The target is under 20 ms per review for every row. Nothing here asserts it: the numbers
depend on the machine, which the output names.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webhook.admission import build_response, decide_request, parse_review
from webhook.claims import (
    MAX_ALTERNATIVES,
    MAX_POD_CLAIMS,
    MAX_REQUESTS,
    NO_CLAIMS,
    ClaimLookup,
    StaticClaims,
    claim_facts_from_object,
)
from webhook.nads import NO_NAMESPACES, StaticNads
from webhook.networks import (
    DEFAULT_NETWORK_ANNOTATION,
    MAX_ATTACHMENTS,
    MAX_CNI_ARGS_VALUES,
    MAX_JSON_BRACKETS,
    MAX_JSON_DEPTH,
    MAX_LIST_ITEMS,
    NETWORKS_ANNOTATION,
)
from webhook.pod import MAX_CONTAINERS, MAX_RESOURCES, TOTAL_ANNOTATION_BYTES
from webhook.policy import Policy, default_policy, parse_policy

ROOT = Path(__file__).resolve().parent.parent
CAPTURE = ROOT / "tests" / "fixtures" / "admission-reviews" / "create-gpu-pod-no-annotations.json"
# The API server's own limit on a request body; the server's --max-body-bytes default matches.
MAX_BODY = 3 * 1024 * 1024
# Room the rest of the pod and the key take, so an annotation value stays under 256 KiB.
ANNOTATION_ROOM = TOTAL_ANNOTATION_BYTES - len(NETWORKS_ANNOTATION) - 64
TARGET_MS = 20.0
DRA = parse_policy(
    "networks: [{name: pool, resourceName: example.com/vf, perGpu: true}]\n"
    "gpuDeviceClasses: [gpu.nvidia.com]",
    "dra",
)
MIG = parse_policy(
    "gpuResources: [nvidia.com/gpu, nvidia.com/mig-*]\n"
    "networks: [{name: pool, resourceName: example.com/vf, perGpu: true}]",
    "mig",
)
PER_GPU = parse_policy(
    "networks: [{name: pool, resourceName: example.com/vf, perGpu: true}]", "per-gpu"
)


@dataclass(frozen=True)
class Case:
    key: str
    what: str
    body: bytes
    policy: Policy
    expect: str  # the outcome the case must produce ("mutated", "denied", ...)
    claims: ClaimLookup = NO_CLAIMS


def _review(
    annotations: dict[str, str] | None = None, containers: list[dict[str, Any]] | None = None
) -> bytes:
    review = json.loads(CAPTURE.read_text())
    pod = review["request"]["object"]
    if annotations is not None:
        pod["metadata"]["annotations"] = annotations
    if containers is not None:
        pod["spec"]["containers"] = containers
    return json.dumps(review, separators=(",", ":")).encode()


def _fill(unit: str, room: int, prefix: str = "", suffix: str = "", sep: str = ",") -> str:
    count = max(1, (room - len(prefix) - len(suffix)) // (len(unit) + len(sep)))
    return prefix + sep.join([unit] * count) + suffix


def _container(index: int, resources: dict[str, str]) -> dict[str, Any]:
    return {
        "name": f"c{index}",
        "image": "x",
        "resources": {"limits": dict(resources), "requests": dict(resources)},
    }


def _containers_filling(room: int, resources: dict[str, str]) -> list[dict[str, Any]]:
    one = len(json.dumps(_container(99999, resources), separators=(",", ":"))) + 1
    return [_container(index, resources) for index in range(room // one)]


def _entries(entry: dict[str, Any], room: int = ANNOTATION_ROOM) -> str:
    """A JSON-form annotation of as many copies of `entry` as fit, leaving room for the one
    network the policy injects (so at most 255)."""
    text = json.dumps(entry, separators=(",", ":"))
    count = min(MAX_ATTACHMENTS - 1, room // (len(text) + 1))
    return "[" + ",".join([text] * count) + "]"


def _dra_case() -> Case:
    """128 containers, each claiming 32 templates of 32 requests of 8 alternatives each."""
    templates = [
        claim_facts_from_object(
            {
                "kind": "ResourceClaimTemplate",
                "metadata": {"namespace": "team-a", "name": f"t{index}"},
                "spec": {
                    "spec": {
                        "devices": {
                            "requests": [
                                {
                                    "name": f"r{request}",
                                    "firstAvailable": [
                                        {
                                            "name": f"a{alt}",
                                            "deviceClassName": f"c{alt}.example.com",
                                        }
                                        for alt in range(MAX_ALTERNATIVES - 1)
                                    ]
                                    + [{"name": "gpu", "deviceClassName": "gpu.nvidia.com"}],
                                }
                                for request in range(MAX_REQUESTS)
                            ]
                        }
                    }
                },
            }
        )
        for index in range(MAX_POD_CLAIMS)
    ]
    refs = [{"name": f"c{index}"} for index in range(MAX_POD_CLAIMS)]
    containers = [
        {"name": f"c{index}", "image": "x", "resources": {"claims": refs}}
        for index in range(MAX_CONTAINERS)
    ]
    body = json.loads(_review(containers=containers))
    body["request"]["object"]["spec"]["resourceClaims"] = [
        {"name": f"c{index}", "resourceClaimTemplateName": f"t{index}"}
        for index in range(MAX_POD_CLAIMS)
    ]
    return Case(
        "dra-claims",
        f"{MAX_CONTAINERS} containers each claiming {MAX_POD_CLAIMS} templates of "
        f"{MAX_REQUESTS} requests of {MAX_ALTERNATIVES} alternatives (Kubernetes' own limits)",
        json.dumps(body, separators=(",", ":")).encode(),
        DRA,
        "denied",
        StaticClaims(templates, authoritative=True),
    )


def _patterns_case() -> Case:
    resources = {f"nvidia.com/mig-{index}g.{index}0gb": "1" for index in range(MAX_RESOURCES)}
    return Case(
        "gpu-patterns",
        f"{MAX_CONTAINERS} containers of {MAX_RESOURCES} resources each, matched against GPU "
        "patterns (perGpu, so past 256 attachments)",
        _review(containers=[_container(index, resources) for index in range(MAX_CONTAINERS)]),
        MIG,
        "denied",
    )


def cases() -> list[Case]:
    name = "x" * 253
    ipv6 = "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"
    gpu = {"nvidia.com/gpu": "1"}
    policy = default_policy()
    respelt = {"NAME": "a", "NameSpace": "team-a", "INTERFACE": "", "Mac": "", "IPS": []}
    return [
        Case(
            "baseline", "a real GPU pod (the capture), default policy", _review(), policy, "mutated"
        ),
        Case(
            "comma-at-bound",
            f"comma form, {MAX_ATTACHMENTS - 1} entries of 253-character names (room for one more)",
            _review({NETWORKS_ANNOTATION: ",".join([name] * (MAX_ATTACHMENTS - 1))}),
            policy,
            "mutated",
        ),
        Case(
            "comma-past-bound",
            "comma form filling 256 KiB with one-letter entries (past 256 entries)",
            _review({NETWORKS_ANNOTATION: _fill("a", ANNOTATION_ROOM)}),
            policy,
            "denied",
        ),
        Case(
            "json-ips",
            f"JSON form, {MAX_ATTACHMENTS - 1} entries of {MAX_LIST_ITEMS} IPv6 addresses",
            _review(
                {
                    NETWORKS_ANNOTATION: _entries(
                        {"name": "a", "ips": [ipv6] * MAX_LIST_ITEMS, "default-route": ["::1"]},
                        ANNOTATION_ROOM,
                    ).replace('},{"name":"a"', '},{"name":"b"', 0)
                }
            ),
            policy,
            "mutated",
        ),
        Case(
            "json-respelt-keys",
            f"JSON form, {MAX_ATTACHMENTS - 1} entries of case-variant keys (a warning each)",
            _review({NETWORKS_ANNOTATION: _entries(respelt, 15_000)}),
            policy,
            "mutated",
        ),
        Case(
            "json-cni-args",
            f"JSON form, entries with {MAX_CNI_ARGS_VALUES} cni-args numbers each (float64 check)",
            _review(
                {
                    NETWORKS_ANNOTATION: _entries(
                        {"name": "a", "cni-args": {"k": [1e308] * (MAX_CNI_ARGS_VALUES - 1)}}
                    )
                }
            ),
            policy,
            "mutated",
        ),
        Case(
            "json-brackets-at-bound",
            f"JSON form, {MAX_JSON_BRACKETS} '[' and '{{' in all, 256 KiB of numbers beside them",
            _review(
                {
                    NETWORKS_ANNOTATION: '[{"name":"a","x":['
                    + ",".join(["{}"] * (MAX_JSON_BRACKETS - 4))
                    + "],"
                    + _fill("1", ANNOTATION_ROOM - 4 * MAX_JSON_BRACKETS, '"y":[', "]}]")
                }
            ),
            policy,
            "mutated",
        ),
        Case(
            "json-brackets-past-bound",
            "JSON form, one entry whose unknown key holds 256 KiB of empty objects",
            _review(
                {NETWORKS_ANNOTATION: _fill("{}", ANNOTATION_ROOM, '[{"name":"a","x":[', "]}]")}
            ),
            policy,
            "denied",
        ),
        Case(
            "json-depth-past-bound",
            f"JSON form nested {MAX_JSON_DEPTH + 1} deep",
            _review({NETWORKS_ANNOTATION: "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)}),
            policy,
            "denied",
        ),
        Case(
            "json-escapes",
            "JSON form, a 256 KiB name written as \\u escapes",
            _review(
                {NETWORKS_ANNOTATION: _fill("\\u0061", ANNOTATION_ROOM, '[{"name":"', '"}]', "")}
            ),
            policy,
            "denied",
        ),
        Case(
            "default-network",
            "default-network in JSON form with 256 entries (past its bound of one)",
            _review({DEFAULT_NETWORK_ANNOTATION: json.dumps([{"name": name}] * MAX_ATTACHMENTS)}),
            policy,
            "denied",
        ),
        Case(
            "annotations-past-limit",
            "1 MiB of annotations (past the API server's 256 KiB)",
            _review({NETWORKS_ANNOTATION: "a" * (1024 * 1024)}),
            policy,
            "denied",
        ),
        Case(
            "containers-at-bound",
            f"{MAX_CONTAINERS} containers, each with one GPU, perGpu network",
            _review(containers=[_container(index, gpu) for index in range(MAX_CONTAINERS)]),
            PER_GPU,
            "mutated",
        ),
        Case(
            "containers-past-bound",
            "3 MiB of containers, each with one GPU",
            _review(containers=_containers_filling(MAX_BODY - 8 * 1024, gpu)),
            policy,
            "denied",
        ),
        Case(
            "resources",
            "one container with 3 MiB of distinct extended resources (past 32 per container)",
            _review(
                containers=[
                    _container(
                        0,
                        {**gpu, **{f"example.com/r{index}": "1" for index in range(60_000)}},
                    )
                ]
            ),
            policy,
            "denied",
        ),
        _dra_case(),
        _patterns_case(),
    ]


@dataclass
class Timing:
    parse_ms: list[float]
    decide_ms: list[float]
    outcome: str = ""
    response_bytes: int = 0


def _time(case: Case, repeat: int) -> Timing:
    """CPU time of this thread: the event loop's cost, whatever else the machine does."""
    nads = StaticNads((), authoritative=False)
    timing = Timing([], [])
    for _ in range(repeat):
        started = time.thread_time()
        request = parse_review(case.body)
        parsed = time.thread_time()
        decision = decide_request(request, case.policy, nads, NO_NAMESPACES, claims=case.claims)
        response = build_response(request.uid, decision)
        done = time.thread_time()
        timing.parse_ms.append((parsed - started) * 1000)
        timing.decide_ms.append((done - parsed) * 1000)
        timing.outcome, timing.response_bytes = decision.outcome, len(response)
    return timing


def _machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def _commit() -> str:
    result = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return result.stdout.strip() or "unknown"


def run(repeat: int) -> dict[str, Any]:
    rows = []
    built = cases()
    # As `serve` does after start-up: what lives as long as the process stays out of the
    # collector's full passes, so a review does not pay for walking it.
    gc.collect()
    gc.freeze()
    for case in built:
        timing = _time(case, repeat)
        rows.append(
            {
                "key": case.key,
                "what": case.what,
                "body_bytes": len(case.body),
                "outcome": timing.outcome,
                "expected_outcome": case.expect,
                "response_bytes": timing.response_bytes,
                "parse_median_ms": round(statistics.median(timing.parse_ms), 3),
                "decide_median_ms": round(statistics.median(timing.decide_ms), 3),
                "decide_max_ms": round(max(timing.decide_ms), 3),
                "total_max_ms": round(
                    max(p + d for p, d in zip(timing.parse_ms, timing.decide_ms, strict=True)), 3
                ),
            }
        )
    return {
        "machine": _machine(),
        "commit": _commit(),
        "date": time.strftime("%Y-%m-%d"),
        "repeat": repeat,
        "target_ms": TARGET_MS,
        "rows": rows,
    }


def render(results: dict[str, Any]) -> str:
    lines = [
        "# Worst input per category: one review's time",
        "",
        f"`python -m benchmarks.worst_cases` on {results['machine']}, commit {results['commit']}, "
        f"{results['date']}; each review {results['repeat']} times in one process (no TLS or "
        "HTTP), CPU time of the thread. *parse* is `parse_review` (orjson reading the body), "
        "*decide* is the decision and the response bytes. Target: under "
        f"{results['target_ms']:.0f} ms each.",
        "",
        "| case | input | body | outcome | parse (median) | decide (median) | decide (max) "
        "| parse + decide (max) | within target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    over = [row for row in results["rows"] if row["total_max_ms"] >= results["target_ms"]]
    decided = all(row["decide_max_ms"] < results["target_ms"] for row in results["rows"])
    for row in results["rows"]:
        within = "yes" if row["total_max_ms"] < results["target_ms"] else "**no**"
        lines.append(
            f"| `{row['key']}` | {row['what']} | {row['body_bytes'] / 1024:,.0f} KiB | "
            f"{row['outcome']} | {row['parse_median_ms']:.2f} ms | "
            f"{row['decide_median_ms']:.2f} ms | {row['decide_max_ms']:.2f} ms | "
            f"{row['total_max_ms']:.2f} ms | {within} |"
        )
    if over:
        names = ", ".join(f"`{row['key']}`" for row in over)
        why = (
            "In each the time is the parse of the body itself (orjson building the objects of "
            "up to 3 MiB, the API server's own limit on a request), before any bound of the "
            "webhook can look at it; the decision is under the target in every row."
            if decided
            else "Some decisions are over the target too."
        )
        lines += ["", f"Over the target: {names}. {why}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repetitions instead of 30")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks", metavar="DIR")
    args = parser.parse_args(argv)
    results = run(3 if args.quick else 30)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "worst-cases.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "WORST-CASES.md").write_text(render(results))
    print(render(results), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
