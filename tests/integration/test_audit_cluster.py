"""The audit of a live cluster, through the real `kubernetes` client against the API double:
paged lists, the progress line, what a 403 or an unreachable server does, the bounds, and the
PolicyReports written, compared, replaced and deleted."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from audit_shapes import one_of_each, pod
from kube_api_double import (
    CLUSTER_POLICY_REPORTS,
    DEFAULT_RESOURCES,
    POLICY_REPORTS,
    KubeApiDouble,
)
from policyreport_crds import validator

from webhook.__main__ import main
from webhook.audit import audit
from webhook.audit_cluster import ClusterReadError, ReadOptions, read_cluster
from webhook.audit_command import ProgressLine
from webhook.certs import generate_ca
from webhook.policy import default_policy
from webhook.policyreport import reports
from webhook.report_writer import ReportWriteError, write_reports

EXPECTED = {
    ("half-configured", "half-configured"),
    ("unknown-nad", "typo-in-name"),
    ("namespace-not-allowed", "other-team-net"),
    ("nad-no-resource", "sriov-no-resource"),
    ("nad-bad-config", "broken-config"),
    ("ipam-host-local", "hostlocal-net"),
    ("ipam-pool-small", "small-pool-net"),
    ("no-ip", "no-ip"),
    ("no-rdma-device", "no-rdma"),
    ("duplicate-ip", "dup-b"),
    ("vf-exhausted", "waiting-for-vf"),
    ("not-opted-in", "team-b"),
    ("webhook-config", "zz-gpu-rdma-injector"),
}


def load(api: KubeApiDouble, objects: list[dict[str, Any]]) -> None:
    """Create the objects as a cluster would hold them: namespaces first; an event names the
    uid its pod got from the server."""
    uids: dict[tuple[str, str], str] = {}
    for obj in sorted(objects, key=lambda o: o["kind"] != "Namespace"):
        if obj["kind"] == "Event":
            subject = obj["involvedObject"]
            subject["uid"] = uids[(subject["namespace"], subject["name"])]
        created = api.create(fresh(obj))
        if obj["kind"] == "Pod":
            metadata = created["metadata"]
            uids[(metadata["namespace"], metadata["name"])] = metadata["uid"]
            time.sleep(0.001)


def fresh(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as a client sends it to be created: without what the server sets."""
    for server_set in ("resourceVersion", "uid", "creationTimestamp", "generation"):
        obj["metadata"].pop(server_set, None)
    return obj


@pytest.fixture
def cluster() -> Iterator[KubeApiDouble]:
    with KubeApiDouble() as api:
        load(api, one_of_each(base64.b64encode(generate_ca().cert_pem()).decode()))
        yield api


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["audit", *args])
    return code, out.getvalue(), err.getvalue()


def test_the_cli_audits_a_live_cluster_as_it_audits_the_dump(
    cluster: KubeApiDouble, tmp_path: Path
) -> None:
    code, out, err = run("--kubeconfig", str(cluster.kubeconfig(tmp_path / "k")), "-o", "json")
    assert (code, err) == (1, "")
    findings = json.loads(out)["findings"]
    assert {(f["check"], f["object"]["name"]) for f in findings} == EXPECTED
    # Read only: lists, nothing else.
    assert set(cluster.requests) - {"list"} <= {"create"}  # the fixture's own creates
    assert all(r.verb in ("list", "create") for r in cluster.request_log)
    assert not [r for r in cluster.request_log if r.verb == "list" and r.code != 200]


def test_lists_are_paged_and_reduced_page_by_page(cluster: KubeApiDouble) -> None:
    seen: list[tuple[str, int, int]] = []
    cluster.reset_counters()
    with contextlib.closing(cluster.api_client()) as client:
        inventory = read_cluster(client, ReadOptions(page_size=4), lambda *p: seen.append(p))
    assert inventory.pods is not None
    assert len(inventory.pods) == 15
    assert cluster.count("list", "pods") == 4  # 4 + 4 + 4 + 3
    pod_pages = [(pages, objects) for what, pages, objects in seen if what == "Pods"]
    assert pod_pages == [(1, 4), (2, 8), (3, 12), (4, 15)]
    assert seen[-1][2] == sum(inventory.counts().values())
    # Each pod is kept as the checks read it, not whole.
    assert set(inventory.pods[0]["spec"]) == {"nodeName", "containers", "initContainers"}
    assert "volumes" not in inventory.pods[0]["spec"]
    queries = [r.query for r in cluster.request_log if r.resource == "pods"]
    assert all(
        q["fieldSelector"] == "status.phase!=Failed,status.phase!=Succeeded" for q in queries
    )
    events = [r.query for r in cluster.request_log if r.resource == "events"]
    assert events[0]["fieldSelector"] == "reason=FailedScheduling"


def test_finished_pods_are_not_read(cluster: KubeApiDouble) -> None:
    cluster.create(fresh(pod("done", phase="Succeeded")))
    with contextlib.closing(cluster.api_client()) as client:
        inventory = read_cluster(client)
    assert inventory.pods is not None
    assert "done" not in {p["metadata"]["name"] for p in inventory.pods}


def test_the_progress_line_shows_on_a_terminal_past_one_page() -> None:
    stream = io.StringIO()
    line = ProgressLine(stream, interactive=True)
    line("Pods", 1, 500)
    assert stream.getvalue() == ""  # one page: a small cluster, no line
    line("Pods", 2, 1000)
    line("Pods", 3, 1234)
    line.done()
    assert stream.getvalue() == (
        "\r\033[Kreading Pods: page 2, 1,000 objects read"
        "\r\033[Kreading Pods: page 3, 1,234 objects read\r\033[K"
    )
    quiet = io.StringIO()
    ProgressLine(quiet, interactive=False)("Pods", 5, 2500)
    assert quiet.getvalue() == ""


def test_a_forbidden_list_skips_its_checks_and_says_so(
    cluster: KubeApiDouble, tmp_path: Path
) -> None:
    cluster.forbidden |= {"nodes", "mutatingwebhookconfigurations"}
    code, out, _ = run("--kubeconfig", str(cluster.kubeconfig(tmp_path / "k")))
    assert code == 1
    assert "Skipped webhook-config: the input holds no MutatingWebhookConfigurations." in out
    assert "Note: not allowed to list Nodes (HTTP 403 Forbidden: nodes is forbidden" in out
    # Events still show the pending pod: vf-exhausted is judged from them alone.
    assert "vf-exhausted" in out


def test_forbidden_pods_stop_the_audit(cluster: KubeApiDouble, tmp_path: Path) -> None:
    cluster.forbidden.add("pods")
    code, out, err = run("--kubeconfig", str(cluster.kubeconfig(tmp_path / "k")))
    assert (code, out) == (2, "")
    assert err.startswith("error: cannot list Pods: HTTP 403 Forbidden")
    assert err.count("\n") == 1


def test_a_passing_failure_is_retried(cluster: KubeApiDouble) -> None:
    cluster.fail_next(2, status=500, verb="list")
    with contextlib.closing(cluster.api_client()) as client:
        inventory = read_cluster(client, ReadOptions(retry_pause=0.01))
    assert inventory.pods is not None
    assert len(inventory.pods) == 15


def test_a_cluster_that_cannot_be_reached_is_one_sentence(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    kubeconfig = tmp_path / "k"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    started = time.monotonic()
    code, out, err = run("--kubeconfig", str(kubeconfig))
    assert (code, out) == (2, "")
    assert err.startswith("error: cannot list Pods: ")
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert time.monotonic() - started < 30
    missing = run("--kubeconfig", str(tmp_path / "absent"))
    assert missing[0] == 2
    assert "Cannot load the kubeconfig file" in missing[2]


def test_the_object_bound_holds_at_the_limit(cluster: KubeApiDouble) -> None:
    with contextlib.closing(cluster.api_client()) as client:
        assert len(read_cluster(client, ReadOptions(max_objects=15, page_size=4)).pods or ()) == 15
        with pytest.raises(ClusterReadError, match="more than 14 Pods, the audit's bound"):
            read_cluster(client, ReadOptions(max_objects=14, page_size=4))


def test_namespace_reads_only_that_namespace(cluster: KubeApiDouble, tmp_path: Path) -> None:
    cluster.reset_counters()
    code, out, _ = run(
        "--kubeconfig", str(cluster.kubeconfig(tmp_path / "k")), "-n", "team-b", "-o", "json"
    )
    assert code == 0
    assert [f["object"]["name"] for f in json.loads(out)["findings"]] == ["team-b"]
    namespaced = [
        r
        for r in cluster.request_log
        if r.resource in ("pods", "events", "network-attachment-definitions")
    ]
    assert namespaced
    assert all(r.namespace == "team-b" for r in namespaced)


def _written(api: KubeApiDouble) -> list[dict[str, Any]]:
    return api.objects("policyreports") + api.objects("clusterpolicyreports")


def test_reports_are_written_then_only_what_changed(cluster: KubeApiDouble) -> None:
    with contextlib.closing(cluster.api_client()) as client:
        inventory = read_cluster(client)
        found = reports(audit(inventory, default_policy()).findings, time.time())
        first = write_reports(client, found)
        assert (first.created, first.updated, first.deleted, first.errors) == (13, 0, 0, [])
        stored = _written(cluster)
        assert len(stored) == 13
        for report in stored:
            validator(report["kind"]).validate(
                {k: v for k, v in report.items() if k != "metadata"} | {"metadata": {}}
            )
        # The same findings later: nothing is written.
        cluster.reset_counters()
        again = reports(audit(read_cluster(client), default_policy()).findings, time.time() + 60)
        second = write_reports(client, again)
        assert (second.created, second.updated, second.deleted, second.unchanged) == (0, 0, 0, 13)
        assert cluster.count("create") + cluster.count("update") + cluster.count("delete") == 0
        # A problem fixed: its report goes; a problem changed: its report is replaced.
        cluster.delete("pods", "dup-b", "team-a")
        extra = cluster.create(
            fresh(pod("pool-4", networks="small-pool-net", gpus=0, phase="Pending"))
        )
        assert extra
        third = write_reports(
            client, reports(audit(read_cluster(client), default_policy()).findings, time.time())
        )
        assert (third.created, third.updated, third.deleted) == (0, 1, 1)
        assert len(_written(cluster)) == 12
        # When the findings were capped, an absent report may belong to a finding not kept.
        fourth = write_reports(client, [], delete_stale=False)
        assert (fourth.deleted, len(_written(cluster))) == (0, 12)


def test_reports_need_their_crds(tmp_path: Path) -> None:
    without = [r for r in DEFAULT_RESOURCES if r not in (POLICY_REPORTS, CLUSTER_POLICY_REPORTS)]
    with KubeApiDouble(resources=without) as api:
        load(api, one_of_each(base64.b64encode(generate_ca().cert_pem()).decode()))
        with (
            contextlib.closing(api.api_client()) as client,
            pytest.raises(ReportWriteError, match="the PolicyReport CRDs"),
        ):
            write_reports(client, [])
        code, out, err = run(
            "--kubeconfig", str(api.kubeconfig(tmp_path / "k")), "--write-reports", "-o", "summary"
        )
    assert code == 2
    assert json.loads(out)["reports"]["error"].startswith("the PolicyReport CRDs")
    assert err.startswith("error: the PolicyReport CRDs")


def test_write_reports_from_the_cli(cluster: KubeApiDouble, tmp_path: Path) -> None:
    code, out, _ = run("--kubeconfig", str(cluster.kubeconfig(tmp_path / "k")), "--write-reports")
    assert code == 1
    assert (
        out.rstrip().splitlines()[-1]
        == "PolicyReports: 13 created, 0 updated, 0 deleted, 0 unchanged."
    )
    assert len(_written(cluster)) == 13
    assert sys.stdout is not None


def test_the_report_bound_holds_at_the_limit(cluster: KubeApiDouble) -> None:
    with contextlib.closing(cluster.api_client()) as client:
        found = reports(audit(read_cluster(client), default_policy()).findings, time.time())
        assert len(found) == 13
        at_limit = write_reports(client, found, max_reports=13)
        assert (at_limit.created, at_limit.unchanged) == (13, 0)
        over = write_reports(client, found[1:], max_reports=11)
        # 11 of the 12 written (all unchanged), none deleted: a cut list is not the whole truth.
        assert (over.unchanged, over.deleted, len(_written(cluster))) == (11, 0, 13)
