"""The benchmark bodies: real AdmissionReview JSON, and the policy each one is served with.

Every body starts from a capture of kube-apiserver v1.36 (`tests/fixtures/admission-reviews/`)
and is changed only where the case needs it, so the bytes look like what the API server sends:
compact JSON, a defaulted pod, managedFields.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ROOT / "tests" / "fixtures" / "admission-reviews"
GPU_POD = CAPTURES / "create-gpu-pod-no-annotations.json"
CONSISTENT_POD = CAPTURES / "create-gpu-pod-annotation-and-resource.json"
DEFAULT_POLICY = ROOT / "webhook" / "default-policy.yaml"

RAILS = 8
LARGE_CONTAINERS = 20
LARGE_TARGET_BYTES = 100 * 1024


@dataclass(frozen=True)
class Body:
    """One benchmark body: the request bytes, its policy, and what a correct answer holds."""

    key: str
    title: str
    review: bytes
    policy_yaml: str
    expect_patch: bool
    expect_in_patch: tuple[str, ...] = ()

    @property
    def uid(self) -> str:
        return str(json.loads(self.review)["request"]["uid"])


def dumps(document: Any) -> bytes:
    """Compact JSON, as the API server writes it."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def _load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


def _with_uid(review: dict[str, Any], suffix: str) -> dict[str, Any]:
    review = copy.deepcopy(review)
    uid = review["request"]["uid"]
    review["request"]["uid"] = uid[: -len(suffix)] + suffix
    return review


def rail_policy_yaml(rails: int = RAILS) -> str:
    lines = [
        "# Multi-rail policy of the benchmark: one network and one SR-IOV resource per rail.",
        "gpuResources: [nvidia.com/gpu]",
        "networks:",
    ]
    lines.extend(
        f"  - {{name: rail-{n}, resourceName: nvidia.com/sriov_rdma_rail_{n}}}"
        for n in range(1, rails + 1)
    )
    return "\n".join(lines) + "\n"


def small_gpu_pod() -> Body:
    """(a) The capture as it is: one container asking for 2 GPUs, no annotations."""
    return Body(
        key="small",
        title="small GPU pod (1 container, 2 GPUs), default policy",
        review=GPU_POD.read_bytes(),
        policy_yaml=DEFAULT_POLICY.read_text(encoding="utf-8"),
        expect_patch=True,
        expect_in_patch=("sriov-rdma-net", "openshift.io~1mellanoxnics"),
    )


def eight_rail_pod() -> Body:
    """(b) The same pod asking for 8 GPUs, served with an 8-rail policy: 8 networks, 8 resources."""
    review = _with_uid(_load(GPU_POD), "000000000b08")
    pod = review["request"]["object"]
    pod["metadata"]["name"] = review["request"]["name"] = "nccl-8gpu-0"
    resources = pod["spec"]["containers"][0]["resources"]
    resources["limits"]["nvidia.com/gpu"] = resources["requests"]["nvidia.com/gpu"] = str(RAILS)
    return Body(
        key="8-rail",
        title=f"8-GPU pod, {RAILS}-rail policy ({RAILS} networks, {RAILS} resources)",
        review=dumps(review),
        policy_yaml=rail_policy_yaml(),
        expect_patch=True,
        expect_in_patch=(
            ",".join(f"rail-{n}" for n in range(1, RAILS + 1)),
            *(f"nvidia.com~1sriov_rdma_rail_{n}" for n in range(1, RAILS + 1)),
        ),
    )


def _env_list(container: int, count: int) -> list[dict[str, Any]]:
    """Environment variables as a training job's sidecars carry them: NCCL knobs, paths, refs."""
    env: list[dict[str, Any]] = []
    for n in range(count):
        if n % 10 == 7:
            env.append(
                {
                    "name": f"POD_FIELD_{container}_{n}",
                    "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}},
                }
            )
        elif n % 10 == 9:
            env.append(
                {
                    "name": f"SECRET_TOKEN_{container}_{n}",
                    "valueFrom": {
                        "secretKeyRef": {"name": f"job-secrets-{container}", "key": f"token-{n}"}
                    },
                }
            )
        else:
            env.append(
                {
                    "name": f"NCCL_SETTING_{container:02d}_{n:03d}",
                    "value": f"/opt/nccl/plugins/rail-{n % RAILS + 1}/lib:/usr/local/cuda/lib64"
                    f":/opt/hpcx/ucx/lib/ucx:/opt/hpcx/ompi/lib#{container}-{n}",
                }
            )
    return env


def _large_review(env_per_container: int) -> dict[str, Any]:
    review = _with_uid(_load(GPU_POD), "0000000020c0")
    pod = review["request"]["object"]
    pod["metadata"]["name"] = review["request"]["name"] = "big-job-0"
    template = pod["spec"]["containers"][0]
    containers = []
    managed: dict[str, Any] = {}
    for index in range(LARGE_CONTAINERS):
        container = copy.deepcopy(template)
        container["name"] = "trainer" if index == 0 else f"sidecar-{index:02d}"
        if index:
            container["image"] = f"registry.example.com/ml/sidecar-{index:02d}:1.4.{index}"
            container["resources"] = {"limits": {"cpu": "500m", "memory": "512Mi"}}
            container["resources"]["requests"] = dict(container["resources"]["limits"])
        env = _env_list(index, env_per_container)
        container["env"] = env
        containers.append(container)
        managed[f'k:{{"name":"{container["name"]}"}}'] = {
            ".": {},
            "f:env": {
                ".": {},
                **{f'k:{{"name":"{item["name"]}"}}': {".": {}, "f:name": {}} for item in env},
            },
            "f:image": {},
            "f:name": {},
        }
    pod["spec"]["containers"] = containers
    pod["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:containers"] = managed
    return review


def large_pod() -> Body:
    """(c) 20 containers with long env lists, managedFields to match: about 100 KiB."""
    # The smallest env list that reaches the target size, found by counting up.
    per_container = 1
    while len(dumps(_large_review(per_container))) < LARGE_TARGET_BYTES:
        per_container += 1
    return Body(
        key="large",
        title=f"large pod ({LARGE_CONTAINERS} containers, {per_container} env vars each), "
        "default policy",
        review=dumps(_large_review(per_container)),
        policy_yaml=DEFAULT_POLICY.read_text(encoding="utf-8"),
        expect_patch=True,
        expect_in_patch=("sriov-rdma-net", "/spec/containers/0/resources"),
    )


def consistent_pod() -> Body:
    """(d) The capture of a pod that already has the annotation and the resource: no patch."""
    return Body(
        key="no-patch",
        title="pod that needs no patch (annotation and resource present), default policy",
        review=CONSISTENT_POD.read_bytes(),
        policy_yaml=DEFAULT_POLICY.read_text(encoding="utf-8"),
        expect_patch=False,
    )


BUILDERS: dict[str, Callable[[], Body]] = {
    "small": small_gpu_pod,
    "8-rail": eight_rail_pod,
    "large": large_pod,
    "no-patch": consistent_pod,
}
HEADLINE = "8-rail"


def check_answer(body: Body, status: int, answer: bytes) -> list[str]:
    """Problems with a server's answer to `body` (empty when it has the expected shape)."""
    if status != 200:
        return [f"HTTP status {status}, expected 200: {answer[:200]!r}"]
    try:
        review = json.loads(answer)
    except ValueError:
        return [f"the answer is not JSON: {answer[:200]!r}"]
    problems = []
    if review.get("apiVersion") != "admission.k8s.io/v1" or review.get("kind") != "AdmissionReview":
        problems.append("the answer is not an admission.k8s.io/v1 AdmissionReview")
    response = review.get("response")
    if not isinstance(response, dict):
        return [*problems, "the answer has no response object"]
    if response.get("uid") != body.uid:
        problems.append(f"response.uid {response.get('uid')!r} does not echo {body.uid!r}")
    if response.get("allowed") is not True:
        problems.append(f"response.allowed is {response.get('allowed')!r}, expected true")
    if not body.expect_patch:
        if "patch" in response:
            problems.append("the answer carries a patch, expected none")
        return problems
    if response.get("patchType") != "JSONPatch" or "patch" not in response:
        return [*problems, "the answer carries no JSONPatch"]
    patch = base64.b64decode(response["patch"]).decode()
    problems.extend(
        f"the patch does not contain {expected!r}"
        for expected in body.expect_in_patch
        if expected not in patch
    )
    return problems
