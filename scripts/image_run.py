"""Run a built image the way the chart does and check what it answers (used by scripts/image-check).

A tool module, outside the webhook's layers; standard library only. The chart's Deployment
(charts/gpu-rdma-injector/templates/deployment.yaml) runs the container with a read-only root, an
emptyDir at /tmp, no capabilities, no privilege escalation, the policy ConfigMap and (outside the
self-signed mode) the TLS Secret mounted read-only; `restricted()` turns that into podman options.
Every check is run as the chart's UID 65532 and as an arbitrary UID in group 0, as OpenShift runs
containers. A failure raises CheckFailed with one sentence (and the log that explains it).
"""

from __future__ import annotations

import base64
import copy
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

# From the chart: templates/_helpers.tpl (configDir, tlsDir, containerPort) and values.yaml.
CONFIG_DIR = "/etc/gpu-rdma-injector/policy"
TLS_DIR = "/etc/gpu-rdma-injector/tls"
PORT = 8443

# The policy mounted as the chart's ConfigMap (the seed recipe), and what it makes of the real
# AdmissionReview below (a pod asking for 2 GPUs, no annotations): stated here by hand, not read
# from the code under test.
POLICY = {
    "gpuResources": ["nvidia.com/gpu"],
    "networks": [{"name": "sriov-rdma-net", "resourceName": "openshift.io/mellanoxnics"}],
}
REVIEW = REPO / "tests" / "fixtures" / "admission-reviews" / "create-gpu-pod-no-annotations.json"
EXPECTED_NETWORKS = "sriov-rdma-net"
EXPECTED_UNITS = {"openshift.io/mellanoxnics": "1", "nvidia.com/gpu": "2"}


class CheckFailed(Exception):
    """One sentence saying what failed; scripts/image-check prints it and exits 1."""


def log(message: str) -> None:
    print(f"image-check: {message}", flush=True)


def tail(result: subprocess.CompletedProcess[str], lines: int = 25) -> str:
    text = (result.stdout or "") + (result.stderr or "")
    return "\n".join("    " + line for line in text.rstrip().splitlines()[-lines:])


def run(
    command: Sequence[str], what: str, *, timeout: float = 300, check: bool = True, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise CheckFailed naming `what`, with the output's tail."""
    try:
        result = subprocess.run(
            list(command), capture_output=True, text=True, timeout=timeout, check=False, **kwargs
        )
    except FileNotFoundError:
        raise CheckFailed(f"{what}: {command[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise CheckFailed(
            f"{what}: `{' '.join(command[:3])} ...` took over {timeout:.0f} s"
        ) from None
    if check and result.returncode != 0:
        raise CheckFailed(f"{what} (exit status {result.returncode}):\n{tail(result)}")
    return result


@dataclass(frozen=True)
class User:
    uid: int
    gid: int
    why: str

    @property
    def spec(self) -> str:
        return f"{self.uid}:{self.gid}"


CHART_USER = User(65532, 65532, "the chart's runAsUser and runAsGroup")
OPENSHIFT_USER = User(1000770000, 0, "an arbitrary UID in group 0, as OpenShift runs it")
USERS = (CHART_USER, OPENSHIFT_USER)


def restricted(user: User) -> list[str]:
    """podman run options for the chart's securityContext and its /tmp emptyDir (16Mi)."""
    return [
        "--user",
        user.spec,
        "--read-only",
        "--read-only-tmpfs=false",  # podman would add writable /run and /var/tmp; a pod has none
        "--tmpfs",
        "/tmp:rw,nosuid,nodev,noexec,size=16m,mode=1777",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
    ]


def run_in_image(image: str, user: User, args: Sequence[str], what: str) -> str:
    """A one-off command in the image, without network; returns its standard output."""
    command = ["podman", "run", "--rm", "--network=none", *restricted(user), image, *args]
    return run(command, f"{what} as {user.spec}", timeout=120).stdout


def run_python(
    image: str, user: User, code: str, what: str, *flags: str
) -> subprocess.CompletedProcess[str]:
    command = ["podman", "run", "--rm", "--network=none", *restricted(user)]
    command += ["--entrypoint", "python", image, *flags, "-c", code]
    return run(command, f"{what} as {user.spec}", timeout=120)


def expected_version() -> str:
    text = (REPO / "webhook" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    if not match:
        raise CheckFailed('webhook/__init__.py has no __version__ = "..." line')
    return match[1]


# --- checks without a server ----------------------------------------------------------------


def check_version(image: str, user: User, version: str) -> None:
    printed = run_in_image(image, user, ["version"], "gpu-rdma-injector version").strip()
    if version not in printed.split():
        raise CheckFailed(f"`version` as {user.spec} printed {printed!r}, not {version}")
    log(f"ok: `gpu-rdma-injector version` as {user.spec} prints {printed!r}")


SIZES = """
import pathlib
def size(path):
    return sum(p.lstat().st_size for p in pathlib.Path(path).rglob("*"))
site = next(pathlib.Path("/opt/venv/lib").glob("python3*/site-packages"))
parts = sorted(((size(p), p.name) for p in site.iterdir()), reverse=True)
cache = sum(size(p) for p in pathlib.Path("/opt/venv").rglob("__pycache__"))
print(f"venv {size('/opt/venv') / 1e6:.0f} MB, of which bytecode {cache / 1e6:.0f} MB; largest:")
print(", ".join(f"{name} {n / 1e6:.0f} MB" for n, name in parts[:6]))
print(" ".join(n for _, n in parts if n.split("-")[0] in {"pip", "setuptools", "wheel"}))
"""


def check_size_and_build_tools(image: str) -> None:
    """Report the image's size and largest parts; the venv must hold no build tools."""
    inspect = ["podman", "image", "inspect", "--format", "{{.Size}}", image]
    size = int(run(inspect, "podman image inspect").stdout)
    venv, largest, tools = run_python(image, CHART_USER, SIZES, "measuring the venv").stdout.split(
        "\n"
    )[:3]
    log(f"image {size / 1e6:.0f} MB; {venv} {largest}")
    if tools:
        raise CheckFailed(f"the runtime venv holds build tools ({tools}), which it should not")


IMPORT_ALL = """
import importlib, pkgutil, webhook
for module in pkgutil.walk_packages(webhook.__path__, "webhook."):
    importlib.import_module(module.name)
"""


def check_modules_load_from_bytecode(image: str, user: User) -> None:
    """Every webhook module imports (the Kubernetes client with it), each module from bytecode.

    The root filesystem is read-only, so Python cannot cache what it compiles: a module without
    bytecode in the image is compiled again at every start (`python -v` says which).
    """
    result = run_python(image, user, IMPORT_ALL, "importing every webhook module", "-v")
    compiled = re.findall(r"^# code object from '?(/\S+?\.py)'?$", result.stderr, re.MULTILINE)
    loaded = re.findall(r"^# code object from '?(/\S+?\.pyc)'?$", result.stderr, re.MULTILINE)
    if compiled:
        raise CheckFailed(
            f"{len(compiled)} modules were compiled from source at start-up as {user.spec} "
            f"(no bytecode for them in the image, whose root is read-only), e.g. {compiled[0]}"
        )
    if not loaded:
        raise CheckFailed("`python -v` named no module loaded from bytecode: the check is blind")
    log(
        f"ok: as {user.spec}, every webhook module imports, all {len(loaded)} modules from bytecode"
    )


# --- checks against `serve` ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`serve` in a container, reached over verified TLS on 127.0.0.1:<port>."""

    def __init__(self, image: str, name: str, ca_file: Path | None = None) -> None:
        self.image = image
        self.name = name
        self.port = free_port()
        self.ca_file = ca_file

    def start(self, user: User, volumes: Sequence[str], args: Sequence[str]) -> None:
        command = ["podman", "run", "--detach", "--name", self.name, *restricted(user)]
        command += ["--publish", f"127.0.0.1:{self.port}:{PORT}"]
        command += ["--env", "GPU_RDMA_INJECTOR_POD_NAMESPACE=gpu-rdma-injector"]  # as the chart
        command += [option for volume in volumes for option in ("--volume", volume)]
        run([*command, self.image, *args], f"podman run of `serve` as {user.spec}")
        port = run(["podman", "port", self.name, f"{PORT}/tcp"], "podman port").stdout.split()
        if port != [f"127.0.0.1:{self.port}"]:
            raise CheckFailed(f"port {PORT} is published on {port}, not on 127.0.0.1 only")

    def logs(self) -> str:
        result = run(["podman", "logs", self.name], "podman logs", check=False)
        return result.stdout + result.stderr

    def running(self) -> bool:
        state = ["podman", "inspect", "--format", "{{.State.Running}}", self.name]
        return run(state, "podman inspect").stdout.strip() == "true"

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, str, bytes]:
        """One HTTPS request; the certificate must chain to the CA and name `localhost`."""
        assert self.ca_file is not None
        context = ssl.create_default_context(cafile=str(self.ca_file))
        connection = http.client.HTTPSConnection("localhost", self.port, timeout=10)
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        connection.sock = context.wrap_socket(raw, server_hostname="localhost")
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheader("Content-Type", ""), response.read()
        finally:
            connection.close()

    def wait_ready(self, timeout: float = 30) -> float:
        """Seconds until /readyz answers 200."""
        started = time.monotonic()
        last = "no answer"
        while time.monotonic() - started < timeout:
            if not self.running():
                raise CheckFailed(f"`serve` exited before it was ready; its log:\n{self.logs()}")
            try:
                status, _, body = self.request("GET", "/readyz")
            except ssl.SSLCertVerificationError as error:
                raise CheckFailed(f"the served certificate does not verify: {error}") from None
            except OSError as error:
                last = str(error) or type(error).__name__
            else:
                if status == 200:
                    return time.monotonic() - started
                last = f"{status} {body!r}"
            time.sleep(0.1)
        raise CheckFailed(f"/readyz not 200 within {timeout:.0f} s ({last}); log:\n{self.logs()}")

    def stop(self, user: User) -> float:
        """SIGTERM, as the kubelet stops a pod; it must exit 0. Returns the seconds it took."""
        started = time.monotonic()
        run(["podman", "kill", "--signal", "TERM", self.name], "podman kill --signal TERM")
        status = run(["podman", "wait", self.name], "podman wait", timeout=60).stdout.strip()
        if status != "0":
            raise CheckFailed(
                f"`serve` as {user.spec} exited {status} on SIGTERM, not 0; its log:\n{self.logs()}"
            )
        return time.monotonic() - started

    def remove(self) -> None:
        run(["podman", "rm", "--force", "--time", "0", self.name], "podman rm", check=False)


def apply_patch(document: Any, patch: list[dict[str, Any]]) -> Any:
    """RFC 6902 `add` and `replace` on a copy: enough to see what the patch does to the pod."""
    result = copy.deepcopy(document)
    for op in patch:
        if op.get("op") not in ("add", "replace"):
            raise CheckFailed(f"the patch has an op this check does not apply: {op}")
        *parents, last = [
            token.replace("~1", "/").replace("~0", "~") for token in op["path"].split("/")[1:]
        ]
        target = result
        for token in parents:
            target = target[int(token)] if isinstance(target, list) else target[token]
        if isinstance(target, list):
            target.insert(len(target) if last == "-" else int(last), op["value"])
        else:
            target[last] = op["value"]
    return result


def check_review(server: Server, user: User) -> None:
    """The real AdmissionReview: allowed, uid echoed, and the patched pod has both halves."""
    request = REVIEW.read_bytes()
    status, content_type, body = server.request("POST", "/mutate", request)
    if status != 200 or not content_type.startswith("application/json"):
        raise CheckFailed(f"POST /mutate as {user.spec} answered {status} {content_type}: {body!r}")
    review = json.loads(body)
    sent = json.loads(request)
    answer = review.get("response", {})
    if (review.get("apiVersion"), review.get("kind")) != ("admission.k8s.io/v1", "AdmissionReview"):
        raise CheckFailed(f"/mutate answered something other than an AdmissionReview v1: {body!r}")
    if answer.get("uid") != sent["request"]["uid"] or answer.get("allowed") is not True:
        raise CheckFailed(f"/mutate did not allow the pod with the request's uid: {answer}")
    patch = json.loads(base64.b64decode(answer.get("patch", "W10=")))
    pod = apply_patch(sent["request"]["object"], patch)
    networks = pod["metadata"].get("annotations", {}).get("k8s.v1.cni.cncf.io/networks")
    resources = pod["spec"]["containers"][0]["resources"]
    units = {side: resources.get(side, {}) for side in ("limits", "requests")}
    if networks != EXPECTED_NETWORKS or any(side != EXPECTED_UNITS for side in units.values()):
        raise CheckFailed(
            f"the patched pod has networks {networks!r} and resources {units}, not "
            f"{EXPECTED_NETWORKS!r} with {EXPECTED_UNITS} as both requests and limits"
        )


def check_endpoints(server: Server, user: User, version: str) -> None:
    for path, want in (("/readyz", b"ready\n"), ("/healthz", b"ok\n")):
        status, _, body = server.request("GET", path)
        if (status, body) != (200, want):
            raise CheckFailed(f"GET {path} as {user.spec} answered {status} {body!r}, not {want!r}")
    check_review(server, user)
    status, content_type, body = server.request("GET", "/metrics")
    if status != 200 or not content_type.startswith("text/plain"):
        raise CheckFailed(f"GET /metrics as {user.spec} answered {status} {content_type}")
    for series in (
        f'gpu_rdma_injector_build_info{{version="{version}"}} 1.0',
        'gpu_rdma_injector_admissions_total{outcome="mutated"',
    ):
        if series not in body.decode():
            raise CheckFailed(f"/metrics has no {series!r} after one mutated review")


def check_serve_as_the_chart(image: str, user: User, certs: Path, policy: Path) -> None:
    """`serve` with the chart's arguments, its TLS Secret and policy ConfigMap mounted read-only."""
    tls = Path(tempfile.mkdtemp(prefix="image-check-tls-"))
    server = Server(image, f"image-check-serve-{user.uid}-{os.getpid()}", certs / "ca.crt")
    try:
        for name in ("tls.crt", "tls.key"):
            shutil.copy(certs / name, tls / name)
            os.chown(tls / name, 0, user.gid)  # as a Secret volume: defaultMode 0440, pod's group
            os.chmod(tls / name, 0o440)
        os.chmod(tls, 0o755)
        server.start(
            user,
            [f"{policy.parent}:{CONFIG_DIR}:ro", f"{tls}:{TLS_DIR}:ro"],
            [
                "serve",
                "--no-kube",
                f"--config={CONFIG_DIR}/{policy.name}",
                f"--port={PORT}",
                "--log-level=info",
                f"--tls-cert-file={TLS_DIR}/tls.crt",
                f"--tls-key-file={TLS_DIR}/tls.key",
            ],
        )
        ready = server.wait_ready()
        check_endpoints(server, user, expected_version())
        stopped = server.stop(user)
        log(
            f"ok: serve as {user.spec} ({user.why}): ready in {ready:.1f} s; /readyz, /healthz, "
            f"/metrics and an AdmissionReview over verified TLS; exit 0 {stopped:.1f} s after "
            "SIGTERM"
        )
    finally:
        server.remove()
        shutil.rmtree(tls, ignore_errors=True)


def check_serve_with_dev_certs(image: str, user: User) -> None:
    """`serve` with no certificate options makes development certificates, under /tmp."""
    server = Server(image, f"image-check-dev-certs-{user.uid}-{os.getpid()}")
    scratch = Path(tempfile.mkdtemp(prefix="image-check-dev-"))
    try:
        server.start(user, [], ["serve", "--no-kube"])
        deadline = time.monotonic() + 30
        while not (said := re.search(r"the CA is (/\S+)", server.logs())):
            if not server.running() or time.monotonic() > deadline:
                raise CheckFailed(
                    f"`serve --no-kube` as {user.spec}, without certificate options, made no "
                    f"development certificates; its log:\n{server.logs()}"
                )
            time.sleep(0.1)
        ca_path = said[1]
        if not ca_path.startswith("/tmp/"):
            raise CheckFailed(f"development certificates went to {ca_path}, outside /tmp")
        ca = run(["podman", "exec", server.name, "cat", ca_path], "reading the dev CA").stdout
        server.ca_file = scratch / "ca.crt"
        server.ca_file.write_text(ca, encoding="utf-8")
        ready = server.wait_ready()
        stopped = server.stop(user)
        log(
            f"ok: serve --no-kube as {user.spec} made its development certificates in "
            f"{Path(ca_path).parent}; ready in {ready:.1f} s over verified TLS; exit 0 "
            f"{stopped:.1f} s after SIGTERM"
        )
    finally:
        server.remove()
        shutil.rmtree(scratch, ignore_errors=True)


def check_image(image: str) -> None:
    """Every check, in order: the first failure raises CheckFailed."""
    version = expected_version()
    for user in USERS:
        check_version(image, user, version)
    check_size_and_build_tools(image)
    for user in USERS:
        check_modules_load_from_bytecode(image, user)
    with tempfile.TemporaryDirectory(prefix="image-check-") as scratch:
        work = Path(scratch)
        certs, config = work / "certs", work / "config"
        certs.mkdir()
        config.mkdir()
        os.chown(certs, CHART_USER.uid, CHART_USER.gid)
        os.chmod(work, 0o755)
        generate = ["certs", "generate", "--out-dir", "/out", "--dns-name", "localhost"]
        run(
            [
                "podman", "run", "--rm", "--network=none", *restricted(CHART_USER),
                "--volume", f"{certs}:/out", image, *generate,
            ],
            "gpu-rdma-injector certs generate in the image",
        )  # fmt: skip
        policy = config / "policy.yaml"
        policy.write_text(json.dumps(POLICY, indent=2) + "\n", encoding="utf-8")
        os.chmod(config, 0o755)
        os.chmod(policy, 0o644)  # a ConfigMap volume's default mode
        for user in USERS:
            check_serve_as_the_chart(image, user, certs, policy)
    check_serve_with_dev_certs(image, OPENSHIFT_USER)
