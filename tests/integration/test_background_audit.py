"""`serve --audit-interval`: the audit as a child process against the API double, its outcome
as metrics shared by every server process, the last result kept when a run fails, one run at a
time, runs that overstay killed."""

from __future__ import annotations

import base64
import fcntl
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from audit_shapes import one_of_each
from kube_api_double import KubeApiDouble
from prometheus_client import CollectorRegistry, generate_latest
from test_audit_cluster import load

from webhook.audit_background import BackgroundAudit, audit_command
from webhook.certs import generate_ca
from webhook.metrics import Metrics
from webhook.reload import PolicyStore
from webhook.serve import ServingFiles, _background_audit
from webhook.server import AppContext
from webhook.settings import ServeSettings, UsageError


@pytest.fixture
def cluster() -> Iterator[KubeApiDouble]:
    with KubeApiDouble() as api:
        load(api, one_of_each(base64.b64encode(generate_ca().cert_pem()).decode()))
        yield api


def auditor(api: KubeApiDouble, tmp_path: Path, **kwargs: float) -> BackgroundAudit:
    command = audit_command(
        sys.executable,
        config=None,
        kubeconfig=api.kubeconfig(tmp_path / "kubeconfig"),
        serving_cert=None,
        webhook_configuration=None,
    )
    return BackgroundAudit(command, kwargs.pop("interval", 0.01), tmp_path / "state", **kwargs)


def scrape(audit: BackgroundAudit) -> str:
    registry = CollectorRegistry()
    registry.register(audit.collector())
    return generate_latest(registry).decode()


def test_a_run_writes_reports_and_exports_findings(cluster: KubeApiDouble, tmp_path: Path) -> None:
    audit = auditor(cluster, tmp_path)
    (tmp_path / "state").mkdir()
    assert 'gpu_rdma_injector_audit_findings{check="duplicate-ip",severity="error"} 0.0' in scrape(
        audit
    )
    audit.tick()
    metrics = scrape(audit)
    assert 'gpu_rdma_injector_audit_findings{check="duplicate-ip",severity="error"} 1.0' in metrics
    assert 'gpu_rdma_injector_audit_findings{check="webhook-config",severity="info"} 1.0' in metrics
    assert 'gpu_rdma_injector_audit_findings{check="no-ip",severity="warning"} 0.0' in metrics
    assert 'gpu_rdma_injector_audit_runs_total{result="success"} 1.0' in metrics
    assert 'gpu_rdma_injector_audit_objects{kind="pods"} 15.0' in metrics
    assert (
        len(cluster.objects("policyreports")) + len(cluster.objects("clusterpolicyreports")) == 13
    )
    assert audit.state()["summary"]["reports"]["created"] == 13


def test_a_failed_run_keeps_the_last_result(cluster: KubeApiDouble, tmp_path: Path) -> None:
    audit = auditor(cluster, tmp_path)
    (tmp_path / "state").mkdir()
    audit.tick()
    before = audit.state()["summary"]
    with cluster.outage(503):
        audit.tick()
    state = audit.state()
    assert state["summary"] == before
    assert state["runs"] == {"success": 1, "failed": 1}
    assert state["lastError"].startswith("cannot list Pods: HTTP 503")
    metrics = scrape(audit)
    assert 'gpu_rdma_injector_audit_findings{check="duplicate-ip",severity="error"} 1.0' in metrics
    assert 'gpu_rdma_injector_audit_runs_total{result="failed"} 1.0' in metrics


def test_one_run_at_a_time_across_processes(cluster: KubeApiDouble, tmp_path: Path) -> None:
    audit = auditor(cluster, tmp_path)
    (tmp_path / "state").mkdir()
    with (tmp_path / "state" / "lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another worker is auditing
        cluster.reset_counters()
        wait = audit.tick()
    assert wait > 0
    assert cluster.count("list") == 0
    assert audit.state() == {}
    # Once it is done (its attempt recorded), the next worker sees it is not due.
    audit.tick()
    other = auditor(cluster, tmp_path, interval=3600)
    cluster.reset_counters()
    assert other.tick() > 3500
    assert cluster.count("list") == 0


def test_a_run_that_overstays_is_stopped(tmp_path: Path) -> None:
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    audit = BackgroundAudit(sleeper, 0.01, tmp_path / "state", timeout=0.5)
    (tmp_path / "state").mkdir()
    started = time.monotonic()
    audit.tick()
    assert time.monotonic() - started < 10
    state = audit.state()
    assert state["runs"] == {"failed": 1}
    assert state["lastError"] == "the audit did not finish within 0 s and was stopped"


def test_stop_ends_a_running_child_at_once(tmp_path: Path) -> None:
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    audit = BackgroundAudit(sleeper, 0.01, tmp_path / "state", first_delay=0.0)
    audit.start()
    deadline = time.monotonic() + 10
    while audit._child is None and time.monotonic() < deadline:
        time.sleep(0.02)
    child = audit._child
    assert child is not None
    started = time.monotonic()
    audit.stop()
    assert time.monotonic() - started < 5
    assert child.poll() is not None
    assert not [t for t in threading.enumerate() if t.name == "background-audit"]


def test_serve_wires_the_audit_into_its_metrics(tmp_path: Path) -> None:
    settings = ServeSettings(
        audit_interval=600, config=tmp_path / "policy.yaml", webhook_configuration="zz-x"
    )
    context = AppContext(policy=PolicyStore.load(None), metrics=Metrics())
    files = ServingFiles(tmp_path / "tls.crt", tmp_path / "tls.key", None)
    audit = _background_audit(settings, files, context)
    assert audit.command[1:5] == ["-m", "webhook", "audit", "--write-reports"]
    assert audit.command[audit.command.index("--serving-cert") + 1] == str(tmp_path / "tls.crt")
    assert audit.command[audit.command.index("--webhook-configuration") + 1] == "zz-x"
    assert audit.first_delay == 30.0
    assert b"gpu_rdma_injector_audit_findings" in context.metrics.render()


def test_the_interval_is_at_least_a_minute_and_needs_a_cluster() -> None:
    with pytest.raises(UsageError, match="drop --no-kube"):
        ServeSettings(audit_interval=600, no_kube=True).check()
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        ServeSettings(audit_interval=59)


def test_what_the_child_prints_is_read_up_to_a_bound(tmp_path: Path) -> None:
    from webhook.audit_background import OUTPUT_LIMIT

    result = '{"byCheck": {}, "summary": {}}'

    def printing(size: int) -> list[str]:
        padding = size - len(result)  # JSON may start with spaces
        return [sys.executable, "-c", f"print(' ' * {padding} + {result!r}, end='')"]

    for size, outcome in ((OUTPUT_LIMIT, "success"), (OUTPUT_LIMIT + 1, "failed")):
        state = tmp_path / str(size)
        state.mkdir()
        audit = BackgroundAudit(printing(size), 0.01, state)
        audit.tick()
        assert audit.state()["runs"] == {outcome: 1}, size
