"""Memory of the DRA claim cache: 10,000 ResourceClaimTemplates held by `serve`'s cache.

    .venv/bin/python -m benchmarks.claims_rss [COUNT]

One fresh process: imports what `serve` imports, reads its RSS, fills a
`webhook.cluster.KubeClaimCache` with COUNT real-looking templates (as a watch delivers them,
`apply("ADDED", obj)` per template), and reads its RSS again. Prints one JSON line.
"""

from __future__ import annotations

import gc
import json
import platform
import sys
from pathlib import Path

import kubernetes.client
import orjson

from webhook.cluster import KubeClaimCache


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def template(index: int) -> bytes:
    return orjson.dumps(
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaimTemplate",
            "metadata": {
                "namespace": f"team-{index % 50}",
                "name": f"gpu-claim-{index:05d}",
                "uid": f"0c6f2d2e-1b7a-4c3e-9f1d-{index:012d}",
                "resourceVersion": str(100_000 + index),
                "labels": {"app.kubernetes.io/part-of": "training", "job": f"job-{index}"},
            },
            "spec": {
                "spec": {
                    "devices": {
                        "requests": [
                            {
                                "name": "gpu",
                                "exactly": {
                                    "deviceClassName": "gpu.nvidia.com",
                                    "allocationMode": "ExactCount",
                                    "count": 1 + index % 8,
                                },
                            }
                        ]
                    }
                }
            },
        }
    )


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    cache = KubeClaimCache(kubernetes.client.ApiClient())
    informer = cache.informers[0]
    gc.collect()
    before = rss_mib()
    for index in range(count):
        informer.apply("ADDED", orjson.loads(template(index)))
    gc.collect()
    after = rss_mib()
    print(
        json.dumps(
            {
                "templates": count,
                "held": cache.size,
                "rss_before_mib": round(before, 1),
                "rss_after_mib": round(after, 1),
                "per_template_bytes": round((after - before) * 1024 * 1024 / count),
                "python": platform.python_version(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
