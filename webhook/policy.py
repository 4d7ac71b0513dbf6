"""The injection policy (core layer): what GPU pods should carry; loaded from YAML, validated.

A policy file names the GPU resources that make a container a GPU container, the networks
every GPU pod should be attached to (each with the SR-IOV resource that backs it, unless the
NetworkAttachmentDefinition says so itself), and the namespaces references may point into.
A bad file is refused with one sentence naming the field, the value and what to write instead.
"""

from __future__ import annotations

import re
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from webhook.networks import MAX_NAD_NAME, is_dns1123_label, is_interface_name, is_nad_name

DEFAULT_RESOURCE_ANNOTATION = "k8s.v1.cni.cncf.io/resourceName"
DEFAULT_NAMESPACE_NETWORKS_ANNOTATION = "gpu-rdma-injector/networks"
# Where Multus looks up an unqualified v1.multus-cni.io/default-network (its multusNamespace).
DEFAULT_MULTUS_NAMESPACE = "kube-system"

# An extended resource name: a DNS subdomain prefix, '/', and a name of at most 63 characters.
_RESOURCE_NAME = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/"
    r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61}[A-Za-z0-9]|[A-Za-z0-9])$"
)
_ANNOTATION_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61}[A-Za-z0-9]|[A-Za-z0-9])$"
)


class PolicyError(ValueError):
    """A policy that cannot be used; the message is one sentence for the admin."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Network(_Frozen):
    """One network attachment every GPU pod should have."""

    name: str = Field(description='NAD name, or "namespace/name"')
    resource_name: str | None = Field(default=None, alias="resourceName")
    interface: str | None = None
    per_gpu: bool = Field(default=False, alias="perGpu")
    resource_units: Literal["perAttachment", "perContainer"] = Field(
        default="perAttachment", alias="resourceUnits"
    )
    """perAttachment: one unit per attachment (SR-IOV VFs). perContainer: one unit per GPU
    container however many attachments use it (a shared RDMA device)."""

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not is_reference(value):
            raise ValueError(
                f"{value!r} is not a NAD reference; write name or namespace/name "
                "(lower-case letters, digits and '-'; the comma form of the annotation has no "
                "room for '.')"
            )
        return value

    @field_validator("resource_name")
    @classmethod
    def _check_resource(cls, value: str | None) -> str | None:
        if value is not None and not _RESOURCE_NAME.match(value):
            raise ValueError(
                f"{value!r} is not an extended resource name; write it as domain/name, "
                "e.g. openshift.io/mellanoxnics"
            )
        return value

    @field_validator("interface")
    @classmethod
    def _check_interface(cls, value: str | None) -> str | None:
        if value is not None and not is_interface_name(value):
            raise ValueError(f"{value!r} is not a Linux interface name (1-15 characters)")
        return value

    @model_validator(mode="after")
    def _per_gpu_without_interface(self) -> Network:
        if self.per_gpu and self.interface:
            raise ValueError(
                f"network {self.name!r} sets both perGpu and interface; a perGpu network is "
                "attached once per GPU and each attachment needs its own interface, so drop "
                "interface (Multus then names them net1, net2, ...)"
            )
        return self

    # Cached: the decision asks for these several times per network on every review.
    @cached_property
    def namespace(self) -> str | None:
        """The namespace the reference names, or None for the pod's own namespace."""
        return self.name.split("/", 1)[0] if "/" in self.name else None

    @cached_property
    def nad_name(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    def resolved(self, pod_namespace: str) -> tuple[str, str]:
        return (self.namespace or pod_namespace, self.nad_name)


class PodNetInfo(_Frozen):
    """A downward-API volume of the pod's annotations and labels in every GPU container."""

    enabled: bool = False
    mount_path: str = Field(default="/etc/podnetinfo", alias="mountPath")

    @field_validator("mount_path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        if not value.startswith("/") or ":" in value or len(value) > 1024 or "\n" in value:
            raise ValueError(f"{value!r} is not an absolute path to mount at")
        return value


class Policy(_Frozen):
    """What the webhook does; see docs in README.md ("Policy reference")."""

    gpu_resources: tuple[str, ...] = Field(default=("nvidia.com/gpu",), alias="gpuResources")
    networks: tuple[Network, ...] = ()
    allowed_nad_namespaces: tuple[str, ...] = Field(default=(), alias="allowedNadNamespaces")
    """Besides the pod's own namespace: whole namespaces ("ns") and single NADs ("ns/name")."""
    excluded_namespaces: tuple[str, ...] = Field(
        default=("kube-system",), alias="excludedNamespaces"
    )
    unknown_networks: Literal["deny", "warn"] = Field(default="deny", alias="unknownNetworks")
    resource_name_annotations: tuple[str, ...] = Field(
        default=(DEFAULT_RESOURCE_ANNOTATION,), alias="resourceNameAnnotations"
    )
    namespace_networks_annotation: str = Field(
        default=DEFAULT_NAMESPACE_NETWORKS_ANNOTATION, alias="namespaceNetworksAnnotation"
    )
    multus_namespace: str = Field(default=DEFAULT_MULTUS_NAMESPACE, alias="multusNamespace")
    units_outside_gpu_containers: Literal["move", "warn"] = Field(
        default="move", alias="unitsOutsideGpuContainers"
    )
    inject_node_selector: bool = Field(default=False, alias="injectNodeSelector")
    pod_net_info: PodNetInfo = Field(default_factory=PodNetInfo, alias="podNetInfo")
    gpu_device_classes: tuple[str, ...] = Field(default=(), alias="gpuDeviceClasses")
    mode: Literal["enforce", "warn"] = "enforce"
    """warn: every decision is made but only said in warnings; nothing is patched or denied."""

    @field_validator("gpu_resources")
    @classmethod
    def _check_gpu_resources(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("must list at least one GPU resource, e.g. nvidia.com/gpu")
        for name in value:
            # "*" stands for any characters: the pattern must be a resource name with x there.
            if not _RESOURCE_NAME.match(name.replace("*", "x")):
                raise ValueError(
                    f"{name!r} is not an extended resource name such as nvidia.com/gpu, or a "
                    "pattern such as nvidia.com/mig-*"
                )
        return value

    @field_validator("gpu_device_classes")
    @classmethod
    def _check_device_classes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not is_nad_name(name):
                raise ValueError(f"{name!r} is not a DeviceClass name such as gpu.nvidia.com")
        return value

    @field_validator("excluded_namespaces")
    @classmethod
    def _check_namespaces(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for namespace in value:
            if not is_dns1123_label(namespace):
                raise ValueError(f"{namespace!r} is not a namespace name")
        return value

    @field_validator("multus_namespace")
    @classmethod
    def _check_namespace(cls, value: str) -> str:
        if not is_dns1123_label(value):
            raise ValueError(f"{value!r} is not a namespace name")
        return value

    @field_validator("allowed_nad_namespaces")
    @classmethod
    def _check_allowed(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            if not (is_reference(entry) if "/" in entry else is_dns1123_label(entry)):
                raise ValueError(
                    f"{entry!r} is neither a namespace nor namespace/name of a NAD; write "
                    "gpu-infra to allow a namespace or gpu-infra/ib-rail-1 to allow one NAD"
                )
        return value

    @field_validator("resource_name_annotations")
    @classmethod
    def _check_annotation_keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError(
                f"must list at least one annotation key, e.g. {DEFAULT_RESOURCE_ANNOTATION}"
            )
        for key in value:
            if not _ANNOTATION_KEY.match(key):
                raise ValueError(f"{key!r} is not an annotation key")
        return value

    @field_validator("namespace_networks_annotation")
    @classmethod
    def _check_annotation_key(cls, value: str) -> str:
        if not _ANNOTATION_KEY.match(value):
            raise ValueError(f"{value!r} is not an annotation key")
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> Policy:
        seen: set[str] = set()
        for network in self.networks:
            if network.name in seen:
                raise ValueError(
                    f"network {network.name!r} is listed twice; list each network once"
                )
            seen.add(network.name)
            if network.resource_name and self.is_gpu_resource(network.resource_name):
                raise ValueError(
                    f"network {network.name!r} uses the GPU resource {network.resource_name!r} "
                    "as its resourceName; name the SR-IOV resource instead"
                )
        return self

    @cached_property
    def gpu_exact(self) -> frozenset[str]:
        """The GPU resources listed by name (not patterns)."""
        return frozenset(name for name in self.gpu_resources if "*" not in name)

    @cached_property
    def gpu_patterns(self) -> re.Pattern[str] | None:
        """One expression for every pattern among gpuResources, or None when there is none."""
        patterns = [name for name in self.gpu_resources if "*" in name]
        if not patterns:
            return None
        return re.compile("|".join(".*".join(map(re.escape, p.split("*"))) for p in patterns))

    def is_gpu_resource(self, name: str) -> bool:
        """Whether `name` is a GPU resource: listed, or matching a pattern of gpuResources."""
        patterns = self.gpu_patterns
        return name in self.gpu_exact or (
            patterns is not None and patterns.fullmatch(name) is not None
        )

    @cached_property
    def _allowed_namespaces(self) -> frozenset[str]:
        return frozenset(entry for entry in self.allowed_nad_namespaces if "/" not in entry)

    @cached_property
    def _allowed_nads(self) -> frozenset[tuple[str, str]]:
        """NADs outside a pod's namespace it may use: single allowed NADs and the policy's own."""
        single = [entry.split("/", 1) for entry in self.allowed_nad_namespaces if "/" in entry]
        own = [(net.namespace, net.nad_name) for net in self.networks if net.namespace]
        return frozenset([(namespace, name) for namespace, name in single] + own)

    def allows(self, pod_namespace: str, reference: tuple[str, str]) -> bool:
        """Whether a pod in `pod_namespace` may attach the NAD `reference` (namespace, name).

        Its own namespace, a namespace in allowedNadNamespaces, a NAD listed there as
        namespace/name, or a NAD the policy's networks name: nothing else.
        """
        namespace = reference[0]
        return (
            namespace == pod_namespace
            or namespace in self._allowed_namespaces
            or reference in self._allowed_nads
        )


def is_reference(value: str) -> bool:
    """Whether `value` is `name` or `namespace/name` of a NAD the comma form can name."""
    namespace, slash, name = value.partition("/")
    if not slash:
        return is_dns1123_label(value, MAX_NAD_NAME)
    return is_dns1123_label(namespace) and is_dns1123_label(name, MAX_NAD_NAME)


def default_policy() -> Policy:
    """The embedded default: one network `sriov-rdma-net` backed by `openshift.io/mellanoxnics`."""
    text = resources.files("webhook").joinpath("default-policy.yaml").read_text(encoding="utf-8")
    return parse_policy(text, "<embedded default policy>")


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file; PolicyError on any problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise PolicyError(
            f"policy file {str(path)!r} cannot be read ({error.strerror or error}); "
            "check the --config path"
        ) from None
    except UnicodeDecodeError:
        raise PolicyError(f"policy file {str(path)!r} is not UTF-8 text") from None
    return parse_policy(text, str(path))


def parse_policy(text: str, origin: str) -> Policy:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PolicyError(
            f"policy file {origin!r} is not valid YAML{yaml_problem(error)}"
        ) from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise PolicyError(
            f"policy file {origin!r} must be a YAML mapping with keys such as gpuResources "
            "and networks"
        )
    try:
        return Policy.model_validate(document)
    except ValidationError as error:
        raise PolicyError(f"policy file {origin!r}: {_first_problem(error)}") from None


def yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's multi-line message as one clause: " at line N: what"."""
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}" if mark is not None else ""
    return f"{where}: {getattr(error, 'problem', None) or 'unreadable YAML'}"


def _first_problem(error: ValidationError) -> str:
    problems = error.errors(include_url=False)
    # A misspelt key also makes the real one "missing": name the misspelling first.
    problem = next((p for p in problems if p["type"] == "extra_forbidden"), problems[0])
    location = _location(problem["loc"])
    message = str(problem["msg"]).removeprefix("Value error, ").replace("valid tuple", "list")
    if problem["type"] == "extra_forbidden":
        return f"{location} is not a policy field; check its spelling against the policy reference"
    if problem["type"] == "missing":
        return f"{location} is required"
    value: Any = problem.get("input")
    shown = "" if problem["type"].startswith("value_error") else f" (got {value!r})"
    return f"{location}: {message}{shown}" if location else f"{message}{shown}"


def _location(parts: tuple[int | str, ...]) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text
