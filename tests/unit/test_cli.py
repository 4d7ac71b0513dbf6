"""The command line: mutate previews, certs generate, version, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import FIXTURES, validate_pod
from cryptography import x509

from webhook import __version__
from webhook.__main__ import main

REAL = FIXTURES / "admission-reviews"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhook", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out == f"gpu-rdma-injector {__version__}\n"


def test_mutate_review_prints_patch_and_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mutate", str(REAL / "create-gpu-pod-no-annotations.json")]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == [
        {
            "op": "add",
            "path": "/metadata/annotations",
            "value": {"k8s.v1.cni.cncf.io/networks": "sriov-rdma-net"},
        },
        {
            "op": "add",
            "path": "/spec/containers/0/resources/limits/openshift.io~1mellanoxnics",
            "value": "1",
        },
        {
            "op": "add",
            "path": "/spec/containers/0/resources/requests/openshift.io~1mellanoxnics",
            "value": "1",
        },
    ]
    assert err.splitlines() == [
        "warning: gpu-rdma-injector: added networks sriov-rdma-net (GPU pod)",
        "warning: gpu-rdma-injector: set openshift.io/mellanoxnics=1 (requests = limits) in "
        "container 'worker'",
    ]


def test_mutate_plain_pod_yaml_from_stdin_outputs_valid_pod() -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "trainer"},
        "spec": {
            "containers": [
                {"name": "t", "image": "x", "resources": {"limits": {"nvidia.com/gpu": 8}}}
            ]
        },
    }
    result = run(
        "mutate", "-", "--output", "pod", "--namespace", "team-a", stdin=yaml.safe_dump(pod)
    )
    assert result.returncode == 0, result.stderr
    mutated = yaml.safe_load(result.stdout)
    validate_pod(mutated)
    assert mutated["metadata"]["annotations"] == {"k8s.v1.cni.cncf.io/networks": "sriov-rdma-net"}
    assert (
        mutated["spec"]["containers"][0]["resources"]["limits"]["openshift.io/mellanoxnics"] == "1"
    )


def test_mutate_with_policy_and_review_output(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "networks: [{name: pool, resourceName: nvidia.com/sriov_rdma_vf, perGpu: true}]\n"
    )
    result = run(
        "mutate",
        str(REAL / "create-gpu-pod-no-annotations.json"),
        "--config",
        str(policy),
        "-o",
        "review",
    )
    review = json.loads(result.stdout)
    assert review["response"]["uid"] == "1e18dbb5-89af-4c9d-8019-18f8fdc6dce8"
    assert review["response"]["patchType"] == "JSONPatch"


def test_mutate_denied_exits_1_with_reason() -> None:
    result = run("mutate", str(REAL / "create-generatename-json-annotation-sidecar-8gpu.json"))
    assert result.returncode == 1
    assert result.stderr.startswith("denied: k8s.v1.cni.cncf.io/networks entry 2 has name")


@pytest.mark.parametrize(
    ("args", "stdin", "expected"),
    [
        (["mutate", "/nonexistent.yaml"], None, "error: cannot read '/nonexistent.yaml'"),
        (["mutate", "-"], "[1, 2]", "error: '-' must hold a Pod or an AdmissionReview object"),
        (["mutate", "-"], "kind: Service\n", "holds a 'Service'; give a Pod or an AdmissionReview"),
        (["mutate", "-"], "a: [", "error: '-' is neither YAML nor JSON"),
        (
            ["mutate", "-", "--config", "/nope.yaml"],
            "{}",
            "error: policy file '/nope.yaml' cannot be read",
        ),
        (["serve", "--no-kube", "--tls-cert-file", "x.crt"], None, "give both --tls-cert-file and"),
        (
            ["serve", "--no-kube", "--tls-cert-file", "/x.crt", "--tls-key-file", "/x.key"],
            None,
            "error: TLS file cannot be read",
        ),
    ],
)
def test_errors_are_one_line(args: list[str], stdin: str | None, expected: str) -> None:
    result = run(*args, stdin=stdin)
    assert result.returncode == 2
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_certs_generate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert (
        main(
            [
                "certs",
                "generate",
                "--out-dir",
                str(out),
                "--dns-name",
                "svc.ns.svc",
                "--dns-name",
                "10.1.2.3",
            ]
        )
        == 0
    )
    assert "serving certificate: " in capsys.readouterr().out
    cert = x509.load_pem_x509_certificate((out / "tls.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(n) for n in san.get_values_for_type(x509.DNSName)] == ["svc.ns.svc"]
    assert [str(n) for n in san.get_values_for_type(x509.IPAddress)] == ["10.1.2.3"]
    assert (out / "tls.key").stat().st_mode & 0o777 == 0o600
    assert (out / "ca.key").stat().st_mode & 0o777 == 0o600


def test_environment_variables_set_options(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("networks: [{name: rail-1, resourceName: example.com/rail_1}]\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "webhook",
            "mutate",
            str(REAL / "create-gpu-pod-no-annotations.json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**__import__("os").environ, "GPU_RDMA_INJECTOR_CONFIG": str(policy)},
    )
    assert "rail-1" in result.stdout


NAMESPACE_AND_NADS = """\
apiVersion: v1
kind: Namespace
metadata:
  name: team-a
  annotations:
    gpu-rdma-injector/networks: rail-1,rail-2
---
apiVersion: v1
kind: List
items:
  - apiVersion: k8s.cni.cncf.io/v1
    kind: NetworkAttachmentDefinition
    metadata:
      name: rail-1
      namespace: team-a
      annotations: {k8s.v1.cni.cncf.io/resourceName: example.com/rail_1}
  - apiVersion: k8s.cni.cncf.io/v1
    kind: NetworkAttachmentDefinition
    metadata:
      name: rail-2
      namespace: team-a
      annotations: {k8s.v1.cni.cncf.io/resourceName: example.com/rail_2}
  - apiVersion: v1
    kind: Namespace
    metadata: {name: team-b}
"""


def test_mutate_previews_a_namespace_annotation_from_the_nad_file(tmp_path: Path) -> None:
    """Namespace objects (with NADs, in documents or a List) stand for the cluster's namespaces:
    an admin sees what the namespace's networks annotation would do before setting it."""
    facts = tmp_path / "cluster.yaml"
    facts.write_text(NAMESPACE_AND_NADS)
    review = str(REAL / "create-gpu-pod-no-annotations.json")
    result, other = (run("mutate", review, "--nads", str(facts), "-n", f"team-{t}") for t in "ab")
    assert result.returncode == 0, result.stderr
    patch = json.loads(result.stdout)
    assert patch[0]["value"] == {"k8s.v1.cni.cncf.io/networks": "rail-1,rail-2"}
    assert {op["path"].rsplit("/", 1)[-1] for op in patch[1:]} == {
        "example.com~1rail_1",
        "example.com~1rail_2",
    }
    assert other.returncode == 1  # team-b has no sriov-rdma-net NAD in the file
    assert "does not exist in namespace 'team-b'" in other.stderr


def test_mutate_refuses_other_kinds_in_the_nad_file(tmp_path: Path) -> None:
    facts = tmp_path / "cluster.yaml"
    facts.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    result = run("mutate", str(REAL / "create-gpu-pod-no-annotations.json"), "--nads", str(facts))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: '{facts}', document 1: expected kind NetworkAttachmentDefinition or Namespace "
        "or ResourceClaimTemplate or ResourceClaim (or a List of them), got 'ConfigMap'."
    )


def test_unwritable_dev_certificate_directory_is_one_sentence(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    result = run("serve", "--no-kube", "--port", "1", "--dev-cert-dir", str(blocked / "certs"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: cannot write development certificates to '{blocked}")
    assert "pass --dev-cert-dir on a writable path" in result.stderr


def test_mutate_counts_gpus_claimed_through_dra_from_the_nad_file(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "networks: [{name: pool, resourceName: example.com/vf, perGpu: true}]\n"
        "gpuDeviceClasses: [gpu.nvidia.com]\n"
    )
    facts = tmp_path / "cluster.yaml"
    facts.write_text(
        """
apiVersion: resource.k8s.io/v1
kind: ResourceClaimTemplate
metadata: {namespace: team-a, name: two-gpus}
spec:
  spec:
    devices:
      requests:
        - name: gpus
          exactly: {deviceClassName: gpu.nvidia.com, count: 2}
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {namespace: team-a, name: pool}
"""
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "trainer", "namespace": "team-a"},
        "spec": {
            "containers": [
                {"name": "ctr", "image": "x", "resources": {"claims": [{"name": "gpus"}]}}
            ],
            "resourceClaims": [{"name": "gpus", "resourceClaimTemplateName": "two-gpus"}],
        },
    }
    result = run(
        "mutate",
        "-",
        "--config",
        str(policy),
        "--nads",
        str(facts),
        "-o",
        "pod",
        stdin=yaml.safe_dump(pod),
    )
    assert result.returncode == 0, result.stderr
    mutated = yaml.safe_load(result.stdout)
    assert mutated["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"] == "pool,pool"
    assert mutated["spec"]["containers"][0]["resources"]["limits"]["example.com/vf"] == "2"
