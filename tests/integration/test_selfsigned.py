"""Self-signed certificate mode through the real `kubernetes` client against the API double.

The double (tests/kube_api_double.py) speaks the API server's wire format, including optimistic
concurrency: a PUT with a stale resourceVersion gets 409 Conflict.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.kube_api_double import KubeApiDouble
from webhook.certs import generate_ca, generate_serving
from webhook.selfsigned import (
    Bundle,
    Renewer,
    SelfSignedCertificates,
    SelfSignedError,
    SelfSignedSettings,
    bundle_from_secret,
)

NAMESPACE = "gpu-rdma-injector"
SECRET = "gpu-rdma-injector-tls"
WEBHOOK = "gpu-rdma-injector"


@pytest.fixture
def api() -> Iterator[KubeApiDouble]:
    with KubeApiDouble() as double:
        double.ensure_namespace(NAMESPACE)
        double.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {
                    "name": SECRET,
                    "namespace": NAMESPACE,
                    "annotations": {"helm.sh/resource-policy": "keep"},
                },
            }
        )
        double.create(
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "MutatingWebhookConfiguration",
                "metadata": {"name": WEBHOOK},
                "webhooks": [
                    {
                        "name": "pods.gpu-rdma-injector.io",
                        "admissionReviewVersions": ["v1"],
                        "sideEffects": "None",
                        "clientConfig": {
                            "service": {
                                "name": WEBHOOK,
                                "namespace": NAMESPACE,
                                "path": "/mutate",
                                "port": 443,
                            }
                        },
                        "rules": [
                            {
                                "apiGroups": [""],
                                "apiVersions": ["v1"],
                                "operations": ["CREATE"],
                                "resources": ["pods"],
                            }
                        ],
                    }
                ],
            }
        )
        yield double
        assert double.internal_errors == []


def replica(api: KubeApiDouble, directory: Path) -> SelfSignedCertificates:
    settings = SelfSignedSettings(
        namespace=NAMESPACE,
        secret_name=SECRET,
        webhook_configuration=WEBHOOK,
        service_name="gpu-rdma-injector",
        cert_file=directory / "tls.crt",
        key_file=directory / "tls.key",
    )
    return SelfSignedCertificates(api.api_client(), settings)


def stored(api: KubeApiDouble) -> Bundle:
    secret = api.get("secrets", SECRET, NAMESPACE)
    assert secret is not None
    bundle = bundle_from_secret(secret.get("data"))
    assert bundle is not None
    return bundle


def ca_bundle(api: KubeApiDouble) -> bytes:
    configuration = api.get("mutatingwebhookconfigurations", WEBHOOK)
    assert configuration is not None
    return base64.b64decode(configuration["webhooks"][0]["clientConfig"]["caBundle"])


def test_fills_the_empty_secret_writes_files_and_injects_the_ca(
    api: KubeApiDouble, tmp_path: Path
) -> None:
    bundle = replica(api, tmp_path).ensure()
    assert stored(api).serving.cert == bundle.serving.cert
    assert ca_bundle(api) == bundle.trust_pem
    assert (tmp_path / "tls.crt").read_bytes() == bundle.serving.cert_pem()
    assert (tmp_path / "tls.key").stat().st_mode & 0o777 == 0o600
    san = bundle.serving.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == [
        "gpu-rdma-injector",
        "gpu-rdma-injector.gpu-rdma-injector",
        "gpu-rdma-injector.gpu-rdma-injector.svc",
        "gpu-rdma-injector.gpu-rdma-injector.svc.cluster.local",
    ]
    secret = api.get("secrets", SECRET, NAMESPACE)
    assert secret is not None
    assert secret["type"] == "Opaque"
    assert secret["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}


def test_a_second_start_reuses_the_secret(api: KubeApiDouble, tmp_path: Path) -> None:
    first = replica(api, tmp_path / "a").ensure()
    writes = api.requests["update"]
    second = replica(api, tmp_path / "b").ensure()
    assert second.serving.cert == first.serving.cert
    assert api.requests["update"] == writes, "a valid Secret must not be rewritten"


def test_two_replicas_racing_end_with_one_certificate(api: KubeApiDouble, tmp_path: Path) -> None:
    for attempt in range(5):
        secret = api.get("secrets", SECRET, NAMESPACE)
        assert secret is not None
        secret.pop("data", None)
        api.update(secret)
        barrier = threading.Barrier(2)
        results: dict[str, Any] = {}

        def start(
            name: str,
            attempt: int = attempt,
            barrier: threading.Barrier = barrier,
            results: dict[str, Any] = results,
        ) -> None:
            certificates = replica(api, tmp_path / f"{attempt}-{name}")
            barrier.wait()
            results[name] = certificates.ensure()

        threads = [threading.Thread(target=start, args=(name,)) for name in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert results["a"].serving.cert == results["b"].serving.cert
        assert stored(api).serving.cert == results["a"].serving.cert
        assert ca_bundle(api) == results["a"].trust_pem
        assert (tmp_path / f"{attempt}-a" / "tls.crt").read_bytes() == (
            tmp_path / f"{attempt}-b" / "tls.crt"
        ).read_bytes()
    assert api.requests.get("update", 0) >= 5


def test_renews_before_expiry_keeping_the_ca(api: KubeApiDouble, tmp_path: Path) -> None:
    certificates = replica(api, tmp_path)
    first = certificates.ensure()
    expiring = generate_serving(first.ca, certificates.settings.dns_names(), days=10)
    secret = api.get("secrets", SECRET, NAMESPACE)
    assert secret is not None
    secret["data"]["tls.crt"] = base64.b64encode(expiring.cert_pem()).decode()
    secret["data"]["tls.key"] = base64.b64encode(expiring.key_pem()).decode()
    api.update(secret)
    renewed = certificates.ensure()
    assert renewed.serving.cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(
        days=300
    )
    assert renewed.ca.cert == first.ca.cert
    assert ca_bundle(api) == first.trust_pem
    assert (tmp_path / "tls.crt").read_bytes() == renewed.serving.cert_pem()


def test_expiring_ca_is_replaced_and_the_old_one_still_trusted(
    api: KubeApiDouble, tmp_path: Path
) -> None:
    old_ca = generate_ca(days=40)
    certificates = replica(api, tmp_path)
    old = generate_serving(old_ca, certificates.settings.dns_names())
    secret = api.get("secrets", SECRET, NAMESPACE)
    assert secret is not None
    secret["data"] = Bundle(old_ca, old_ca.cert_pem(), old).secret_data()
    api.update(secret)
    renewed = certificates.ensure()
    assert renewed.ca.cert != old_ca.cert
    trusted = x509.load_pem_x509_certificates(ca_bundle(api))
    assert trusted == [renewed.ca.cert, old_ca.cert]


def test_a_removed_ca_bundle_is_put_back(api: KubeApiDouble, tmp_path: Path) -> None:
    certificates = replica(api, tmp_path)
    bundle = certificates.ensure()
    configuration = api.get("mutatingwebhookconfigurations", WEBHOOK)
    assert configuration is not None
    del configuration["webhooks"][0]["clientConfig"]["caBundle"]
    api.update(configuration)  # what a `helm upgrade` that renders no caBundle may do
    renewer = Renewer(certificates, 0.05)
    renewer.start()
    try:
        deadline = dt.datetime.now() + dt.timedelta(seconds=10)
        while dt.datetime.now() < deadline:
            configuration = api.get("mutatingwebhookconfigurations", WEBHOOK)
            assert configuration is not None
            if configuration["webhooks"][0]["clientConfig"].get("caBundle"):
                break
            time.sleep(0.05)
        assert ca_bundle(api) == bundle.trust_pem
        assert renewer.not_ready() is None
    finally:
        renewer.stop()


def test_missing_secret_is_one_clear_sentence(api: KubeApiDouble, tmp_path: Path) -> None:
    api.delete("secrets", SECRET, NAMESPACE)
    with pytest.raises(SelfSignedError, match="does not exist; the Helm chart creates it"):
        replica(api, tmp_path).ensure()


def test_missing_webhook_configuration(api: KubeApiDouble, tmp_path: Path) -> None:
    api.delete("mutatingwebhookconfigurations", WEBHOOK)
    with pytest.raises(SelfSignedError, match=r"MutatingWebhookConfiguration .* does not exist"):
        replica(api, tmp_path).ensure()


def test_garbage_in_the_secret_is_replaced(api: KubeApiDouble, tmp_path: Path) -> None:
    secret = api.get("secrets", SECRET, NAMESPACE)
    assert secret is not None
    secret["data"] = {"ca.crt": "bm90IGEgY2VydA==", "ca.key": "", "tls.crt": "", "tls.key": ""}
    api.update(secret)
    bundle = replica(api, tmp_path).ensure()
    assert stored(api).serving.cert == bundle.serving.cert


def test_losing_a_write_race_uses_the_winners_certificate(
    api: KubeApiDouble, tmp_path: Path
) -> None:
    """Deterministic version of the race: B writes between A's read and A's write."""
    a, b = replica(api, tmp_path / "a"), replica(api, tmp_path / "b")
    read = a._core.read_namespaced_secret
    calls = {"n": 0}

    def read_then_let_b_win(*args: Any, **kwargs: Any) -> Any:
        secret = read(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:
            b.ensure()
        return secret

    a._core.read_namespaced_secret = read_then_let_b_win  # type: ignore[method-assign]
    conflicts_before = sum(1 for r in api.request_log if r.code == 409)
    bundle = a.ensure()
    winner = stored(api)
    assert bundle.serving.cert == winner.serving.cert
    assert calls["n"] == 2, "A must read the Secret again after its write was refused"
    assert sum(1 for r in api.request_log if r.code == 409) == conflicts_before + 1


def _https_get(port: int, ca_pem: bytes, hostname: str, path: str) -> bytes:
    """GET over TLS verified the way the API server verifies: caBundle + the Service's DNS name."""
    import socket
    import ssl

    context = ssl.create_default_context(cadata=ca_pem.decode())
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=hostname) as tls,
    ):
        tls.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {hostname}\r\nConnection: close\r\n\r\n".encode()
        )
        chunks = []
        while chunk := tls.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


class Flaky:
    """Stands in for SelfSignedCertificates: `ensure()` raises what it is given, in turn."""

    def __init__(self, *failures: BaseException | None) -> None:
        self.failures = list(failures)
        self.calls = threading.Semaphore(0)

    def ensure(self) -> None:
        failure = self.failures.pop(0) if self.failures else None
        self.calls.release()
        if failure is not None:
            raise failure


def test_the_renewer_survives_any_error_and_counts_it(caplog: pytest.LogCaptureFixture) -> None:
    flaky = Flaky(KeyError("ca.crt"), ValueError("bad PEM"), None)
    renewer = Renewer(flaky, 0.01)  # type: ignore[arg-type]
    renewer.start()
    try:
        for _ in range(4):
            assert flaky.calls.acquire(timeout=10)
        assert renewer.running
        assert renewer.not_ready() is None
    finally:
        renewer.stop()
    assert renewer.failures == 2
    assert renewer.checks >= 3
    assert "KeyError" in caplog.text
    values = {value.name: value.value for value in renewer.scrape()}
    assert values["gpu_rdma_injector_certificate_check_failures"] == 2


class Fatal(BaseException):
    """Something no handler should swallow, ending the renewer's thread."""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_renewer_that_stopped_makes_the_process_unready() -> None:
    flaky = Flaky(Fatal("the end"))
    renewer = Renewer(flaky, 0.01)  # type: ignore[arg-type]
    renewer.start()
    assert flaky.calls.acquire(timeout=10)
    deadline = time.monotonic() + 10
    while renewer.running:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    reason = renewer.not_ready()
    assert reason is not None
    assert "renewer has stopped" in reason
    values = {value.name: value.value for value in renewer.scrape()}
    assert values["gpu_rdma_injector_certificate_renewer_up"] == 0


def _self_signed_args(api: KubeApiDouble, tmp_path: Path, tls_dir: Path) -> list[str]:
    return [
        "--kubeconfig",
        str(api.kubeconfig(tmp_path / "kubeconfig")),
        "--self-signed-secret",
        SECRET,
        "--webhook-configuration",
        WEBHOOK,
        "--service-name",
        "gpu-rdma-injector",
        "--pod-namespace",
        NAMESPACE,
        "--tls-cert-file",
        str(tls_dir / "tls.crt"),
        "--tls-key-file",
        str(tls_dir / "tls.key"),
    ]


def _threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Threads:")).split()[1])


def test_workers_are_forked_from_a_parent_without_threads(
    api: KubeApiDouble, tmp_path: Path
) -> None:
    """Self-signed mode with --workers 2: the renewer runs in each worker, started after its
    fork; the parent, which forks (and re-forks a crashed worker), runs no thread at all."""
    from serverproc import ServerProcess

    tls_dir = tmp_path / "tmp-tls"
    server = ServerProcess(
        [*_self_signed_args(api, tmp_path, tls_dir), "--workers", "2"],
        None,
        tmp_path,
        no_kube=False,
    )
    try:
        children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
        deadline = time.monotonic() + 30
        while len(children.read_text().split()) != 2 or not all(
            _threads(int(pid)) > 1 for pid in children.read_text().split()
        ):
            assert server.process.poll() is None, server.log()
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
        assert _threads(server.process.pid) == 1
    finally:
        assert server.stop() == 0, server.log()


def test_serve_in_self_signed_mode(api: KubeApiDouble, tmp_path: Path) -> None:
    """The real process: fills the Secret, injects the caBundle, and serves a certificate the
    API server would accept for the Service's name."""
    from serverproc import ServerProcess

    tls_dir = tmp_path / "tmp-tls"
    server = ServerProcess(
        _self_signed_args(api, tmp_path, tls_dir),
        None,
        tmp_path,
        no_kube=False,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = _https_get(
                    server.port,
                    ca_bundle(api),
                    "gpu-rdma-injector.gpu-rdma-injector.svc",
                    "/readyz",
                )
                if b" 200 " in response.split(b"\r\n", 1)[0]:
                    break
            except (OSError, AssertionError, KeyError, TypeError):
                pass
            assert server.process.poll() is None, server.log()
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.2)
        assert (tls_dir / "tls.crt").read_bytes() == stored(api).serving.cert_pem()
    finally:
        assert server.stop() == 0, server.log()
