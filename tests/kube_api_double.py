"""An HTTP test double of the Kubernetes API server, for tests of code that uses the real client.

It is a double, not a cluster: an in-memory object store behind a threaded HTTP/1.1 server on
127.0.0.1 that speaks the wire format the real API server speaks to the `kubernetes` Python
client (paths, List and Status bodies, chunked watch streams with one JSON event per line,
resourceVersions, 404/409/410 answers), plus fault controls no real server offers on demand.

What it does, as the real API server does:
- one global resourceVersion (etcd's revision) shared by every resource; every object carries
  metadata.uid, metadata.creationTimestamp and metadata.resourceVersion;
- LIST: a `<Kind>List` with metadata.resourceVersion; items of built-in resources carry no
  kind/apiVersion, items of custom resources do; `limit`/`continue` paging over a consistent
  snapshot; equality-based labelSelector; fieldSelector on metadata.name / metadata.namespace
  (and on the few pod and event fields in `_FIELDS`);
- WATCH: replays events newer than `resourceVersion` (or synthetic ADDED events when it is unset
  or "0"), then streams live ones; BOOKMARK events if `allowWatchBookmarks`; ends after
  `timeoutSeconds`; an ERROR event with a 410 Expired Status when the resourceVersion is older
  than the retained history;
- create (409 AlreadyExists), update with optimistic concurrency (409 Conflict on a stale
  metadata.resourceVersion), merge / strategic-merge (treated as merge: lists are replaced) /
  JSON patch, delete (a Success Status), 404 NotFound with a real Status body; Secret
  stringData is folded into base64 data; namespaced objects need their namespace to exist.

What it does not do: authentication, RBAC, admission, defaulting or schema validation beyond
names, finalizers and graceful deletion, garbage collection (deleting a namespace removes only
the namespace), server-side apply, subresources, managedFields, protobuf, HTTP/2, TLS.

Use:

    with KubeApiDouble() as api:
        api.ensure_namespace("ml-training")
        api.create(nad)                      # or load_yaml(path): straight into the store
        client = api.api_client()            # a kubernetes.client.ApiClient aimed at the double
        ...
        api.compact(); api.drop_watches(); api.fail_next(2, status=500)
        with api.outage(): ...
        assert api.count("list", "network-attachment-definitions") == 1
"""

from __future__ import annotations

import base64
import contextlib
import copy
import http.server
import json
import queue
import random
import re
import select
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jsonpatch
import yaml


@dataclass(frozen=True)
class ResourceType:
    group: str
    """"" for the core group."""
    version: str
    plural: str
    kind: str
    namespaced: bool
    custom: bool = False
    """Served from a CRD: list items carry kind/apiVersion, objects carry metadata.generation."""
    has_generation: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def path_prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    @property
    def qualified(self) -> str:
        """How the API server names the resource in messages: `secrets`, `x.k8s.cni.cncf.io`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        path = self.path_prefix
        if namespace is not None:
            path += f"/namespaces/{namespace}"
        path += f"/{self.plural}"
        return f"{path}/{name}" if name is not None else path


NAMESPACES = ResourceType("", "v1", "namespaces", "Namespace", namespaced=False)
SECRETS = ResourceType("", "v1", "secrets", "Secret", namespaced=True)
MUTATING_WEBHOOK_CONFIGURATIONS = ResourceType(
    "admissionregistration.k8s.io",
    "v1",
    "mutatingwebhookconfigurations",
    "MutatingWebhookConfiguration",
    namespaced=False,
    has_generation=True,
)
NETWORK_ATTACHMENT_DEFINITIONS = ResourceType(
    "k8s.cni.cncf.io",
    "v1",
    "network-attachment-definitions",
    "NetworkAttachmentDefinition",
    namespaced=True,
    custom=True,
    has_generation=True,
)
RESOURCE_CLAIM_TEMPLATES = ResourceType(
    "resource.k8s.io", "v1", "resourceclaimtemplates", "ResourceClaimTemplate", namespaced=True
)
RESOURCE_CLAIMS = ResourceType(
    "resource.k8s.io", "v1", "resourceclaims", "ResourceClaim", namespaced=True
)
PODS = ResourceType("", "v1", "pods", "Pod", namespaced=True)
NODES = ResourceType("", "v1", "nodes", "Node", namespaced=False)
EVENTS = ResourceType("", "v1", "events", "Event", namespaced=True)
POLICY_REPORTS = ResourceType(
    "wgpolicyk8s.io", "v1alpha2", "policyreports", "PolicyReport", namespaced=True, custom=True
)
CLUSTER_POLICY_REPORTS = ResourceType(
    "wgpolicyk8s.io",
    "v1alpha2",
    "clusterpolicyreports",
    "ClusterPolicyReport",
    namespaced=False,
    custom=True,
)
DEFAULT_RESOURCES = (
    NAMESPACES,
    SECRETS,
    MUTATING_WEBHOOK_CONFIGURATIONS,
    NETWORK_ATTACHMENT_DEFINITIONS,
    RESOURCE_CLAIM_TEMPLATES,
    RESOURCE_CLAIMS,
    PODS,
    NODES,
    EVENTS,
    POLICY_REPORTS,
    CLUSTER_POLICY_REPORTS,
)
# Field selectors the real API server supports beyond metadata.name and metadata.namespace
# (the ones the audit's lists use).
_FIELDS = {
    "pods": ("status.phase", "spec.nodeName"),
    "events": ("reason", "type", "involvedObject.kind", "involvedObject.name"),
}

_NAME_PATTERN = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def status_body(
    code: int, reason: str, message: str, details: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A `Status` as the API server returns it with an error."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details is not None:
        body["details"] = dict(details)
    body["code"] = code
    return body


class StatusError(Exception):
    """An API error; `status` is the Status body the server sends."""

    def __init__(
        self, code: int, message: str, reason: str = "", details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.status = status_body(code, reason or _REASONS.get(code, "Unknown"), message, details)


def _details(resource: ResourceType, name: str, uid: str | None = None) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name}
    if resource.group:
        details["group"] = resource.group
    details["kind"] = resource.plural
    if uid is not None:
        details["uid"] = uid
    return details


def _not_found(resource: ResourceType, name: str) -> StatusError:
    return StatusError(
        404, f'{resource.qualified} "{name}" not found', details=_details(resource, name)
    )


@dataclass
class RequestRecord:
    """One request the double received; `code` is filled in once answered."""

    method: str
    verb: str
    """list, watch, get, create, update, patch, delete, or unknown."""
    resource: str | None
    namespace: str | None
    name: str | None
    query: dict[str, str]
    code: int | None = None


@dataclass
class _Event:
    rv: int
    resource: ResourceType
    type: str
    obj: dict[str, Any]
    old: dict[str, Any] | None


_DROP = object()
_CLOSE = object()


@dataclass(eq=False)
class _Watcher:
    resource: ResourceType
    namespace: str | None
    selector: Callable[[Mapping[str, Any]], bool]
    bookmarks: bool
    queue: queue.SimpleQueue[Any] = field(default_factory=queue.SimpleQueue)

    def translate(self, event: _Event) -> dict[str, Any] | None:
        """The event as this watcher sees it (selector changes turn MODIFIED into ADDED/DELETED)."""
        if event.resource != self.resource:
            return None
        if self.namespace is not None and event.obj["metadata"].get("namespace") != self.namespace:
            return None
        now = self.selector(event.obj)
        if event.type != "MODIFIED":
            return {"type": event.type, "object": event.obj} if now else None
        before = event.old is not None and self.selector(event.old)
        if now:
            return {"type": "MODIFIED" if before else "ADDED", "object": event.obj}
        return {"type": "DELETED", "object": event.obj} if before else None


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True
    double: KubeApiDouble

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up (a stopped informer, a dropped watch) are routine here.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.double._connection_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.double._connection_closed(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self.server.double._handle(self, "GET")

    def do_POST(self) -> None:
        self.server.double._handle(self, "POST")

    def do_PUT(self) -> None:
        self.server.double._handle(self, "PUT")

    def do_PATCH(self) -> None:
        self.server.double._handle(self, "PATCH")

    def do_DELETE(self) -> None:
        self.server.double._handle(self, "DELETE")

    def send_json(self, code: int, body: Any) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))


class KubeApiDouble:
    """The double; start and stop it with `with`, or `start()`/`stop()`."""

    def __init__(
        self,
        *,
        resources: Iterable[ResourceType] = DEFAULT_RESOURCES,
        default_watch_timeout: float = 1800.0,
        history_limit: int | None = None,
    ) -> None:
        self.resources = {(r.group, r.version, r.plural): r for r in resources}
        self._by_kind = {(r.api_version, r.kind): r for r in self.resources.values()}
        self.default_watch_timeout = default_watch_timeout
        self.history_limit = history_limit
        self.max_watch_seconds: float | None = None
        """End every watch after at most this long, whatever its timeoutSeconds."""
        self.expired_watch_as_http_410 = False
        """Answer a watch from a compacted resourceVersion with HTTP 410, not an ERROR event."""

        self._lock = threading.RLock()
        self._rv = 1
        self._compacted_rv = 0
        self._objects: dict[ResourceType, dict[tuple[str, str], dict[str, Any]]] = {
            r: {} for r in self.resources.values()
        }
        self._history: list[_Event] = []
        self._watchers: set[_Watcher] = set()
        self._continuations: dict[str, tuple[int, list[dict[str, Any]]]] = {}

        self.internal_errors: list[BaseException] = []
        """Exceptions the double raised while serving (bugs in the double); expect it empty."""
        self.requests: Counter[str] = Counter()
        self.request_log: list[RequestRecord] = []
        self._fail_remaining = 0
        self._fail_status = 500
        self._fail_verb: str | None = None
        self._outage_status: int | None = None
        self._in_outage = False
        self._delay = 0.0
        self.forbidden: set[str] = set()
        """Resources (plurals) every request for is answered 403 Forbidden, as RBAC would."""

        self._closing = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._random = random.Random(0)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> KubeApiDouble:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.double = self
        self._server = server
        self._serve_thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="kube-api-double"
        )
        self._serve_thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._closing.set()
        with self._lock:
            for watcher in self._watchers:
                watcher.queue.put(_CLOSE)
        self._server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._server.server_close()  # joins the handler threads
        if self._serve_thread is not None:
            self._serve_thread.join()
        self._server = None

    def __enter__(self) -> KubeApiDouble:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the double is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kubeconfig(self, path: Path) -> Path:
        """Write a kubeconfig file aimed at the double (token auth, which the double ignores)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "double", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "not-checked"}}],
            "contexts": [{"name": "double", "context": {"cluster": "double", "user": "tester"}}],
            "current-context": "double",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def api_client(self) -> Any:
        """A kubernetes.client.ApiClient aimed at the double; close it when done."""
        import kubernetes.client

        configuration = kubernetes.client.Configuration()
        configuration.host = self.url
        return kubernetes.client.ApiClient(configuration)

    # -- the store, directly (no HTTP, not counted) ---------------------------------------------

    @property
    def resource_version(self) -> str:
        with self._lock:
            return str(self._rv)

    def resource(self, name: str) -> ResourceType:
        """A resource type by plural (`secrets`) or by kind (`Secret`)."""
        for resource in self.resources.values():
            if name in (resource.plural, resource.kind):
                return resource
        raise KeyError(f"the double serves no resource {name!r}")

    def resource_of(self, obj: Mapping[str, Any]) -> ResourceType:
        key = (obj.get("apiVersion"), obj.get("kind"))
        resource = self._by_kind.get(key)  # type: ignore[arg-type]
        if resource is None:
            raise KeyError(f"the double serves no {key[1]} of apiVersion {key[0]}")
        return resource

    def ensure_namespace(
        self,
        name: str,
        annotations: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            existing = self._objects[NAMESPACES].get(("", name))
            if existing is not None:
                return copy.deepcopy(existing)
            metadata: dict[str, Any] = {"name": name}
            if labels:
                metadata["labels"] = dict(labels)
            if annotations:
                metadata["annotations"] = dict(annotations)
            return self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata})

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        resource = self.resource_of(obj)
        return self._create(resource, obj.get("metadata", {}).get("namespace"), obj)

    def update(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Replace an object; a stale metadata.resourceVersion raises StatusError 409."""
        resource = self.resource_of(obj)
        metadata = obj.get("metadata", {})
        return self._update(resource, metadata.get("namespace"), metadata["name"], obj)

    def delete(self, resource: str, name: str, namespace: str | None = None) -> None:
        self._delete(self.resource(resource), namespace, name, None)

    def get(self, resource: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        with self._lock:
            obj = self._objects[self.resource(resource)].get((namespace or "", name))
            return copy.deepcopy(obj) if obj is not None else None

    def objects(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Current objects of a resource, sorted by namespace and name."""
        res = self.resource(resource)
        with self._lock:
            return [
                copy.deepcopy(obj)
                for key, obj in sorted(self._objects[res].items())
                if namespace is None or key[0] == namespace
            ]

    def load_yaml(self, path: Path | str) -> list[dict[str, Any]]:
        """Create every object of a YAML file (multi-document, or a List)."""
        created: list[dict[str, Any]] = []
        for document in yaml.safe_load_all(Path(path).read_text()):
            if not document:
                continue
            items = (
                document.get("items", [])
                if document.get("kind", "").endswith("List")
                else [document]
            )
            created.extend(self.create(item) for item in items)
        return created

    # -- faults ---------------------------------------------------------------------------------

    def compact(self) -> None:
        """Forget the event history, so a watch from an older resourceVersion gets 410 Expired."""
        with self._lock:
            self._compacted_rv = self._rv
            self._history.clear()

    def drop_watches(self) -> None:
        """Cut every open watch mid-stream: half a chunk, then the connection is shut down."""
        with self._lock:
            for watcher in self._watchers:
                watcher.queue.put(_DROP)

    def fail_next(self, n: int, status: int = 500, verb: str | None = None) -> None:
        """The next `n` requests (of `verb`, if given) get `status` with a Status body."""
        with self._lock:
            self._fail_remaining = n
            self._fail_status = status
            self._fail_verb = verb

    def set_delay(self, seconds: float) -> None:
        """Wait this long before answering each request (0 for no delay)."""
        self._delay = seconds

    @contextlib.contextmanager
    def outage(self, status: int | None = 503) -> Iterator[None]:
        """Open watches are cut; until the block ends every request gets `status` (a Status body),
        or, with status=None, has its connection closed without an answer."""
        with self._lock:
            self._in_outage = True
            self._outage_status = status
        self.drop_watches()
        try:
            yield
        finally:
            with self._lock:
                self._in_outage = False

    def send_bookmark(self) -> None:
        """Send a BOOKMARK with the current resourceVersion to every watch that allows them."""
        with self._lock:
            for watcher in self._watchers:
                if watcher.bookmarks:
                    watcher.queue.put(self._bookmark(watcher.resource))

    # -- counters -------------------------------------------------------------------------------

    def count(self, verb: str, resource: str | None = None, namespace: str | None = None) -> int:
        """Requests received of `verb` (optionally of one resource, in one namespace)."""
        with self._lock:
            return sum(
                1
                for record in self.request_log
                if record.verb == verb
                and (resource is None or record.resource == resource)
                and (namespace is None or record.namespace == namespace)
            )

    def open_watches(self, resource: str | None = None) -> int:
        with self._lock:
            return sum(1 for w in self._watchers if resource in (None, w.resource.plural))

    def reset_counters(self) -> None:
        with self._lock:
            self.requests.clear()
            self.request_log.clear()

    # -- the store's operations -----------------------------------------------------------------

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _record(
        self, resource: ResourceType, kind: str, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> None:
        event = _Event(self._rv, resource, kind, copy.deepcopy(obj), old)
        self._history.append(event)
        if self.history_limit is not None and len(self._history) > self.history_limit:
            dropped = self._history.pop(0)
            self._compacted_rv = dropped.rv
        for watcher in self._watchers:
            translated = watcher.translate(event)
            if translated is not None:
                watcher.queue.put(translated)

    def _create(
        self, resource: ResourceType, namespace: str | None, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        obj = self._checked_body(resource, namespace, body)
        metadata = obj["metadata"]
        if metadata.get("resourceVersion"):
            raise StatusError(400, "resourceVersion should not be set on objects to be created")
        with self._lock:
            namespace = self._namespace_for(resource, namespace, metadata)
            if not metadata.get("name"):
                prefix = metadata.get("generateName")
                if not prefix:
                    raise StatusError(
                        422,
                        f"{resource.kind}.{resource.group or 'core'} is invalid: metadata.name: "
                        "Required value: name or generateName is required",
                    )
                suffix = "".join(self._random.choice(_GENERATE_ALPHABET) for _ in range(5))
                metadata["name"] = prefix + suffix
            name = metadata["name"]
            _check_name(resource, name)
            store = self._objects[resource]
            if (namespace, name) in store:
                raise StatusError(
                    409,
                    f'{resource.qualified} "{name}" already exists',
                    reason="AlreadyExists",
                    details=_details(resource, name),
                )
            metadata["uid"] = str(uuid.uuid4())
            metadata["resourceVersion"] = str(self._next_rv())
            metadata["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            if resource.has_generation:
                metadata["generation"] = 1
            if resource == NAMESPACES:
                metadata.setdefault("labels", {})["kubernetes.io/metadata.name"] = name
                obj.setdefault("spec", {"finalizers": ["kubernetes"]})
                obj["status"] = {"phase": "Active"}
            store[(namespace, name)] = obj
            self._record(resource, "ADDED", obj, None)
            return copy.deepcopy(obj)

    def _update(
        self,
        resource: ResourceType,
        namespace: str | None,
        name: str,
        body: Mapping[str, Any],
    ) -> dict[str, Any]:
        obj = self._checked_body(resource, namespace, body)
        metadata = obj["metadata"]
        if metadata.get("name", name) != name:
            raise StatusError(
                400,
                "the name of the object does not match the name on the URL",
                reason="BadRequest",
            )
        metadata["name"] = name
        with self._lock:
            namespace = self._namespace_for(resource, namespace, metadata)
            store = self._objects[resource]
            current = store.get((namespace, name))
            if current is None:
                raise _not_found(resource, name)
            wanted_rv = metadata.get("resourceVersion")
            if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
                raise StatusError(
                    409,
                    f'Operation cannot be fulfilled on {resource.qualified} "{name}": the object '
                    "has been modified; please apply your changes to the latest version and try "
                    "again",
                    details=_details(resource, name),
                )
            for kept in ("uid", "creationTimestamp", "generation", "resourceVersion"):
                if kept in current["metadata"]:
                    metadata[kept] = current["metadata"][kept]
            if resource == NAMESPACES:
                obj["status"] = current.get("status", {"phase": "Active"})
            if obj == current:
                return copy.deepcopy(current)  # a no-op update writes nothing
            if resource.has_generation and _spec_of(obj) != _spec_of(current):
                metadata["generation"] = current["metadata"].get("generation", 0) + 1
            metadata["resourceVersion"] = str(self._next_rv())
            store[(namespace, name)] = obj
            self._record(resource, "MODIFIED", obj, current)
            return copy.deepcopy(obj)

    def _patch(
        self,
        resource: ResourceType,
        namespace: str | None,
        name: str,
        content_type: str,
        patch: Any,
    ) -> dict[str, Any]:
        with self._lock:
            current = self._objects[resource].get((namespace or "", name))
            if current is None:
                raise _not_found(resource, name)
            media = content_type.split(";")[0].strip().lower()
            if media in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                if not isinstance(patch, dict):
                    raise StatusError(400, "a merge patch must be a JSON object")
                patched = _merge_patch(current, patch)
            elif media == "application/json-patch+json":
                if not isinstance(patch, list):
                    raise StatusError(400, "a JSON patch must be a JSON array of operations")
                try:
                    patched = jsonpatch.apply_patch(current, patch)
                except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                    raise StatusError(422, f"the JSON patch cannot be applied: {exc}") from None
            else:
                raise StatusError(
                    415,
                    "the body of the request was in an unknown format - accepted media types "
                    "include: application/json-patch+json, application/merge-patch+json, "
                    f"application/strategic-merge-patch+json (got {content_type!r})",
                )
            if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
                raise StatusError(422, "the patch removes the object's metadata")
            if patched["metadata"].get("name") != name:
                raise StatusError(400, "a patch cannot change the object's name")
            # A resourceVersion the patch sets must match, as for an update.
            return self._update(resource, namespace, name, patched)

    def _delete(
        self,
        resource: ResourceType,
        namespace: str | None,
        name: str,
        options: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        with self._lock:
            store = self._objects[resource]
            key = (namespace or "", name)
            current = store.get(key)
            if current is None:
                raise _not_found(resource, name)
            preconditions = (options or {}).get("preconditions") or {}
            for field_name in ("uid", "resourceVersion"):
                wanted = preconditions.get(field_name)
                if wanted and wanted != current["metadata"].get(field_name):
                    raise StatusError(
                        409,
                        f"Precondition failed: {field_name} in precondition: {wanted}, "
                        f"{field_name} in object meta: {current['metadata'].get(field_name)}",
                        details=_details(resource, name),
                    )
            del store[key]
            gone = copy.deepcopy(current)
            gone["metadata"]["resourceVersion"] = str(self._next_rv())
            self._record(resource, "DELETED", gone, current)
            return {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": _details(resource, name, current["metadata"]["uid"]),
            }

    def _checked_body(
        self, resource: ResourceType, namespace: str | None, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            raise StatusError(400, "the request body is not a JSON object")
        obj = copy.deepcopy(dict(body))
        api_version = obj.get("apiVersion", resource.api_version)
        kind = obj.get("kind", resource.kind)
        if api_version != resource.api_version or kind != resource.kind:
            raise StatusError(
                400,
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({resource.api_version})"
                if api_version != resource.api_version
                else f"the kind in the data ({kind}) does not match the expected kind "
                f"({resource.kind})",
            )
        metadata = obj.get("metadata")
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, dict):
            raise StatusError(400, "metadata must be an object")
        # Server-set fields first, as the API server writes them.
        ordered: dict[str, Any] = {"kind": resource.kind, "apiVersion": resource.api_version}
        ordered["metadata"] = metadata
        for key, value in obj.items():
            if key not in ordered:
                ordered[key] = value
        if resource == SECRETS:
            _fold_string_data(ordered)
        return ordered

    def _namespace_for(
        self, resource: ResourceType, namespace: str | None, metadata: dict[str, Any]
    ) -> str:
        if not resource.namespaced:
            metadata.pop("namespace", None)
            return ""
        in_body = metadata.get("namespace")
        if namespace is None:
            namespace = in_body
        if not namespace:
            raise StatusError(400, "the namespace of the object is not set")
        if in_body and in_body != namespace:
            raise StatusError(
                400,
                "the namespace of the provided object does not match the namespace sent on the "
                "request",
            )
        if ("", namespace) not in self._objects[NAMESPACES]:
            raise _not_found(NAMESPACES, namespace)
        metadata["namespace"] = namespace
        return namespace

    def _bookmark(self, resource: ResourceType) -> dict[str, Any]:
        return {
            "type": "BOOKMARK",
            "object": {
                "kind": resource.kind,
                "apiVersion": resource.api_version,
                "metadata": {"resourceVersion": str(self._rv)},
            },
        }

    # -- HTTP -----------------------------------------------------------------------------------

    def _connection_opened(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)
            if self._closing.is_set():
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)

    def _connection_closed(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    def _route(self, path: str) -> tuple[ResourceType, str | None, str | None] | None:
        parts = [unquote(part) for part in path.strip("/").split("/")]
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not 1 <= len(rest) <= 2:
            return None
        resource = self.resources.get((group, version, rest[0]))
        if resource is None or (namespace is not None and not resource.namespaced):
            return None
        name = rest[1] if len(rest) == 2 else None
        if name is not None and resource.namespaced and namespace is None:
            return None
        return resource, namespace, name

    def _handle(self, handler: _Handler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw_body = handler.rfile.read(length) if length else b""
        split = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        route = self._route(split.path)
        watch = query.get("watch", "").lower() in ("true", "1")
        verb = _verb(method, route, watch)
        record = RequestRecord(
            method,
            verb,
            route[0].plural if route else None,
            route[1] if route else None,
            route[2] if route else None,
            query,
        )
        with self._lock:
            self.requests[verb] += 1
            self.request_log.append(record)
            injected = self._injected_failure(verb)
        if injected == "hang-up":
            record.code = 0
            handler.close_connection = True
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
            return
        if self._delay and self._closing.wait(self._delay):
            handler.close_connection = True
            return
        try:
            if isinstance(injected, int):
                raise StatusError(
                    injected,
                    "Internal error occurred: injected by the test double"
                    if injected == 500
                    else f"injected failure {injected} from the test double",
                )
            if route is None:
                raise StatusError(
                    404, "the server could not find the requested resource", details={}
                )
            resource, namespace, name = route
            if resource.plural in self.forbidden:
                raise StatusError(
                    403,
                    f'{resource.qualified} is forbidden: User "tester" cannot {verb} resource '
                    f'"{resource.plural}" in API group "{resource.group}"'
                    + (
                        f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
                    ),
                    reason="Forbidden",
                    details={"group": resource.group, "kind": resource.plural},
                )
            if verb == "watch":
                self._serve_watch(handler, record, resource, namespace, query)
                return
            code, body = self._serve(verb, resource, namespace, name, query, raw_body, handler)
        except StatusError as exc:
            code, body = exc.code, exc.status
        except OSError:
            handler.close_connection = True
            return
        except Exception as exc:  # a bug in the double: answer, and let the test see it
            self.internal_errors.append(exc)
            code, body = 500, status_body(500, "InternalError", f"test double bug: {exc!r}")
        record.code = code
        handler.send_json(code, body)

    def _injected_failure(self, verb: str) -> int | str | None:
        if self._in_outage:
            return self._outage_status if self._outage_status is not None else "hang-up"
        if self._fail_remaining > 0 and self._fail_verb in (None, verb):
            self._fail_remaining -= 1
            return self._fail_status
        return None

    def _serve(
        self,
        verb: str,
        resource: ResourceType,
        namespace: str | None,
        name: str | None,
        query: Mapping[str, str],
        raw_body: bytes,
        handler: _Handler,
    ) -> tuple[int, Any]:
        if verb == "list":
            return 200, self._list(resource, namespace, query)
        if verb == "get":
            assert name is not None
            with self._lock:
                obj = self._objects[resource].get((namespace or "", name))
                if obj is None:
                    raise _not_found(resource, name)
                return 200, copy.deepcopy(obj)
        body = _json_body(raw_body)
        if verb == "create":
            if resource.namespaced and namespace is None:
                raise StatusError(
                    405, "the server does not allow this method on the requested resource"
                )
            return 201, self._create(resource, namespace, body)
        assert name is not None
        if verb == "update":
            return 200, self._update(resource, namespace, name, body)
        if verb == "patch":
            content_type = handler.headers.get("Content-Type", "")
            return 200, self._patch(resource, namespace, name, content_type, body)
        if verb == "delete":
            return 200, self._delete(
                resource, namespace, name, body if isinstance(body, dict) else None
            )
        raise StatusError(405, "the server does not allow this method on the requested resource")

    def _list(
        self, resource: ResourceType, namespace: str | None, query: Mapping[str, str]
    ) -> dict[str, Any]:
        selector = _selector(query, resource.plural)
        limit = int(query.get("limit") or 0)
        token = query.get("continue")
        with self._lock:
            if token:
                snapshot = self._continuations.pop(token, None)
                if snapshot is None or snapshot[0] < self._compacted_rv:
                    raise StatusError(
                        410,
                        "The provided continue parameter is too old to display a consistent list "
                        "result. You can start a new list without the continue parameter.",
                        reason="Expired",
                    )
                rv, items = snapshot
            else:
                requested = query.get("resourceVersion", "")
                exact = query.get("resourceVersionMatch") == "Exact"
                if requested not in ("", "0") and exact:
                    if int(requested) < self._compacted_rv:
                        raise StatusError(
                            410,
                            f"too old resource version: {requested} ({self._compacted_rv})",
                            reason="Expired",
                        )
                    if int(requested) != self._rv:
                        raise StatusError(
                            400, "the double serves Exact lists only at the current resourceVersion"
                        )
                rv = self._rv
                items = [
                    copy.deepcopy(obj)
                    for key, obj in sorted(self._objects[resource].items())
                    if (namespace is None or key[0] == namespace) and selector(obj)
                ]
            metadata: dict[str, Any] = {"resourceVersion": str(rv)}
            if limit and len(items) > limit:
                page, rest = items[:limit], items[limit:]
                last = page[-1]["metadata"]
                start = f"{last.get('namespace', '')}/{last['name']}\x00"
                next_token = base64.urlsafe_b64encode(
                    json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start}).encode()
                ).decode()
                self._continuations[next_token] = (rv, rest)
                metadata["continue"] = next_token
                metadata["remainingItemCount"] = len(rest)
                items = page
        if not resource.custom:
            # Items of built-in lists carry no kind/apiVersion; custom resources' items do.
            for item in items:
                item.pop("kind", None)
                item.pop("apiVersion", None)
        return {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.api_version,
            "metadata": metadata,
            "items": items,
        }

    def _serve_watch(
        self,
        handler: _Handler,
        record: RequestRecord,
        resource: ResourceType,
        namespace: str | None,
        query: Mapping[str, str],
    ) -> None:
        timeout = float(query.get("timeoutSeconds") or self.default_watch_timeout)
        if self.max_watch_seconds is not None:
            timeout = min(timeout, self.max_watch_seconds)
        requested = query.get("resourceVersion", "")
        if requested and not requested.isdigit():
            raise StatusError(400, f"invalid resource version: {requested!r}")
        watcher = _Watcher(
            resource,
            namespace,
            _selector(query, resource.plural),
            query.get("allowWatchBookmarks", "").lower() in ("true", "1"),
        )
        expired: dict[str, Any] | None = None
        with self._lock:
            if requested not in ("", "0") and int(requested) < self._compacted_rv:
                expired = status_body(
                    410, "Expired", f"too old resource version: {requested} ({self._compacted_rv})"
                )
            elif requested in ("", "0"):
                initial = [
                    {"type": "ADDED", "object": copy.deepcopy(obj)}
                    for key, obj in sorted(self._objects[resource].items())
                    if (namespace is None or key[0] == namespace) and watcher.selector(obj)
                ]
                self._watchers.add(watcher)
            else:
                initial = [
                    translated
                    for event in self._history
                    if event.rv > int(requested)
                    and (translated := watcher.translate(event)) is not None
                ]
                self._watchers.add(watcher)
        if expired is not None and self.expired_watch_as_http_410:
            raise StatusError(410, expired["message"], reason="Expired")
        record.code = 200
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Cache-Control", "no-cache, private")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        try:
            if expired is not None:
                handler.write_chunk(_event_line({"type": "ERROR", "object": expired}))
            else:
                for event in initial:
                    handler.write_chunk(_event_line(event))
                if not self._stream(handler, watcher, time.monotonic() + timeout):
                    return
            handler.wfile.write(b"0\r\n\r\n")
        except OSError:
            handler.close_connection = True
        finally:
            with self._lock:
                self._watchers.discard(watcher)

    def _stream(self, handler: _Handler, watcher: _Watcher, deadline: float) -> bool:
        """Send live events until the deadline; False when the connection was cut instead."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            try:
                item = watcher.queue.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                if _peer_gone(handler.connection):
                    handler.close_connection = True
                    return False
                continue
            if item is _CLOSE:
                handler.close_connection = True
                return True
            if item is _DROP:
                # Half an event, then the connection goes away as a crashing server's would.
                partial = _event_line({"type": "ADDED", "object": {"kind": watcher.resource.kind}})
                handler.wfile.write(b"%x\r\n%s" % (len(partial) + 64, partial[:10]))
                handler.close_connection = True
                with contextlib.suppress(OSError):
                    handler.connection.shutdown(socket.SHUT_RDWR)
                return False
            handler.write_chunk(_event_line(item))


def _verb(
    method: str, route: tuple[ResourceType, str | None, str | None] | None, watch: bool
) -> str:
    if route is None:
        return "unknown"
    collection = route[2] is None
    if method == "GET":
        return ("watch" if watch else "list") if collection else "get"
    if method == "POST" and collection:
        return "create"
    if not collection:
        return {"PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, "unknown")
    return "unknown"


def _event_line(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


def _json_body(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise StatusError(400, "the request body is not valid JSON") from None


def _peer_gone(connection: socket.socket) -> bool:
    """A watch client sends nothing, so a readable socket means it hung up."""
    try:
        readable, _, _ = select.select([connection], [], [], 0)
        return bool(readable) and connection.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def _check_name(resource: ResourceType, name: str) -> None:
    if len(name) > 253 or not _NAME_PATTERN.fullmatch(name):
        raise StatusError(
            422,
            f'{resource.kind} "{name}" is invalid: metadata.name: Invalid value: "{name}": a '
            "lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character",
        )


def _spec_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in obj.items() if key not in ("metadata", "status")}


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def _fold_string_data(secret: dict[str, Any]) -> None:
    string_data = secret.pop("stringData", None)
    if string_data:
        data = secret.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
    secret.setdefault("type", "Opaque")


def _selector(query: Mapping[str, str], plural: str = "") -> Callable[[Mapping[str, Any]], bool]:
    label_tests = [_label_test(part) for part in _split_selector(query.get("labelSelector", ""))]
    field_tests = [
        _field_test(part, plural) for part in _split_selector(query.get("fieldSelector", ""))
    ]
    tests = label_tests + field_tests

    def matches(obj: Mapping[str, Any]) -> bool:
        return all(test(obj) for test in tests)

    return matches


def _split_selector(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _label_test(requirement: str) -> Callable[[Mapping[str, Any]], bool]:
    def labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
        return obj.get("metadata", {}).get("labels") or {}

    if " in " in requirement or " notin " in requirement or "(" in requirement:
        raise StatusError(
            400, f"the double supports equality-based label selectors only: {requirement!r}"
        )
    if "!=" in requirement:
        key, value = (s.strip() for s in requirement.split("!=", 1))
        return lambda obj: labels(obj).get(key) != value
    if "=" in requirement:
        key, value = (s.strip() for s in requirement.replace("==", "=").split("=", 1))
        return lambda obj: labels(obj).get(key) == value
    if requirement.startswith("!"):
        key = requirement[1:].strip()
        return lambda obj: key not in labels(obj)
    return lambda obj: requirement in labels(obj)


def _field_test(requirement: str, plural: str = "") -> Callable[[Mapping[str, Any]], bool]:
    negate = "!=" in requirement
    key, value = (
        s.strip() for s in requirement.replace("!=", "=").replace("==", "=").split("=", 1)
    )
    known = ("metadata.name", "metadata.namespace", *_FIELDS.get(plural, ()))
    if key not in known:
        raise StatusError(
            400,
            f'"{key}" is not a known field selector: only ' + ", ".join(f'"{k}"' for k in known),
        )
    path = key.split(".")

    def test(obj: Mapping[str, Any]) -> bool:
        found: Any = obj
        for part in path:
            found = found.get(part, "") if isinstance(found, Mapping) else ""
        return bool((found or "") == value) != negate

    return test
