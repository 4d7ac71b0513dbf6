"""Informer-style caches over the Kubernetes API: NAD facts and namespace annotations.

Edge layer: imports the `kubernetes` client; the mutation core never sees it. An `Informer`
lists a resource, then watches it from the list's resourceVersion in a daemon thread, and keeps
in memory only what decisions need (the `transform` of each object, e.g. `NadFacts`). Admission
requests read that memory and never call the API.

Behaviour, as client-go's reflector does it:

- a watch that the server ends (its `timeoutSeconds`) is resumed from the last resourceVersion,
  with no list;
- `410 Gone` (an HTTP 410, or an ERROR event carrying a Status with code 410) means the
  resourceVersion was compacted away: the resource is listed again and the cache contents are
  *replaced*, so deletions missed while disconnected are applied;
- any other failure (connection refused or dropped, 5xx, garbage) is retried with exponential
  backoff and jitter, and the last good contents keep being served meanwhile.

Raw JSON is read with `_preload_content=False` and orjson: the client's model deserialisation is
slow and knows nothing of custom resources anyway.

Threading: one writer (the informer thread, or whoever calls `apply` when no thread runs) and
any number of readers. A re-list builds a new store and swaps one reference, so a reader sees
either the old contents or the new, never a mix. `stop()` ends the thread promptly, also while
it is blocked reading a watch: the response's socket is shut down under it. Only the wait for
response headers cannot be cut short; the connect and read timeouts bound it.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, TypeVar

import kubernetes.client
import kubernetes.config
import orjson
from kubernetes.client.exceptions import ApiException

from webhook.nads import RESOURCE_NAME_ANNOTATION, NadFacts, nad_facts_from_object

log = logging.getLogger("gpu_rdma_injector.kube_watch")

NAD_GROUP = "k8s.cni.cncf.io"
NAD_VERSION = "v1"
NAD_PLURAL = "network-attachment-definitions"

REPLACE = "REPLACE"
"""`apply` event type for a full list: the object is a List whose items replace the contents."""

_WATCH_EVENT_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"})
_MAX_ERROR_LENGTH = 300

V = TypeVar("V")
Key = tuple[str, str]
"""(namespace, name); the namespace is "" for cluster-scoped objects."""


@dataclass(frozen=True, slots=True)
class WatchOptions:
    """Timeouts, paging and backoff of an informer. The defaults suit a real cluster."""

    watch_timeout_seconds: int = 300
    """Server-side timeoutSeconds of each watch; the watch is then resumed from the last RV."""
    connect_timeout: float = 10.0
    list_read_timeout: float = 60.0
    """Client-side read timeout of a list page."""
    watch_read_margin: float = 30.0
    """The watch's client-side read timeout is watch_timeout_seconds plus this margin."""
    page_size: int = 500
    backoff_base: float = 0.2
    backoff_cap: float = 30.0

    def __post_init__(self) -> None:
        if self.watch_timeout_seconds < 1:
            raise ValueError("watch_timeout_seconds must be at least 1 (a whole number)")
        if self.page_size < 1:
            raise ValueError("page_size must be at least 1")
        for field in ("connect_timeout", "list_read_timeout", "watch_read_margin"):
            if getattr(self, field) <= 0:
                raise ValueError(f"{field} must be positive")
        if not 0 < self.backoff_base <= self.backoff_cap:
            raise ValueError("backoff_base must be positive and not above backoff_cap")


class WatchExpired(Exception):
    """The resourceVersion is older than the server's history (410 Gone): list again."""


class WatchErrorEvent(Exception):
    """The server sent an ERROR event other than 410 Gone."""


class ShortWatch(Exception):
    """The server ended a watch at once without sending anything (treated as a failure)."""


class KubeConfigError(Exception):
    """The Kubernetes client configuration cannot be loaded."""


class _Stopped(Exception):
    """The informer was asked to stop while it was talking to the API server."""


class _Store(Generic[V]):
    """The cache contents: values by key, plus sorted names per namespace."""

    __slots__ = ("items", "names")

    def __init__(self, items: dict[Key, V] | None = None) -> None:
        self.items: dict[Key, V] = items if items is not None else {}
        grouped: dict[str, list[str]] = {}
        for namespace, name in self.items:
            grouped.setdefault(namespace, []).append(name)
        self.names: dict[str, tuple[str, ...]] = {
            namespace: tuple(sorted(names)) for namespace, names in grouped.items()
        }

    def put(self, key: Key, value: V) -> None:
        if key not in self.items:
            namespace, name = key
            names = self.names.get(namespace, ())
            at = bisect.bisect_left(names, name)
            self.names[namespace] = (*names[:at], name, *names[at:])
        self.items[key] = value

    def remove(self, key: Key) -> None:
        if key not in self.items:
            return
        del self.items[key]
        namespace, name = key
        names = self.names.get(namespace, ())
        at = bisect.bisect_left(names, name)
        remaining = names[:at] + names[at + 1 :]
        if remaining:
            self.names[namespace] = remaining
        else:
            self.names.pop(namespace, None)


class Informer(Generic[V]):
    """List, then watch, one resource (in one namespace or cluster-wide) into memory.

    `list_call` is a kubernetes client list function with its path arguments bound, e.g.
    `functools.partial(CustomObjectsApi(c).list_namespaced_custom_object, group, version, ns,
    plural)`; it is called with keyword arguments for list and for watch. `transform` turns an
    object into the cached value; None or ValueError means "not worth keeping".

    Observable state (for metrics and readiness): `synced` (set after the first full list),
    `size`, `watch_restarts` (reconnections after a failure; a watch the server ends at its
    timeout is resumed without counting), `relists` (lists after the first, i.e. after 410
    Gone), `last_error` (the latest failure, kept after recovery), `consecutive_failures`
    (failures since the last successful list or watch connection; 0 when healthy),
    `resource_version`.
    """

    def __init__(
        self,
        list_call: Callable[..., Any],
        transform: Callable[[Mapping[str, Any]], V | None],
        *,
        name: str,
        options: WatchOptions | None = None,
        on_synced: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.options = options if options is not None else WatchOptions()
        self._list_call = list_call
        self._transform = transform
        self._on_synced = on_synced
        self._store: _Store[V] = _Store()
        self._resource_version: str | None = None
        self.synced = threading.Event()
        self.watch_restarts = 0
        self.relists = 0
        self.consecutive_failures = 0
        self._backoff_failures = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self._stopping = threading.Event()
        self._active_lock = threading.Lock()
        self._active_response: Any = None
        self._thread: threading.Thread | None = None
        self._random = random.Random()

    # -- reading (any thread) -------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> V | None:
        return self._store.items.get((namespace, name))

    def names_in(self, namespace: str) -> tuple[str, ...]:
        return self._store.names.get(namespace, ())

    def snapshot(self) -> dict[Key, V]:
        """A copy of the contents, for tests and debugging."""
        return dict(self._store.items)

    @property
    def size(self) -> int:
        return len(self._store.items)

    @property
    def resource_version(self) -> str | None:
        return self._resource_version

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- writing (one thread) -------------------------------------------------------------------

    def apply(self, event_type: str, obj: Mapping[str, Any]) -> None:
        """Apply one watch event, or a full list as `apply(REPLACE, list_object)`.

        ADDED and MODIFIED upsert, DELETED removes, BOOKMARK only advances the resourceVersion,
        ERROR raises (WatchExpired for 410 Gone, WatchErrorEvent otherwise), REPLACE swaps in the
        list's items. Call from one thread at a time.
        """
        if event_type == REPLACE:
            self._replace(obj)
            return
        if event_type == "ERROR":
            raise _error_from_status(obj)
        if event_type not in _WATCH_EVENT_TYPES:
            raise ValueError(f"unknown watch event type {event_type!r}")
        if event_type == "DELETED":
            key = _key_of(obj)
            if key is not None:
                self._store.remove(key)
        elif event_type != "BOOKMARK":
            decoded = self._decode(obj)
            if decoded is not None:
                key, value = decoded
                if value is None:
                    self._store.remove(key)
                else:
                    self._store.put(key, value)
        resource_version = _resource_version_of(obj)
        if resource_version is not None:
            self._resource_version = resource_version

    def _replace(self, list_object: Mapping[str, Any]) -> None:
        items: dict[Key, V] = {}
        self._decode_into(items, list_object.get("items") or ())
        self._swap(items, _resource_version_of(list_object))

    def _decode_into(self, items: dict[Key, V], objects: Iterable[Mapping[str, Any]]) -> None:
        for obj in objects:
            decoded = self._decode(obj)
            if decoded is not None and decoded[1] is not None:
                items[decoded[0]] = decoded[1]

    def _swap(self, items: dict[Key, V], resource_version: str | None) -> None:
        """Replace the whole contents at once (readers see old or new, never a mix)."""
        if resource_version is None:
            raise ValueError(f"{self.name}: the list has no metadata.resourceVersion to watch from")
        self._store = _Store(items)
        self._resource_version = resource_version
        if not self.synced.is_set():
            self.synced.set()
            if self._on_synced is not None:
                self._on_synced()

    def _decode(self, obj: Mapping[str, Any]) -> tuple[Key, V | None] | None:
        key = _key_of(obj)
        if key is None:
            log.warning("%s: ignoring an object without metadata.name", self.name)
            return None
        try:
            return key, self._transform(obj)
        except ValueError as exc:
            log.warning("%s: ignoring %s: %s", self.name, "/".join(filter(None, key)), exc)
            return key, None

    # -- the thread -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"informer {self.name} was already started; make a new one")
        self._thread = threading.Thread(target=self._run, name=f"informer-{self.name}", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the thread to end, interrupting a blocked read; returns at once."""
        self._stopping.set()
        with self._active_lock:
            response = self._active_response
        if response is not None:
            _interrupt(response)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end; True when it has (or never started)."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self, timeout: float | None = 5.0) -> bool:
        self.request_stop()
        return self.join(timeout)

    def _run(self) -> None:
        need_list = True
        while not self._stopping.is_set():
            attempt_started = time.monotonic()
            just_listed = False
            try:
                if need_list:
                    self._list()
                    need_list = False
                    just_listed = True
                    self._backoff_failures = 0
                attempt_started = time.monotonic()
                self._watch()
                # The server ended the watch at its timeout: resume from the last RV.
                self._backoff_failures = 0
            except WatchExpired as exc:
                if self._stopping.is_set():
                    break
                need_list = True
                if just_listed:
                    # Expired straight after a list: a confused server; do not hammer it.
                    self._stopping.wait(self._record_failure(exc, 0.0))
                else:
                    log.info("%s: %s; listing again", self.name, exc)
            except Exception as exc:
                if self._stopping.is_set():
                    break
                delay = self._record_failure(exc, time.monotonic() - attempt_started)
                self._stopping.wait(delay)
        log.debug("%s: stopped", self.name)

    def _record_failure(self, exc: Exception, lasted: float) -> float:
        if lasted >= self.options.backoff_cap:
            # A watch that served for a long while before failing is a fresh start; one that
            # fails right after connecting, again and again, keeps backing off.
            self._backoff_failures = 0
        self._backoff_failures += 1
        self.consecutive_failures += 1
        self.watch_restarts += 1
        self.last_error = _describe(exc)
        self.last_error_at = time.monotonic()
        delay = self._backoff(self._backoff_failures)
        log.warning("%s: %s; retrying in %.2fs", self.name, self.last_error, delay)
        return delay

    def _backoff(self, failures: int) -> float:
        options = self.options
        ceiling = min(options.backoff_cap, options.backoff_base * 2.0 ** min(failures - 1, 30))
        # "Equal jitter": at least half the ceiling, so retries never collapse to zero.
        return ceiling / 2 + self._random.uniform(0, ceiling / 2)

    def _list(self) -> None:
        options = self.options
        # Each page is reduced to what decisions need as soon as it arrives: holding every raw
        # object until the last page would cost the memory of the whole list (about 1 KiB
        # per NAD), and CPython keeps such memory once it has grown for it.
        items: dict[Key, V] = {}
        continue_token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "limit": options.page_size,
                "_request_timeout": (options.connect_timeout, options.list_read_timeout),
                "_preload_content": False,
            }
            if continue_token:
                kwargs["_continue"] = continue_token
            with self._tracked(self._list_call(**kwargs)) as response:
                page = orjson.loads(response.data)
            if not isinstance(page, dict):
                raise ValueError(f"{self.name}: the list response is not a JSON object")
            self._decode_into(items, page.get("items") or ())
            metadata = page.get("metadata") or {}
            continue_token = metadata.get("continue") or None
            if continue_token is None:
                break
        self.consecutive_failures = 0
        if self.synced.is_set():
            self.relists += 1
        self._swap(items, _resource_version_of({"metadata": metadata}))

    def _watch(self) -> None:
        options = self.options
        try:
            response = self._list_call(
                watch=True,
                resource_version=self._resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=options.watch_timeout_seconds,
                _request_timeout=(
                    options.connect_timeout,
                    options.watch_timeout_seconds + options.watch_read_margin,
                ),
                _preload_content=False,
            )
        except ApiException as exc:
            if exc.status == 410:
                raise WatchExpired(
                    f"watch from resourceVersion {self._resource_version}: {exc.reason}"
                ) from exc
            raise
        self.consecutive_failures = 0
        started = time.monotonic()
        events = 0
        with self._tracked(response):
            for line in _lines(response):
                event = orjson.loads(line)
                if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
                    raise ValueError(f"{self.name}: malformed watch event {line[:200]!r}")
                self.apply(str(event.get("type")), event["object"])
                events += 1
                if self._stopping.is_set():
                    raise _Stopped
        lasted = time.monotonic() - started
        if events == 0 and lasted < min(1.0, options.watch_timeout_seconds / 2):
            # As client-go's reflector: a server that ends watches at once must not be hammered.
            raise ShortWatch(f"the watch ended after {lasted:.3f}s without any event")

    @contextlib.contextmanager
    def _tracked(self, response: Any) -> Iterator[Any]:
        """Make `response` interruptible by `request_stop`, and always give its connection back."""
        with self._active_lock:
            self._active_response = response
        completed = False
        try:
            if self._stopping.is_set():
                raise _Stopped
            yield response
            completed = True
        finally:
            with self._active_lock:
                self._active_response = None
            if not completed:
                # Half-read: the connection is in an unknown state and must not be reused.
                response.close()
            response.release_conn()


def _lines(response: Any) -> Iterator[bytes]:
    """The non-blank lines of a streamed body, whatever the chunk boundaries."""
    pending = b""
    for chunk in response.stream(amt=None, decode_content=True):
        pending += chunk
        if b"\n" not in chunk:
            continue
        *complete, pending = pending.split(b"\n")
        for line in complete:
            if line.strip():
                yield line
    if pending.strip():
        yield pending


def _interrupt(response: Any) -> None:
    """Unblock a thread reading `response` (urllib3 >= 2.3 has shutdown(); else the socket)."""
    try:
        response.shutdown()
    except (AttributeError, ValueError, RuntimeError, OSError):
        sock = getattr(getattr(response, "connection", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _key_of(obj: Mapping[str, Any]) -> Key | None:
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping):
        return None
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        return None
    namespace = metadata.get("namespace")
    return (namespace if isinstance(namespace, str) else "", name)


def _resource_version_of(obj: Mapping[str, Any]) -> str | None:
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping):
        return None
    resource_version = metadata.get("resourceVersion")
    return resource_version if isinstance(resource_version, str) and resource_version else None


def _error_from_status(status: Mapping[str, Any]) -> Exception:
    code = status.get("code")
    text = f"{status.get('reason', 'Unknown')}: {status.get('message', '')}"
    if code == 410:
        return WatchExpired(text)
    return WatchErrorEvent(f"ERROR event {code} {text}")


def _describe(exc: Exception) -> str:
    if isinstance(exc, ApiException):
        text = f"HTTP {exc.status} {exc.reason or ''}".rstrip()
        message = _status_message(exc.body)
        if message:
            text = f"{text}: {message}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _MAX_ERROR_LENGTH else text[: _MAX_ERROR_LENGTH - 3] + "..."


def _status_message(body: Any) -> str | None:
    try:
        status = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None
    message = status.get("message") if isinstance(status, dict) else None
    return message if isinstance(message, str) else None


class _InformerGroup(Generic[V]):
    """One or more informers seen as one cache (one per namespace in namespace-scoped mode)."""

    authoritative = True

    def __init__(self) -> None:
        self.synced = threading.Event()
        self._informers: tuple[Informer[V], ...] = ()

    def _set_informers(self, informers: Sequence[Informer[V]]) -> None:
        self._informers = tuple(informers)

    def _informer_synced(self) -> None:
        if all(informer.synced.is_set() for informer in self._informers):
            self.synced.set()

    @property
    def informers(self) -> tuple[Informer[V], ...]:
        return self._informers

    def start(self) -> None:
        for informer in self._informers:
            informer.start()

    def stop(self, timeout: float | None = 5.0) -> bool:
        """Stop every informer; True when all threads ended within `timeout` seconds."""
        for informer in self._informers:
            informer.request_stop()
        deadline = None if timeout is None else time.monotonic() + timeout
        stopped = True
        for informer in self._informers:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            stopped = informer.join(remaining) and stopped
        return stopped

    @property
    def size(self) -> int:
        return sum(informer.size for informer in self._informers)

    @property
    def watch_restarts(self) -> int:
        return sum(informer.watch_restarts for informer in self._informers)

    @property
    def relists(self) -> int:
        return sum(informer.relists for informer in self._informers)

    @property
    def consecutive_failures(self) -> int:
        return max((informer.consecutive_failures for informer in self._informers), default=0)

    @property
    def last_error(self) -> str | None:
        failed = [informer for informer in self._informers if informer.last_error_at is not None]
        if not failed:
            return None
        return max(failed, key=lambda informer: informer.last_error_at or 0.0).last_error


class KubeNadCache(_InformerGroup[NadFacts]):
    """`NadLookup` over the cluster's NetworkAttachmentDefinitions, kept current by watches.

    Cluster-wide by default; with `namespaces`, one list/watch per namespace (for RBAC that only
    reaches some namespaces), and NADs elsewhere are unknown (see `covers`).
    """

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        resource_annotations: Sequence[str] = (RESOURCE_NAME_ANNOTATION,),
        namespaces: Sequence[str] | None = None,
        *,
        options: WatchOptions | None = None,
    ) -> None:
        super().__init__()
        if isinstance(resource_annotations, str):
            raise TypeError("resource_annotations must be a sequence of annotation keys")
        transform = functools.partial(
            nad_facts_from_object, resource_annotations=tuple(resource_annotations)
        )
        api = kubernetes.client.CustomObjectsApi(api_client)
        self._by_namespace: dict[str, Informer[NadFacts]] | None
        if namespaces is None:
            self._by_namespace = None
            list_all = functools.partial(
                api.list_cluster_custom_object, NAD_GROUP, NAD_VERSION, NAD_PLURAL
            )
            self._set_informers(
                [
                    Informer(
                        list_all,
                        transform,
                        name="nads",
                        options=options,
                        on_synced=self._informer_synced,
                    )
                ]
            )
            return
        if isinstance(namespaces, str):
            raise TypeError("namespaces must be a sequence of namespace names, or None")
        scoped = sorted(set(namespaces))
        if not scoped:
            raise ValueError("namespaces is empty; pass None to watch NADs in every namespace")
        self._by_namespace = {
            namespace: Informer(
                functools.partial(
                    api.list_namespaced_custom_object, NAD_GROUP, NAD_VERSION, namespace, NAD_PLURAL
                ),
                transform,
                name=f"nads/{namespace}",
                options=options,
                on_synced=self._informer_synced,
            )
            for namespace in scoped
        }
        self._set_informers(list(self._by_namespace.values()))

    def covers(self, namespace: str) -> bool:
        """Whether NADs in `namespace` are watched (always, unless namespace-scoped)."""
        return self._by_namespace is None or namespace in self._by_namespace

    def get(self, namespace: str, name: str) -> NadFacts | None:
        informer = self._informer_for(namespace)
        return informer.get(namespace, name) if informer is not None else None

    def names_in(self, namespace: str) -> tuple[str, ...]:
        informer = self._informer_for(namespace)
        return informer.names_in(namespace) if informer is not None else ()

    def snapshot(self) -> dict[Key, NadFacts]:
        merged: dict[Key, NadFacts] = {}
        for informer in self._informers:
            merged.update(informer.snapshot())
        return merged

    def apply(self, event_type: str, obj: Mapping[str, Any]) -> None:
        """Feed an event (or `REPLACE` with a List) through the same path the watches use."""
        if self._by_namespace is None:
            self._informers[0].apply(event_type, obj)
            return
        if event_type == REPLACE:
            per_namespace: dict[str, list[Any]] = {
                namespace: [] for namespace in self._by_namespace
            }
            for item in obj.get("items") or ():
                key = _key_of(item)
                if key is not None and key[0] in per_namespace:
                    per_namespace[key[0]].append(item)
            for namespace, items in per_namespace.items():
                self._by_namespace[namespace].apply(
                    REPLACE, {"metadata": obj.get("metadata") or {}, "items": items}
                )
            return
        if event_type in {"BOOKMARK", "ERROR"}:
            for informer in self._informers:
                informer.apply(event_type, obj)
            return
        key = _key_of(obj)
        target = self._informer_for(key[0]) if key is not None else None
        if target is not None:
            target.apply(event_type, obj)

    def _informer_for(self, namespace: str) -> Informer[NadFacts] | None:
        if self._by_namespace is None:
            return self._informers[0]
        return self._by_namespace.get(namespace)


def namespace_annotations(obj: Mapping[str, Any]) -> Mapping[str, str]:
    """The cached value of a namespace: its annotations only, read-only."""
    metadata = obj.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    if not isinstance(annotations, Mapping):
        return MappingProxyType({})
    return MappingProxyType(
        {key: value for key, value in annotations.items() if isinstance(value, str)}
    )


class KubeNamespaceCache(_InformerGroup[Mapping[str, str]]):
    """`NamespaceLookup` over the cluster's namespaces; keeps annotations only."""

    def __init__(
        self, api_client: kubernetes.client.ApiClient, *, options: WatchOptions | None = None
    ) -> None:
        super().__init__()
        api = kubernetes.client.CoreV1Api(api_client)
        self._set_informers(
            [
                Informer(
                    api.list_namespace,
                    namespace_annotations,
                    name="namespaces",
                    options=options,
                    on_synced=self._informer_synced,
                )
            ]
        )

    def annotations(self, namespace: str) -> Mapping[str, str] | None:
        return self._informers[0].get("", namespace)

    def names(self) -> tuple[str, ...]:
        return self._informers[0].names_in("")

    def apply(self, event_type: str, obj: Mapping[str, Any]) -> None:
        self._informers[0].apply(event_type, obj)


def load_kube_api_client(kubeconfig: str | None) -> kubernetes.client.ApiClient:
    """An ApiClient from the in-cluster service account (kubeconfig None) or a kubeconfig file.

    The configuration is private to the returned client: the process-wide default
    configuration of the kubernetes package is left untouched.
    """
    configuration = kubernetes.client.Configuration()
    try:
        if kubeconfig is None:
            kubernetes.config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        else:
            kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, client_configuration=configuration, persist_config=False
            )
    except (kubernetes.config.ConfigException, OSError) as exc:
        if kubeconfig is None:
            raise KubeConfigError(
                f"Cannot load the in-cluster Kubernetes configuration ({exc}); run inside a pod "
                "with a service account, or give a kubeconfig file."
            ) from None
        raise KubeConfigError(f"Cannot load the kubeconfig file {kubeconfig!r}: {exc}") from None
    return kubernetes.client.ApiClient(configuration)
