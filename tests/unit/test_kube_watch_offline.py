"""webhook.kube_watch and the caches of webhook.cluster without a server: the apply path, the
store, backoff, routing, config."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes.client
import orjson
import pytest

from webhook.cluster import (
    KubeConfigError,
    KubeNadCache,
    KubeNamespaceCache,
    load_kube_api_client,
)
from webhook.kube_api import WatchLineTooLong, watch_lines
from webhook.kube_watch import (
    REPLACE,
    Informer,
    WatchErrorEvent,
    WatchExpired,
    WatchOptions,
)
from webhook.nads import RESOURCE_NAME_ANNOTATION, NadFacts, nad_facts_from_object


def nad(
    name: str, namespace: str = "ml-training", rv: str = "10", resource: str | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "resourceVersion": rv}
    if resource is not None:
        metadata["annotations"] = {RESOURCE_NAME_ANNOTATION: resource}
    return {"kind": "NetworkAttachmentDefinition", "metadata": metadata}


def listing(*items: dict[str, Any], rv: str = "10") -> dict[str, Any]:
    return {"metadata": {"resourceVersion": rv}, "items": list(items)}


def no_calls(**kwargs: Any) -> Any:
    raise AssertionError("an informer that is not started must not call the API")


def informer(synced_calls: list[int] | None = None) -> Informer[NadFacts]:
    def on_synced() -> None:
        if synced_calls is not None:
            synced_calls.append(1)

    return Informer(no_calls, nad_facts_from_object, name="test", on_synced=on_synced)


@pytest.fixture
def api_client() -> Iterator[kubernetes.client.ApiClient]:
    client = kubernetes.client.ApiClient(kubernetes.client.Configuration())
    yield client
    client.close()


def test_replace_fills_the_cache_sets_synced_once_and_the_resource_version() -> None:
    calls: list[int] = []
    cache = informer(calls)
    assert not cache.synced.is_set()
    cache.apply(REPLACE, listing(nad("b", resource="nvidia.com/b"), nad("a"), rv="7"))
    assert cache.synced.is_set()
    assert cache.resource_version == "7"
    assert cache.get("ml-training", "b") == NadFacts("ml-training", "b", "nvidia.com/b")
    assert cache.names_in("ml-training") == ("a", "b")
    cache.apply(REPLACE, listing(nad("c"), rv="9"))
    assert calls == [1]
    assert cache.snapshot() == {("ml-training", "c"): NadFacts("ml-training", "c", None)}
    assert cache.names_in("ml-training") == ("c",)
    assert cache.resource_version == "9"


def test_replace_swaps_the_store_so_readers_never_see_a_mix() -> None:
    cache = informer()
    cache.apply(REPLACE, listing(nad("a"), nad("b")))
    old_store = cache._store
    cache.apply(REPLACE, listing(nad("c")))
    assert set(old_store.items) == {("ml-training", "a"), ("ml-training", "b")}
    assert cache._store is not old_store


def test_replace_needs_a_resource_version() -> None:
    with pytest.raises(ValueError, match=r"no metadata\.resourceVersion"):
        informer().apply(REPLACE, {"metadata": {}, "items": []})


def test_events_upsert_delete_and_advance_the_resource_version() -> None:
    cache = informer()
    cache.apply(REPLACE, listing(rv="1"))
    cache.apply("ADDED", nad("rail-2", rv="2", resource="nvidia.com/r2"))
    cache.apply("ADDED", nad("rail-1", rv="3"))
    assert cache.names_in("ml-training") == ("rail-1", "rail-2")
    cache.apply("MODIFIED", nad("rail-1", rv="4", resource="nvidia.com/r1"))
    assert cache.get("ml-training", "rail-1") == NadFacts("ml-training", "rail-1", "nvidia.com/r1")
    cache.apply("DELETED", nad("rail-2", rv="5"))
    assert cache.get("ml-training", "rail-2") is None
    assert cache.names_in("ml-training") == ("rail-1",)
    assert cache.resource_version == "5"
    cache.apply("DELETED", nad("rail-1", rv="6"))
    assert cache.names_in("ml-training") == ()
    assert cache.size == 0


def test_replayed_events_do_not_duplicate_names() -> None:
    cache = informer()
    cache.apply(REPLACE, listing(nad("a")))
    for _ in range(3):
        cache.apply("ADDED", nad("a"))
        cache.apply("MODIFIED", nad("a"))
        cache.apply("DELETED", nad("gone"))
    assert cache.names_in("ml-training") == ("a",)
    assert cache.size == 1


def test_a_bookmark_moves_only_the_resource_version() -> None:
    cache = informer()
    cache.apply(REPLACE, listing(nad("a"), rv="1"))
    before = cache.snapshot()
    cache.apply(
        "BOOKMARK", {"kind": "NetworkAttachmentDefinition", "metadata": {"resourceVersion": "99"}}
    )
    assert cache.resource_version == "99"
    assert cache.snapshot() == before


def test_error_events_raise() -> None:
    cache = informer()
    expired = {
        "kind": "Status",
        "code": 410,
        "reason": "Expired",
        "message": "too old resource version: 1 (5)",
    }
    with pytest.raises(WatchExpired, match="too old resource version"):
        cache.apply("ERROR", expired)
    with pytest.raises(WatchErrorEvent, match="500"):
        cache.apply("ERROR", {"kind": "Status", "code": 500, "reason": "InternalError"})
    with pytest.raises(ValueError, match="unknown watch event type 'SURPRISE'"):
        cache.apply("SURPRISE", nad("a"))


def test_objects_the_transform_refuses_are_not_kept(caplog: pytest.LogCaptureFixture) -> None:
    def only_with_resource(obj: Mapping[str, Any]) -> NadFacts | None:
        facts = nad_facts_from_object(obj)
        return facts if facts.resource_name else None

    cache: Informer[NadFacts] = Informer(no_calls, only_with_resource, name="test")
    cache.apply(REPLACE, listing(nad("a", resource="nvidia.com/a"), nad("b")))
    assert cache.names_in("ml-training") == ("a",)
    cache.apply("MODIFIED", nad("a"))  # lost its resource: dropped
    assert cache.size == 0
    with caplog.at_level(logging.WARNING, logger="webhook.kube_watch"):
        cache.apply("ADDED", {"metadata": {"name": "no-namespace", "resourceVersion": "11"}})
        cache.apply("ADDED", {"metadata": {"namespace": "ml-training"}})
    assert cache.size == 0
    assert cache.resource_version == "11"
    assert "has no metadata.namespace" in caplog.text
    assert "without metadata.name" in caplog.text


def test_backoff_grows_with_jitter_up_to_the_cap() -> None:
    cache: Informer[NadFacts] = Informer(
        no_calls,
        nad_facts_from_object,
        name="t",
        options=WatchOptions(backoff_base=0.2, backoff_cap=30.0),
    )
    for failures, ceiling in [(1, 0.2), (2, 0.4), (3, 0.8), (8, 25.6), (9, 30.0), (500, 30.0)]:
        delays = [cache._backoff(failures) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (
            failures,
            min(delays),
            max(delays),
        )
        assert len(set(delays)) > 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"watch_timeout_seconds": 0}, "watch_timeout_seconds"),
        ({"page_size": 0}, "page_size"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"backoff_base": 2.0, "backoff_cap": 1.0}, "backoff_base"),
    ],
)
def test_watch_options_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WatchOptions(**options)


def test_an_informer_starts_once() -> None:
    cache = informer()
    assert cache.stop(timeout=0.1)  # never started: nothing to wait for
    cache._thread = object()  # type: ignore[assignment]
    with pytest.raises(RuntimeError, match="already started"):
        cache.start()


def test_namespace_scoped_nad_cache_routes_by_namespace(
    api_client: kubernetes.client.ApiClient,
) -> None:
    cache = KubeNadCache(api_client, namespaces=["gpu-infra", "ml-training", "gpu-infra"])
    assert [i.name for i in cache.informers] == ["nads/gpu-infra", "nads/ml-training"]
    assert cache.covers("gpu-infra")
    assert not cache.covers("elsewhere")
    cache.apply(
        REPLACE,
        listing(
            nad("a", "ml-training"),
            nad("b", "gpu-infra", resource="nvidia.com/b"),
            nad("c", "elsewhere"),
        ),
    )
    assert cache.synced.is_set()
    assert cache.size == 2
    assert cache.get("gpu-infra", "b") == NadFacts("gpu-infra", "b", "nvidia.com/b")
    assert cache.get("elsewhere", "c") is None
    assert cache.names_in("elsewhere") == ()
    cache.apply("ADDED", nad("d", "gpu-infra", rv="11"))
    cache.apply("ADDED", nad("e", "elsewhere", rv="12"))
    assert cache.names_in("gpu-infra") == ("b", "d")
    cache.apply("BOOKMARK", {"metadata": {"resourceVersion": "20"}})
    assert {i.resource_version for i in cache.informers} == {"20"}
    assert cache.snapshot().keys() == {("ml-training", "a"), ("gpu-infra", "b"), ("gpu-infra", "d")}


def test_cluster_wide_nad_cache_reads_custom_annotation_keys(
    api_client: kubernetes.client.ApiClient,
) -> None:
    cache = KubeNadCache(
        api_client, resource_annotations=["example.com/resource", RESOURCE_NAME_ANNOTATION]
    )
    obj = nad("a", resource="nvidia.com/standard")
    obj["metadata"]["annotations"]["example.com/resource"] = "nvidia.com/custom"
    cache.apply(REPLACE, listing(obj))
    assert cache.get("ml-training", "a") == NadFacts("ml-training", "a", "nvidia.com/custom")
    assert cache.covers("anywhere")
    assert cache.authoritative


def test_nad_cache_arguments_are_checked(api_client: kubernetes.client.ApiClient) -> None:
    with pytest.raises(ValueError, match="pass None to watch NADs in every namespace"):
        KubeNadCache(api_client, namespaces=[])
    with pytest.raises(TypeError, match="namespaces must be a sequence"):
        KubeNadCache(api_client, namespaces="ml-training")
    with pytest.raises(TypeError, match="resource_annotations"):
        KubeNadCache(api_client, resource_annotations=RESOURCE_NAME_ANNOTATION)


def test_the_group_reports_the_latest_error(api_client: kubernetes.client.ApiClient) -> None:
    cache = KubeNadCache(api_client, namespaces=["a", "b"])
    assert cache.last_error is None
    first, second = cache.informers
    second._record_failure(RuntimeError("older"), 0.0)
    first._record_failure(RuntimeError("newer"), 0.0)
    assert cache.last_error == "RuntimeError: newer"
    assert cache.watch_restarts == 2
    assert cache.consecutive_failures == 1


def test_the_namespace_cache_keeps_string_annotations_only(
    api_client: kubernetes.client.ApiClient,
) -> None:
    cache = KubeNamespaceCache(api_client)
    cache.apply(
        REPLACE,
        listing(
            {"metadata": {"name": "a", "labels": {"x": "y"}, "annotations": {"k": "v", "bad": 1}}},
            {"metadata": {"name": "b"}},
        ),
    )
    assert cache.annotations("a") == {"k": "v"}
    assert cache.annotations("b") == {}
    assert cache.annotations("c") is None
    cache.apply("DELETED", {"metadata": {"name": "a", "resourceVersion": "11"}})
    assert cache.annotations("a") is None
    assert cache.names() == ("b",)


def test_a_missing_kubeconfig_is_one_clear_sentence(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(KubeConfigError, match=r"Cannot load the kubeconfig file '.*nope'"):
        load_kube_api_client(str(missing))


def test_in_cluster_config_outside_a_pod_is_one_clear_sentence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    with pytest.raises(
        KubeConfigError, match=r"in-cluster Kubernetes configuration .* give a kubeconfig file"
    ):
        load_kube_api_client(None)


# -- the watch stream and the backoff, against a scripted API -------------------------------------


class Response:
    """What the kubernetes client returns with `_preload_content=False`."""

    def __init__(self, data: bytes = b"", chunks: list[bytes] | None = None) -> None:
        self.data = data
        self.chunks = chunks or []

    def stream(self, amt: Any = None, decode_content: bool = True) -> Iterator[bytes]:
        yield from self.chunks

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


def test_watch_lines_are_split_whatever_the_chunks() -> None:
    chunks = [b'{"a":', b'1}\n{"b"', b":2}\n\n", b'{"c":3}']
    assert list(watch_lines(Response(chunks=chunks))) == [b'{"a":1}', b'{"b":2}', b'{"c":3}']


def test_a_watch_line_is_bounded() -> None:
    at_limit = [b"x" * 600, b"x" * 400 + b"\n"]
    assert list(watch_lines(Response(chunks=at_limit), max_line_bytes=1000)) == [b"x" * 1000]
    endless = Response(chunks=[b"y" * 400] * 1000)  # 400 kB, never a newline
    with pytest.raises(WatchLineTooLong, match="longer than 1000 bytes"):
        list(watch_lines(endless, max_line_bytes=1000))
    past = [b"x" * 600, b"x" * 401 + b"\n"]
    with pytest.raises(WatchLineTooLong):
        list(watch_lines(Response(chunks=past), max_line_bytes=1000))


def _event(name: str, rv: str) -> bytes:
    return orjson.dumps({"type": "ADDED", "object": nad(name, rv=rv)}) + b"\n"


class ScriptedApi:
    """A list, then one scripted outcome per watch: an exception to raise, or a number of
    seconds to stream events for before the server ends the watch ("end") or drops it."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.watches = 0

    def __call__(self, **kwargs: Any) -> Response:
        if not kwargs.get("watch"):
            return Response(orjson.dumps(listing(rv="1")))
        self.watches += 1
        step = self.script.pop(0) if self.script else ConnectionResetError("no more script")
        if isinstance(step, Exception):
            raise step
        seconds, ending = step
        return _Streaming(seconds, ending)


class _Streaming(Response):
    def __init__(self, seconds: float, ending: str) -> None:
        super().__init__()
        self.seconds, self.ending = seconds, ending

    def stream(self, amt: Any = None, decode_content: bool = True) -> Iterator[bytes]:
        deadline = time.monotonic() + self.seconds
        rv = 2
        while time.monotonic() < deadline:
            yield _event(f"n{rv}", str(rv))
            rv += 1
            time.sleep(0.005)
        if self.ending == "drop":
            raise ConnectionResetError("the watch was dropped")


def _failures_seen(script: list[Any], count: int) -> list[int]:
    """The informer's consecutive-failure count at each of its first `count` backoffs."""
    api = ScriptedApi(script)
    seen: list[int] = []
    cache: Informer[NadFacts] = Informer(
        api,
        nad_facts_from_object,
        name="t",
        options=WatchOptions(backoff_base=0.001, backoff_cap=0.02),
    )

    def backoff(failures: int) -> float:
        seen.append(failures)
        return 0.0

    cache._backoff = backoff  # type: ignore[method-assign]
    cache.start()
    try:
        deadline = time.monotonic() + 20
        while len(seen) < count:
            assert time.monotonic() < deadline, seen
            time.sleep(0.01)
    finally:
        cache.stop()
    return seen[:count]


def test_the_backoff_grows_while_watches_keep_failing() -> None:
    failing = [ConnectionRefusedError("refused")] * 3
    assert _failures_seen(failing, 3) == [1, 2, 3]


def test_the_backoff_starts_again_after_a_watch_the_server_ended() -> None:
    script = [ConnectionRefusedError("1"), ConnectionRefusedError("2"), (0.05, "end")]
    script += [ConnectionRefusedError("3")]
    assert _failures_seen(script, 3) == [1, 2, 1]


def test_the_backoff_starts_again_after_a_long_healthy_watch_is_dropped() -> None:
    """Healthy: it streamed events for longer than the backoff cap before it broke."""
    script = [ConnectionRefusedError("1"), ConnectionRefusedError("2"), (0.1, "drop")]
    script += [ConnectionRefusedError("3")]
    assert _failures_seen(script, 4) == [1, 2, 1, 2]


def test_generation_counts_changes_of_the_contents_only() -> None:
    """The kept answers (webhook.decisions) start afresh when it grows; an event that leaves
    every value as it was must not throw them away."""
    cache = informer()
    cache.apply(REPLACE, listing(nad("a", resource="example.com/a"), rv="1"))
    assert cache.generation == 1
    cache.apply(REPLACE, listing(nad("a", resource="example.com/a"), rv="2"))
    assert cache.generation == 1  # re-listed, same contents
    cache.apply("MODIFIED", nad("a", rv="3", resource="example.com/a"))
    cache.apply("BOOKMARK", {"metadata": {"resourceVersion": "4"}})
    assert cache.generation == 1  # a new resourceVersion, the same facts
    cache.apply("MODIFIED", nad("a", rv="5", resource="example.com/b"))
    assert cache.generation == 2
    cache.apply("ADDED", nad("b", rv="6"))
    assert cache.generation == 3
    cache.apply("DELETED", nad("b", rv="7"))
    cache.apply("DELETED", nad("never-there", rv="8"))
    assert cache.generation == 4
    refused = nad("a", rv="9")
    refused["metadata"]["annotations"] = {RESOURCE_NAME_ANNOTATION: 5}  # not a string: dropped
    cache.apply("MODIFIED", refused)
    assert cache.get("ml-training", "a") is None
    assert cache.generation == 5


def test_the_nad_cache_generation_grows_with_any_of_its_informers(
    api_client: kubernetes.client.ApiClient,
) -> None:
    cache = KubeNadCache(api_client, namespaces=["team-a", "team-b"])
    before = cache.generation
    cache.apply("ADDED", nad("x", namespace="team-b", resource="example.com/x"))
    assert cache.generation == before + 1
    cache.apply("ADDED", nad("x", namespace="elsewhere", resource="example.com/x"))
    assert cache.generation == before + 1  # not watched: nothing changed
