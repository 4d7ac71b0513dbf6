"""What the background audit costs the reviews (python -m benchmarks.audit_cost --pods 10000).

The real `serve` process in cluster mode (TLS, NAD and namespace caches) against the API double
in a process of its own, holding a cluster of `--pods` pods (benchmarks/audit_scale.py). One
client sends a real AdmissionReview after another for `--seconds`, first with nothing else
running, then while the background audit runs back to back (webhook.audit_background: the
child process at lower priority, as `serve --audit-interval` runs it). Prints the review
latency percentiles of both phases and the audit runs' durations, as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

REVIEW = REPO / "tests" / "fixtures" / "admission-reviews" / "create-gpu-pod-no-annotations.json"


def serve_double(directory: Path, pods: int) -> None:
    """The API double with the cluster, until killed (run in a process of its own)."""
    from kube_api_double import KubeApiDouble

    from benchmarks.audit_scale import cluster

    with KubeApiDouble() as api:
        uids: dict[tuple[str, str], str] = {}
        for obj in sorted(cluster(pods), key=lambda o: o["kind"] != "Namespace"):
            for field in ("resourceVersion", "uid", "creationTimestamp", "generation"):
                obj["metadata"].pop(field, None)
            if obj["kind"] == "Event":
                subject = obj["involvedObject"]
                subject["uid"] = uids[(subject["namespace"], subject["name"])]
            created = api.create(obj)["metadata"]
            uids[(created.get("namespace", ""), created["name"])] = created["uid"]
        api.kubeconfig(directory / "kubeconfig.tmp").rename(directory / "kubeconfig")
        signal.sigwait({signal.SIGTERM})


def latencies(client: object, body: bytes, seconds: float) -> list[float]:
    found = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        response = client.post(  # type: ignore[attr-defined]
            "/mutate", content=body, headers={"content-type": "application/json"}
        )
        found.append(time.perf_counter() - started)
        assert response.status_code == 200
    return found


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(share: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000, 2)

    return {
        "reviews": len(values),
        "p50_ms": at(0.50),
        "p90_ms": at(0.90),
        "p99_ms": at(0.99),
        "max_ms": round(max(values) * 1000, 2),
        "mean_ms": round(statistics.fmean(values) * 1000, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--serve-double", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_double:
        serve_double(args.serve_double, args.pods)
        return 0

    from serverproc import serve_in_cluster_mode

    from webhook.audit_background import BackgroundAudit, audit_command

    work = Path(tempfile.mkdtemp())
    double = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.audit_cost",
            "--pods",
            str(args.pods),
            "--serve-double",
            str(work),
        ],
        cwd=REPO,
    )
    try:
        while not (work / "kubeconfig").exists():
            if double.poll() is not None:
                raise SystemExit("the API double did not start")
            time.sleep(0.5)
        server = serve_in_cluster_mode(
            work / "kubeconfig", (REPO / "webhook" / "default-policy.yaml").read_text(), work
        )
        try:
            server.wait_ready(60)
            body = REVIEW.read_bytes()
            with server.client() as client:
                latencies(client, body, 3)  # warm up
                quiet = latencies(client, body, args.seconds)
                command = audit_command(
                    sys.executable,
                    config=None,
                    kubeconfig=work / "kubeconfig",
                    serving_cert=None,
                    webhook_configuration=None,
                )
                audit = BackgroundAudit(command, 0.001, work / "audit-state")
                (work / "audit-state").mkdir()
                stop = threading.Event()

                def audit_loop() -> None:
                    while not stop.is_set():
                        audit.tick()

                runner = threading.Thread(target=audit_loop, daemon=True)
                runner.start()
                time.sleep(1)
                busy = latencies(client, body, args.seconds)
                stop.set()
                runner.join()
            state = audit.state()
            print(
                json.dumps(
                    {
                        "pods": args.pods,
                        "quiet": summary(quiet),
                        "during_audits": summary(busy),
                        "audit_runs": state.get("runs"),
                        "last_audit_s": round(state.get("duration", 0), 2),
                        "cores": os.cpu_count(),
                    }
                )
            )
        finally:
            server.stop()
    finally:
        double.send_signal(signal.SIGTERM)
        double.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
