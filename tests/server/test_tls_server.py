"""The real server process over real TLS with generated certificates."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import FIXTURES, decoded_patch
from serverproc import ServerProcess

from webhook.certs import generate_bundle, generate_ca, generate_serving, write_bundle

REAL = FIXTURES / "admission-reviews"
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server")


@pytest.fixture(scope="module")
def server(workdir: Path) -> Iterator[ServerProcess]:
    paths = generate_bundle(workdir / "tls", ["localhost", "127.0.0.1"])
    policy = workdir / "policy.yaml"
    policy.write_text(
        "networks: [{name: sriov-rdma-net, resourceName: openshift.io/mellanoxnics}]\n"
    )
    proc = ServerProcess.with_certificate(
        paths,
        workdir,
        "--config",
        str(policy),
        "--reload-interval",
        "0.2",
    )
    try:
        proc.wait_ready()
        yield proc
    finally:
        assert proc.stop() == 0, proc.log()


@pytest.mark.parametrize("name", sorted(p.name for p in REAL.glob("*.json")))
def test_real_reviews_get_well_formed_answers(server: ServerProcess, name: str) -> None:
    body = (REAL / name).read_bytes()
    with server.client() as client:
        response = client.post("/mutate", content=body, headers=JSON)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    review = response.json()
    assert review["apiVersion"] == "admission.k8s.io/v1"
    assert review["kind"] == "AdmissionReview"
    assert review["response"]["uid"] == json.loads(body)["request"]["uid"]


def test_gzip_accepting_client_like_the_api_server(server: ServerProcess) -> None:
    body = (REAL / "create-gpu-pod-no-annotations.json").read_bytes()
    headers = {**JSON, "accept-encoding": "gzip", "user-agent": "kube-apiserver-admission"}
    with server.client() as client:
        response = client.post("/mutate", content=body, headers=headers)
    assert response.status_code == 200
    assert decoded_patch(response.json()["response"])[0]["path"] == "/metadata/annotations"


@pytest.mark.parametrize(
    ("body", "headers", "status", "fragment"),
    [
        (b"{not json", JSON, 400, "not valid JSON"),
        (b'{"kind": "Pod", "apiVersion": "v1"}', JSON, 400, "must be an AdmissionReview"),
        (
            b'{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{}}',
            JSON,
            400,
            "no uid",
        ),
        (b"{}", {"content-type": "text/plain"}, 415, "content type must be application/json"),
        (b"x" * (3 * 1024 * 1024 + 1), JSON, 413, "larger than"),
    ],
)
def test_malformed_requests_get_one_line_4xx(
    server: ServerProcess, body: bytes, headers: dict[str, str], status: int, fragment: str
) -> None:
    with server.client() as client:
        response = client.post("/mutate", content=body, headers=headers)
        assert response.status_code == status
        message = response.json()["message"]
        assert fragment in message
        assert "\n" not in message
        # ... and the server keeps serving.
        assert client.get("/healthz").status_code == 200


def test_wrong_method(server: ServerProcess) -> None:
    with server.client() as client:
        assert client.get("/mutate").status_code == 405


def test_health_ready_metrics(server: ServerProcess) -> None:
    review = json.loads((REAL / "create-gpu-pod-no-annotations.json").read_bytes())
    review["request"]["namespace"] = "metrics-test"  # a pod no other test sends
    pod = json.dumps(review).encode()
    with server.client() as client:
        assert client.get("/healthz").text == "ok\n"
        assert client.get("/readyz").text == "ready\n"
        client.post("/mutate", content=(REAL / "update-label.json").read_bytes(), headers=JSON)
        before = _samples(client.get("/metrics").text)
        for _ in range(3):  # decided once, then answered from memory twice
            assert client.post("/mutate", content=pod, headers=JSON).status_code == 200
        metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert (
        'gpu_rdma_injector_admissions_total{outcome="skipped",reason="not-a-create"}'
        in metrics.text
    )
    assert "gpu_rdma_injector_admission_duration_seconds_bucket" in metrics.text
    assert "gpu_rdma_injector_certificate_expiry_timestamp_seconds" in metrics.text
    after = _samples(metrics.text)
    kept = "gpu_rdma_injector_kept_answer"
    assert after[f"{kept}s"] == before[f"{kept}s"] + 1
    assert after[f"{kept}_misses_total"] == before[f"{kept}_misses_total"] + 1
    assert after[f"{kept}_hits_total"] == before[f"{kept}_hits_total"] + 2


def _samples(text: str) -> dict[str, float]:
    """Unlabelled samples of a Prometheus text page."""
    return {
        name: float(value)
        for name, _, value in (line.partition(" ") for line in text.splitlines())
        if name and not name.startswith("#") and "{" not in name
    }


def test_one_json_log_line_per_admission_without_pod_spec(server: ServerProcess) -> None:
    body = (REAL / "create-generatename-json-annotation-sidecar-8gpu.json").read_bytes()
    with server.client() as client:
        client.post("/mutate", content=body, headers=JSON)
    entry = _wait_for_log_line(server, "eb0a5339-c084-4404-9204-e68ce8032c87")
    assert entry["msg"] == "admission"
    assert entry["namespace"] == "team-a"
    assert entry["pod"] == "llm-train-*"
    assert entry["outcome"] == "denied"
    assert isinstance(entry["duration_ms"], float)
    assert "NCCL_IB_HCA" not in server.log()


def _wait_for_log_line(server: ServerProcess, uid: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        for line in server.log().splitlines():
            if line.startswith("{") and (entry := json.loads(line)).get("uid") == uid:
                return entry  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"no log line for {uid} within 10 s"
        time.sleep(0.05)


def test_an_early_413_closes_the_connection(server: ServerProcess) -> None:
    """Answered before the body was read, the connection must close: the rest of the body must
    never be read as a next request. (Left open, only the 10 s head deadline would close it.)"""
    context = ssl.create_default_context(cafile=str(server.ca_file))
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(
            b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: 4194304\r\n\r\n" + b"{" * 1024
        )
        answer = b""
        tls.settimeout(5)  # half the head deadline: a close after that is not this close
        while chunk := tls.recv(65536):
            answer += chunk
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 413")
    assert b"connection: close" in head


def test_a_deleted_policy_file_is_logged_and_counted(workdir: Path) -> None:
    paths = generate_bundle(workdir / "deleted-policy-tls", ["localhost"])
    policy = workdir / "deleted-policy.yaml"
    policy.write_text("networks: [{name: rail-1, resourceName: example.com/rail_1}]\n")
    proc = ServerProcess.with_certificate(
        paths, workdir, "--config", str(policy), "--reload-interval", "0.1"
    )
    try:
        proc.wait_ready()
        policy.unlink()
        rejected = 'gpu_rdma_injector_policy_reloads_total{result="rejected"} 1.0'
        deadline = time.monotonic() + 10
        with proc.client() as client:
            while rejected not in (metrics := client.get("/metrics").text):
                assert time.monotonic() < deadline, proc.log()
                time.sleep(0.1)
        assert "gpu_rdma_injector_policy_last_reload_valid 0.0" in metrics
        assert "cannot be read (No such file or directory)" in proc.log()
    finally:
        assert proc.stop() == 0, proc.log()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_1_1_is_refused_and_1_2_uses_modern_ciphers(server: ServerProcess) -> None:
    old = ssl.create_default_context(cafile=str(server.ca_file))
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError):
        _handshake(server, old)
    tls12 = ssl.create_default_context(cafile=str(server.ca_file))
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    version, cipher = _handshake(server, tls12)
    assert version == "TLSv1.2"
    assert cipher.startswith("ECDHE-")
    assert "GCM" in cipher or "CHACHA20" in cipher
    assert (
        _handshake(server, ssl.create_default_context(cafile=str(server.ca_file)))[0] == "TLSv1.3"
    )


def _handshake(server: ServerProcess, context: ssl.SSLContext) -> tuple[str, str]:
    with (
        socket.create_connection(("127.0.0.1", server.port)) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        cipher = tls.cipher()
        assert cipher is not None
        return str(tls.version()), cipher[0]


def test_policy_hot_reload(server: ServerProcess, workdir: Path) -> None:
    body = (REAL / "create-gpu-pod-no-annotations.json").read_bytes()
    policy = workdir / "policy.yaml"
    policy.write_text("networks: [{name: rail-1, resourceName: example.com/rail_1}]\n")
    deadline = time.monotonic() + 10
    with server.client() as client:
        while time.monotonic() < deadline:
            patch = decoded_patch(
                client.post("/mutate", content=body, headers=JSON).json()["response"]
            )
            if patch[0]["value"] == {"k8s.v1.cni.cncf.io/networks": "rail-1"}:
                break
            time.sleep(0.1)
        else:
            pytest.fail("new policy not used within 10 s")
        policy.write_text("networks: [{name: NOT VALID}]\n")
        rejected = 'gpu_rdma_injector_policy_reloads_total{result="rejected"} 1.0'
        while rejected not in (metrics := client.get("/metrics").text):
            assert time.monotonic() < deadline + 10, "the bad policy was not noticed in 10 s"
            time.sleep(0.1)
        patch = decoded_patch(client.post("/mutate", content=body, headers=JSON).json()["response"])
        assert patch[0]["value"] == {"k8s.v1.cni.cncf.io/networks": "rail-1"}
    assert 'gpu_rdma_injector_policy_reloads_total{result="rejected"} 1.0' in metrics
    assert "gpu_rdma_injector_policy_last_reload_valid 0.0" in metrics
    assert "policy reload rejected" in server.log()


def test_certificate_rotation_without_restart(workdir: Path) -> None:
    ca = generate_ca()
    tls_dir = workdir / "rotating"
    paths = write_bundle(tls_dir, ca, generate_serving(ca, ["localhost"]))
    proc = ServerProcess.with_certificate(
        paths,
        workdir,
        "--reload-interval",
        "0.2",
    )
    try:
        proc.wait_ready()
        before = proc.served_serial()
        renewed = generate_serving(ca, ["localhost"])
        write_bundle(tls_dir, ca, renewed)
        deadline = time.monotonic() + 10
        while proc.served_serial() == before:
            assert time.monotonic() < deadline, "renewed certificate not served within 10 s"
            time.sleep(0.1)
        assert proc.served_serial() == renewed.cert.serial_number
    finally:
        assert proc.stop() == 0


def test_mutual_tls(workdir: Path) -> None:
    server_paths = generate_bundle(workdir / "mtls-server", ["localhost"])
    client_ca = generate_ca("api-server clients")
    client = generate_serving(client_ca, ["kube-apiserver"], client_auth=True)
    client_paths = write_bundle(workdir / "mtls-client", client_ca, client)
    proc = ServerProcess.with_certificate(
        server_paths,
        workdir,
        "--client-ca-file",
        str(client_paths.ca_cert),
    )
    try:
        with_cert = ssl.create_default_context(cafile=str(server_paths.ca_cert))
        with_cert.load_cert_chain(str(client_paths.cert), str(client_paths.key))
        deadline = time.monotonic() + 20
        while True:
            try:
                with httpx.Client(verify=with_cert) as c:
                    assert c.get(f"{proc.url}/readyz").status_code == 200
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, proc.log()
                time.sleep(0.1)
        with pytest.raises(httpx.HTTPError), proc.client() as c:
            c.get("/readyz")
    finally:
        assert proc.stop() == 0


def test_development_certificates_are_generated(workdir: Path) -> None:
    dev = workdir / "dev-run"
    dev.mkdir()
    proc = ServerProcess([], dev / "certs" / "dev" / "ca.crt", dev)
    try:
        proc.wait_ready()
        assert (dev / "certs" / "dev" / "tls.key").stat().st_mode & 0o077 == 0
        assert "development certificates" in proc.log()
    finally:
        assert proc.stop() == 0


def test_bad_policy_file_stops_start_up_with_one_line(workdir: Path) -> None:
    bad = workdir / "bad.yaml"
    bad.write_text("networks: [{name: a, perGpu: sure}]\n")
    proc = ServerProcess(["--config", str(bad)], None, workdir)
    assert proc.process.wait(timeout=20) == 2
    proc.stop()
    assert proc.log().strip() == (
        f"error: policy file '{bad}': networks[0].perGpu: Input should be a valid boolean, "
        "unable to interpret input (got 'sure')"
    )


def test_workers_share_the_port_and_stop_cleanly(workdir: Path) -> None:
    paths = generate_bundle(workdir / "workers-tls", ["localhost"])
    proc = ServerProcess.with_certificate(paths, workdir, "--workers", "2")
    try:
        proc.wait_ready()
        children = Path(f"/proc/{proc.process.pid}/task/{proc.process.pid}/children")
        deadline = time.monotonic() + 10
        while len(children.read_text().split()) != 2:
            assert time.monotonic() < deadline, children.read_text()
            time.sleep(0.1)
        workers = children.read_text().split()
        body = (REAL / "create-gpu-pod-no-annotations.json").read_bytes()
        for _ in range(20):  # a new connection each time: the kernel spreads them
            with proc.client() as client:
                assert client.post("/mutate", content=body, headers=JSON).status_code == 200
        os.kill(int(workers[0]), signal.SIGKILL)  # a crashed worker is replaced
        deadline = time.monotonic() + 15
        while True:
            now = children.read_text().split()
            if len(now) == 2 and workers[0] not in now:
                break
            assert time.monotonic() < deadline, now
            time.sleep(0.1)
        proc.wait_ready()
        workers = now
    finally:
        assert proc.stop() == 0, proc.log()
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists()
