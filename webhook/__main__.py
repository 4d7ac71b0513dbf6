"""Command line (edge layer): `gpu-rdma-injector serve | mutate | certs generate | version`.

Parses arguments (every serve option also reads GPU_RDMA_INJECTOR_<OPTION> from the environment;
this is the only module that reads the environment), builds the objects, and hands over.
Problems a user can fix are printed as one sentence and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import yaml

from webhook import __version__
from webhook.mutation import NO_NADS
from webhook.policy import yaml_problem

ENV_PREFIX = "GPU_RDMA_INJECTOR_"
EXIT_USAGE = 2


class UsageError(Exception):
    """Something the user can fix: printed as `error: <message>`, exit status 2."""


def _env(option: str, default: Any = None) -> Any:
    return os.environ.get(ENV_PREFIX + option.upper().replace("-", "_"), default)


def _env_flag(option: str) -> bool:
    return str(_env(option, "")).lower() in {"1", "true", "yes", "on"}


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpu-rdma-injector",
        description="Mutating admission webhook that gives GPU pods their RDMA network "
        "(the Multus networks annotation) and its SR-IOV resource together.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTPS webhook")
    _policy_options(serve)
    serve.add_argument(
        "--tls-cert-file",
        default=_env("tls-cert-file"),
        metavar="PATH",
        help="serving certificate (PEM); reloaded when the file changes",
    )
    serve.add_argument(
        "--tls-key-file",
        default=_env("tls-key-file"),
        metavar="PATH",
        help="serving key (PEM); without both files, development certificates "
        "are generated under --dev-cert-dir",
    )
    serve.add_argument(
        "--dev-cert-dir",
        default=_env("dev-cert-dir", "certs/dev"),
        metavar="DIR",
        help="where development certificates are kept (default: certs/dev)",
    )
    serve.add_argument(
        "--client-ca-file",
        default=_env("client-ca-file"),
        metavar="PATH",
        help="require client certificates signed by this CA (mutual TLS)",
    )
    _kube_options(serve)
    serve.add_argument(
        "--no-kube",
        action="store_true",
        default=_env_flag("no-kube"),
        help="use the policy alone: no Kubernetes API, no NAD lookup",
    )
    serve.add_argument(
        "--nad-namespaces",
        default=_env("nad-namespaces"),
        metavar="NS,NS",
        help="watch NADs only in these namespaces (default: cluster-wide)",
    )
    serve.add_argument(
        "--self-signed-secret",
        default=_env("self-signed-secret"),
        metavar="NAME",
        help="self-signed mode: keep the CA and serving certificate in this Secret, write them "
        "to --tls-cert-file/--tls-key-file and inject the CA into --webhook-configuration",
    )
    serve.add_argument(
        "--webhook-configuration",
        default=_env("webhook-configuration"),
        metavar="NAME",
        help="self-signed mode: the MutatingWebhookConfiguration whose caBundle to keep current",
    )
    serve.add_argument(
        "--service-name",
        default=_env("service-name"),
        metavar="NAME",
        help="self-signed mode: the Service in front of the webhook (names the certificate)",
    )
    serve.add_argument(
        "--pod-namespace",
        default=_env("pod-namespace"),
        metavar="NS",
        help="self-signed mode: the webhook's own namespace (the chart sets it from the "
        "downward API)",
    )
    serve.add_argument(
        "--cluster-domain",
        default=_env("cluster-domain", "cluster.local"),
        metavar="DOMAIN",
        help="self-signed mode: the cluster's DNS domain (default: cluster.local)",
    )
    serve.add_argument(
        "--certificate-check-interval",
        type=float,
        default=float(_env("certificate-check-interval", 60.0)),
        metavar="SECONDS",
        help="self-signed mode: how often the Secret and caBundle are checked",
    )
    serve.add_argument("--host", default=_env("host", "0.0.0.0"), help="address to listen on")
    serve.add_argument("--port", type=int, default=int(_env("port", 8443)), help="HTTPS port")
    serve.add_argument(
        "--log-level",
        default=_env("log-level", "info"),
        choices=["debug", "info", "warning", "error"],
        help="log level",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=int(_env("workers", 1)),
        metavar="N",
        help="server processes sharing the port (default 1; about one per core)",
    )
    serve.add_argument(
        "--reload-interval",
        type=float,
        default=float(_env("reload-interval", 2.0)),
        metavar="SECONDS",
        help="how often policy and certificate files are checked for changes",
    )

    mutate = commands.add_parser(
        "mutate", help="preview the decision for a Pod or AdmissionReview file, offline"
    )
    mutate.add_argument(
        "file", metavar="FILE|-", help="Pod (YAML/JSON) or AdmissionReview; - reads stdin"
    )
    _policy_options(mutate)
    mutate.add_argument(
        "--namespace",
        "-n",
        default=None,
        help="namespace the pod is created in (default: from the file, else default)",
    )
    mutate.add_argument(
        "--nads",
        default=None,
        metavar="FILE",
        help="NetworkAttachmentDefinitions (YAML) to decide against, as if they were the cluster's",
    )
    mutate.add_argument(
        "--kubeconfig",
        default=None,
        metavar="PATH",
        help="decide against the NADs and namespaces of the cluster this kubeconfig points at",
    )
    mutate.add_argument(
        "--output",
        "-o",
        choices=["patch", "pod", "review"],
        default="patch",
        help="print the JSON patch (default), the mutated pod as YAML, or the "
        "AdmissionReview response",
    )

    certs = commands.add_parser("certs", help="certificate tools")
    certs_commands = certs.add_subparsers(dest="certs_command", required=True, metavar="COMMAND")
    generate = certs_commands.add_parser("generate", help="make a CA and a serving certificate")
    generate.add_argument("--out-dir", required=True, metavar="DIR", help="directory to write to")
    generate.add_argument(
        "--dns-name",
        action="append",
        required=True,
        metavar="NAME",
        help="subject alternative name; repeat it; IP addresses become IP SANs",
    )
    generate.add_argument("--days", type=int, default=365, help="serving certificate lifetime")

    commands.add_parser("version", help="print the version")
    return parser


def _policy_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=_env("config"),
        metavar="PATH",
        help="policy YAML (default: the embedded default policy)",
    )


def _kube_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig",
        default=_env("kubeconfig"),
        metavar="PATH",
        help="talk to the API server of this kubeconfig (default: the in-cluster service account)",
    )


def _load_policy_store(path: str | None) -> Any:
    from webhook.policy import PolicyError, default_policy
    from webhook.reload import PolicyStore

    try:
        return PolicyStore.from_file(Path(path)) if path else PolicyStore(default_policy())
    except PolicyError as error:
        raise UsageError(str(error)) from None


def _serve(args: argparse.Namespace) -> int:
    from webhook import logs
    from webhook.certs import CertError, ReloadingTLS

    logs.configure(args.log_level)
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    store = _load_policy_store(args.config)
    api_client = None if args.no_kube else _api_client(args.kubeconfig)
    cert_file, key_file, renewer = _serving_files(args, api_client)
    client_ca = Path(args.client_ca_file) if args.client_ca_file else None
    try:
        ReloadingTLS(cert_file, key_file, client_ca)  # refuse unusable files before serving
    except CertError as error:
        raise UsageError(str(error)) from None
    stop_background = threading.Event()
    if renewer is not None:
        threading.Thread(
            target=renewer.run,
            args=(stop_background, args.certificate_check_interval),
            name="self-signed-certificates",
            daemon=True,
        ).start()
    try:
        if args.workers == 1:
            return _serve_one(args, store, api_client, cert_file, key_file, client_ca, None)
        from webhook.workers import run_workers

        # Each worker builds its own policy store, API client and caches after the fork.
        return run_workers(
            args.workers,
            args.host,
            args.port,
            lambda sock: _serve_one(
                args,
                _load_policy_store(args.config),
                None if args.no_kube else _api_client(args.kubeconfig),
                cert_file,
                key_file,
                client_ca,
                sock,
            ),
        )
    finally:
        stop_background.set()


def _serve_one(
    args: argparse.Namespace,
    store: Any,
    api_client: Any,
    cert_file: Path,
    key_file: Path,
    client_ca: Path | None,
    sock: Any,
) -> int:
    """One server process: app, caches, TLS context, uvicorn; on `sock` when given."""
    import uvicorn

    from webhook import logs
    from webhook.certs import ReloadingTLS
    from webhook.protocol import HeadTimeoutProtocol
    from webhook.server import AppContext, create_app, describe

    tls = ReloadingTLS(cert_file, key_file, client_ca)
    context = AppContext(
        policy=store,
        tls=tls,
        reload_interval=args.reload_interval,
        excluded_namespaces=frozenset([args.pod_namespace] if args.pod_namespace else []),
    )
    context.metrics.certificate_expiry.set(tls.not_after().timestamp())
    cluster = None
    if api_client is not None:
        cluster = _cluster(api_client, store.current.resource_name_annotations, args.nad_namespaces)
        context.nads = cluster.nads
        context.namespace_annotations = cluster.namespace_annotations
        context.readiness_checks.append(cluster.not_ready)
        cluster.register_metrics(context.metrics)
        cluster.start()
    app = create_app(context)
    logs.get().info("starting", extra={"fields": {**describe(context), "port": args.port}})
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="on",
        timeout_graceful_shutdown=25,
        ssl_context_factory=lambda _config, _default: tls.context,
        http=HeadTimeoutProtocol,
    )
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal with the previous
    # handler in place; make that handler a clean exit, as a Kubernetes stop is not a failure.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    # Everything built so far lives as long as the process: keep it out of the cyclic garbage
    # collector's full passes, which would otherwise walk it and stall reviews for milliseconds.
    gc.collect()
    gc.freeze()
    try:
        uvicorn.Server(config).run(sockets=[sock] if sock is not None else None)
    finally:
        if cluster is not None:
            cluster.stop()
    return 0


def _api_client(kubeconfig: str | None) -> Any:
    from webhook.kube_watch import KubeConfigError, load_kube_api_client

    try:
        return load_kube_api_client(kubeconfig)
    except KubeConfigError as error:
        raise UsageError(
            f"{str(error).rstrip('.')} (--kubeconfig PATH), or pass --no-kube to use the "
            "policy alone"
        ) from None


def _cluster(
    api_client: Any, resource_annotations: Sequence[str], nad_namespaces: str | None
) -> Any:
    from webhook.cluster import Cluster

    namespaces = (
        [n.strip() for n in nad_namespaces.split(",") if n.strip()] if nad_namespaces else None
    )
    return Cluster.connect(api_client, resource_annotations, namespaces or None)


def _serving_files(args: argparse.Namespace, api_client: Any) -> tuple[Path, Path, Any]:
    """The certificate and key to serve — given files, self-signed ones (with the object that
    keeps them renewed), or development ones."""
    from webhook.certs import ensure_dev_certs

    if bool(args.tls_cert_file) != bool(args.tls_key_file):
        raise UsageError(
            "give both --tls-cert-file and --tls-key-file, or neither for dev certificates"
        )
    if args.self_signed_secret:
        return _self_signed(args, api_client)
    if args.tls_cert_file:
        return Path(args.tls_cert_file), Path(args.tls_key_file), None
    paths, made = ensure_dev_certs(Path(args.dev_cert_dir))
    print(
        f"{'generated' if made else 'using'} development certificates in "
        f"{paths.cert.parent.resolve()}; the CA is {paths.ca_cert.resolve()} "
        f"(e.g. curl --cacert {paths.ca_cert} https://localhost:{args.port}/readyz)",
        file=sys.stderr,
    )
    return paths.cert, paths.key, None


def _self_signed(args: argparse.Namespace, api_client: Any) -> tuple[Path, Path, Any]:
    from webhook.selfsigned import (
        SelfSignedCertificates,
        SelfSignedError,
        SelfSignedSettings,
        ensure_with_retries,
    )

    missing = [
        flag
        for flag, value in (
            ("--webhook-configuration", args.webhook_configuration),
            ("--service-name", args.service_name),
            ("--pod-namespace", args.pod_namespace),
            ("--tls-cert-file", args.tls_cert_file),
            ("--tls-key-file", args.tls_key_file),
        )
        if not value
    ]
    if api_client is None:
        raise UsageError("--self-signed-secret needs the Kubernetes API; drop --no-kube")
    if missing:
        raise UsageError(f"--self-signed-secret also needs {', '.join(missing)}")
    settings = SelfSignedSettings(
        namespace=args.pod_namespace,
        secret_name=args.self_signed_secret,
        webhook_configuration=args.webhook_configuration,
        service_name=args.service_name,
        cert_file=Path(args.tls_cert_file),
        key_file=Path(args.tls_key_file),
        cluster_domain=args.cluster_domain,
    )
    certificates = SelfSignedCertificates(api_client, settings)
    try:
        ensure_with_retries(certificates, deadline_seconds=120)
    except SelfSignedError as error:
        raise UsageError(str(error)) from None
    return settings.cert_file, settings.key_file, certificates


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def _read_input(name: str) -> Any:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot read {name!r}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{name!r} is not UTF-8 text") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise UsageError(f"{name!r} is neither YAML nor JSON{yaml_problem(error)}") from None


def _mutate(args: argparse.Namespace) -> int:
    import jsonpatch

    from webhook.admission import (
        AdmissionRequest,
        ReviewError,
        build_response,
        decide_request,
        parse_review,
    )

    store = _load_policy_store(args.config)
    document = _read_input(args.file)
    if not isinstance(document, dict):
        raise UsageError(f"{args.file!r} must hold a Pod or an AdmissionReview object")
    if document.get("kind") == "AdmissionReview":
        try:
            request = parse_review(orjson.dumps(document))
        except ReviewError as error:
            raise UsageError(f"{args.file!r}: {error}") from None
        if args.namespace:
            request = dataclasses.replace(request, namespace=args.namespace)
    elif document.get("kind", "Pod") == "Pod":
        metadata = document.get("metadata")
        metadata = metadata if isinstance(metadata, dict) else {}
        request = AdmissionRequest(
            uid="mutate-preview",
            kind="Pod",
            group="",
            sub_resource="",
            operation="CREATE",
            namespace=args.namespace or metadata.get("namespace") or "default",
            name=str(metadata.get("name") or metadata.get("generateName") or ""),
            object=document,
            dry_run=True,
        )
    else:
        raise UsageError(
            f"{args.file!r} holds a {document.get('kind')!r}; give a Pod or an AdmissionReview"
        )

    nads, namespace_annotations, cluster = _mutate_facts(args, store.current)
    try:
        decision = decide_request(request, store.current, nads, namespace_annotations)
    finally:
        if cluster is not None:
            cluster.stop()
    for warning in decision.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.output == "review":
        print(
            orjson.dumps(
                orjson.loads(build_response(request.uid, decision)), option=orjson.OPT_INDENT_2
            ).decode()
        )
    elif not decision.allowed:
        print(f"denied: {decision.message}", file=sys.stderr)
    elif args.output == "pod":
        patch = [op.as_dict() for op in decision.patch]
        print(yaml.safe_dump(jsonpatch.apply_patch(request.object, patch), sort_keys=False), end="")
    else:
        print(
            orjson.dumps(
                [op.as_dict() for op in decision.patch], option=orjson.OPT_INDENT_2
            ).decode()
        )
    return 0 if decision.allowed else 1


def _mutate_facts(args: argparse.Namespace, policy: Any) -> tuple[Any, Any, Any]:
    """What `mutate` knows of NADs and namespaces: a NAD file, a live cluster, or nothing."""
    from webhook.nads import load_nad_file

    if args.nads and args.kubeconfig:
        raise UsageError("give --nads or --kubeconfig, not both")
    if args.nads:
        try:
            text = Path(args.nads).read_text(encoding="utf-8")
            nads = load_nad_file(text, policy.resource_name_annotations, source=repr(args.nads))
        except OSError as error:
            raise UsageError(f"cannot read {args.nads!r}: {error.strerror}") from None
        except ValueError as error:
            raise UsageError(str(error)) from None
        return nads, lambda _namespace: None, None
    if args.kubeconfig:
        cluster = _cluster(_api_client(args.kubeconfig), policy.resource_name_annotations, None)
        cluster.start()
        if not cluster.wait_synced(30):
            cluster.stop()
            raise UsageError(
                f"could not list NADs and namespaces within 30 s: {cluster.not_ready()}"
            )
        return cluster.nads, cluster.namespace_annotations, cluster
    return NO_NADS, lambda _namespace: None, None


def _certs(args: argparse.Namespace) -> int:
    from webhook.certs import CertError, generate_bundle

    if args.days < 1:
        raise UsageError("--days must be at least 1")
    try:
        paths = generate_bundle(Path(args.out_dir), args.dns_name, args.days)
    except (CertError, OSError) as error:
        raise UsageError(f"cannot write certificates to {args.out_dir!r}: {error}") from None
    for label, path in (
        ("CA certificate", paths.ca_cert),
        ("CA key", paths.ca_key),
        ("serving certificate", paths.cert),
        ("serving key", paths.key),
    ):
        print(f"{label}: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "serve": _serve,
        "mutate": _mutate,
        "certs": _certs,
        "version": lambda _args: print(f"gpu-rdma-injector {__version__}") or 0,
    }
    try:
        return handlers[args.command](args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
