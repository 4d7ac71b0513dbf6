"""network-resources-injector's registration, noticed through the API double.

The SR-IOV operator registers it as `network-resources-injector-config`; in cluster mode the
webhook watches MutatingWebhookConfigurations through the real `kubernetes` client: a warning
log line when it appears (in the first list or added later), the metric while it exists.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from conftest import wait_until

from tests.kube_api_double import KubeApiDouble
from webhook.cluster import Cluster
from webhook.kube_watch import WatchOptions
from webhook.peers import PEER_CONFIGURATION, PeerInjectors, peer_webhook

FAST = WatchOptions(watch_timeout_seconds=5, backoff_base=0.05, backoff_cap=0.2)


def nri_configuration(name: str = PEER_CONFIGURATION) -> dict[str, object]:
    """As the SR-IOV operator's bindata/manifests/webhook/003-webhook.yaml renders it."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "network-resources-injector-config.k8s.io",
                "admissionReviewVersions": ["v1", "v1beta1"],
                "sideEffects": "None",
                "failurePolicy": "Ignore",
                "clientConfig": {
                    "service": {
                        "name": "network-resources-injector-service",
                        "namespace": "openshift-sriov-network-operator",
                        "path": "/mutate",
                    },
                },
                "rules": [
                    {
                        "operations": ["CREATE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["pods"],
                    }
                ],
            }
        ],
    }


def ours() -> dict[str, object]:
    configuration = nri_configuration("zz-gpu-rdma-injector")
    configuration["webhooks"] = [
        {
            "name": "gpu-rdma-injector.gpu-rdma-injector.io",
            "clientConfig": {"service": {"name": "gpu-rdma-injector", "namespace": "gpu-system"}},
        }
    ]
    return configuration


@pytest.fixture
def api() -> Iterator[KubeApiDouble]:
    with KubeApiDouble() as double:
        yield double
        assert double.internal_errors == []


def test_only_its_configuration_counts() -> None:
    assert peer_webhook(nri_configuration()) is not None
    assert peer_webhook(nri_configuration("renamed")) is not None  # its service says so
    assert peer_webhook(ours()) is None
    assert peer_webhook({"metadata": "x"}) is None


def test_noticed_in_the_first_list_and_when_added(
    api: KubeApiDouble, caplog: pytest.LogCaptureFixture
) -> None:
    api.create(ours())
    api.create(nri_configuration())
    peers = PeerInjectors(api.api_client(), options=FAST)
    with caplog.at_level(logging.WARNING, logger="gpu_rdma_injector.peers"):
        peers.start()
        try:
            wait_until(lambda: peers.informer.synced.is_set())
            assert peers.present
            assert [r.fields["configuration"] for r in caplog.records] == [PEER_CONFIGURATION]  # type: ignore[attr-defined]
            assert (
                "SriovOperatorConfig spec.enableInjector: false" in caplog.records[0].getMessage()
            )

            api.delete("mutatingwebhookconfigurations", PEER_CONFIGURATION)
            wait_until(lambda: not peers.present)
            api.create(nri_configuration())
            wait_until(lambda: peers.present)
            wait_until(lambda: len(caplog.records) == 2)
        finally:
            assert peers.stop()


def test_cluster_mode_exposes_the_metric_and_never_waits_for_it(api: KubeApiDouble) -> None:
    api.create(nri_configuration())
    cluster = Cluster.connect(
        api.api_client(), ("k8s.v1.cni.cncf.io/resourceName",), options=FAST, watch_peers=True
    )
    cluster.start()
    try:
        assert cluster.wait_synced(10)
        assert cluster.peers is not None
        wait_until(lambda: cluster.peers is not None and cluster.peers.present)
        values = {value.name: value.value for value in cluster.scrape()}
        assert values["gpu_rdma_injector_peer_injector_present"] == 1
    finally:
        assert cluster.stop()


def test_a_watch_it_may_not_read_does_not_hold_readiness(api: KubeApiDouble) -> None:
    """Without RBAC for MutatingWebhookConfigurations the watch only fails, with backoff: the
    webhook is ready once NADs and namespaces are listed."""
    cluster = Cluster.connect(
        api.api_client(), ("k8s.v1.cni.cncf.io/resourceName",), options=FAST, watch_peers=True
    )
    assert cluster.peers is not None
    cluster.nads.start()
    cluster.namespaces.start()
    try:
        assert cluster.wait_synced(10)
        api.fail_next(1000, status=403, verb="list")
        cluster.peers.start()
        wait_until(
            lambda: cluster.peers is not None and cluster.peers.informer.consecutive_failures > 1
        )
        assert not cluster.peers.informer.synced.is_set()
        assert cluster.not_ready() is None
        assert not cluster.peers.present
    finally:
        api.fail_next(0)
        assert cluster.stop()
