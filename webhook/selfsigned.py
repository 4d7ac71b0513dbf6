"""Self-signed certificate mode (edge layer, Kubernetes client): the webhook keeps its own CA and
serving certificate in one Secret, writes them where the TLS context reads them, and injects the
CA into its MutatingWebhookConfiguration's caBundle.

Several replicas run this at once and must not fight: every write carries the resourceVersion it
read, so of two replicas racing to fill or renew the Secret one wins and the other, answered
409 Conflict, reads the winner's certificate and uses it. Renewal happens before expiry; the
replicas notice the renewed Secret on their next check and the server swaps the files in place.

The Secret (created empty by the chart) holds `ca.crt` (the CA bundle the API server should
trust: the signing CA first, then the previous CA while it is still valid), `ca.key`, `tls.crt`
and `tls.key`.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as TransportError

from webhook.certs import (
    RENEW_BEFORE,
    Issued,
    generate_ca,
    generate_serving,
    needs_renewal,
    write_pair,
)
from webhook.metrics import ScrapeValue

log = logging.getLogger("gpu_rdma_injector.selfsigned")

CONFLICT_RETRIES = 8


class SelfSignedError(RuntimeError):
    """The Secret or the webhook configuration cannot be used; one sentence saying why."""


@dataclass(frozen=True, slots=True)
class SelfSignedSettings:
    namespace: str
    secret_name: str
    webhook_configuration: str
    service_name: str
    cert_file: Path
    key_file: Path
    cluster_domain: str = "cluster.local"

    def dns_names(self) -> list[str]:
        service, namespace = self.service_name, self.namespace
        return [
            service,
            f"{service}.{namespace}",
            f"{service}.{namespace}.svc",
            f"{service}.{namespace}.svc.{self.cluster_domain}",
        ]


@dataclass(frozen=True, slots=True)
class Bundle:
    """The Secret's certificates: the signing CA, the bundle to trust, the serving pair."""

    ca: Issued
    trust_pem: bytes
    serving: Issued

    def secret_data(self) -> dict[str, str]:
        return {
            "ca.crt": _b64(self.trust_pem),
            "ca.key": _b64(self.ca.key_pem()),
            "tls.crt": _b64(self.serving.cert_pem()),
            "tls.key": _b64(self.serving.key_pem()),
        }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def bundle_from_secret(data: dict[str, str] | None) -> Bundle | None:
    """The bundle a Secret's data holds, or None when it is empty or unreadable."""
    if not data or not all(key in data for key in ("ca.crt", "ca.key", "tls.crt", "tls.key")):
        return None
    try:
        trust_pem = base64.b64decode(data["ca.crt"])
        ca_cert = x509.load_pem_x509_certificates(trust_pem)[0]
        ca_key = serialization.load_pem_private_key(base64.b64decode(data["ca.key"]), None)
        cert = x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"]))
        key = serialization.load_pem_private_key(base64.b64decode(data["tls.key"]), None)
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, IndexError):
        return None
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey) or not isinstance(
        key, ec.EllipticCurvePrivateKey
    ):
        return None
    return Bundle(Issued(ca_cert, ca_key), trust_pem, Issued(cert, key))


def plan_bundle(current: Bundle | None, names: list[str]) -> Bundle | None:
    """A new bundle when `current` is missing or due for renewal, else None (keep it).

    The CA is kept while it has more than twice the renewal margin left; a replaced CA stays in
    the trust bundle after the new one, so certificates it signed keep verifying meanwhile.
    """
    ca_due = current is None or current.ca.cert.not_valid_after_utc - _now() < 2 * RENEW_BEFORE
    if current is not None and not ca_due and not needs_renewal(current.serving.cert, names):
        return None
    ca = current.ca if current is not None else None
    trust_tail = b""
    if ca is None or ca_due:
        if ca is not None and ca.cert.not_valid_after_utc > _now():
            trust_tail = ca.cert_pem()
        ca = generate_ca("gpu-rdma-injector self-signed CA")
    return Bundle(ca, ca.cert_pem() + trust_tail, generate_serving(ca, names))


class SelfSignedCertificates:
    """Keeps the Secret, the certificate files and the caBundle in step; see module docstring."""

    def __init__(self, api_client: Any, settings: SelfSignedSettings) -> None:
        self._core = k8s.CoreV1Api(api_client)
        self._admission = k8s.AdmissionregistrationV1Api(api_client)
        self.settings = settings
        self.renewals = 0

    def ensure(self) -> Bundle:
        """Make the Secret hold a valid bundle (creating or renewing it), write the files, inject
        the caBundle. Raises SelfSignedError or ApiException when the API cannot be used."""
        bundle = self._ensure_secret()
        self._write_files(bundle)
        self._inject_ca(bundle.trust_pem)
        return bundle

    def _ensure_secret(self) -> Bundle:
        names = self.settings.dns_names()
        for _ in range(CONFLICT_RETRIES):
            secret = self._read_secret()
            current = bundle_from_secret(secret.data)
            fresh = plan_bundle(current, names)
            if fresh is None:
                assert current is not None
                return current
            secret.data = fresh.secret_data()
            try:
                self._core.replace_namespaced_secret(
                    self.settings.secret_name, self.settings.namespace, secret
                )
            except ApiException as error:
                if error.status == 409:  # another replica wrote first: use what it wrote
                    log.info("certificate Secret changed underneath; reading it again")
                    continue
                raise
            self.renewals += 1
            log.info(
                "stored a new serving certificate in the Secret",
                extra={
                    "fields": {
                        "secret": self.settings.secret_name,
                        "not_after": fresh.serving.cert.not_valid_after_utc.isoformat(),
                    }
                },
            )
            return fresh
        raise SelfSignedError(
            f"Secret {self.settings.namespace}/{self.settings.secret_name} kept changing during "
            f"{CONFLICT_RETRIES} attempts to store a certificate; check what else writes to it"
        )

    def _read_secret(self) -> Any:
        try:
            return self._core.read_namespaced_secret(
                self.settings.secret_name, self.settings.namespace
            )
        except ApiException as error:
            if error.status == 404:
                raise SelfSignedError(
                    f"Secret {self.settings.namespace}/{self.settings.secret_name} does not "
                    "exist; the Helm chart creates it (empty) in self-signed mode, so create it "
                    "with `kubectl create secret generic` or reinstall the chart"
                ) from None
            if error.status == 403:
                raise SelfSignedError(
                    f"not allowed to read Secret {self.settings.namespace}/"
                    f"{self.settings.secret_name}; the ServiceAccount needs get/update on it"
                ) from None
            raise

    def _write_files(self, bundle: Bundle) -> None:
        """Write the serving pair when it changed, both at once (`write_pair`): the reloader
        never sees a new certificate with an old key."""
        cert_pem, key_pem = bundle.serving.cert_pem(), bundle.serving.key_pem()
        cert_file, key_file = self.settings.cert_file, self.settings.key_file
        if _read(cert_file) == cert_pem and _read(key_file) == key_pem:
            return
        write_pair(cert_file, key_file, cert_pem, key_pem)

    def _inject_ca(self, trust_pem: bytes) -> None:
        wanted = _b64(trust_pem)
        name = self.settings.webhook_configuration
        for _ in range(CONFLICT_RETRIES):
            try:
                configuration = self._admission.read_mutating_webhook_configuration(name)
            except ApiException as error:
                if error.status == 404:
                    raise SelfSignedError(
                        f"MutatingWebhookConfiguration {name} does not exist; it is part of the "
                        "Helm release, so check --webhook-configuration"
                    ) from None
                raise
            webhooks = configuration.webhooks or []
            if all(w.client_config.ca_bundle == wanted for w in webhooks):
                return
            for webhook in webhooks:
                webhook.client_config.ca_bundle = wanted
            try:
                self._admission.replace_mutating_webhook_configuration(name, configuration)
            except ApiException as error:
                if error.status == 409:
                    continue
                raise
            log.info(
                "injected the CA into the webhook configuration",
                extra={"fields": {"webhook_configuration": name}},
            )
            return
        raise SelfSignedError(
            f"MutatingWebhookConfiguration {name} kept changing during {CONFLICT_RETRIES} "
            "attempts to set its caBundle"
        )


class Renewer:
    """Runs `certificates.ensure()` every `interval` seconds in a daemon thread: renews when due,
    picks up a Secret another replica renewed, puts back a removed caBundle.

    Each server process runs its own, started after any fork. Every failure is logged and
    counted and the thread goes on; should the thread end anyway, readiness says so.
    """

    def __init__(self, certificates: SelfSignedCertificates, interval: float) -> None:
        self.certificates = certificates
        self.interval = interval
        self.checks = 0
        self.failures = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="self-signed-certificates", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                self.check_once()
        finally:
            if not self._stop.is_set():
                log.error(
                    "self-signed certificate renewer stopped; the certificate will not be renewed",
                    extra={"fields": {"error": self.last_error}},
                )

    def check_once(self) -> None:
        self.checks += 1
        try:
            self.certificates.ensure()
        except Exception as error:
            self.failures += 1
            self.last_error = f"{type(error).__name__}: {error}"[:300]
            expected = isinstance(error, SelfSignedError | ApiException | TransportError | OSError)
            log.error(
                "self-signed certificate check failed; will retry",
                extra={"fields": {"error": self.last_error}},
                exc_info=not expected,
            )
            return
        self.last_error = None

    def not_ready(self) -> str | None:
        """Why readiness must fail: the renewer thread has ended (None while it runs)."""
        if self._thread is None or self.running or self._stop.is_set():
            return None
        return f"the self-signed certificate renewer has stopped (last error: {self.last_error})"

    def scrape(self) -> Iterable[ScrapeValue]:
        yield ScrapeValue(
            "gpu_rdma_injector_certificate_renewer_up",
            "1 while the self-signed certificate renewer thread runs.",
            1 if self.running else 0,
        )
        yield ScrapeValue(
            "gpu_rdma_injector_certificate_checks",
            "Self-signed certificate checks (Secret, files, caBundle) done.",
            self.checks,
            counter=True,
        )
        yield ScrapeValue(
            "gpu_rdma_injector_certificate_check_failures",
            "Self-signed certificate checks that failed (then retried at the next interval).",
            self.failures,
            counter=True,
        )


def ensure_with_retries(certificates: SelfSignedCertificates, deadline_seconds: float) -> Bundle:
    """The first `ensure()` at start-up, retried with backoff while the API is unreachable."""
    delay, started = 0.5, time.monotonic()
    while True:
        try:
            return certificates.ensure()
        except SelfSignedError:
            raise
        except (ApiException, TransportError, OSError) as error:
            if time.monotonic() - started + delay > deadline_seconds:
                raise SelfSignedError(
                    f"could not set up self-signed certificates within {deadline_seconds:.0f} s: "
                    f"{error}"
                ) from None
            log.warning(
                "Kubernetes API not reachable yet; retrying",
                extra={"fields": {"error": str(error), "retry_in": delay}},
            )
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None
