"""Prometheus metrics (edge layer) on an explicit registry, one per app, no global state.

The `*_created` series prometheus_client adds to every counter and histogram only double the
scrape size; they are left out when this registry is rendered (prometheus_client's own switch,
`disable_created_metrics()`, would change every registry of the process).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from webhook import __version__

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.admissions = Counter(
            "gpu_rdma_injector_admissions",
            "Admission reviews answered, by outcome (mutated, unchanged, skipped, denied, error).",
            ["outcome", "reason"],
            registry=self.registry,
        )
        self.admission_seconds = Histogram(
            "gpu_rdma_injector_admission_duration_seconds",
            "Time spent deciding one admission review, from body received to response built.",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5),
            registry=self.registry,
        )
        self.rejected_requests = Counter(
            "gpu_rdma_injector_rejected_requests",
            "Requests to /mutate answered with a 4xx because they were not a usable review.",
            ["status"],
            registry=self.registry,
        )
        self.policy_reloads = Counter(
            "gpu_rdma_injector_policy_reloads",
            "Policy file reload attempts, by result (applied, rejected).",
            ["result"],
            registry=self.registry,
        )
        self.policy_valid = Gauge(
            "gpu_rdma_injector_policy_last_reload_valid",
            "1 when the last policy file read was valid, 0 when it was rejected.",
            registry=self.registry,
        )
        self.policy_valid.set(1)
        self.certificate_reloads = Counter(
            "gpu_rdma_injector_certificate_reloads",
            "Serving certificate reloads, by result (applied, rejected).",
            ["result"],
            registry=self.registry,
        )
        self.internal_errors = Counter(
            "gpu_rdma_injector_internal_errors",
            "Reviews whose decision failed with a bug, by the answer given (deny, allow; "
            "serve --on-internal-error).",
            ["answer"],
            registry=self.registry,
        )
        self.certificate_expiry = Gauge(
            "gpu_rdma_injector_certificate_expiry_timestamp_seconds",
            "Unix time at which the serving certificate expires.",
            registry=self.registry,
        )
        build = Gauge(
            "gpu_rdma_injector_build_info",
            "Version of the running webhook.",
            ["version"],
            registry=self.registry,
        )
        build.labels(__version__).set(1)

    def add_scrape_values(self, read: Callable[[], Iterable[ScrapeValue]]) -> None:
        """Register values read at scrape time (cache sizes, counts kept by other threads)."""
        self.registry.register(_ScrapeTimeValues(read))

    def render(self) -> bytes:
        return generate_latest(_WithoutCreated(self.registry))


@dataclass(frozen=True, slots=True)
class ScrapeValue:
    name: str
    documentation: str
    value: float
    counter: bool = False


class _ScrapeTimeValues(Collector):
    def __init__(self, read: Callable[[], Iterable[ScrapeValue]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        for item in self._read():
            if item.counter:
                yield CounterMetricFamily(item.name, item.documentation, value=item.value)
            else:
                yield GaugeMetricFamily(item.name, item.documentation, value=item.value)

    def describe(self) -> Iterable[Metric]:
        return []


class _WithoutCreated:
    """A registry as `generate_latest` reads it, without the `*_created` samples."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        for metric in self._registry.collect():
            metric.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield metric
