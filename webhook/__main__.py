"""Command line (edge layer): `gpu-rdma-injector serve | mutate | certs generate | version`.

Parses arguments (every serve option also reads GPU_RDMA_INJECTOR_<OPTION> from the environment;
this is the only module that reads the environment), builds the objects, and hands over.
Problems a user can fix are printed as one sentence and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
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
    serve.add_argument(
        "--no-kube",
        action="store_true",
        default=_env_flag("no-kube"),
        help="use the policy alone: no Kubernetes API, no NAD lookup",
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


def _load_policy_store(path: str | None) -> Any:
    from webhook.policy import PolicyError, default_policy
    from webhook.reload import PolicyStore

    try:
        return PolicyStore.from_file(Path(path)) if path else PolicyStore(default_policy())
    except PolicyError as error:
        raise UsageError(str(error)) from None


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from webhook import logs
    from webhook.certs import CertError, ReloadingTLS, ensure_dev_certs
    from webhook.server import AppContext, create_app, describe

    log = logs.configure(args.log_level)
    store = _load_policy_store(args.config)
    if bool(args.tls_cert_file) != bool(args.tls_key_file):
        raise UsageError(
            "give both --tls-cert-file and --tls-key-file, or neither for dev certificates"
        )
    if args.tls_cert_file:
        cert_file, key_file = Path(args.tls_cert_file), Path(args.tls_key_file)
    else:
        paths, made = ensure_dev_certs(Path(args.dev_cert_dir))
        cert_file, key_file = paths.cert, paths.key
        print(
            f"{'generated' if made else 'using'} development certificates in "
            f"{paths.cert.parent.resolve()}; the CA is {paths.ca_cert.resolve()} "
            f"(e.g. curl --cacert {paths.ca_cert} https://localhost:{args.port}/readyz)",
            file=sys.stderr,
        )
    try:
        client_ca = Path(args.client_ca_file) if args.client_ca_file else None
        tls = ReloadingTLS(cert_file, key_file, client_ca)
    except CertError as error:
        raise UsageError(str(error)) from None

    context = AppContext(policy=store, tls=tls, reload_interval=args.reload_interval)
    context.metrics.certificate_expiry.set(tls.not_after().timestamp())
    app = create_app(context)
    log.info("starting", extra={"fields": {**describe(context), "port": args.port}})
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
    )
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal with the previous
    # handler in place; make that handler a clean exit, as a Kubernetes stop is not a failure.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.Server(config).run()
    return 0


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

    decision = decide_request(request, store.current, NO_NADS, lambda _namespace: None)
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
