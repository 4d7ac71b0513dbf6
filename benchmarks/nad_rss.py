"""The memory of a webhook process holding N NetworkAttachmentDefinitions in its cache.

Run in its own process (python -m benchmarks.nad_rss --count 10000 --mode informer): it imports
what `serve` imports (the Kubernetes client too, as with a cluster), builds the app, fills a NAD
cache with N real-looking NAD objects, and reads the process's RSS from /proc. Prints JSON.

Modes, each a fresh process:

- `informer`: the path `serve` takes at start-up. A `webhook.kube_watch.Informer` lists the NADs
  from a stand-in for the API (pages of `limit` objects as JSON bytes, then a watch that stays
  quiet), exactly as it would list a cluster's, and is measured once synced.
- `events`: `webhook.cluster.KubeNadCache.apply("ADDED", obj)` once per NAD, as a watch
  delivers them.
- `replace`: `webhook.cluster.KubeNadCache.apply(REPLACE, list)` with the whole List parsed at
  once.

When `kube_watch` is not usable, `webhook.nads.StaticNads` is built from `NadFacts` instead, and
`method` in the output says so.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

RAILS = 8
SPREAD_NAMESPACES = 50
MODES = ("informer", "events", "replace")
RESOURCE_VERSION = "424242"


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def nad_object(index: int) -> dict[str, Any]:
    """A NAD as the API server lists it: server-set metadata, managedFields, a CNI config."""
    rail = index % RAILS + 1
    namespace = f"team-{index // RAILS % SPREAD_NAMESPACES:03d}"
    name = f"rail-{rail}" if index < RAILS * SPREAD_NAMESPACES else f"rail-{rail}-pool-{index}"
    config = {
        "cniVersion": "1.0.0",
        "name": name,
        "type": "ib-sriov",
        "pkey": f"0x{0x8000 + rail:04x}",
        "link_state": "enable",
        "rdmaIsolation": True,
        "ibKubernetesEnabled": False,
        "ipam": {"type": "whereabouts", "range": f"10.{rail}.{index % 256}.0/24"},
    }
    return {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"{index:08x}-5d0c-4b0e-9a51-2f1d3c4b{index % 65536:04x}",
            "resourceVersion": str(100000 + index),
            "generation": 1,
            "creationTimestamp": "2026-11-29T13:49:50Z",
            "annotations": {
                "k8s.v1.cni.cncf.io/resourceName": f"nvidia.com/sriov_rdma_rail_{rail}",
                "sriovnetwork.openshift.io/owner-ref": f"SriovIBNetwork.sriovnetwork.openshift.io/"
                f"nvidia-network-operator/{name}",
            },
            "managedFields": [
                {
                    "manager": "sriov-network-operator",
                    "operation": "Update",
                    "apiVersion": "k8s.cni.cncf.io/v1",
                    "time": "2026-11-29T13:49:50Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {
                        "f:metadata": {
                            "f:annotations": {
                                ".": {},
                                "f:k8s.v1.cni.cncf.io/resourceName": {},
                                "f:sriovnetwork.openshift.io/owner-ref": {},
                            }
                        },
                        "f:spec": {".": {}, "f:config": {}},
                    },
                }
            ],
        },
        "spec": {"config": json.dumps(config)},
    }


def list_bytes(start: int, end: int, continue_token: str | None = None) -> bytes:
    """One List page as the API server sends it, built one object at a time."""
    metadata: dict[str, str] = {"resourceVersion": RESOURCE_VERSION}
    if continue_token:
        metadata["continue"] = continue_token
    head = orjson.dumps(
        {
            "apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinitionList",
            "metadata": metadata,
        }
    )
    items = b",".join(orjson.dumps(nad_object(i)) for i in range(start, end))
    return head[:-1] + b',"items":[' + items + b"]}"


class _Page:
    """A list response read with _preload_content=False: the bytes are in `data`."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


class _QuietWatch:
    """A watch response that sends nothing until it is shut down (or 60 s pass)."""

    def __init__(self) -> None:
        self._ended = threading.Event()

    def stream(self, amt: int | None = None, decode_content: bool = True) -> Iterator[bytes]:
        self._ended.wait(60)
        yield from ()

    def shutdown(self) -> None:
        self._ended.set()

    close = shutdown

    def release_conn(self) -> None:
        pass


class FakeNadApi:
    """Stands in for `CustomObjectsApi.list_cluster_custom_object` with its path bound."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.bytes_served = 0
        self.pages = 0

    def __call__(self, **kwargs: Any) -> Any:
        if kwargs.get("watch"):
            return _QuietWatch()
        start = int(kwargs.get("_continue") or 0)
        end = min(self.count, start + int(kwargs.get("limit") or self.count))
        page = list_bytes(start, end, str(end) if end < self.count else None)
        self.bytes_served += len(page)
        self.pages += 1
        return _Page(page)


def fill(mode: str, count: int) -> tuple[Any, str, int, Any]:
    """(the filled lookup, how it was filled, JSON bytes fed, something to stop or None)."""
    try:
        import kubernetes.client

        from webhook import cluster, kube_watch
        from webhook.nads import nad_facts_from_object

        if mode == "informer":
            api = FakeNadApi(count)
            informer = kube_watch.Informer(api, nad_facts_from_object, name="nads")
            informer.start()
            if not informer.synced.wait(300):
                raise RuntimeError("the informer did not sync within 300 s")
            method = (
                f"webhook.kube_watch.Informer listing {api.pages} page(s) of "
                f"{kube_watch.WatchOptions().page_size} from a stand-in API, then watching"
            )
            return informer, method, api.bytes_served, informer
        cache = cluster.KubeNadCache(kubernetes.client.ApiClient())
        if mode == "events":
            fed = 0
            for index in range(count):
                obj_bytes = orjson.dumps(nad_object(index))
                fed += len(obj_bytes)
                cache.apply("ADDED", orjson.loads(obj_bytes))
            return cache, "webhook.cluster.KubeNadCache.apply('ADDED', obj) per NAD", fed, None
        whole = list_bytes(0, count)
        cache.apply(kube_watch.REPLACE, orjson.loads(whole))
        return cache, "webhook.cluster.KubeNadCache.apply(REPLACE, list)", len(whole), None
    except (ImportError, AttributeError, TypeError) as error:
        from webhook.nads import StaticNads, nad_facts_from_object

        whole = list_bytes(0, count)
        facts = [nad_facts_from_object(obj) for obj in orjson.loads(whole)["items"]]
        method = f"webhook.nads.StaticNads from NadFacts (kube_watch not usable: {error})"
        return StaticNads(facts, authoritative=True), method, len(whole), None


def measure(count: int, policy: Path | None, mode: str) -> dict[str, Any]:
    started = time.perf_counter()
    # What `serve` imports, then the app.
    import kubernetes.client  # noqa: F401
    import uvicorn  # noqa: F401

    from webhook.mutation import NO_NADS
    from webhook.policy import default_policy
    from webhook.reload import PolicyStore
    from webhook.server import AppContext, create_app

    with contextlib.suppress(ImportError):
        import webhook.kube_watch  # noqa: F401

    store = PolicyStore.from_file(policy) if policy else PolicyStore(default_policy())
    app = create_app(AppContext(policy=store, nads=NO_NADS))
    gc.collect()
    baseline = status_kib("VmRSS")

    nads, method, fed, running = fill(mode, count)
    gc.collect()
    lookups = [nads.get(f"team-{n:03d}", f"rail-{n % RAILS + 1}") for n in range(10)]
    size = getattr(nads, "size", None)
    result = {
        "mode": mode,
        "nads": count,
        "cached": size if isinstance(size, int) else len(nads),
        "method": method,
        "list_mib": fed / 2**20,
        "rss_before_nads_mib": baseline / 1024,
        "rss_mib": status_kib("VmRSS") / 1024,
        "hwm_mib": status_kib("VmHWM") / 1024,
        "lookups_ok": count < RAILS * 10
        or all(fact is not None and fact.resource_name for fact in lookups),
        "routes": len(app.routes),
        "seconds": time.perf_counter() - started,
    }
    if running is not None:
        running.stop()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--policy", type=Path, default=None)
    parser.add_argument("--mode", choices=MODES, default="informer")
    args = parser.parse_args()
    print(json.dumps(measure(args.count, args.policy, args.mode)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
