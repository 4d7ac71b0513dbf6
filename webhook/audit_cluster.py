"""Reading a live cluster for the audit (edge layer: the Kubernetes API, read-only).

Every kind the checks read is listed in pages (`limit`/`continue`), and each page is reduced
to the fields the checks use as soon as it arrives, so memory follows the cluster's pods and
not the API's whole objects (a pod as listed is several KiB, its audited part a few hundred
bytes). Finished pods are left out by the server (a field selector), and only scheduling
failures among events. A list the audit may not read (403) leaves that kind unknown, said in
a note, and its checks skipped (pods excepted: without them there is no audit); a cluster
that cannot be reached, or a kind over `max_objects`, stops the audit with one sentence
(`ClusterReadError`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import kubernetes.client
import orjson
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as ConnectionProblem

from webhook.audit_fields import slim_event, slim_namespace, slim_node, slim_pod, whole
from webhook.findings import KIND_NAMES, Inventory, Kind
from webhook.kube_api import describe_error
from webhook.pod_networks import FINISHED_PHASES

NAD_GROUP, NAD_VERSION, NAD_PLURAL = "k8s.cni.cncf.io", "v1", "network-attachment-definitions"
PAGE_SIZE = 500
MAX_OBJECTS = 200_000
"""Objects of one kind the audit reads; past it, audit a namespace at a time."""
ATTEMPTS = 3

Progress = Callable[[str, int, int], None]
"""Called after each page: (what is listed, pages so far, objects read so far in all)."""


class ClusterReadError(Exception):
    """The cluster could not be read; the message is one sentence."""


@dataclass(frozen=True, slots=True)
class ReadOptions:
    namespace: str | None = None
    page_size: int = PAGE_SIZE
    max_objects: int = MAX_OBJECTS
    timeout: tuple[float, float] = (10.0, 60.0)
    retry_pause: float = 1.0


def read_cluster(
    api_client: Any, options: ReadOptions | None = None, progress: Progress | None = None
) -> Inventory:
    options = options or ReadOptions()
    core = kubernetes.client.CoreV1Api(api_client)
    custom = kubernetes.client.CustomObjectsApi(api_client)
    admission = kubernetes.client.AdmissionregistrationV1Api(api_client)
    namespace = options.namespace
    live = f"status.phase!={',status.phase!='.join(sorted(FINISHED_PHASES))}"
    calls: list[tuple[Kind, Callable[..., Any], dict[str, Any], Callable[[Any], Any]]] = [
        (
            "pods",
            functools.partial(core.list_namespaced_pod, namespace)
            if namespace
            else core.list_pod_for_all_namespaces,
            {"field_selector": live},
            slim_pod,
        ),
        (
            "nads",
            functools.partial(
                custom.list_namespaced_custom_object, NAD_GROUP, NAD_VERSION, namespace, NAD_PLURAL
            )
            if namespace
            else functools.partial(
                custom.list_cluster_custom_object, NAD_GROUP, NAD_VERSION, NAD_PLURAL
            ),
            {},
            whole,
        ),
        ("namespaces", core.list_namespace, {}, slim_namespace),
        ("nodes", core.list_node, {}, slim_node),
        (
            "events",
            functools.partial(core.list_namespaced_event, namespace)
            if namespace
            else core.list_event_for_all_namespaces,
            {"field_selector": "reason=FailedScheduling"},
            slim_event,
        ),
        ("webhooks", admission.list_mutating_webhook_configuration, {}, whole),
    ]
    found: dict[str, Any] = {}
    notes: list[str] = []
    total = 0
    for kind, call, query, slim in calls:
        try:
            items = _list_all(kind, call, query, slim, options, progress, total)
        except ApiException as error:
            if error.status == 403 and kind != "pods":
                notes.append(f"not allowed to list {KIND_NAMES[kind]} ({describe_error(error)})")
                continue
            if error.status == 404 and kind == "nads":
                notes.append("the NetworkAttachmentDefinition CRD is not installed")
                items = []
            else:
                raise ClusterReadError(_cannot(kind, error)) from None
        except Exception as error:  # connection refused, timeouts, garbage: all one sentence
            raise ClusterReadError(_cannot(kind, error)) from None
        found[kind] = tuple(items)
        total += len(items)
    return Inventory(
        **found,
        namespaces_read=frozenset([namespace]) if namespace else None,
        notes=tuple(notes),
    )


def _list_all(
    kind: Kind,
    call: Callable[..., Any],
    query: Mapping[str, Any],
    slim: Callable[[Any], Any],
    options: ReadOptions,
    progress: Progress | None,
    before: int,
) -> list[Any]:
    items: list[Any] = []
    token: str | None = None
    pages = 0
    while True:
        page = _page(call, {**query, **({"_continue": token} if token else {})}, options)
        items.extend(slim(item) for item in page.get("items") or () if isinstance(item, dict))
        if len(items) > options.max_objects:
            raise ClusterReadError(
                f"the cluster has more than {options.max_objects} {KIND_NAMES[kind]}, the "
                "audit's bound; audit one namespace at a time (--namespace)"
            )
        pages += 1
        if progress is not None:
            progress(KIND_NAMES[kind], pages, before + len(items))
        token = (page.get("metadata") or {}).get("continue") or None
        if token is None:
            return items


def _page(call: Callable[..., Any], query: Mapping[str, Any], options: ReadOptions) -> Any:
    """One page, with a couple of retries for what passes (429, 5xx, a dropped connection)."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            response = call(
                limit=options.page_size,
                _preload_content=False,
                _request_timeout=options.timeout,
                **query,
            )
            try:
                page = orjson.loads(response.data)
            finally:
                response.release_conn()
            if not isinstance(page, dict):
                raise ValueError("the list response is not a JSON object")
            return page
        except ApiException as error:
            if error.status not in (429, 500, 502, 503, 504) or attempt == ATTEMPTS:
                raise
        except (OSError, ValueError, ConnectionProblem):
            if attempt == ATTEMPTS:
                raise
        time.sleep(options.retry_pause * attempt)
    raise AssertionError("unreachable")


def _cannot(kind: Kind, error: Exception) -> str:
    return f"cannot list {KIND_NAMES[kind]}: {describe_error(error)}"
