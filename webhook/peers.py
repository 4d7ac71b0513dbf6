"""Another injector on the cluster (edge layer): network-resources-injector's webhook, noticed.

The SR-IOV network operator deploys network-resources-injector by default. It adds SR-IOV units
to `containers[0]` of every pod that carries a networks annotation, and with `--honor-resources`
on top of the pod's own; beside this webhook it can leave a GPU container without its RDMA
device or give a pod twice its VFs (README: "Beside network-resources-injector"). In cluster
mode its MutatingWebhookConfiguration is watched (read-only): when it is there, one warning log
line says so and what to do, and `gpu_rdma_injector_peer_injector_present` is 1.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import kubernetes.client

from webhook.kube_watch import Informer, WatchOptions
from webhook.metrics import ScrapeValue

# Its registration as the SR-IOV operator names it (pkg/consts InjectorWebHookName), and as its
# own deployment manifests do.
PEER_CONFIGURATION = "network-resources-injector-config"
PEER_NAME = "network-resources-injector"

log = logging.getLogger("gpu_rdma_injector.peers")


@dataclass(frozen=True, slots=True)
class PeerWebhook:
    """What is worth saying about the other injector's registration."""

    configuration: str
    failure_policy: str


def peer_webhook(obj: Mapping[str, Any]) -> PeerWebhook | None:
    """The registration of network-resources-injector, or None for any other configuration."""
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    if not isinstance(name, str):
        return None
    webhooks = obj.get("webhooks")
    webhooks = [w for w in webhooks if isinstance(w, Mapping)] if isinstance(webhooks, list) else []
    services = [
        ((w.get("clientConfig") or {}).get("service") or {}).get("name", "") for w in webhooks
    ]
    if name != PEER_CONFIGURATION and not any(
        PEER_NAME in str(text) for text in [*services, *(w.get("name", "") for w in webhooks)]
    ):
        return None
    policies = sorted({str(w.get("failurePolicy", "Fail")) for w in webhooks}) or ["Fail"]
    return PeerWebhook(name, "/".join(policies))


class PeerInjectors:
    """Watches MutatingWebhookConfigurations for network-resources-injector's."""

    def __init__(
        self, api_client: kubernetes.client.ApiClient, *, options: WatchOptions | None = None
    ) -> None:
        api = kubernetes.client.AdmissionregistrationV1Api(api_client)
        self.informer: Informer[PeerWebhook] = Informer(
            api.list_mutating_webhook_configuration,
            self._notice,
            name="mutatingwebhookconfigurations",
            options=options,
        )

    def _notice(self, obj: Mapping[str, Any]) -> PeerWebhook | None:
        peer = peer_webhook(obj)
        if peer is None:
            return None
        # Said when it appears (in the first list, or added later), not at every change.
        if self.informer.get("", peer.configuration) is None:
            log.warning(
                "network-resources-injector is registered on this cluster; it puts SR-IOV units "
                "into containers[0] of annotated pods (and, with --honor-resources, on top of "
                "the pod's own); turn it off with SriovOperatorConfig spec.enableInjector: "
                "false (see the README: Beside network-resources-injector)",
                extra={
                    "fields": {
                        "configuration": peer.configuration,
                        "failure_policy": peer.failure_policy,
                    }
                },
            )
        return peer

    @property
    def present(self) -> bool:
        return self.informer.size > 0

    def start(self) -> None:
        self.informer.start()

    def stop(self, timeout: float | None = 5.0) -> bool:
        self.informer.request_stop()
        return self.informer.join(timeout)

    def scrape(self) -> Iterable[ScrapeValue]:
        yield ScrapeValue(
            "gpu_rdma_injector_peer_injector_present",
            "1 while network-resources-injector's MutatingWebhookConfiguration exists "
            "(watched in cluster mode).",
            1 if self.present else 0,
        )
