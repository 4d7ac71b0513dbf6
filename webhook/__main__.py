"""Command line (CLI layer): parses `serve | mutate | audit | certs generate | version` and
dispatches.

The options are the fields of the command's settings model (webhook.settings), offered here as
flags; the commands themselves live in webhook.serve, webhook.preview and webhook.audit_command.
Problems a user can fix are printed as one sentence and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel

from webhook import __version__
from webhook.findings import CHECKS
from webhook.settings import (
    ENV_PREFIX,
    AuditSettings,
    CertsSettings,
    PreviewSettings,
    ServeSettings,
    UsageError,
    flag_name,
    load,
)

EXIT_USAGE = 2


@dataclass(frozen=True, slots=True)
class Invocation:
    """What the command line asks for: the command, its settings, and mutate's input file."""

    command: Literal["serve", "mutate", "audit", "certs", "version"]
    settings: Any = None
    file: str | None = None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpu-rdma-injector",
        description="Mutating admission webhook that gives GPU pods their RDMA network "
        "(the Multus networks annotation) and its SR-IOV resource together.",
        epilog=f"Every option of serve, mutate and audit is also read from {ENV_PREFIX}<OPTION> "
        f"(e.g. {ENV_PREFIX}MAX_CONNECTIONS); a flag wins.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_options(commands.add_parser("serve", help="run the HTTPS webhook"), ServeSettings)
    mutate = commands.add_parser(
        "mutate", help="preview the decision for a Pod or AdmissionReview file, offline"
    )
    mutate.add_argument(
        "file", metavar="FILE|-", help="Pod (YAML/JSON) or AdmissionReview; - reads stdin"
    )
    _add_options(mutate, PreviewSettings)
    checks = "\n".join(
        f"  {check.id:<22} {check.severity:<8} {check.summary}" for check in CHECKS.values()
    )
    audit = commands.add_parser(
        "audit",
        help="find what is already broken on a cluster (or in a dump of one)",
        description="Judge the pods, NADs, namespaces, nodes and events already on a cluster\n"
        "(or in a dump) against the policy. Exit status: 0 no error finding, 1 some, 2 the\n"
        "audit could not run.",
        epilog=f"checks (id, usual severity, what it finds):\n{checks}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_options(audit, AuditSettings)
    certs = commands.add_parser("certs", help="certificate tools")
    certs_commands = certs.add_subparsers(dest="certs_command", required=True, metavar="COMMAND")
    _add_options(
        certs_commands.add_parser("generate", help="make a CA and a serving certificate"),
        CertsSettings,
    )
    commands.add_parser("version", help="print the version")
    return parser


def _add_options(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    """One flag per field; argparse keeps only what was given, the model does the rest."""
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        flags = [flag_name(name)] + ([str(extra["short"])] if extra.get("short") else [])
        text = field.description or ""
        if not field.is_required() and field.default not in (None, False):
            text += f" (default: {field.default})"
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": text}
        if field.annotation is bool:
            kwargs["action"] = "store_true"
        elif get_origin(field.annotation) is Literal:
            kwargs["choices"] = get_args(field.annotation)
        else:
            kwargs["metavar"] = extra.get("metavar") or None
            if extra.get("repeat"):
                kwargs["action"] = "append"
        if field.is_required():
            kwargs["required"] = True
        parser.add_argument(*flags, **kwargs)


def parse(argv: Sequence[str] | None = None) -> Invocation:
    """The invocation `argv` asks for; the settings of serve and mutate read the environment
    too. UsageError for a bad value; argparse exits 2 itself for a bad command line."""
    given = vars(build_parser().parse_args(argv))
    command = given.pop("command")
    given.pop("certs_command", None)
    file = given.pop("file", None)
    if command == "serve":
        return Invocation(command, load(ServeSettings, given))
    if command == "mutate":
        return Invocation(command, load(PreviewSettings, given), file)
    if command == "audit":
        return Invocation(command, load(AuditSettings, given))
    if command == "certs":
        return Invocation(command, load(CertsSettings, given))
    return Invocation(command)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        invocation = parse(argv)
        if invocation.command == "serve":
            from webhook.serve import serve

            return serve(invocation.settings)
        if invocation.command == "mutate":
            from webhook.preview import preview

            assert invocation.file is not None
            return preview(invocation.file, invocation.settings)
        if invocation.command == "audit":
            from webhook.audit_command import run_audit

            return run_audit(invocation.settings)
        if invocation.command == "certs":
            return _generate_certificates(invocation.settings)
        print(f"gpu-rdma-injector {__version__}")
        return 0
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _generate_certificates(settings: CertsSettings) -> int:
    from webhook.certs import CertError, generate_bundle

    try:
        paths = generate_bundle(settings.out_dir, settings.dns_name, settings.days)
    except (CertError, OSError) as error:
        raise UsageError(
            f"cannot write certificates to {str(settings.out_dir)!r}: {error}"
        ) from None
    for label, path in (
        ("CA certificate", paths.ca_cert),
        ("CA key", paths.ca_key),
        ("serving certificate", paths.cert),
        ("serving key", paths.key),
    ):
        print(f"{label}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
