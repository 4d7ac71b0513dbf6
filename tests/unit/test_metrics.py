"""webhook.metrics: an explicit registry per app, and no process-wide state changed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from webhook.metrics import ADMISSION_BUCKETS, AdmissionCounts, Metrics, ScrapeValue


def test_the_app_metrics_have_no_created_series() -> None:
    metrics = Metrics()
    metrics.admissions.add("mutated", "injected", 0.0003)
    text = metrics.render().decode()
    assert 'gpu_rdma_injector_admissions_total{outcome="mutated",reason="injected"} 1.0' in text
    assert "_created" not in text


def test_making_metrics_leaves_other_registries_alone() -> None:
    Metrics()
    other = CollectorRegistry()
    Counter("someone_elses", "A counter of another library.", registry=other).inc()
    assert "someone_elses_created" in generate_latest(other).decode()


def test_scrape_values_are_read_at_scrape_time() -> None:
    metrics = Metrics()
    count = [1]
    metrics.add_scrape_values(lambda: [ScrapeValue("x_open", "Open things.", count[0])])
    assert "x_open 1.0" in metrics.render().decode()
    count[0] = 5
    assert "x_open 5.0" in metrics.render().decode()


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["mutated", "denied", "skipped"]),
            st.sampled_from(["injected", "unknown-network", "not-a-pod"]),
            st.one_of(
                st.sampled_from([0.0001, 0.00025, 0.5, 0.0]),
                st.floats(0, 2, allow_nan=False),
            ),
        ),
        max_size=30,
    )
)
def test_admission_counts_read_as_prometheus_clients_counter_and_histogram(
    observations: list[tuple[str, str, float]],
) -> None:
    """The admissions are counted without prometheus_client's locks; the page must be the one
    its Counter and Histogram of the same names would give."""
    ours = AdmissionCounts()
    registry = CollectorRegistry()
    counter = Counter(
        "gpu_rdma_injector_admissions",
        "Admission reviews answered, by outcome (mutated, unchanged, skipped, denied, error).",
        ["outcome", "reason"],
        registry=registry,
    )
    histogram = Histogram(
        "gpu_rdma_injector_admission_duration_seconds",
        "Time spent deciding one admission review, from body received to response built.",
        buckets=ADMISSION_BUCKETS,
        registry=registry,
    )
    for outcome, reason, seconds in observations:
        ours.add(outcome, reason, seconds)
        counter.labels(outcome, reason).inc()
        histogram.observe(seconds)
    mine = CollectorRegistry()
    mine.register(ours)

    def page(reg: CollectorRegistry) -> list[str]:
        text = generate_latest(reg).decode()
        return sorted(line for line in text.splitlines() if "_created" not in line)

    assert page(mine) == page(registry)
