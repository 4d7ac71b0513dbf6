"""ResourceClaimTemplates and ResourceClaims watched through the API double (cluster mode).

With gpuDeviceClasses in the policy, `serve` watches both kinds (resource.k8s.io/v1) like NADs:
a decision reads them from memory, readiness waits for their first list, and a template created
later is seen without a restart.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import wait_until

from tests.kube_api_double import KubeApiDouble
from webhook.cluster import Cluster
from webhook.kube_watch import WatchOptions
from webhook.mutation import decide
from webhook.policy import parse_policy

FAST = WatchOptions(watch_timeout_seconds=5, backoff_base=0.05, backoff_cap=0.2)
POLICY = parse_policy(
    "networks: [{name: pool, resourceName: example.com/vf, perGpu: true}]\n"
    "gpuDeviceClasses: [gpu.nvidia.com]\nunknownNetworks: deny",
    "dra.yaml",
)


def template(name: str, count: int) -> dict[str, object]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"namespace": "team-a", "name": name},
        "spec": {
            "spec": {
                "devices": {
                    "requests": [
                        {
                            "name": "gpu",
                            "exactly": {"deviceClassName": "gpu.nvidia.com", "count": count},
                        }
                    ]
                }
            }
        },
    }


def dra_pod(template_name: str) -> dict[str, object]:
    return {
        "metadata": {"name": "p"},
        "spec": {
            "containers": [{"name": "ctr", "image": "x", "resources": {"claims": [{"name": "g"}]}}],
            "resourceClaims": [{"name": "g", "resourceClaimTemplateName": template_name}],
        },
    }


@pytest.fixture
def cluster() -> Iterator[tuple[KubeApiDouble, Cluster]]:
    with KubeApiDouble() as api:
        api.ensure_namespace("team-a")
        api.create(
            {
                "apiVersion": "k8s.cni.cncf.io/v1",
                "kind": "NetworkAttachmentDefinition",
                "metadata": {
                    "namespace": "team-a",
                    "name": "pool",
                    "annotations": {"k8s.v1.cni.cncf.io/resourceName": "example.com/vf"},
                },
                "spec": {"config": '{"cniVersion": "1.0.0", "type": "sriov"}'},
            }
        )
        api.create(template("two-gpus", 2))
        cluster = Cluster.connect(
            api.api_client(), POLICY.resource_name_annotations, options=FAST, watch_claims=True
        )
        cluster.start()
        try:
            yield api, cluster
        finally:
            assert cluster.stop()
        assert api.internal_errors == []


def test_claims_are_listed_watched_and_decide_from_memory(
    cluster: tuple[KubeApiDouble, Cluster],
) -> None:
    api, watched = cluster
    assert watched.wait_synced(10)
    assert watched.not_ready() is None
    assert watched.claims is not None

    def attachments(name: str) -> str:
        decision = decide(dra_pod(name), "team-a", POLICY, watched.nads, None, watched.claims)
        assert decision.allowed, decision.message
        ops = [op for op in decision.patch if op.path == "/metadata/annotations"]
        return ops[0].value["k8s.v1.cni.cncf.io/networks"] if ops else ""  # type: ignore[index]

    assert attachments("two-gpus") == "pool,pool"
    missing = decide(dra_pod("later"), "team-a", POLICY, watched.nads, None, watched.claims)
    assert (missing.allowed, missing.reason) == (False, "unknown-network")

    api.create(template("later", 3))
    wait_until(
        lambda: (
            watched.claims is not None
            and watched.claims.get("ResourceClaimTemplate", "team-a", "later") is not None
        )
    )
    assert attachments("later") == "pool,pool,pool"
    values = {value.name: value.value for value in watched.scrape()}
    assert values["gpu_rdma_injector_claim_cache_size"] == 2


def test_readiness_waits_for_the_claims(cluster: tuple[KubeApiDouble, Cluster]) -> None:
    _, watched = cluster
    assert watched.claims is not None
    watched.claims.synced.clear()
    assert "ResourceClaimTemplates and ResourceClaims" in (watched.not_ready() or "")
