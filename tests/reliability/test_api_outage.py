"""The API server goes away while admissions keep coming: cluster mode against the API double.

A `serve` process in cluster mode (tests/kube_api_double.py behind a kubeconfig) answers three
probe reviews in a loop the whole time: a pod referencing `sriov-rdma-net` (exists throughout),
`late-net` (created during the outage) and `doomed-net` (deleted during the outage). Then:

  A. the double stops answering (`outage(status=None)`: connections closed, no response);
  B. the double answers every request with 500, and its history is compacted before it comes
     back, so the watches resume from a resourceVersion it no longer has (410 Gone: re-list).

During both phases every admission is answered from the cache, exactly as before the outage
(the created/deleted NADs are not visible yet), /healthz and /readyz stay 200 (readiness only
waits for the first sync: a stale cache after that is still "ready", by design — see
webhook/cluster.py `not_ready`). After recovery the cache converges exactly: `late-net` is
admitted with its NAD's resource, `doomed-net` is refused, the cache sizes equal the double's
object counts (nothing duplicated, nothing left behind), and the watch-restart and re-list
counters moved. The timeline goes to tests/reliability/out/api-outage.json.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import FIXTURES, decoded_patch
from reliability_support import (
    JSON_HEADERS,
    capture,
    metric,
    print_table,
    scaled,
    tls_context,
    wait_for,
    write_report,
)
from serverproc import ServerProcess, serve_in_cluster_mode

from tests.kube_api_double import KubeApiDouble

NAMESPACE = "team-a"
PHASE_SECONDS = scaled(2.5, 20.0)
PROBES = ("sriov-rdma-net", "late-net", "doomed-net")


def _nad(name: str, resource: str) -> dict[str, Any]:
    path = FIXTURES / "nads" / "sriov-rdma-net.yaml"
    nad = copy.deepcopy(next(d for d in yaml.safe_load_all(path.read_text()) if d))
    nad["metadata"] = {
        "name": name,
        "namespace": NAMESPACE,
        "annotations": {"k8s.v1.cni.cncf.io/resourceName": resource},
    }
    return nad


def _review(network: str) -> bytes:
    review = capture("create-gpu-pod-no-annotations.json")
    review["request"]["uid"] = f"outage-{network}"
    review["request"]["object"]["metadata"]["annotations"] = {
        "k8s.v1.cni.cncf.io/networks": network
    }
    return json.dumps(review).encode()


BODIES = {network: _review(network) for network in PROBES}


@pytest.fixture
def api() -> Iterator[KubeApiDouble]:
    with KubeApiDouble() as double:
        double.ensure_namespace(NAMESPACE)
        double.ensure_namespace("gpu-infra")
        for path in sorted((FIXTURES / "nads").glob("*.yaml")):
            for obj in yaml.safe_load_all(path.read_text()):
                if obj:
                    if obj["metadata"]["namespace"] == "ml-training":
                        obj["metadata"]["namespace"] = NAMESPACE
                    double.ensure_namespace(obj["metadata"]["namespace"])
                    double.create(obj)
        double.create(_nad("doomed-net", "example.com/doomed"))
        yield double
        assert double.internal_errors == []


class Admissions:
    """Reviews sent back to back from a thread; every answer kept with its time and phase."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.phase = "before"
        self.answers: list[tuple[float, str, str, int, Any]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="admissions", daemon=True)

    def __enter__(self) -> Admissions:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        deadline = time.monotonic() + 180
        sent = 0
        client = None
        try:
            while not self._stop.is_set() and time.monotonic() < deadline and sent < 20_000:
                if sent % 30 == 0:  # a new connection now and then, as the API server makes
                    if client is not None:
                        client.close()
                    client = httpx.Client(
                        base_url=self.server.url, verify=tls_context(self.server), timeout=5
                    )
                network = PROBES[sent % len(PROBES)]
                sent += 1
                try:
                    response = client.post("/mutate", content=BODIES[network], headers=JSON_HEADERS)
                    answer = response.json().get("response")
                    self.answers.append(
                        (time.monotonic(), self.phase, network, response.status_code, answer)
                    )
                except httpx.HTTPError as error:
                    self.errors.append(f"{self.phase} {network}: {error!r}")
                self._stop.wait(0.01)
        finally:
            if client is not None:
                client.close()

    def latest(self, network: str) -> Any:
        for _, _, name, _, answer in reversed(self.answers):
            if name == network:
                return answer
        return None


def _serve(api: KubeApiDouble, tmp_path: Path) -> ServerProcess:
    return serve_in_cluster_mode(
        api.kubeconfig(tmp_path / "kubeconfig"), "networks: [{name: sriov-rdma-net}]\n", tmp_path
    )


def _metrics(server: ServerProcess) -> dict[str, float | None]:
    with httpx.Client(base_url=server.url, verify=tls_context(server), timeout=5) as client:
        text = client.get("/metrics").text
    names = [
        f"gpu_rdma_injector_{what}_{series}"
        for what in ("nad", "namespace")
        for series in ("cache_size", "cache_synced", "watch_restarts_total", "relists_total")
    ]
    return {name: metric(text, name) for name in names}


def _probe_health(server: ServerProcess) -> tuple[int, int]:
    with httpx.Client(base_url=server.url, verify=tls_context(server), timeout=5) as client:
        return client.get("/healthz").status_code, client.get("/readyz").status_code


def _resources(answer: Any) -> list[str]:
    return [op["path"] for op in decoded_patch(answer) if "/resources/" in op["path"]]


@pytest.mark.slow
@pytest.mark.timeout(scaled(120, 600))
def test_admissions_ride_out_an_api_server_outage(api: KubeApiDouble, tmp_path: Path) -> None:
    server = _serve(api, tmp_path)
    timeline: dict[str, Any] = {}
    t0 = time.monotonic()

    def mark(event: str) -> None:
        timeline[event] = round(time.monotonic() - t0, 2)

    try:
        server.wait_ready()
        mark("ready")
        before = _metrics(server)
        with Admissions(server) as admissions:
            wait_for(lambda: all(admissions.latest(n) for n in PROBES), 10, "first answers")
            baseline = {network: admissions.latest(network) for network in PROBES}
            assert baseline["sriov-rdma-net"]["allowed"] is True
            assert baseline["late-net"]["allowed"] is False
            assert "'late-net' does not exist" in baseline["late-net"]["status"]["message"]
            assert baseline["doomed-net"]["allowed"] is True
            assert any("example.com~1doomed" in p for p in _resources(baseline["doomed-net"]))

            health: dict[str, tuple[int, int]] = {}
            admissions.phase = "A: no answers"
            mark("outage A starts (connections closed, no response)")
            with api.outage(status=None):
                api.create(_nad("late-net", "example.com/late"))
                api.delete("network-attachment-definitions", "doomed-net", NAMESPACE)
                time.sleep(PHASE_SECONDS / 2)
                health["A"] = _probe_health(server)
                time.sleep(PHASE_SECONDS / 2)
                during_a = _metrics(server)
                admissions.phase = "B: 500s"
                mark("outage B starts (every request 500)")
            with api.outage(status=500):
                time.sleep(PHASE_SECONDS / 2)
                health["B"] = _probe_health(server)
                time.sleep(PHASE_SECONDS / 2)
                api.compact()  # the watches must come back to 410 Gone and list again
                admissions.phase = "recovering"
            mark("API server back (history compacted)")

            def converged() -> bool:
                late, doomed = admissions.latest("late-net"), admissions.latest("doomed-net")
                return bool(
                    late["allowed"]
                    and any("example.com~1late" in p for p in _resources(late))
                    and not doomed["allowed"]
                )

            wait_for(converged, 45, "the cache to converge after the outage")
            mark("decisions converged")
            wait_for(
                lambda: all(
                    (_metrics(server)[f"gpu_rdma_injector_{what}_relists_total"] or 0) >= 1
                    for what in ("nad", "namespace")
                ),
                45,
                "both informers to list again (the namespace one may still be backing off)",
                interval=0.25,
            )
            mark("both caches re-listed")
            admissions.phase = "after"
            time.sleep(0.5)
        after = _metrics(server)
    finally:
        exit_code = server.stop()
    mark("server stopped")

    by_phase = Counter((phase, status) for _, phase, _, status, _ in admissions.answers)
    changed = [
        (phase, network, answer)
        for _, phase, network, _, answer in admissions.answers
        if phase.startswith(("A", "B")) and answer != baseline[network]
    ]
    nads_in_double = len(api.objects("network-attachment-definitions"))
    namespaces_in_double = len(api.objects("namespaces"))
    report = {
        "timeline_seconds": timeline,
        "answers_by_phase_and_status": {f"{p} / {s}": n for (p, s), n in sorted(by_phase.items())},
        "transport_errors": admissions.errors[:20],
        "health_during_outage": health,
        "metrics_before": before,
        "metrics_during_A": during_a,
        "metrics_after": after,
        "double_nad_count": nads_in_double,
        "double_namespace_count": namespaces_in_double,
        "double_requests": dict(api.requests),
        "exit_code": exit_code,
    }
    path = write_report("api-outage", report)
    print_table(
        "API server outage",
        ["event", "seconds"],
        sorted(timeline.items(), key=lambda item: item[1]),
    )
    print(f"  answers: {report['answers_by_phase_and_status']}\n  report: {path}")

    assert exit_code == 0, server.log()
    assert admissions.errors == []
    assert all(status == 200 for (_, status) in by_phase), by_phase
    assert by_phase[("A: no answers", 200)] >= 10
    assert by_phase[("B: 500s", 200)] >= 10
    assert changed == [], f"decisions changed during the outage: {changed[:3]}"
    assert health == {"A": (200, 200), "B": (200, 200)}
    # The informers saw the outage...
    assert during_a["gpu_rdma_injector_nad_watch_restarts_total"] > (
        before["gpu_rdma_injector_nad_watch_restarts_total"] or 0
    )
    # ...came back through 410 Gone and a full list, for NADs and namespaces alike...
    for what in ("nad", "namespace"):
        assert after[f"gpu_rdma_injector_{what}_relists_total"] >= 1, after
        assert after[f"gpu_rdma_injector_{what}_watch_restarts_total"] > 0, after
        assert after[f"gpu_rdma_injector_{what}_cache_synced"] == 1, after
    # ...and hold exactly what the API server has: late-net in, doomed-net out, no duplicates.
    assert after["gpu_rdma_injector_nad_cache_size"] == nads_in_double, (after, nads_in_double)
    assert after["gpu_rdma_injector_namespace_cache_size"] == namespaces_in_double
    final = admissions.latest("late-net")
    assert len(_resources(final)) == len(set(_resources(final))), final
    assert "'doomed-net' does not exist" in admissions.latest("doomed-net")["status"]["message"]
