"""List/watch machinery (edge layer): an `Informer` keeps one Kubernetes resource in memory.

Imports the `kubernetes` client; the mutation core never sees it. An `Informer`
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
either the old contents or the new, never a mix. `generation` counts changes of the contents,
raised only *after* each change is in place: a reader that read it before reading the contents
saw contents at least that new (what a cache of answers computed from them relies on).
`stop()` ends the thread promptly, also while it is blocked reading a watch: the response's
socket is shut down under it. Only the wait for response headers cannot be cut short; the
connect and read timeouts bound it.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
from kubernetes.client.exceptions import ApiException

from webhook.kube_api import (
    Key,
    ShortWatch,
    WatchErrorEvent,
    WatchExpired,
    describe_error,
    error_from_status,
    interrupt,
    key_of,
    resource_version_of,
    watch_lines,
)

log = logging.getLogger("gpu_rdma_injector.kube_watch")

REPLACE = "REPLACE"
"""`apply` event type for a full list: the object is a List whose items replace the contents."""

_WATCH_EVENT_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"})

V = TypeVar("V")


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


__all__ = ["REPLACE", "Informer", "Key", "WatchErrorEvent", "WatchExpired", "WatchOptions"]


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
    `resource_version`, `generation` (changes of the cached values; an event that leaves a
    value as it was does not count).
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
        self.generation = 0
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
            raise error_from_status(obj)
        if event_type not in _WATCH_EVENT_TYPES:
            raise ValueError(f"unknown watch event type {event_type!r}")
        if event_type == "DELETED":
            key = key_of(obj)
            if key is not None:
                self._remove(key)
        elif event_type != "BOOKMARK":
            decoded = self._decode(obj)
            if decoded is not None:
                key, value = decoded
                if value is None:
                    self._remove(key)
                elif self._store.items.get(key) != value:
                    self._store.put(key, value)
                    self.generation += 1
        resource_version = resource_version_of(obj)
        if resource_version is not None:
            self._resource_version = resource_version

    def _remove(self, key: Key) -> None:
        if key in self._store.items:
            self._store.remove(key)
            self.generation += 1

    def _replace(self, list_object: Mapping[str, Any]) -> None:
        items: dict[Key, V] = {}
        self._decode_into(items, list_object.get("items") or ())
        self._swap(items, resource_version_of(list_object))

    def _decode_into(self, items: dict[Key, V], objects: Iterable[Mapping[str, Any]]) -> None:
        for obj in objects:
            decoded = self._decode(obj)
            if decoded is not None and decoded[1] is not None:
                items[decoded[0]] = decoded[1]

    def _swap(self, items: dict[Key, V], resource_version: str | None) -> None:
        """Replace the whole contents at once (readers see old or new, never a mix)."""
        if resource_version is None:
            raise ValueError(f"{self.name}: the list has no metadata.resourceVersion to watch from")
        if items != self._store.items:
            self._store = _Store(items)
            self.generation += 1
        self._resource_version = resource_version
        if not self.synced.is_set():
            self.synced.set()
            if self._on_synced is not None:
                self._on_synced()

    def _decode(self, obj: Mapping[str, Any]) -> tuple[Key, V | None] | None:
        key = key_of(obj)
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
            interrupt(response)

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
        self.last_error = describe_error(exc)
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
        self._swap(items, resource_version_of({"metadata": metadata}))

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
            for line in watch_lines(response):
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
