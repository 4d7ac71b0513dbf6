"""Cluster mode end to end: the real `serve` process reads NADs and namespaces from the API double.

The double (tests/kube_api_double.py) is a stand-in for kube-apiserver that speaks its wire
protocol; the webhook talks to it through the real `kubernetes` client via a kubeconfig.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FIXTURES, decoded_patch
from serverproc import ServerProcess, serve_in_cluster_mode

from tests.kube_api_double import KubeApiDouble

REVIEW = FIXTURES / "admission-reviews" / "create-gpu-pod-no-annotations.json"
NADS = FIXTURES / "nads"
JSON = {"content-type": "application/json"}


def _load_nads(api: KubeApiDouble, namespace: str = "team-a") -> None:
    for path in sorted(NADS.glob("*.yaml")):
        for obj in _docs(path):
            if obj["metadata"]["namespace"] == "ml-training":
                obj["metadata"]["namespace"] = namespace
            api.ensure_namespace(obj["metadata"]["namespace"])
            api.create(obj)


def _docs(path: Path) -> list[dict]:  # type: ignore[type-arg]
    import yaml

    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _review(annotation: str | None = None) -> bytes:
    review = json.loads(REVIEW.read_bytes())
    if annotation is not None:
        review["request"]["object"]["metadata"]["annotations"] = {
            "k8s.v1.cni.cncf.io/networks": annotation
        }
    return json.dumps(review).encode()


@pytest.fixture
def api() -> Iterator[KubeApiDouble]:
    with KubeApiDouble() as double:
        double.ensure_namespace("team-a", annotations={"team": "a"})
        _load_nads(double)
        yield double
        assert double.internal_errors == []


def _serve(api: KubeApiDouble, tmp_path: Path, policy: str) -> ServerProcess:
    return serve_in_cluster_mode(api.kubeconfig(tmp_path / "kubeconfig"), policy, tmp_path)


def test_resource_comes_from_the_nad_and_typos_are_refused(
    api: KubeApiDouble, tmp_path: Path
) -> None:
    server = _serve(api, tmp_path, "networks: [{name: sriov-rdma-net}]\n")
    try:
        server.wait_ready()
        with server.client() as client:
            answer = client.post("/mutate", content=_review(), headers=JSON).json()["response"]
            patch = decoded_patch(answer)
            assert patch[1]["path"] == (
                "/spec/containers/0/resources/limits/openshift.io~1mellanoxnics"
            )
            refused = client.post(
                "/mutate", content=_review("sriov-rdma-nett"), headers=JSON
            ).json()["response"]
            assert refused["allowed"] is False
            assert (
                "'sriov-rdma-nett' does not exist in namespace 'team-a'"
                in (refused["status"]["message"])
            )
            assert "sriov-rdma-net" in refused["status"]["message"]
            metrics = client.get("/metrics").text
        assert "gpu_rdma_injector_nad_cache_size 12.0" in metrics  # the fixtures hold 12 NADs
        assert "gpu_rdma_injector_nad_cache_synced 1.0" in metrics
        assert "gpu_rdma_injector_namespace_cache_synced 1.0" in metrics
        assert "gpu_rdma_injector_nad_watch_restarts_total" in metrics
    finally:
        assert server.stop() == 0, server.log()


def test_new_nads_are_seen_without_a_restart(api: KubeApiDouble, tmp_path: Path) -> None:
    server = _serve(api, tmp_path, "networks: [{name: sriov-rdma-net}]\n")
    try:
        server.wait_ready()
        new = _docs(NADS / "sriov-rdma-net.yaml")[0]
        new["metadata"].update(name="late-net", namespace="team-a")
        new["metadata"]["annotations"]["k8s.v1.cni.cncf.io/resourceName"] = "example.com/late"
        api.create(new)
        deadline = time.monotonic() + 10
        with server.client() as client:
            while True:
                answer = client.post("/mutate", content=_review("late-net"), headers=JSON).json()[
                    "response"
                ]
                if answer["allowed"]:
                    break
                assert time.monotonic() < deadline, answer
                time.sleep(0.1)
        assert any("example.com~1late" in op["path"] for op in decoded_patch(answer))
    finally:
        assert server.stop() == 0, server.log()


def test_readiness_waits_for_the_first_list_and_health_does_not(
    api: KubeApiDouble, tmp_path: Path
) -> None:
    with api.outage(status=503):
        server = _serve(api, tmp_path, "networks: [{name: sriov-rdma-net}]\n")
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    with server.client() as client:
                        health = client.get("/healthz")
                        ready = client.get("/readyz")
                    break
                except Exception:
                    assert time.monotonic() < deadline, server.log()
                    time.sleep(0.1)
            assert health.status_code == 200
            assert ready.status_code == 503
            assert "waiting for the first list of NetworkAttachmentDefinitions" in ready.text
        except BaseException:
            server.stop()
            raise
    try:
        server.wait_ready()
    finally:
        assert server.stop() == 0, server.log()


def test_namespace_annotation_chooses_the_networks(api: KubeApiDouble, tmp_path: Path) -> None:
    namespace = api.get("namespaces", "team-a")
    assert namespace is not None
    namespace["metadata"]["annotations"] = {"gpu-rdma-injector/networks": "rail-3"}
    api.update(namespace)
    server = _serve(api, tmp_path, "networks: [{name: sriov-rdma-net}]\n")
    try:
        server.wait_ready()
        with server.client() as client:
            answer = client.post("/mutate", content=_review(), headers=JSON).json()["response"]
        assert decoded_patch(answer)[0]["value"] == {"k8s.v1.cni.cncf.io/networks": "rail-3"}
    finally:
        assert server.stop() == 0, server.log()


def test_no_cluster_is_one_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "webhook", "serve", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: Cannot load the in-cluster Kubernetes configuration")
    assert result.stderr.strip().endswith("or pass --no-kube to use the policy alone")


def test_mutate_against_a_nad_file_and_a_cluster(api: KubeApiDouble, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("networks: [{name: sriov-rdma-net}]\n")
    nad_file = tmp_path / "nads.yaml"
    nad = _docs(NADS / "sriov-rdma-net.yaml")[0]
    nad["metadata"]["namespace"] = "team-a"
    nad_file.write_text(json.dumps(nad))
    for source in (
        ["--nads", str(nad_file)],
        ["--kubeconfig", str(api.kubeconfig(tmp_path / "kc"))],
    ):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "webhook",
                "mutate",
                str(REVIEW),
                "--config",
                str(policy),
                *source,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "openshift.io~1mellanoxnics" in result.stdout
        typo = subprocess.run(
            [sys.executable, "-m", "webhook", "mutate", "-", "--config", str(policy), *source],
            input=_review("sriov-rdma-nett").decode(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert typo.returncode == 1
        assert "does not exist in namespace 'team-a'" in typo.stderr


def test_a_reload_that_changes_the_nad_annotation_keys_is_refused(
    api: KubeApiDouble, tmp_path: Path
) -> None:
    """The NAD cache is keyed by resourceNameAnnotations: a new policy file that changes them is
    rejected (log line, metric) until a restart; the old keys keep deciding."""
    server = _serve(api, tmp_path, "networks: [{name: sriov-rdma-net}]\n")
    try:
        server.wait_ready()
        (tmp_path / "policy.yaml").write_text(
            "networks: [{name: sriov-rdma-net}]\nresourceNameAnnotations: [example.com/other]\n"
        )
        deadline = time.monotonic() + 20
        with server.client() as client:
            while 'policy_reloads_total{result="rejected"} 1.0' not in client.get("/metrics").text:
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.2)
            answer = client.post("/mutate", content=_review(), headers=JSON).json()["response"]
        assert any("openshift.io~1mellanoxnics" in op["path"] for op in decoded_patch(answer)), (
            answer
        )
        log = server.log()
        assert "policy reload rejected" in log
        assert "resourceNameAnnotations cannot change while the webhook runs" in log
    finally:
        assert server.stop() == 0, server.log()
