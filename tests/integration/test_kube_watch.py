"""webhook.kube_watch through the real kubernetes client against the API server double."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
from conftest import wait_until

from tests.kube_api_double import KubeApiDouble
from webhook.cluster import KubeNadCache, KubeNamespaceCache, load_kube_api_client
from webhook.kube_watch import WatchOptions
from webhook.nads import RESOURCE_NAME_ANNOTATION, NadFacts, nad_facts_from_object

FIXTURES = Path(__file__).parent.parent / "fixtures" / "nads"
NADS = "network-attachment-definitions"
FAST = WatchOptions(
    watch_timeout_seconds=30,
    connect_timeout=1.0,
    list_read_timeout=2.0,
    watch_read_margin=2.0,
    backoff_base=0.02,
    backoff_cap=0.2,
)


def nad(name: str, namespace: str = "ml-training", resource: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if resource is not None:
        metadata["annotations"] = {RESOURCE_NAME_ANNOTATION: resource}
    return {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": metadata,
        "spec": {"config": f'{{"cniVersion":"1.0.0","name":"{name}","type":"sriov"}}'},
    }


def truth(
    api: KubeApiDouble, namespaces: set[str] | None = None
) -> dict[tuple[str, str], NadFacts]:
    """What the cache must hold: the double's NADs, through the same transform."""
    facts = (nad_facts_from_object(obj) for obj in api.objects(NADS))
    return {
        (f.namespace, f.name): f for f in facts if namespaces is None or f.namespace in namespaces
    }


def set_resource(api: KubeApiDouble, namespace: str, name: str, resource: str | None) -> None:
    obj = api.get(NADS, name, namespace)
    assert obj is not None
    annotations = obj["metadata"].setdefault("annotations", {})
    if resource is None:
        annotations.pop(RESOURCE_NAME_ANNOTATION, None)
    else:
        annotations[RESOURCE_NAME_ANNOTATION] = resource
    api.update(obj)


def converged(cache: KubeNadCache, api: KubeApiDouble) -> Callable[[], bool]:
    return lambda: cache.snapshot() == truth(api)


@pytest.fixture
def api() -> Iterator[KubeApiDouble]:
    with KubeApiDouble() as double:
        double.ensure_namespace("ml-training", annotations={"team": "llm"})
        double.ensure_namespace("gpu-infra")
        for path in sorted(FIXTURES.glob("*.yaml")):
            double.load_yaml(path)
        yield double
        assert double.internal_errors == []


@pytest.fixture
def client(api: KubeApiDouble, tmp_path: Path) -> Iterator[kubernetes.client.ApiClient]:
    api_client = load_kube_api_client(str(api.kubeconfig(tmp_path / "kubeconfig")))
    yield api_client
    api_client.close()


@pytest.fixture
def start_nads(
    client: kubernetes.client.ApiClient,
) -> Iterator[Callable[..., KubeNadCache]]:
    """Start a NAD cache on the double; every one is stopped (and must stop) at teardown."""
    caches: list[KubeNadCache] = []

    def start(**kwargs: Any) -> KubeNadCache:
        kwargs.setdefault("options", FAST)
        cache = KubeNadCache(client, **kwargs)
        caches.append(cache)
        cache.start()
        return cache

    yield start
    for cache in caches:
        assert cache.stop(timeout=5.0), "a NAD cache thread did not stop"


def synced(cache: KubeNadCache | KubeNamespaceCache) -> None:
    assert cache.synced.wait(5.0), f"not synced; last error: {cache.last_error}"


def watching(api: KubeApiDouble, count: int = 1, resource: str = NADS) -> None:
    wait_until(lambda: api.open_watches(resource) >= count, what=f"{count} open watch(es)")


# -- list, then watch -----------------------------------------------------------------------------


def test_the_first_list_fills_the_cache_and_sets_synced(
    api: KubeApiDouble, start_nads: Callable[..., KubeNadCache]
) -> None:
    cache = start_nads()
    synced(cache)
    assert cache.snapshot() == truth(api)
    assert cache.size == 12
    assert cache.get("ml-training", "sriov-rdma-net") == NadFacts(
        "ml-training", "sriov-rdma-net", "openshift.io/mellanoxnics"
    )
    assert cache.get("ml-training", "ipoib-net") == NadFacts("ml-training", "ipoib-net", None)
    assert cache.get("gpu-infra", "rail-1") is None
    assert cache.names_in("ml-training") == (
        "ipoib-net",
        "macvlan-net",
        *(f"rail-{n}" for n in range(1, 9)),
        "sriov-rdma-net",
    )
    assert cache.names_in("gpu-infra") == ("sriov-rdma-vf",)
    assert cache.authoritative
    assert cache.informers[0].resource_version == api.resource_version
    assert api.count("list", NADS) == 1
    assert (cache.watch_restarts, cache.relists, cache.last_error) == (0, 0, None)


def test_the_list_is_paged(api: KubeApiDouble, start_nads: Callable[..., KubeNadCache]) -> None:
    cache = start_nads(options=WatchOptions(page_size=5, backoff_base=0.02, backoff_cap=0.2))
    synced(cache)
    assert cache.snapshot() == truth(api)
    pages = [r for r in api.request_log if r.verb == "list"]
    assert [r.query.get("limit") for r in pages] == ["5", "5", "5"]
    assert "continue" not in pages[0].query
    assert all(r.query.get("continue") for r in pages[1:])


def test_added_modified_and_deleted_reach_the_cache(
    api: KubeApiDouble, start_nads: Callable[..., KubeNadCache]
) -> None:
    cache = start_nads()
    synced(cache)
    api.create(nad("rail-9", resource="nvidia.com/sriov_resource_rail_9"))
    wait_until(lambda: cache.get("ml-training", "rail-9") is not None, what="ADDED")
    assert "rail-9" in cache.names_in("ml-training")

    set_resource(api, "ml-training", "rail-9", "nvidia.com/renamed")
    wait_until(
        lambda: (
            cache.get("ml-training", "rail-9")
            == NadFacts("ml-training", "rail-9", "nvidia.com/renamed")
        ),
        what="MODIFIED",
    )
    set_resource(api, "ml-training", "rail-9", None)
    wait_until(
        lambda: cache.get("ml-training", "rail-9") == NadFacts("ml-training", "rail-9", None),
        what="annotation removed",
    )

    api.delete(NADS, "rail-9", "ml-training")
    wait_until(lambda: cache.get("ml-training", "rail-9") is None, what="DELETED")
    assert "rail-9" not in cache.names_in("ml-training")
    api.delete(NADS, "sriov-rdma-vf", "gpu-infra")
    wait_until(lambda: cache.names_in("gpu-infra") == (), what="last NAD of a namespace deleted")
    assert cache.snapshot() == truth(api)
    assert cache.informers[0].resource_version == api.resource_version
    assert api.count("list", NADS) == 1


def test_changes_made_through_the_api_reach_the_cache(
    api: KubeApiDouble,
    client: kubernetes.client.ApiClient,
    start_nads: Callable[..., KubeNadCache],
) -> None:
    cache = start_nads()
    synced(cache)
    custom = kubernetes.client.CustomObjectsApi(client)
    group = ("k8s.cni.cncf.io", "v1", "gpu-infra", NADS)
    custom.create_namespaced_custom_object(*group, nad("rdma-2", "gpu-infra", "nvidia.com/a"))
    custom.patch_namespaced_custom_object(
        *group,
        "rdma-2",
        {"metadata": {"annotations": {RESOURCE_NAME_ANNOTATION: "nvidia.com/b"}}},
    )
    wait_until(
        lambda: cache.get("gpu-infra", "rdma-2") == NadFacts("gpu-infra", "rdma-2", "nvidia.com/b")
    )
    custom.delete_namespaced_custom_object(*group, "rdma-2")
    wait_until(lambda: cache.get("gpu-infra", "rdma-2") is None)
    assert cache.snapshot() == truth(api)


def test_a_bookmark_advances_the_resource_version_only(
    api: KubeApiDouble, start_nads: Callable[..., KubeNadCache]
) -> None:
    cache = start_nads()
    synced(cache)
    watching(api)
    before = cache.snapshot()
    # Other resources move the global resourceVersion; only a bookmark tells the NAD watch.
    api.create(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "gpu-infra"}}
    )
    assert cache.informers[0].resource_version != api.resource_version
    api.send_bookmark()
    wait_until(lambda: cache.informers[0].resource_version == api.resource_version, what="bookmark")
    assert cache.snapshot() == before
    assert api.count("list", NADS) == 1


def test_a_watch_that_times_out_resumes_from_the_last_resource_version(
    api: KubeApiDouble, start_nads: Callable[..., KubeNadCache]
) -> None:
    options = WatchOptions(watch_timeout_seconds=1, backoff_base=0.02, backoff_cap=0.2)
    cache = start_nads(options=options)
    synced(cache)
    listed_at = cache.informers[0].resource_version
    watching(api)
    api.create(nad("rail-9", resource="nvidia.com/sriov_resource_rail_9"))
    wait_until(lambda: cache.get("ml-training", "rail-9") is not None)
    changed_at = api.resource_version
    wait_until(lambda: api.count("watch", NADS) >= 3, timeout=5.0, what="two re-watches")

    watches = [r for r in api.request_log if r.verb == "watch"]
    assert watches[0].query["resourceVersion"] == listed_at
    assert all(r.query["resourceVersion"] == changed_at for r in watches[1:])
    assert all(r.query["allowWatchBookmarks"] == "true" for r in watches)
    assert all(r.query["timeoutSeconds"] == "1" for r in watches)
    assert api.count("list", NADS) == 1
    assert (cache.relists, cache.watch_restarts, cache.last_error) == (0, 0, None)
    assert cache.snapshot() == truth(api)


def test_a_dropped_watch_reconnects_without_losing_or_repeating_events(
    api: KubeApiDouble, start_nads: Callable[..., KubeNadCache]
) -> None:
    cache = start_nads()
    synced(cache)
    for round_number in range(1, 4):
        watching(api)
        api.drop_watches()
        # Changes while the client reconnects are replayed from its last resourceVersion.
        api.create(nad(f"extra-{round_number}", resource=f"nvidia.com/extra_{round_number}"))
        set_resource(api, "ml-training", "rail-1", f"nvidia.com/rail_1_v{round_number}")
        wait_until(converged(cache, api), what=f"convergence after drop {round_number}")
        wait_until(lambda n=round_number: cache.watch_restarts >= n, what="restart counted")

    names = cache.names_in("ml-training")
    assert list(names) == sorted(set(names))
    assert len(names) == 14
    assert api.count("list", NADS) == 1
    assert cache.relists == 0
    assert cache.last_error is not None


@pytest.mark.parametrize("as_http_410", [False, True], ids=["error-event", "http-410"])
def test_compaction_while_disconnected_relists_and_replaces_the_contents(
    api: KubeApiDouble, start_nads: Callable[..., KubeNadCache], as_http_410: bool
) -> None:
    api.expired_watch_as_http_410 = as_http_410
    cache = start_nads()
    synced(cache)
    watching(api)
    with api.outage(status=503):
        api.delete(NADS, "rail-3", "ml-training")
        api.delete(NADS, "sriov-rdma-vf", "gpu-infra")
        api.create(nad("rail-9", resource="nvidia.com/sriov_resource_rail_9"))
        set_resource(api, "ml-training", "rail-1", "nvidia.com/moved")
        api.compact()
        wait_until(lambda: cache.watch_restarts >= 2, what="retries during the outage")
        assert cache.get("ml-training", "rail-3") is not None  # the old contents are served

    wait_until(lambda: cache.relists == 1, what="a re-list after 410")
    wait_until(converged(cache, api), what="contents replaced")
    assert cache.get("ml-training", "rail-3") is None
    assert cache.names_in("gpu-infra") == ()
    assert cache.get("ml-training", "rail-1") == NadFacts(
        "ml-training", "rail-1", "nvidia.com/moved"
    )
    assert "rail-3" not in cache.names_in("ml-training")
    assert api.count("list", NADS) == 2
    assert cache.relists == 1


def test_a_server_that_expires_every_fresh_watch_is_not_hammered(
    api: KubeApiDouble, start_nads: Callable[..., KubeNadCache]
) -> None:
    api.fail_next(3, status=410, verb="watch")
    cache = start_nads()
    synced(cache)
    wait_until(lambda: api.count("list", NADS) == 4, what="a list after each 410")
    watching(api)
    # Each 410 straight after a list counts as a failure, so the loop backs off.
    assert (cache.relists, cache.watch_restarts) == (3, 3)
    assert cache.last_error is not None
    assert cache.last_error.startswith("WatchExpired")
    assert cache.snapshot() == truth(api)


def test_watches_that_end_at_once_are_backed_off(
    api: KubeApiDouble, start_nads: Callable[..., KubeNadCache]
) -> None:
    cache = start_nads()
    synced(cache)
    watching(api)
    api.max_watch_seconds = 0.0
    api.drop_watches()
    wait_until(lambda: cache.watch_restarts >= 4, what="short watches counted as failures")
    watches = api.count("watch", NADS)
    time.sleep(0.3)
    # With a 0.2 s cap a tight loop would make hundreds of watches here; backoff makes a few.
    assert api.count("watch", NADS) - watches <= 5
    assert cache.last_error is not None
    assert "without any event" in cache.last_error
    api.max_watch_seconds = None
    api.create(nad("rail-9"))
    wait_until(converged(cache, api))
    assert api.count("list", NADS) == 1


def test_an_outage_is_retried_with_backoff_while_the_old_contents_are_served(
    api: KubeApiDouble, start_nads: Callable[..., KubeNadCache]
) -> None:
    cache = start_nads()
    synced(cache)
    watching(api)
    before = cache.snapshot()
    with api.outage(status=500):
        wait_until(lambda: cache.watch_restarts >= 4, what="retries during the outage")
        restarts = cache.watch_restarts
        time.sleep(0.3)
        # Backoff: far fewer attempts than a tight loop would make (the cap is 0.2 s).
        assert cache.watch_restarts - restarts <= 4
        assert cache.synced.is_set()
        assert cache.snapshot() == before
        assert cache.consecutive_failures >= 4
        api.create(nad("rail-9", resource="nvidia.com/sriov_resource_rail_9"))
        assert cache.last_error is not None
        assert "500" in cache.last_error
        assert "injected" in cache.last_error
    wait_until(converged(cache, api), what="convergence after the outage")
    wait_until(lambda: cache.consecutive_failures == 0, what="healthy again")
    assert cache.relists == 0


def test_connections_refused_without_an_answer_are_retried(
    api: KubeApiDouble, start_nads: Callable[..., KubeNadCache]
) -> None:
    cache = start_nads()
    synced(cache)
    watching(api)
    with api.outage(status=None):
        api.create(nad("rail-9"))
        wait_until(lambda: cache.watch_restarts >= 2, what="retries")
    wait_until(converged(cache, api))


def test_failures_before_the_first_list_delay_synced_only(
    api: KubeApiDouble, start_nads: Callable[..., KubeNadCache]
) -> None:
    api.fail_next(3, status=503, verb="list")
    cache = start_nads()
    synced(cache)
    assert cache.watch_restarts == 3
    assert cache.relists == 0
    assert cache.last_error is not None
    assert cache.last_error.startswith("HTTP 503")
    assert cache.snapshot() == truth(api)


def test_slow_responses_are_waited_for(
    api: KubeApiDouble, start_nads: Callable[..., KubeNadCache]
) -> None:
    api.set_delay(0.3)
    started = time.monotonic()
    cache = start_nads()
    synced(cache)
    assert time.monotonic() - started >= 0.3
    api.create(nad("rail-9"))
    wait_until(converged(cache, api))
    assert cache.watch_restarts == 0


def test_a_response_slower_than_the_read_timeout_is_retried(
    api: KubeApiDouble, start_nads: Callable[..., KubeNadCache]
) -> None:
    api.set_delay(0.4)
    options = WatchOptions(list_read_timeout=0.1, backoff_base=0.02, backoff_cap=0.1)
    cache = start_nads(options=options)
    wait_until(lambda: cache.watch_restarts >= 1, what="a read timeout")
    assert not cache.synced.is_set()
    assert cache.last_error is not None
    assert "timed out" in cache.last_error.lower()
    api.set_delay(0)
    synced(cache)
    assert cache.snapshot() == truth(api)


def test_namespace_scoped_mode_watches_only_the_given_namespaces(
    api: KubeApiDouble, start_nads: Callable[..., KubeNadCache]
) -> None:
    api.ensure_namespace("other")
    api.create(nad("elsewhere", "other", "nvidia.com/x"))
    cache = start_nads(namespaces=["gpu-infra", "other"])
    synced(cache)
    assert cache.snapshot() == truth(api, {"gpu-infra", "other"})
    assert cache.get("ml-training", "rail-1") is None
    assert not cache.covers("ml-training")
    assert cache.covers("gpu-infra")
    watching(api, 2)

    api.create(nad("rail-9", resource="nvidia.com/sriov_resource_rail_9"))
    api.create(nad("rdma-2", "gpu-infra", "nvidia.com/y"))
    api.delete(NADS, "elsewhere", "other")
    wait_until(lambda: cache.get("gpu-infra", "rdma-2") is not None)
    wait_until(lambda: cache.names_in("other") == ())
    assert cache.get("ml-training", "rail-9") is None
    assert cache.snapshot() == truth(api, {"gpu-infra", "other"})

    requests = [r for r in api.request_log if r.resource == NADS]
    assert requests
    assert {r.namespace for r in requests} == {"gpu-infra", "other"}
    assert {r.verb for r in requests} == {"list", "watch"}


def test_namespace_scoped_mode_is_synced_when_every_namespace_is(
    api: KubeApiDouble, start_nads: Callable[..., KubeNadCache]
) -> None:
    api.fail_next(2, status=500, verb="list")
    cache = start_nads(namespaces=["gpu-infra", "ml-training"])
    synced(cache)
    assert all(informer.synced.is_set() for informer in cache.informers)
    assert cache.size == 12
    assert cache.watch_restarts == 2


def test_the_namespace_cache_keeps_only_annotations(
    api: KubeApiDouble, client: kubernetes.client.ApiClient
) -> None:
    api.ensure_namespace("labelled", labels={"tier": "gpu"})
    cache = KubeNamespaceCache(client, options=FAST)
    cache.start()
    try:
        synced(cache)
        assert cache.annotations("ml-training") == {"team": "llm"}
        assert cache.annotations("labelled") == {}
        assert cache.annotations("missing") is None
        assert cache.authoritative
        assert cache.names() == ("gpu-infra", "labelled", "ml-training")
        annotations = cache.annotations("ml-training")
        assert annotations is not None
        with pytest.raises(TypeError):
            annotations["team"] = "changed"  # type: ignore[index]

        core = kubernetes.client.CoreV1Api(client)
        core.patch_namespace("labelled", {"metadata": {"annotations": {"gpu/rdma": "required"}}})
        wait_until(lambda: cache.annotations("labelled") == {"gpu/rdma": "required"})
        core.create_namespace({"metadata": {"name": "new", "annotations": {"a": "b"}}})
        wait_until(lambda: cache.annotations("new") == {"a": "b"})
        core.delete_namespace("new")
        wait_until(lambda: cache.annotations("new") is None)
        assert api.count("list", "namespaces") == 1
    finally:
        assert cache.stop(timeout=5.0)


def test_stop_returns_promptly_while_blocked_in_a_watch(
    api: KubeApiDouble, client: kubernetes.client.ApiClient
) -> None:
    nads = KubeNadCache(client)  # default options: a 300 s watch
    namespaces = KubeNamespaceCache(client)
    nads.start()
    namespaces.start()
    synced(nads)
    synced(namespaces)
    watching(api)
    watching(api, resource="namespaces")
    started = time.monotonic()
    assert nads.stop(timeout=2.0)
    assert namespaces.stop(timeout=2.0)
    assert time.monotonic() - started < 2.0
    assert not any(informer.running for informer in nads.informers)
    wait_until(lambda: api.open_watches() == 0, what="the double to see the watches end")


def test_stop_interrupts_a_backoff_wait(
    api: KubeApiDouble, client: kubernetes.client.ApiClient
) -> None:
    cache = KubeNadCache(client, options=WatchOptions(backoff_base=10.0, backoff_cap=10.0))
    with api.outage():
        cache.start()
        wait_until(lambda: cache.watch_restarts >= 1)
        started = time.monotonic()
        assert cache.stop(timeout=2.0)
        assert time.monotonic() - started < 2.0


def test_a_kubeconfig_client_leaves_the_default_configuration_alone(
    api: KubeApiDouble, tmp_path: Path
) -> None:
    default_host = kubernetes.client.Configuration.get_default_copy().host
    client = load_kube_api_client(str(api.kubeconfig(tmp_path / "config")))
    try:
        assert client.configuration.host == api.url
        assert kubernetes.client.Configuration.get_default_copy().host == default_host
        names = kubernetes.client.CoreV1Api(client).list_namespace().items
        assert {n.metadata.name for n in names} == {"gpu-infra", "ml-training"}
    finally:
        client.close()
