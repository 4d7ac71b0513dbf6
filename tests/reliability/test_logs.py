"""What the webhook writes to its log: JSON lines only, and nothing of the pod's secrets.

The real `serve` process runs at --log-level debug (the most talkative setting) with its
certificate files behind a `..data` symlink, as a mounted Secret is, and gets:

- reviews whose pods carry `SECRET_TOKEN=hunter2-<random>` in env (also in an UPDATE's
  oldObject) and marker strings in annotation values: mutated, denied, skipped, and one that
  makes the decision crash (an internal-error answer logs a traceback);
- bodies that are not reviews and carry the secret too: a bare Pod, a truncated review, a wrong
  content type, an oversized body, a client that hangs up half-way;
- a policy reload (applied, then rejected), a certificate rotation (applied, then a mismatched
  key rejected), and TLS junk (plain HTTP, TLS 1.1) on the port; then SIGTERM.

The whole output must be JSON objects, one per line, and must contain neither the secret, nor
the markers, nor any private key (PEM header or body), nor the pod spec (image, managedFields,
service-account volume).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import time
import uuid
from pathlib import Path

import httpx
import pytest
from reliability_support import (
    JSON_HEADERS,
    capture,
    open_tls,
    request_head,
    tls_context,
    wait_for,
)
from serverproc import ServerProcess

from webhook.certs import Issued, generate_bundle, generate_ca, generate_serving, write_file

SECRET = f"hunter2-{uuid.uuid4().hex}"
MARKER = f"marker-{uuid.uuid4().hex[:12]}"
NETWORKS = "k8s.v1.cni.cncf.io/networks"


def _pod_review(
    uid: str, annotations: dict[str, str], name: str = "create-gpu-pod-no-annotations.json"
) -> bytes:
    review = capture(name)
    review["request"]["uid"] = uid
    for obj in (review["request"]["object"], review["request"].get("oldObject")):
        if obj:
            obj["spec"]["containers"][0]["env"] = [{"name": "SECRET_TOKEN", "value": SECRET}]
            obj["metadata"]["annotations"] = {**annotations, "example.com/note": f"{MARKER}-note"}
    return json.dumps(review).encode()


class MountedTls:
    """Certificate files behind a `..data` symlink swapped atomically, as kubelet does."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca = generate_ca()
        self.version = 0
        self.keys: list[bytes] = []
        root.mkdir()
        (root / "ca.crt").write_bytes(self.ca.cert_pem())
        self.publish(generate_serving(self.ca, ["localhost"]))
        for name in ("tls.crt", "tls.key"):
            (root / name).symlink_to(Path("..data") / name)

    def publish(self, serving: Issued, key_from: Issued | None = None) -> None:
        self.version += 1
        version = self.root / f"v{self.version}"
        version.mkdir()
        key = (key_from or serving).key_pem()
        self.keys.append(key)
        write_file(version / "tls.crt", serving.cert_pem(), private=False)
        write_file(version / "tls.key", key, private=True)
        link = self.root / "..data_tmp"
        link.symlink_to(version.name)
        os.replace(link, self.root / "..data")


def _post(server: ServerProcess, body: bytes, headers: dict[str, str] | None = None) -> int:
    with httpx.Client(base_url=server.url, verify=tls_context(server), timeout=10) as client:
        return client.post("/mutate", content=body, headers=headers or JSON_HEADERS).status_code


@pytest.mark.timeout(120)
def test_logs_are_json_lines_without_secrets_keys_or_pod_specs(tmp_path: Path) -> None:
    tls = MountedTls(tmp_path / "tls")
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "networks: [{name: sriov-rdma-net, resourceName: openshift.io/mellanoxnics}]\n"
    )
    server = ServerProcess(
        [
            "--config",
            str(policy),
            "--tls-cert-file",
            str(tls.root / "tls.crt"),
            "--tls-key-file",
            str(tls.root / "tls.key"),
            "--reload-interval",
            "0.2",
            "--log-level",
            "debug",
        ],
        tls.root / "ca.crt",
        tmp_path,
    )
    try:
        server.wait_ready()
        expected = {
            "mutated": _pod_review("log-mutated", {}),
            "denied-annotation": _pod_review("log-denied", {NETWORKS: f"bad/{MARKER}/x"}),
            "denied-container": _pod_review(
                "log-container", {"gpu-rdma-injector/container": MARKER}
            ),
            "opted-out": _pod_review("log-opted-out", {"gpu-rdma-injector/inject": "false"}),
            "update": _pod_review("log-update", {}, name="update-label.json"),
        }
        for body in expected.values():
            assert _post(server, body) == 200
        crash = json.loads(_pod_review("log-crash", {}))
        limits = crash["request"]["object"]["spec"]["containers"][0]["resources"]["limits"]
        limits["openshift.io/mellanoxnics"] = "\u00b2"  # crashes the decision today (see test_fuzz)
        assert _post(server, json.dumps(crash).encode()) == 200

        pod_only = json.loads(expected["mutated"])["request"]["object"]
        assert _post(server, json.dumps(pod_only).encode()) == 400
        cut = expected["mutated"].index(SECRET.encode()) + len(SECRET) + 3  # secret included
        assert _post(server, expected["mutated"][:cut]) == 400
        assert _post(server, expected["mutated"], {"content-type": "text/plain"}) == 415
        oversized = expected["mutated"] + b" " * (3 * 1024 * 1024)
        assert _post(server, oversized) == 413
        hang_up = open_tls(server)
        hang_up.sendall(request_head(len(expected["mutated"])) + expected["mutated"][:cut])
        hang_up.close()

        policy.write_text("networks: [{name: rail-1, resourceName: example.com/rail_1}]\n")
        wait_for(lambda: "policy reloaded" in server.log(), 10, "the policy reload")
        policy.write_text("networks: [{name: NOT VALID}]\n")  # quoted in the error: fine
        wait_for(lambda: "policy reload rejected" in server.log(), 10, "the rejected policy")

        tls.publish(generate_serving(tls.ca, ["localhost"]))
        wait_for(lambda: "serving certificate reloaded" in server.log(), 10, "the cert reload")
        tls.publish(generate_serving(tls.ca, ["localhost"]), key_from=generate_ca())
        wait_for(
            lambda: "certificate reload rejected" in server.log(), 10, "the rejected certificate"
        )

        with socket.create_connection(("127.0.0.1", server.port)) as plain:
            plain.sendall(b"POST /mutate HTTP/1.1\r\nHost: x\r\n\r\n" + SECRET.encode())
            time.sleep(0.2)
        old = ssl.create_default_context(cafile=str(server.ca_file))
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        old.minimum_version = ssl.TLSVersion.TLSv1_2
        old.set_ciphers("AES128-SHA")  # no forward secrecy: the server must refuse it
        with (
            pytest.raises(ssl.SSLError),
            socket.create_connection(("127.0.0.1", server.port)) as raw,
        ):
            old.wrap_socket(raw, server_hostname="localhost")
        time.sleep(0.5)
    finally:
        exit_code = server.stop()
    log = server.log()

    assert exit_code == 0, log
    lines = log.splitlines()
    assert lines, "the server logged nothing"
    for number, line in enumerate(lines, start=1):
        try:
            entry = json.loads(line)
        except ValueError:
            pytest.fail(f"log line {number} is not JSON: {line[:300]!r}")
        assert isinstance(entry, dict), line
        assert {"time", "level", "logger", "msg"} <= set(entry), line

    assert SECRET not in log
    assert "hunter2" not in log
    assert MARKER not in log
    for key in tls.keys:
        assert "PRIVATE KEY" not in log
        for body_line in key.decode().splitlines()[1:-1]:
            assert body_line not in log, "a line of a private key's PEM body is in the log"
    for spec_fragment in ("nvcr.io/nvidia/pytorch", "managedFields", "kube-api-access", "sleep"):
        assert spec_fragment not in log, spec_fragment

    entries = [json.loads(line) for line in lines]
    admitted = {entry.get("uid"): entry for entry in entries if entry["msg"] == "admission"}
    assert {"log-mutated", "log-denied", "log-container", "log-opted-out", "log-update"} <= set(
        admitted
    ), admitted.keys()
    assert admitted["log-denied"]["outcome"] == "denied"
    messages = {entry["msg"] for entry in entries}
    assert {"rejected request", "policy reloaded", "serving certificate reloaded"} <= messages


@pytest.mark.timeout(60)
def test_cluster_mode_logs_are_json_lines_too(tmp_path: Path) -> None:
    from tests.kube_api_double import KubeApiDouble

    with KubeApiDouble() as api:
        api.ensure_namespace("team-a")
        paths = generate_bundle(tmp_path / "tls", ["localhost"])
        server = ServerProcess.with_certificate(
            paths,
            tmp_path,
            "--kubeconfig",
            str(api.kubeconfig(tmp_path / "kubeconfig")),
            no_kube=False,
        )
        try:
            server.wait_ready()
            with api.outage(status=500):  # the informers log their failed reconnections
                wait_for(lambda: api.count("watch") >= 4, 10, "reconnection attempts")
        finally:
            assert server.stop() == 0
    lines = server.log().splitlines()
    not_json = [line for line in lines if not line.startswith("{")]
    assert not_json == [], f"{len(not_json)} of {len(lines)} lines are not JSON: {not_json[:3]}"
    assert any("500" in line for line in lines), "the watch failures were not logged at all"
