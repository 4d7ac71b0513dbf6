"""webhook.metrics: an explicit registry per app, and no process-wide state changed."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest

from webhook.metrics import Metrics, ScrapeValue


def test_the_app_metrics_have_no_created_series() -> None:
    metrics = Metrics()
    metrics.admissions.labels("mutated", "injected").inc()
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
