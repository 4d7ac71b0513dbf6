"""The `audit` command (CLI layer): find what is already broken, on a cluster or in a dump.

Reads a dump (`--from`) or a live cluster (`--kubeconfig`, else the in-cluster service
account; read-only, in pages, with a progress line on a terminal), judges it against the
policy (webhook.audit), and prints a table, JSON, PolicyReports or the counts. With
`--write-reports` it also writes the PolicyReports to the cluster (what the background audit
of `serve --audit-interval` runs). Exit status 0 when no error finding, 1 when some, 2 when
the audit could not run (one sentence on stderr, never a traceback).
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from typing import Any, TextIO

import orjson
import yaml

from webhook.audit import audit
from webhook.audit_cluster import ClusterReadError, ReadOptions, read_cluster
from webhook.audit_dump import DumpError, read_dump
from webhook.audit_output import as_dict, as_json, summary, table
from webhook.findings import CHECKS, AuditOptions, AuditResult, Inventory
from webhook.kube_api import KubeConfigError, load_kube_api_client
from webhook.policy import PolicyError
from webhook.policyreport import reports
from webhook.reload import PolicyStore
from webhook.report_writer import ReportWriteError, write_reports
from webhook.settings import AuditSettings, UsageError, wants_colour

EXIT_UNABLE = 2


class ProgressLine:
    """One line on a terminal, rewritten after each page once a kind takes more than one."""

    def __init__(self, stream: TextIO, interactive: bool) -> None:
        self.stream = stream
        self.interactive = interactive
        self.shown = False

    def __call__(self, what: str, pages: int, objects: int) -> None:
        if not self.interactive or pages < 2:
            return
        self.stream.write(f"\r\033[Kreading {what}: page {pages}, {objects:,} objects read")
        self.stream.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()


def run_audit(settings: AuditSettings) -> int:
    try:
        policy = PolicyStore.load(settings.config).current
    except PolicyError as error:
        raise UsageError(str(error)) from None
    key, _, value = settings.opt_in_label.partition("=")
    now = time.time()
    options = AuditOptions(
        checks=frozenset(settings.checks or CHECKS),
        namespace=settings.namespace,
        webhook_configuration=settings.webhook_configuration,
        opt_in={key.strip(): value.strip()},
        now=now,
    )
    api_client, inventory = _inventory(settings)
    if settings.serving_cert is not None:
        inventory = dataclasses.replace(inventory, serving_certificate=_read(settings))
    result = audit(inventory, policy, options)
    found = reports(result.findings, now)
    written: dict[str, Any] | None = None
    problem = None
    if settings.write_reports:
        try:
            outcome = write_reports(api_client, found, delete_stale=not result.dropped)
            written = dataclasses.asdict(outcome)
        except ReportWriteError as error:
            problem = str(error)
            written = {"error": problem}
    _print(settings, result, found, written)
    if problem is not None:
        sys.stderr.write(f"error: {problem}\n")
        return EXIT_UNABLE
    return result.exit_code


def _inventory(settings: AuditSettings) -> tuple[Any, Inventory]:
    if settings.from_file is not None:
        try:
            return None, read_dump(str(settings.from_file))
        except DumpError as error:
            raise UsageError(str(error)) from None
    try:
        api_client = load_kube_api_client(str(settings.kubeconfig) if settings.kubeconfig else None)
    except KubeConfigError as error:
        raise UsageError(
            f"{str(error).rstrip('.')} (--kubeconfig), or audit a dump (--from)"
        ) from None
    progress = ProgressLine(sys.stderr, sys.stderr.isatty())
    try:
        inventory = read_cluster(api_client, ReadOptions(namespace=settings.namespace), progress)
    except ClusterReadError as error:
        raise UsageError(str(error)) from None
    finally:
        progress.done()
    return api_client, inventory


def _read(settings: AuditSettings) -> bytes:
    assert settings.serving_cert is not None
    try:
        return settings.serving_cert.read_bytes()
    except OSError as error:
        raise UsageError(
            f"cannot read the serving certificate {str(settings.serving_cert)!r}: "
            f"{error.strerror or error}"
        ) from None


def _print(
    settings: AuditSettings,
    result: AuditResult,
    found: list[dict[str, Any]],
    written: dict[str, Any] | None,
) -> None:
    out = sys.stdout
    if settings.output == "table":
        width = shutil.get_terminal_size((100, 24)).columns if out.isatty() else 100
        out.write(table(result, width=width, colour=wants_colour(out.isatty())))
        if written is not None:
            out.write(f"PolicyReports: {_written(written)}.\n")
    elif settings.output == "json":
        document = as_dict(result)
        if written is not None:
            document["reports"] = written
        out.write(as_json(result) if written is None else _json(document))
    elif settings.output == "summary":
        document = as_dict(result, with_findings=False)
        if written is not None:
            document["reports"] = written
        out.write(summary(result) if written is None else _json(document, indent=False))
    else:
        out.write(yaml.safe_dump_all(found, sort_keys=False) if found else "")


def _written(written: dict[str, Any]) -> str:
    if "error" in written:
        return f"not written ({written['error']})"
    return ", ".join(
        f"{written[key]} {key}" for key in ("created", "updated", "deleted", "unchanged")
    )


def _json(document: dict[str, Any], indent: bool = True) -> str:
    option = orjson.OPT_INDENT_2 if indent else 0
    return orjson.dumps(document, option=option).decode() + "\n"
