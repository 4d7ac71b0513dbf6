"""Process settings (CLI layer): one typed model per command, read once from flags and environment.

Every option of `serve`, `mutate` and `audit` is a field here; the command line offers it as
`--<field-name>` and the environment as `GPU_RDMA_INJECTOR_<FIELD_NAME>` (a flag wins over the
environment, the environment over the default; an empty variable counts as unset). This is the
only module that reads the environment, and only for the command that runs: `version` reads
nothing. A bad value is one sentence naming the flag or the variable it came from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.config import JsonDict
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from webhook.findings import CHECKS

ENV_PREFIX = "GPU_RDMA_INJECTOR_"

DEFAULT_MAX_CONNECTIONS = 256
"""Sized to the chart's 256Mi memory limit; see README.md, "Reliability"."""


class UsageError(Exception):
    """Something the user can fix: printed as `error: <message>`, exit status 2."""


def option(
    default: Any,
    help: str,
    *,
    metavar: str | None = None,
    short: str | None = None,
    repeat: bool = False,
    **constraints: Any,
) -> Any:
    """A field that is also a command-line option: `metavar` and `short` (e.g. "-n") as argparse
    shows them; `repeat` for an option given once per value."""
    extra: JsonDict = {"metavar": metavar, "short": short, "repeat": repeat}
    return Field(default, description=help, json_schema_extra=extra, **constraints)


def _comma_list(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip()) or None
    return value


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,
        extra="forbid",
        frozen=True,
    )

    def check(self) -> Self:
        """Options that only make sense together; UsageError naming the flags."""
        return self


class PolicyOption(_Settings):
    config: Path | None = option(
        None, "policy YAML (default: the embedded default policy)", metavar="PATH"
    )


class ServeSettings(PolicyOption):
    """`gpu-rdma-injector serve`: the HTTPS webhook."""

    tls_cert_file: Path | None = option(
        None, "serving certificate (PEM); reloaded when the file changes", metavar="PATH"
    )
    tls_key_file: Path | None = option(
        None, "serving key (PEM); without both, dev certificates in --dev-cert-dir", metavar="PATH"
    )
    dev_cert_dir: Path = option(
        Path("certs/dev"), "where development certificates are kept", metavar="DIR"
    )
    client_ca_file: Path | None = option(
        None, "require client certificates signed by this CA (mutual TLS)", metavar="PATH"
    )
    kubeconfig: Path | None = option(
        None,
        "talk to the API server of this kubeconfig (default: the in-cluster service account)",
        metavar="PATH",
    )
    no_kube: bool = option(False, "use the policy alone: no Kubernetes API, no NAD lookup")
    nad_namespaces: Annotated[tuple[str, ...] | None, NoDecode] = option(
        None, "watch NADs only in these namespaces (default: cluster-wide)", metavar="NS,NS"
    )
    no_peer_injector_watch: bool = option(
        False,
        "do not watch MutatingWebhookConfigurations for network-resources-injector's (the "
        "watch needs list and watch on them)",
    )
    self_signed_secret: str | None = option(
        None,
        "self-signed mode: keep the CA and serving certificate in this Secret, write them to "
        "--tls-cert-file/--tls-key-file and inject the CA into --webhook-configuration",
        metavar="NAME",
    )
    webhook_configuration: str | None = option(
        None,
        "self-signed mode: the MutatingWebhookConfiguration whose caBundle to keep current",
        metavar="NAME",
    )
    service_name: str | None = option(
        None,
        "self-signed mode: the Service in front of the webhook (names the certificate)",
        metavar="NAME",
    )
    pod_namespace: str | None = option(
        None,
        "the webhook's own namespace, never mutated (the chart sets it from the downward API)",
        metavar="NS",
    )
    cluster_domain: str = option(
        "cluster.local", "self-signed mode: the cluster's DNS domain", metavar="DOMAIN"
    )
    certificate_check_interval: float = option(
        60.0,
        "self-signed mode: how often the Secret and caBundle are checked",
        metavar="SECONDS",
        gt=0,
    )
    host: str = option("0.0.0.0", "address to listen on", metavar="ADDRESS")
    port: int = option(8443, "HTTPS port", metavar="PORT", ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = option("info", "log level")
    log_flush_interval: float = option(
        0.1,
        "log lines are written in batches at least this often (warnings and errors at once, "
        "everything on exit); 0 writes each line at once",
        metavar="SECONDS",
        ge=0,
        le=10,
    )
    workers: int = option(
        1, "server processes sharing the port (about one per core)", metavar="N", ge=1
    )
    reload_interval: float = option(
        2.0,
        "how often policy and certificate files are checked for changes",
        metavar="SECONDS",
        gt=0,
    )
    max_connections: int = option(
        DEFAULT_MAX_CONNECTIONS,
        "connections served at once, TLS handshakes included, shared by all workers; more "
        "wait in the listen backlog until one closes",
        metavar="N",
        ge=1,
    )
    on_internal_error: Literal["deny", "allow"] = option(
        "deny",
        "a bug inside the decision refuses the pod (deny: failurePolicy Fail) or admits it "
        "unchanged with a warning (allow: failurePolicy Ignore)",
    )

    audit_interval: float | None = option(
        None,
        "run the audit every this many seconds in the background, writing PolicyReports and "
        "exporting gpu_rdma_injector_audit_findings (default: off)",
        metavar="SECONDS",
        ge=60,
    )

    _split_namespaces = field_validator("nad_namespaces", mode="before")(_comma_list)

    def check(self) -> Self:
        if self.audit_interval and self.no_kube:
            raise UsageError("--audit-interval audits the cluster; drop --no-kube")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise UsageError(
                "give both --tls-cert-file and --tls-key-file, or neither for dev certificates"
            )
        if not self.self_signed_secret:
            return self
        if self.no_kube:
            raise UsageError("--self-signed-secret needs the Kubernetes API; drop --no-kube")
        missing = [
            flag
            for flag, value in (
                ("--webhook-configuration", self.webhook_configuration),
                ("--service-name", self.service_name),
                ("--pod-namespace", self.pod_namespace),
                ("--tls-cert-file", self.tls_cert_file),
                ("--tls-key-file", self.tls_key_file),
            )
            if not value
        ]
        if missing:
            raise UsageError(f"--self-signed-secret also needs {', '.join(missing)}")
        assert self.tls_cert_file is not None
        assert self.tls_key_file is not None
        if self.tls_cert_file.parent != self.tls_key_file.parent:
            raise UsageError(
                "in self-signed mode --tls-cert-file and --tls-key-file must be in one directory "
                "(the pair is replaced there at once)"
            )
        return self


class PreviewSettings(PolicyOption):
    """`gpu-rdma-injector mutate`: the decision for one pod, offline."""

    namespace: str | None = option(
        None, "namespace the pod is created in (default: from the file, else default)", short="-n"
    )
    nads: Path | None = option(
        None,
        "NetworkAttachmentDefinitions and Namespaces (YAML) to decide against, as if they were "
        "the cluster's",
        metavar="FILE",
    )
    kubeconfig: Path | None = option(
        None,
        "decide against the NADs and namespaces of the cluster this kubeconfig points at",
        metavar="PATH",
    )
    output: Literal["patch", "pod", "review"] = option(
        "patch",
        "print the JSON patch, the mutated pod as YAML, or the AdmissionReview response",
        short="-o",
    )

    def check(self) -> Self:
        if self.nads and self.kubeconfig:
            raise UsageError("give --nads or --kubeconfig, not both")
        return self


class AuditSettings(PolicyOption):
    """`gpu-rdma-injector audit`: find what is already broken on a cluster or in a dump."""

    from_file: Path | None = option(
        None,
        "audit a dump instead of a cluster: what kubectl get pods,network-attachment-definitions,"
        "namespaces,nodes,events -A -o yaml (or -o json) prints; - reads stdin",
        metavar="FILE",
        short="--from",
    )
    kubeconfig: Path | None = option(
        None,
        "audit the cluster of this kubeconfig (default: the in-cluster service account)",
        metavar="PATH",
    )
    namespace: str | None = option(
        None, "only findings about this namespace's objects (and read only its own)", short="-n"
    )
    checks: Annotated[tuple[str, ...] | None, NoDecode] = option(
        None,
        "run only these checks (comma-separated, or repeat the flag)",
        metavar="ID[,ID]",
        short="--check",
        repeat=True,
    )
    output: Literal["table", "json", "policyreport", "summary"] = option(
        "table",
        "a table grouped by severity, JSON, wgpolicyk8s.io PolicyReports (YAML), or the counts",
        short="-o",
    )
    serving_cert: Path | None = option(
        None,
        "the webhook's serving certificate (PEM), to check the registration's caBundle against",
        metavar="PATH",
    )
    webhook_configuration: str | None = option(
        None,
        "the MutatingWebhookConfiguration to judge (default: the one holding the webhook "
        "pods.gpu-rdma-injector.io)",
        metavar="NAME",
    )
    opt_in_label: str = option(
        "gpu-rdma-injector.io/inject=enabled",
        "the namespace label that opts in, when no webhook configuration can be seen",
        metavar="KEY=VALUE",
    )
    write_reports: bool = option(
        False,
        "also write the PolicyReports to the cluster, replacing the previous audit's (what the "
        "background audit does; needs write access to wgpolicyk8s.io reports)",
    )

    @field_validator("checks", mode="before")
    @classmethod
    def _split_checks(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            value = ",".join(str(part) for part in value)
        return _comma_list(value)

    @field_validator("opt_in_label")
    @classmethod
    def _key_value(cls, value: str) -> str:
        key, equals, _ = value.partition("=")
        if not equals or not key.strip():
            raise ValueError("write it as KEY=VALUE, e.g. gpu-rdma-injector.io/inject=enabled")
        return value

    def check(self) -> Self:
        if self.from_file and self.kubeconfig:
            raise UsageError("give --from or --kubeconfig, not both")
        if self.from_file and self.write_reports:
            raise UsageError("--write-reports writes to a cluster; it cannot go with --from")
        if self.write_reports and (self.namespace or self.checks):
            raise UsageError(
                "--write-reports replaces the whole audit's reports; it cannot go with "
                "--namespace or --check"
            )
        unknown = [check for check in self.checks or () if check not in CHECKS]
        if unknown:
            raise UsageError(
                f"--check {unknown[0]!r} is not a check; the checks are {', '.join(CHECKS)}"
            )
        return self


def wants_colour(is_terminal: bool) -> bool:
    """ANSI colours for a terminal, unless NO_COLOR is set to anything (no-color.org)."""
    return is_terminal and not os.environ.get("NO_COLOR")


class CertsSettings(BaseModel):
    """`gpu-rdma-injector certs generate` (command line only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    out_dir: Path = option(..., "directory to write to", metavar="DIR")
    dns_name: tuple[str, ...] = option(
        ...,
        "subject alternative name; repeat it; IP addresses become IP SANs",
        metavar="NAME",
        repeat=True,
        min_length=1,
    )
    days: int = option(365, "serving certificate lifetime", metavar="DAYS", ge=1)

    def check(self) -> Self:
        return self


Settings = TypeVar("Settings", ServeSettings, PreviewSettings, AuditSettings, CertsSettings)


def load(model: type[Settings], given: dict[str, Any]) -> Settings:
    """The command's settings: `given` flags over the environment (for serve and mutate) over
    the defaults, checked; UsageError with one sentence for a bad value."""
    try:
        settings = model(**given)
    except ValidationError as error:
        raise UsageError(_first_problem(model, error, given)) from None
    return settings.check()


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _first_problem(model: type[BaseModel], error: ValidationError, given: dict[str, Any]) -> str:
    """One sentence: where the bad value came from (flag or variable), the value, what is wrong."""
    problem = error.errors()[0]
    field = str(problem["loc"][0]) if problem["loc"] else ""
    reason = problem["msg"][0].lower() + problem["msg"][1:]
    if field not in model.model_fields:
        return reason
    value = problem.get("input")
    shown = "" if isinstance(value, dict) else f" {str(value)[:200]!r}"
    if field in given or not issubclass(model, BaseSettings):
        return f"{flag_name(field)}{shown}: {reason}"
    return f"environment variable {env_name(field)}{shown}: {reason}"
