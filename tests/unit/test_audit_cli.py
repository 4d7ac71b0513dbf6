"""`gpu-rdma-injector audit --from FILE` through the real command line: outputs, exit codes,
filters, colour only on a terminal without NO_COLOR, and bad input as one sentence (exit 2).

Most run `main()` in this process; the colour test runs the console script on a pseudo-terminal.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pty
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from audit_shapes import RDMA, dump, nad, pod, sriov_rdma_config, whereabouts
from conftest import FIXTURES
from policyreport_crds import validator

from webhook.__main__ import main
from webhook.audit_dump import DumpError, read_dump
from webhook.findings import CHECKS

ONE_OF_EACH = FIXTURES / "audit" / "one-of-each.yaml"


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def run(*args: str, stdin: str | None = None) -> Ran:
    """The command in this process (as the console script runs it), its output captured."""
    out, err = io.StringIO(), io.StringIO()
    previous = sys.stdin
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode()))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(["audit", *args])
            except SystemExit as exit_:  # argparse's own usage errors
                code = int(exit_.code or 0)
    finally:
        sys.stdin = previous
    return Ran(code, out.getvalue(), err.getvalue())


def test_the_table_groups_findings_by_severity_and_exits_1() -> None:
    result = run("--from", str(ONE_OF_EACH))
    assert result.returncode == 1, result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert out.index("ERRORS (10)") < out.index("WARNINGS (2)") < out.index("INFO (1)")
    for check in CHECKS:
        assert f"\n{check} " in out, check
    assert "\033[" not in out  # not a terminal: no colour
    assert out.rstrip().splitlines()[-1].startswith("10 errors, 2 warnings, 1 info. Read: 15 Pods")


def test_json_output() -> None:
    result = run("--from", str(ONE_OF_EACH), "-o", "json")
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert document["summary"] == {"error": 10, "warning": 2, "info": 1}
    assert len(document["findings"]) == 13
    first = document["findings"][0]
    assert set(first) == {"check", "severity", "object", "message", "fix"}
    assert set(first["object"]) == {"kind", "namespace", "name", "uid"}
    assert document["objects"]["pods"] == 15
    assert document["skipped"] == []


def test_policyreport_output_is_valid_under_the_crds() -> None:
    result = run("--from", str(ONE_OF_EACH), "-o", "policyreport")
    assert result.returncode == 1
    documents = list(yaml.safe_load_all(result.stdout))
    assert len(documents) == 13  # one object per finding in this dump
    for document in documents:
        validator(document["kind"]).validate(document)


def test_summary_output_is_one_line() -> None:
    result = run("--from", str(ONE_OF_EACH), "-o", "summary")
    assert result.stdout.count("\n") == 1
    assert json.loads(result.stdout)["byCheck"]["webhook-config"] == {"info": 1}


def test_check_and_namespace_filter_and_set_the_exit_code() -> None:
    only = run("--from", str(ONE_OF_EACH), "--check", "webhook-config,not-opted-in", "-o", "json")
    assert only.returncode == 0  # a warning and an info: no error
    assert {f["check"] for f in json.loads(only.stdout)["findings"]} == {
        "webhook-config",
        "not-opted-in",
    }
    repeated = run(
        "--from", str(ONE_OF_EACH), "--check", "no-ip", "--check", "duplicate-ip", "-o", "json"
    )
    assert repeated.returncode == 1
    assert {f["check"] for f in json.loads(repeated.stdout)["findings"]} == {
        "no-ip",
        "duplicate-ip",
    }
    team_b = run("--from", str(ONE_OF_EACH), "-n", "team-b", "-o", "json")
    assert team_b.returncode == 0
    assert [f["object"]["name"] for f in json.loads(team_b.stdout)["findings"]] == ["team-b"]


def test_a_clean_dump_exits_0(tmp_path: Path) -> None:
    rdma = nad("sriov-rdma-net", sriov_rdma_config("x", whereabouts("10.0.0.0/24")), resource=RDMA)
    path = tmp_path / "clean.yaml"
    path.write_text(
        dump(rdma, pod("ok", networks="sriov-rdma-net", units={RDMA: 1}, phase="Pending"))
    )
    result = run("--from", str(path))
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith("0 errors, 0 warnings, 0 info. Read: 1 Pod, 1 NAD") or (
        "0 errors, 0 warnings, 0 info" in result.stdout
    )
    assert (
        "Skipped webhook-config: the input holds no MutatingWebhookConfigurations." in result.stdout
    )


def test_stdin_and_json_dumps() -> None:
    text = json.dumps(yaml.safe_load(ONE_OF_EACH.read_text()))
    result = run("--from", "-", "-o", "summary", stdin=text)
    assert result.returncode == 1
    assert json.loads(result.stdout)["summary"]["error"] == 10


def _on_a_terminal(env: dict[str, str]) -> str:
    leader, follower = pty.openpty()
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "webhook",
            "audit",
            "--from",
            str(ONE_OF_EACH),
            "--check",
            "webhook-config",
        ],
        stdout=follower,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **env},
    ) as process:
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        process.wait(timeout=60)
    os.close(leader)
    return b"".join(chunks).decode()


def test_colour_only_on_a_terminal_without_no_color() -> None:
    environment = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    coloured = _on_a_terminal({**environment})
    assert "\033[1;36mINFO (1)\033[0m" in coloured
    plain = _on_a_terminal({"NO_COLOR": "1"})
    assert "INFO (1)" in plain
    assert "\033[" not in plain


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("items: [\n", "is neither YAML nor JSON at line 2"),
        ("- 1\n- 2\n", "document 1 is not a Kubernetes object or List"),
        ("just text\n", "document 1 is not a Kubernetes object or List"),
        (
            "apiVersion: v1\nkind: List\nitems: [3]\n",
            "document 1, item 1 is not a Kubernetes object",
        ),
        ("apiVersion: v1\nkind: List\nitems: {}\n", "the List's items are not a list"),
        ("kind: Pod\nmetadata: x\n", "document 1: the Pod has no metadata"),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
            "holds no Pods, NetworkAttachmentDefinitions",
        ),
        ("", "holds no Pods"),
    ],
)
def test_a_malformed_dump_is_one_sentence_and_exit_2(
    tmp_path: Path, content: str, expected: str
) -> None:
    path = tmp_path / "dump.yaml"
    path.write_text(content)
    result = run("--from", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_unreadable_inputs_are_one_sentence(tmp_path: Path) -> None:
    missing = run("--from", str(tmp_path / "nope.yaml"))
    assert (missing.returncode, missing.stderr.count("\n")) == (2, 1)
    assert "cannot read" in missing.stderr
    binary = tmp_path / "dump.bin"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    result = run("--from", str(binary))
    assert result.returncode == 2
    assert "is not UTF-8 text" in result.stderr
    directory = run("--from", str(tmp_path))
    assert directory.returncode == 2
    assert "cannot read" in directory.stderr


def test_usage_errors_are_one_sentence(tmp_path: Path) -> None:
    unknown = run("--from", str(ONE_OF_EACH), "--check", "half-configure")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith(
        "error: --check 'half-configure' is not a check; the checks are "
    )
    both = run("--from", str(ONE_OF_EACH), "--kubeconfig", str(tmp_path / "k"))
    assert both.stderr == "error: give --from or --kubeconfig, not both\n"
    bad_policy = tmp_path / "p.yaml"
    bad_policy.write_text("mode: loud\n")
    policy = run("--from", str(ONE_OF_EACH), "--config", str(bad_policy))
    assert policy.returncode == 2
    assert "mode: Input should be 'enforce' or 'warn'" in policy.stderr
    label = run("--from", str(ONE_OF_EACH), "--opt-in-label", "enabled")
    assert label.returncode == 2
    assert "--opt-in-label 'enabled'" in label.stderr
    writes = run("--from", str(ONE_OF_EACH), "--write-reports")
    assert writes.stderr == "error: --write-reports writes to a cluster; it cannot go with --from\n"
    # The reports are the whole audit's: a partial one would delete the others' reports.
    partial = run("--kubeconfig", str(tmp_path / "k"), "--write-reports", "-n", "team-a")
    assert partial.stderr == (
        "error: --write-reports replaces the whole audit's reports; it cannot go with "
        "--namespace or --check\n"
    )
    assert run("--write-reports", "--check", "no-ip").returncode == 2


def test_the_dump_bounds_hold_at_the_limit(tmp_path: Path) -> None:
    text = ONE_OF_EACH.read_text()
    path = tmp_path / "dump.yaml"
    path.write_text(text)
    size = len(text.encode())
    assert read_dump(str(path), max_bytes=size).pods is not None
    with pytest.raises(DumpError, match="larger than 0 MiB"):
        read_dump(str(path), max_bytes=size - 1)
    objects = len(yaml.safe_load(text)["items"])
    assert read_dump(str(path), max_objects=objects).pods is not None
    with pytest.raises(DumpError, match=f"holds more than {objects - 1} objects"):
        read_dump(str(path), max_objects=objects - 1)


def test_typed_lists_and_several_documents(tmp_path: Path) -> None:
    pods = {
        "apiVersion": "v1",
        "kind": "PodList",
        "items": [{k: v for k, v in pod("a").items() if k != "kind"}],
    }
    nads = nad("sriov-rdma-net", sriov_rdma_config("x", whereabouts("10.0.0.0/24")), resource=RDMA)
    path = tmp_path / "dump.yaml"
    path.write_text(yaml.safe_dump(pods) + "---\n" + yaml.safe_dump(nads) + "---\n")
    inventory = read_dump(str(path))
    assert inventory.pods is not None
    assert inventory.pods[0]["kind"] == "Pod"
    assert inventory.nads is not None
    assert inventory.nodes is None


def test_a_list_is_read_item_by_item() -> None:
    """The first item is handed out before the parser reaches the end of the List: a broken
    tail fails the read only once the items before it are read."""
    from webhook.audit_dump import _objects

    good = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [pod("a"), pod("b")]})
    broken = good.replace("kind: List", "kind: [List")
    read = _objects("dump", io.StringIO(broken))
    where, first = next(read)
    assert (where, first["metadata"]["name"]) == ("'dump', document 1, item 1", "a")
    with pytest.raises(DumpError, match="is neither YAML nor JSON"):
        list(read)


def test_the_byte_bound_holds_for_stdin_too(monkeypatch: pytest.MonkeyPatch) -> None:
    text = ONE_OF_EACH.read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text)))
    assert read_dump("-", max_bytes=len(text)).pods is not None
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text)))
    with pytest.raises(DumpError, match="'-' is larger than"):
        read_dump("-", max_bytes=len(text) - 1)


def test_the_readme_shows_the_audit_as_it_runs() -> None:
    readme = (FIXTURES.parent.parent / "README.md").read_text()
    command = "$ gpu-rdma-injector audit --from tests/fixtures/audit/one-of-each.yaml\n"
    shown = readme.split(command, 1)[1].split("$ echo $?\n", 1)[0]
    result = run("--from", str(ONE_OF_EACH))
    assert result.stdout == shown
