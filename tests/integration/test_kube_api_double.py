"""The API server double answers the real kubernetes client as the API server does."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import kubernetes.client
import pytest
from kubernetes.client.exceptions import ApiException

from tests.kube_api_double import KubeApiDouble

NAD_PATH = ("k8s.cni.cncf.io", "v1", "ml-training", "network-attachment-definitions")


@pytest.fixture
def api() -> Iterator[KubeApiDouble]:
    with KubeApiDouble() as double:
        double.ensure_namespace("ml-training")
        yield double
        assert double.internal_errors == []


@pytest.fixture
def client(api: KubeApiDouble) -> Iterator[kubernetes.client.ApiClient]:
    api_client = api.api_client()
    yield api_client
    api_client.close()


def status_of(error: ApiException) -> dict[str, Any]:
    body = json.loads(error.body)
    assert body["kind"] == "Status"
    assert body["apiVersion"] == "v1"
    assert body["status"] == "Failure"
    assert body["code"] == error.status
    return dict(body)


def nad(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name},
        "spec": {"config": "{}"},
    }


def watch_lines(
    custom: kubernetes.client.CustomObjectsApi, count: int | None = None, **kwargs: Any
) -> list[dict[str, Any]]:
    """Events of a cluster-wide NAD watch: `count` of them, or all until the stream ends."""
    response = custom.list_cluster_custom_object(
        "k8s.cni.cncf.io",
        "v1",
        "network-attachment-definitions",
        watch=True,
        timeout_seconds=5,
        _preload_content=False,
        **kwargs,
    )
    events: list[dict[str, Any]] = []
    pending = b""
    try:
        for chunk in response.stream(amt=None):
            *lines, pending = (pending + chunk).split(b"\n")
            events.extend(json.loads(line) for line in lines if line.strip())
            if count is not None and len(events) >= count:
                break
    finally:
        response.close()
        response.release_conn()
    return events


def test_created_objects_get_server_fields_and_a_global_resource_version(
    api: KubeApiDouble, client: kubernetes.client.ApiClient
) -> None:
    custom = kubernetes.client.CustomObjectsApi(client)
    first = custom.create_namespaced_custom_object(*NAD_PATH, nad("a"))
    secret = kubernetes.client.CoreV1Api(client).create_namespaced_secret(
        "ml-training", {"metadata": {"generateName": "tls-"}, "stringData": {"tls.crt": "PEM"}}
    )
    second = custom.create_namespaced_custom_object(*NAD_PATH, nad("b"))
    assert first["metadata"]["namespace"] == "ml-training"
    assert first["metadata"]["uid"]
    assert first["metadata"]["creationTimestamp"].endswith("Z")
    assert first["metadata"]["generation"] == 1
    versions = [
        int(first["metadata"]["resourceVersion"]),
        int(secret.metadata.resource_version),
        int(second["metadata"]["resourceVersion"]),
    ]
    assert versions == sorted(versions)
    assert len(set(versions)) == 3
    assert secret.metadata.name.startswith("tls-")
    assert len(secret.metadata.name) == len("tls-") + 5
    assert secret.data == {"tls.crt": base64.b64encode(b"PEM").decode()}
    assert secret.type == "Opaque"


def test_errors_are_real_status_bodies(client: kubernetes.client.ApiClient) -> None:
    custom = kubernetes.client.CustomObjectsApi(client)
    core = kubernetes.client.CoreV1Api(client)
    custom.create_namespaced_custom_object(*NAD_PATH, nad("a"))
    with pytest.raises(ApiException) as exists:
        custom.create_namespaced_custom_object(*NAD_PATH, nad("a"))
    assert status_of(exists.value)["reason"] == "AlreadyExists"
    assert exists.value.status == 409

    with pytest.raises(ApiException) as missing:
        core.read_namespaced_secret("nope", "ml-training")
    assert status_of(missing.value) | {} == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'secrets "nope" not found',
        "reason": "NotFound",
        "details": {"name": "nope", "kind": "secrets"},
        "code": 404,
    }

    with pytest.raises(ApiException) as no_namespace:
        core.create_namespaced_secret("absent", {"metadata": {"name": "s"}})
    assert status_of(no_namespace.value)["message"] == 'namespaces "absent" not found'


def test_a_stale_update_is_a_conflict(client: kubernetes.client.ApiClient) -> None:
    core = kubernetes.client.CoreV1Api(client)
    secret = core.create_namespaced_secret("ml-training", {"metadata": {"name": "s"}})
    secret.data = {"k": "dg=="}
    updated = core.replace_namespaced_secret("s", "ml-training", secret)
    assert updated.metadata.resource_version != secret.metadata.resource_version
    with pytest.raises(ApiException) as stale:
        core.replace_namespaced_secret("s", "ml-training", secret)
    status = status_of(stale.value)
    assert status["reason"] == "Conflict"
    assert "the object has been modified" in status["message"]
    # A no-op update writes nothing.
    again = core.replace_namespaced_secret("s", "ml-training", updated)
    assert again.metadata.resource_version == updated.metadata.resource_version


def test_patches_merge_and_json(client: kubernetes.client.ApiClient) -> None:
    admission = kubernetes.client.AdmissionregistrationV1Api(client)
    config = {
        "metadata": {"name": "gpu-rdma-injector"},
        "webhooks": [
            {
                "name": "inject.gpu-rdma.example.com",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "clientConfig": {"service": {"name": "svc", "namespace": "ml-training"}},
            }
        ],
    }
    created = admission.create_mutating_webhook_configuration(config)
    assert created.metadata.generation == 1
    ca = base64.b64encode(b"CA").decode()
    patched = admission.patch_mutating_webhook_configuration(
        "gpu-rdma-injector",
        [{"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": ca}],
    )
    assert patched.webhooks[0].client_config.ca_bundle == ca
    assert patched.metadata.generation == 2
    labelled = admission.patch_mutating_webhook_configuration(
        "gpu-rdma-injector", {"metadata": {"labels": {"app": "injector"}}}
    )
    assert labelled.metadata.labels == {"app": "injector"}
    assert labelled.metadata.generation == 2
    with pytest.raises(ApiException) as stale:
        admission.patch_mutating_webhook_configuration(
            "gpu-rdma-injector",
            {"metadata": {"resourceVersion": created.metadata.resource_version}},
        )
    assert stale.value.status == 409
    deleted = admission.delete_mutating_webhook_configuration("gpu-rdma-injector")
    # kubernetes 37 hands the Status back as a dict; older clients as a V1Status.
    assert (deleted["status"] if isinstance(deleted, dict) else deleted.status) == "Success"


def test_lists_page_over_a_snapshot_and_items_carry_kind_only_for_custom_resources(
    api: KubeApiDouble, client: kubernetes.client.ApiClient
) -> None:
    custom = kubernetes.client.CustomObjectsApi(client)
    for name in "abcde":
        custom.create_namespaced_custom_object(*NAD_PATH, nad(name))
    page = custom.list_namespaced_custom_object(*NAD_PATH, limit=2)
    assert page["kind"] == "NetworkAttachmentDefinitionList"
    assert [i["metadata"]["name"] for i in page["items"]] == ["a", "b"]
    assert all(i["kind"] == "NetworkAttachmentDefinition" for i in page["items"])
    assert page["metadata"]["remainingItemCount"] == 3
    snapshot_rv = page["metadata"]["resourceVersion"]
    custom.delete_namespaced_custom_object(*NAD_PATH, "d")
    rest = custom.list_namespaced_custom_object(*NAD_PATH, _continue=page["metadata"]["continue"])
    assert [i["metadata"]["name"] for i in rest["items"]] == ["c", "d", "e"]
    assert rest["metadata"]["resourceVersion"] == snapshot_rv
    assert "continue" not in rest["metadata"]

    response = kubernetes.client.CoreV1Api(client).list_namespace(_preload_content=False)
    namespaces = json.loads(response.data)
    assert namespaces["kind"] == "NamespaceList"
    assert namespaces["apiVersion"] == "v1"
    assert "kind" not in namespaces["items"][0]
    assert namespaces["items"][0]["metadata"]["labels"] == {
        "kubernetes.io/metadata.name": "ml-training"
    }

    second = custom.list_namespaced_custom_object(*NAD_PATH, limit=2)
    custom.delete_namespaced_custom_object(*NAD_PATH, "e")
    api.compact()  # the snapshot's revision is gone now
    with pytest.raises(ApiException) as expired:
        custom.list_namespaced_custom_object(*NAD_PATH, _continue=second["metadata"]["continue"])
    assert status_of(expired.value)["reason"] == "Expired"
    assert expired.value.status == 410


def test_a_watch_replays_streams_and_expires(
    api: KubeApiDouble, client: kubernetes.client.ApiClient
) -> None:
    custom = kubernetes.client.CustomObjectsApi(client)
    start = api.resource_version
    custom.create_namespaced_custom_object(*NAD_PATH, nad("a"))
    custom.delete_namespaced_custom_object(*NAD_PATH, "a")
    events = watch_lines(custom, 2, resource_version=start, allow_watch_bookmarks=True)
    assert [e["type"] for e in events] == ["ADDED", "DELETED"]
    assert events[1]["object"]["metadata"]["resourceVersion"] == api.resource_version
    assert events[1]["object"]["kind"] == "NetworkAttachmentDefinition"

    custom.create_namespaced_custom_object(*NAD_PATH, nad("b"))
    assert [e["type"] for e in watch_lines(custom, 1)] == ["ADDED"]  # no RV: current state

    api.compact()
    expired = watch_lines(custom, resource_version=start)
    assert [e["type"] for e in expired] == ["ERROR"]
    assert expired[0]["object"]["code"] == 410
    assert expired[0]["object"]["reason"] == "Expired"
    assert api.count("watch") == 3
