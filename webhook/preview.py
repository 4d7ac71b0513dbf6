"""The `mutate` command (CLI layer): the webhook's decision for one pod, offline.

Reads a Pod (YAML or JSON) or a whole AdmissionReview, decides it against the policy and what is
known of the cluster (nothing; a file of NADs and Namespaces, `--nads`; or a live cluster,
`--kubeconfig`), and prints the JSON patch, the mutated pod or the AdmissionReview response,
with the warnings a user would see on stderr. Exit status 0 when admitted, 1 when denied.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import jsonpatch
import orjson
import yaml

from webhook.admission import (
    AdmissionRequest,
    ReviewError,
    build_response,
    decide_request,
    parse_review,
)
from webhook.claims import NO_CLAIMS, ClaimLookup
from webhook.cluster import Cluster, KubeConfigError, load_kube_api_client
from webhook.mutation import NO_NADS
from webhook.nads import NO_NAMESPACES, NadLookup, NamespaceLookup, load_facts_file
from webhook.policy import Policy, PolicyError, yaml_problem
from webhook.reload import PolicyStore
from webhook.settings import PreviewSettings, UsageError

SYNC_SECONDS = 30


def preview(file: str, settings: PreviewSettings) -> int:
    try:
        policy = PolicyStore.load(settings.config).current
    except PolicyError as error:
        raise UsageError(str(error)) from None
    request = _request(file, _read_input(file), settings.namespace)
    nads, namespaces, claims, cluster = _facts(settings, policy)
    try:
        decision = decide_request(request, policy, nads, namespaces, claims=claims)
    finally:
        if cluster is not None:
            cluster.stop()
    for warning in decision.warnings:
        sys.stderr.write(f"warning: {warning}\n")
    if settings.output == "review":
        review = orjson.loads(build_response(request.uid, decision))
        _print(orjson.dumps(review, option=orjson.OPT_INDENT_2).decode())
    elif not decision.allowed:
        sys.stderr.write(f"denied: {decision.message}\n")
    elif settings.output == "pod":
        patch = [op.as_dict() for op in decision.patch]
        mutated = jsonpatch.apply_patch(request.object, patch)
        sys.stdout.write(yaml.safe_dump(mutated, sort_keys=False))
    else:
        ops = [op.as_dict() for op in decision.patch]
        _print(orjson.dumps(ops, option=orjson.OPT_INDENT_2).decode())
    return 0 if decision.allowed else 1


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")


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


def _request(name: str, document: Any, namespace: str | None) -> AdmissionRequest:
    """The review to decide: the file's own AdmissionReview, or a CREATE of the file's Pod."""
    if not isinstance(document, dict):
        raise UsageError(f"{name!r} must hold a Pod or an AdmissionReview object")
    if document.get("kind") == "AdmissionReview":
        try:
            request = parse_review(orjson.dumps(document))
        except ReviewError as error:
            raise UsageError(f"{name!r}: {error}") from None
        return dataclasses.replace(request, namespace=namespace) if namespace else request
    if document.get("kind", "Pod") != "Pod":
        raise UsageError(
            f"{name!r} holds a {document.get('kind')!r}; give a Pod or an AdmissionReview"
        )
    metadata = document.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    return AdmissionRequest(
        uid="mutate-preview",
        kind="Pod",
        group="",
        sub_resource="",
        operation="CREATE",
        namespace=namespace or metadata.get("namespace") or "default",
        name=str(metadata.get("name") or metadata.get("generateName") or ""),
        object=document,
        dry_run=True,
    )


def _facts(
    settings: PreviewSettings, policy: Policy
) -> tuple[NadLookup, NamespaceLookup, ClaimLookup, Cluster | None]:
    """What `mutate` knows of NADs, namespaces and DRA claims: a file of them, a live cluster,
    or nothing."""
    if settings.nads:
        try:
            text = settings.nads.read_text(encoding="utf-8")
            facts = load_facts_file(
                text, policy.resource_name_annotations, source=repr(str(settings.nads))
            )
        except OSError as error:
            raise UsageError(f"cannot read {str(settings.nads)!r}: {error.strerror}") from None
        except ValueError as error:
            raise UsageError(str(error)) from None
        return facts.nads, facts.namespaces, facts.claims, None
    if settings.kubeconfig:
        try:
            api_client = load_kube_api_client(str(settings.kubeconfig))
        except KubeConfigError as error:
            raise UsageError(str(error).rstrip(".")) from None
        cluster = Cluster.connect(
            api_client,
            policy.resource_name_annotations,
            watch_claims=bool(policy.gpu_device_classes),
        )
        cluster.start()
        if not cluster.wait_synced(SYNC_SECONDS):
            cluster.stop()
            raise UsageError(
                f"could not list NADs and namespaces within {SYNC_SECONDS} s: {cluster.not_ready()}"
            )
        claims = cluster.claims if cluster.claims is not None else NO_CLAIMS
        return cluster.nads, cluster.namespaces, claims, cluster
    return NO_NADS, NO_NAMESPACES, NO_CLAIMS, None
