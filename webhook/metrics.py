"""Prometheus metrics (edge layer) on an explicit registry, one per app, no global state.

The `*_created` series prometheus_client adds to every counter and histogram only double the
scrape size; they are left out when this registry is rendered (prometheus_client's own switch,
`disable_created_metrics()`, would change every registry of the process).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from webhook import __version__

_go_float: Callable[[float], str] = floatToGoString  # a bucket bound as the page spells it

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.admissions = AdmissionCounts()
        self.registry.register(self.admissions)
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


ADMISSION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5)


class AdmissionCounts(Collector):
    """Admissions by outcome and reason, and a histogram of their durations: counted with plain
    integers by the event loop's thread (the only one answering reviews, and the one /metrics is
    rendered on), so a review pays no lock; exposed exactly as a prometheus_client Counter and
    Histogram with these names would be."""

    def __init__(self, buckets: tuple[float, ...] = ADMISSION_BUCKETS) -> None:
        self.bounds = buckets
        self.by_reason: dict[tuple[str, str], int] = {}
        self.bucket_counts = [0] * (len(buckets) + 1)  # the last one: above every bound
        self.seconds = 0.0

    def add(self, outcome: str, reason: str, seconds: float) -> None:
        key = (outcome, reason)
        self.by_reason[key] = self.by_reason.get(key, 0) + 1
        self.bucket_counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.seconds += seconds

    def collect(self) -> Iterable[Metric]:
        admissions = CounterMetricFamily(
            "gpu_rdma_injector_admissions",
            "Admission reviews answered, by outcome (mutated, unchanged, skipped, denied, error).",
            labels=["outcome", "reason"],
        )
        for (outcome, reason), count in self.by_reason.items():
            admissions.add_metric([outcome, reason], count)
        yield admissions
        cumulative, buckets = 0, []
        for bound, count in zip((*self.bounds, math.inf), self.bucket_counts, strict=True):
            cumulative += count
            buckets.append((_go_float(bound), cumulative))
        yield HistogramMetricFamily(
            "gpu_rdma_injector_admission_duration_seconds",
            "Time spent deciding one admission review, from body received to response built.",
            buckets=buckets,
            sum_value=self.seconds,
        )

    def describe(self) -> Iterable[Metric]:
        return []


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
