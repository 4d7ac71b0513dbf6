"""The `serve` command (CLI layer): wires a server from its settings, in one or more processes.

First, once, before any server process exists: the policy is loaded and the serving files are
settled (given, self-signed through the API, or development ones) and tried, so a problem stops
start-up with one sentence. Then each server process (the only one, or each forked worker)
builds everything that holds threads or connections itself: policy store, API client, caches,
the self-signed renewer thread, app and listener. No thread ever crosses a fork: the parent of
the workers runs none.
"""

from __future__ import annotations

import gc
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from webhook import logs
from webhook.certs import CertError, ensure_dev_certs
from webhook.listener import BoundedServer, ConnectionCounts, ConnectionLimits
from webhook.metrics import ScrapeValue
from webhook.policy import PolicyError
from webhook.reload import PolicyStore
from webhook.reviews import Reviews
from webhook.server import DEFAULT_BODY_BUDGET, AppContext, create_app, describe, reviews_of
from webhook.settings import ServeSettings, UsageError
from webhook.tls import ReloadingTLS
from webhook.workers import listening_socket, run_workers

# Policy fields cluster mode's caches are built from: a reload may not change them.
RESTART_ONLY_FIELDS = ("resource_name_annotations", "gpu_device_classes")
GRACEFUL_SHUTDOWN_SECONDS = 25


@dataclass(frozen=True, slots=True)
class ServingFiles:
    cert: Path
    key: Path
    client_ca: Path | None


def serve(settings: ServeSettings) -> int:
    logs.configure(settings.log_level)
    policy_store(settings.config)  # refuse a bad policy before anything starts
    api_client = None if settings.no_kube else kube_api_client(settings.kubeconfig)
    files = _serving_files(settings, api_client)
    try:
        ReloadingTLS(files.cert, files.key, files.client_ca)  # refuse unusable files now
    except CertError as error:
        raise UsageError(str(error)) from None
    if settings.workers == 1:
        try:
            sock = listening_socket(settings.host, settings.port, reuse_port=False)
        except OSError as error:
            raise UsageError(
                f"cannot listen on {settings.host}:{settings.port} ({error.strerror})"
            ) from None
        return _serve_process(settings, files, sock)
    return run_workers(
        settings.workers,
        settings.host,
        settings.port,
        lambda sock: _serve_process(settings, files, sock),
    )


def policy_store(path: Path | None) -> PolicyStore:
    try:
        return PolicyStore.load(path)
    except PolicyError as error:
        raise UsageError(str(error)) from None


def kube_api_client(kubeconfig: Path | None) -> Any:
    from webhook.cluster import KubeConfigError, load_kube_api_client

    try:
        return load_kube_api_client(str(kubeconfig) if kubeconfig else None)
    except KubeConfigError as error:
        raise UsageError(
            f"{str(error).rstrip('.')} (--kubeconfig PATH), or pass --no-kube to use the "
            "policy alone"
        ) from None


def _serve_process(settings: ServeSettings, files: ServingFiles, sock: socket.socket) -> int:
    """One server process on the listening `sock`; returns when it has stopped."""
    store = policy_store(settings.config)
    api_client = None if settings.no_kube else kube_api_client(settings.kubeconfig)
    tls = ReloadingTLS(files.cert, files.key, files.client_ca)
    context = AppContext(
        policy=store,
        tls=tls,
        reload_interval=settings.reload_interval,
        excluded_namespaces=frozenset([settings.pod_namespace] if settings.pod_namespace else []),
        on_internal_error=settings.on_internal_error,
        body_budget=DEFAULT_BODY_BUDGET // settings.workers,
    )
    context.metrics.certificate_expiry.set(tls.not_after().timestamp())
    background: list[Any] = []  # started last, stopped when the server stops
    if api_client is not None:
        from webhook.cluster import Cluster  # the Kubernetes client: only when it is used

        cluster = Cluster.connect(
            api_client,
            store.current.resource_name_annotations,
            settings.nad_namespaces,
            watch_peers=not settings.no_peer_injector_watch,
            watch_claims=bool(store.current.gpu_device_classes),
        )
        store.restart_only = RESTART_ONLY_FIELDS
        context.nads, context.namespaces = cluster.nads, cluster.namespaces
        if cluster.claims is not None:
            context.claims = cluster.claims
        context.readiness_checks.append(cluster.not_ready)
        context.metrics.add_scrape_values(cluster.scrape)
        background.append(cluster)
    if settings.self_signed_secret:
        from webhook.selfsigned import Renewer, SelfSignedCertificates

        renewer = Renewer(
            SelfSignedCertificates(api_client, _self_signed_settings(settings)),
            settings.certificate_check_interval,
        )
        context.readiness_checks.append(renewer.not_ready)
        context.metrics.add_scrape_values(renewer.scrape)
        background.append(renewer)
    if settings.audit_interval:
        background.append(_background_audit(settings, files, context))
    limits = ConnectionLimits(max_connections=max(1, settings.max_connections // settings.workers))
    counts = ConnectionCounts()
    context.metrics.add_scrape_values(lambda: _connection_values(limits, counts))
    app = create_app(context)
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    server = BoundedServer(config, tls.context, limits, counts, reviews_of(app))
    context.metrics.add_scrape_values(lambda: _kept_answer_values(reviews_of(app)))
    for task in background:
        task.start()
    logs.get().info(
        "starting",
        extra={
            "fields": {
                **describe(context),
                "port": settings.port,
                "max_connections": limits.max_connections,
            }
        },
    )
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal with the previous
    # handler in place; make that handler a clean exit, as a Kubernetes stop is not a failure.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    # Everything built so far lives as long as the process: keep it out of the cyclic garbage
    # collector's full passes, which would otherwise walk it and stall reviews for milliseconds.
    gc.collect()
    gc.freeze()
    # Log lines are written in batches from here on (webhook.logs), and all of them on the way out.
    lines = (
        logs.batch_lines(interval=settings.log_flush_interval)
        if settings.log_flush_interval
        else None
    )
    try:
        server.run(sockets=[sock])
    finally:
        for task in background:
            task.stop()
        if lines is not None:
            lines.close()
    return 0


def _background_audit(settings: ServeSettings, files: ServingFiles, context: AppContext) -> Any:
    """`--audit-interval`: the audit as a child process, its outcome as metrics."""
    from webhook.audit_background import BackgroundAudit, audit_command

    assert settings.audit_interval is not None
    command = audit_command(
        sys.executable,
        config=settings.config,
        kubeconfig=settings.kubeconfig,
        serving_cert=files.cert,
        webhook_configuration=settings.webhook_configuration,
    )
    auditor = BackgroundAudit(command, settings.audit_interval)
    context.metrics.registry.register(auditor.collector())
    return auditor


def _kept_answer_values(reviews: Reviews) -> list[ScrapeValue]:
    kept = reviews.kept
    return [
        ScrapeValue(
            "gpu_rdma_injector_kept_answers",
            "Answers kept for reviews that read the same as one answered before.",
            len(kept),
        ),
        ScrapeValue(
            "gpu_rdma_injector_kept_answer_hits",
            "Reviews answered with a kept answer.",
            kept.hits,
            counter=True,
        ),
        ScrapeValue(
            "gpu_rdma_injector_kept_answer_misses",
            "Reviews that could be kept but were decided afresh.",
            kept.misses,
            counter=True,
        ),
    ]


def _connection_values(limits: ConnectionLimits, counts: ConnectionCounts) -> list[ScrapeValue]:
    return [
        ScrapeValue(
            "gpu_rdma_injector_connections",
            "Connections open now, TLS handshakes included.",
            counts.open,
        ),
        ScrapeValue(
            "gpu_rdma_injector_connections_max",
            "Connections this process serves at once (--max-connections over --workers).",
            limits.max_connections,
        ),
        ScrapeValue(
            "gpu_rdma_injector_tls_handshakes_failed",
            "TLS handshakes that failed, were aborted or passed their deadline.",
            counts.handshakes_failed,
            counter=True,
        ),
        ScrapeValue(
            "gpu_rdma_injector_tls_handshakes_evicted",
            "Connections still in their TLS handshake closed to make room at the connection limit.",
            counts.evicted,
            counter=True,
        ),
        ScrapeValue(
            "gpu_rdma_injector_request_heads_refused",
            "Request heads answered 431: too large or too many header lines.",
            counts.heads_refused,
            counter=True,
        ),
    ]


def _serving_files(settings: ServeSettings, api_client: Any) -> ServingFiles:
    """The certificate and key to serve: given files, self-signed ones (created or renewed in
    the Secret now), or development ones."""
    client_ca = settings.client_ca_file
    if settings.self_signed_secret:
        from webhook.selfsigned import SelfSignedCertificates, SelfSignedError, ensure_with_retries

        certificates = SelfSignedCertificates(api_client, _self_signed_settings(settings))
        try:
            ensure_with_retries(certificates, deadline_seconds=120)
        except SelfSignedError as error:
            raise UsageError(str(error)) from None
        ready = certificates.settings
        return ServingFiles(ready.cert_file, ready.key_file, client_ca)
    if settings.tls_cert_file and settings.tls_key_file:
        return ServingFiles(settings.tls_cert_file, settings.tls_key_file, client_ca)
    try:
        paths, made = ensure_dev_certs(settings.dev_cert_dir)
    except OSError as error:
        raise UsageError(
            f"cannot write development certificates to {str(settings.dev_cert_dir)!r} "
            f"({error.strerror or error}); pass --dev-cert-dir on a writable path, or "
            "--tls-cert-file and --tls-key-file"
        ) from None
    sys.stderr.write(
        f"{'generated' if made else 'using'} development certificates in "
        f"{paths.cert.parent.resolve()}; the CA is {paths.ca_cert.resolve()} "
        f"(e.g. curl --cacert {paths.ca_cert} https://localhost:{settings.port}/readyz)\n"
    )
    return ServingFiles(paths.cert, paths.key, client_ca)


def _self_signed_settings(settings: ServeSettings) -> Any:
    from webhook.selfsigned import SelfSignedSettings

    assert settings.self_signed_secret
    assert settings.webhook_configuration
    assert settings.service_name
    assert settings.pod_namespace
    assert settings.tls_cert_file
    assert settings.tls_key_file
    return SelfSignedSettings(
        namespace=settings.pod_namespace,
        secret_name=settings.self_signed_secret,
        webhook_configuration=settings.webhook_configuration,
        service_name=settings.service_name,
        cert_file=settings.tls_cert_file,
        key_file=settings.tls_key_file,
        cluster_domain=settings.cluster_domain,
    )


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)
