"""Writing the audit's PolicyReports to the cluster (edge layer: the Kubernetes API).

The cluster ends up holding exactly the reports of the latest audit, and nothing is written
that has not changed: the reports this webhook wrote before (found by its managed-by label,
listed in pages) are compared with the new ones, results without their timestamps; new ones are
created, changed ones replaced (with the resourceVersion read, so a concurrent writer, e.g.
another replica, gets a 409 and its turn next time), and those whose object has no finding any
more are deleted. At most `MAX_REPORTS` reports are written per run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import kubernetes.client
import orjson
from kubernetes.client.exceptions import ApiException

from webhook.kube_api import describe_error
from webhook.policyreport import LABELS, MANAGED_BY, without_timestamps

GROUP, VERSION = "wgpolicyk8s.io", "v1alpha2"
NAMESPACED, CLUSTER = "policyreports", "clusterpolicyreports"
MAX_REPORTS = 10_000
PAGE_SIZE = 500
TIMEOUT = (10.0, 30.0)

Key = tuple[str, str, str]
"""(plural, namespace, name)"""


class ReportWriteError(Exception):
    """The reports could not be written; the message is one sentence."""


@dataclass
class Written:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    conflicts: int = 0
    errors: list[str] = field(default_factory=list)


def write_reports(
    api_client: Any,
    reports: Sequence[dict[str, Any]],
    *,
    delete_stale: bool = True,
    max_reports: int = MAX_REPORTS,
) -> Written:
    """Make the cluster's reports these; `delete_stale` False when the findings were capped (an
    object whose findings were not kept still has them: its report stays)."""
    if len(reports) > max_reports:
        reports, delete_stale = reports[:max_reports], False
    api = kubernetes.client.CustomObjectsApi(api_client)
    try:
        existing = dict(_existing(api))
    except ApiException as error:
        if error.status == 404:
            raise ReportWriteError(
                "the PolicyReport CRDs (wgpolicyk8s.io/v1alpha2) are not installed; install "
                "them (Kyverno or the policy working group's CRDs) to get reports"
            ) from None
        raise ReportWriteError(f"cannot list PolicyReports: {describe_error(error)}") from None
    except Exception as error:
        raise ReportWriteError(f"cannot list PolicyReports: {describe_error(error)}") from None
    written = Written()
    wanted: set[Key] = set()
    for report in reports:
        key = _key(report)
        wanted.add(key)
        old = existing.get(key)
        try:
            if old is None:
                _create(api, key, report)
                written.created += 1
            elif without_timestamps(old) == without_timestamps(report):
                written.unchanged += 1
            else:
                _replace(api, key, report, old)
                written.updated += 1
        except ApiException as error:
            if error.status == 409:
                written.conflicts += 1
            else:
                written.errors.append(f"{key[2]}: {describe_error(error)}")
    for key in sorted(set(existing) - wanted) if delete_stale else ():
        try:
            _delete(api, key)
            written.deleted += 1
        except ApiException as error:
            if error.status != 404:
                written.errors.append(f"{key[2]}: {describe_error(error)}")
    return written


def _existing(api: Any) -> Iterator[tuple[Key, dict[str, Any]]]:
    selector = f"{MANAGED_BY}={LABELS[MANAGED_BY]}"
    for plural in (NAMESPACED, CLUSTER):
        token = None
        while True:
            query: dict[str, Any] = {"label_selector": selector, "limit": PAGE_SIZE}
            if token:
                query["_continue"] = token
            response = api.list_cluster_custom_object(
                GROUP, VERSION, plural, _preload_content=False, _request_timeout=TIMEOUT, **query
            )
            page = orjson.loads(response.data)
            for item in page.get("items") or ():
                metadata = item.get("metadata") or {}
                yield (plural, metadata.get("namespace") or "", metadata.get("name") or ""), item
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                break


def _key(report: dict[str, Any]) -> Key:
    metadata = report["metadata"]
    plural = NAMESPACED if report["kind"] == "PolicyReport" else CLUSTER
    return plural, metadata.get("namespace") or "", metadata["name"]


def _create(api: Any, key: Key, report: dict[str, Any]) -> None:
    plural, namespace, _ = key
    if namespace:
        api.create_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, report, _request_timeout=TIMEOUT
        )
    else:
        api.create_cluster_custom_object(GROUP, VERSION, plural, report, _request_timeout=TIMEOUT)


def _replace(api: Any, key: Key, report: dict[str, Any], old: dict[str, Any]) -> None:
    plural, namespace, name = key
    body = {
        **report,
        "metadata": {
            **report["metadata"],
            "resourceVersion": (old.get("metadata") or {}).get("resourceVersion"),
        },
    }
    if namespace:
        api.replace_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name, body, _request_timeout=TIMEOUT
        )
    else:
        api.replace_cluster_custom_object(
            GROUP, VERSION, plural, name, body, _request_timeout=TIMEOUT
        )


def _delete(api: Any, key: Key) -> None:
    plural, namespace, name = key
    if namespace:
        api.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name, _request_timeout=TIMEOUT
        )
    else:
        api.delete_cluster_custom_object(GROUP, VERSION, plural, name, _request_timeout=TIMEOUT)
