"""The two servers under load: the real webhook process, and the nginx floor.

Both listen on 127.0.0.1 only, on a free port, with the same certificate made by the project's
own `gpu-rdma-injector certs generate`, and both are stopped by their process id. The memory
of a server is read from /proc: the sum over its process tree of VmRSS, polled while it runs,
and of VmHWM (the kernel's own high-water mark) when it stops.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.bodies import ROOT
from benchmarks.rateload import cpu_seconds

VENV_BIN = ROOT / ".venv" / "bin"
INJECTOR = VENV_BIN / "gpu-rdma-injector"
HOST = "127.0.0.1"
SERVER_NAME = "localhost"


def die_with_parent() -> None:
    """In a child, before exec: get SIGTERM when the harness dies, so no server outlives it."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class BenchError(Exception):
    """A problem that stops the benchmark: printed as one line, exit status 2."""


@dataclass(frozen=True)
class Certs:
    ca: Path
    cert: Path
    key: Path


def generate_certs(directory: Path) -> Certs:
    """A CA and a serving certificate for localhost and 127.0.0.1, by the project's own CLI."""
    completed = subprocess.run(
        [
            str(INJECTOR),
            "certs",
            "generate",
            "--out-dir",
            str(directory),
            "--dns-name",
            SERVER_NAME,
            "--dns-name",
            HOST,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if completed.returncode != 0:
        raise BenchError(f"certs generate failed: {completed.stderr.strip()}")
    return Certs(ca=directory / "ca.crt", cert=directory / "tls.crt", key=directory / "tls.key")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@functools.cache
def client_context(ca: Path) -> ssl.SSLContext:
    # The certificate carries 127.0.0.1 as an IP SAN, so the address itself is verified.
    return ssl.create_default_context(cafile=str(ca))


def https_get(port: int, path: str, ca: Path, timeout: float = 1.0) -> int | None:
    """The status of GET `path`, verifying the certificate; None when nothing answers."""
    context = client_context(ca)
    connection = http.client.HTTPSConnection(HOST, port, context=context, timeout=timeout)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def curl_post(port: int, path: str, body_file: Path, ca: Path) -> tuple[int, bytes]:
    """POST the body once with curl, as a person would check it; (status, answer)."""
    completed = subprocess.run(
        [
            "curl",
            "--silent",
            "--show-error",
            "--max-time",
            "10",
            "--cacert",
            str(ca),
            "--header",
            "Content-Type: application/json",
            "--data-binary",
            f"@{body_file}",
            "--write-out",
            "\n%{http_code}",
            f"https://{HOST}:{port}{path}",
        ],
        capture_output=True,
        check=False,
        timeout=30,
    )
    if completed.returncode != 0:
        raise BenchError(f"curl to port {port} failed: {completed.stderr.decode().strip()}")
    answer, _, status = completed.stdout.rpartition(b"\n")
    return int(status), answer


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (uvicorn workers, nginx's worker process)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, ()))
    return tree


def status_kib(pid: int, field: str) -> int:
    """A `VmRSS`/`VmHWM`-style field of /proc/<pid>/status in KiB; 0 when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Served:
    """A server process: its log, its memory, and a clean stop."""

    name = "server"

    def __init__(self, command: Sequence[str], log_path: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [*command, *self._port_args()],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        self._peak_rss_kib = 0
        self._polling = threading.Event()
        self._poller: threading.Thread | None = None

    def _port_args(self) -> list[str]:
        return []

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, ca: Path, timeout: float = 30.0) -> float:
        """Seconds from process start until the readiness path answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(
                    f"{self.name} exited with status {self.process.returncode}: {self.log_tail()}"
                )
            if https_get(self.port, self.ready_path, ca, timeout=1.0) == 200:
                return time.monotonic() - self.started
            time.sleep(0.005)
        raise BenchError(f"{self.name} not ready after {timeout:.0f} s: {self.log_tail()}")

    ready_path = "/readyz"

    def rss_kib(self) -> int:
        return sum(status_kib(pid, "VmRSS") for pid in process_tree(self.pid))

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server's process tree has used so far."""
        return cpu_seconds(process_tree(self.pid))

    def hwm_kib(self) -> int:
        return sum(status_kib(pid, "VmHWM") for pid in process_tree(self.pid))

    @contextlib.contextmanager
    def polling_rss(self, interval: float = 0.05) -> Iterator[None]:
        """Sample the tree's RSS while the block runs; `peak_rss_kib` keeps the largest."""
        self._polling.clear()

        def poll() -> None:
            while not self._polling.is_set():
                self._peak_rss_kib = max(self._peak_rss_kib, self.rss_kib())
                self._polling.wait(interval)

        self._poller = threading.Thread(target=poll, name="rss-poller", daemon=True)
        self._poller.start()
        try:
            yield
        finally:
            self._polling.set()
            self._poller.join()

    @property
    def peak_rss_kib(self) -> int:
        return max(self._peak_rss_kib, self.hwm_kib())

    def log_tail(self, lines: int = 15) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        """SIGTERM the process we started (by its id), then SIGKILL its group if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self._log.close()


def clean_env() -> dict[str, str]:
    """The environment without GPU_RDMA_INJECTOR_* settings that would change what is measured."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GPU_RDMA_INJECTOR_")}


class Webhook(Served):
    """`gpu-rdma-injector serve --no-kube` with real TLS, one worker unless told otherwise."""

    name = "gpu-rdma-injector"

    def __init__(
        self,
        certs: Certs,
        policy: Path,
        log_path: Path,
        workers: int | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        command = [
            str(INJECTOR),
            "serve",
            "--no-kube",
            "--host",
            HOST,
            "--tls-cert-file",
            str(certs.cert),
            "--tls-key-file",
            str(certs.key),
            "--config",
            str(policy),
            *(["--workers", str(workers)] if workers is not None else []),
            *extra_args,
        ]
        super().__init__(command, log_path, clean_env())

    def _port_args(self) -> list[str]:
        return ["--port", str(self.port)]


def serve_supports_workers() -> bool:
    """Whether `serve --workers N` exists in this version of the CLI."""
    completed = subprocess.run(
        [str(INJECTOR), "serve", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return "--workers" in completed.stdout


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None
    )


def nginx_string(text: str) -> str:
    """`text` as a single-quoted nginx string; `$` goes through the $dollar variable."""
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("$", "${dollar}")
    return f"'{escaped}'"


NGINX_CONF = """\
# The floor of the benchmark: nginx answers every POST /mutate with a canned AdmissionReview.
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    # The webhook's limit on request bodies, and keep-alive connections that are never recycled
    # (uvicorn does not recycle them either; nginx's default closes one after 1000 requests).
    client_max_body_size 3m;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    geo $dollar {{
        default "$";
    }}
    server {{
        listen {host}:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location /mutate {{
            default_type application/json;
            return 200 {canned};
        }}
        location /readyz {{
            default_type text/plain;
            return 200 'ready\\n';
        }}
    }}
}}
"""


class NginxFloor(Served):
    """nginx in the foreground, one worker, its own prefix, pid and logs under `prefix`."""

    name = "nginx floor"

    def __init__(self, certs: Certs, canned: bytes, prefix: Path) -> None:
        binary = nginx_binary()
        if binary is None:
            raise BenchError("nginx is not installed; run benchmarks/run --install-only")
        prefix.mkdir(parents=True, exist_ok=True)
        self._prefix = prefix
        self._certs = certs
        self._canned = canned
        conf = prefix / "nginx.conf"
        self._conf = conf
        super().__init__(
            [binary, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)],
            prefix / "stdout.log",
            clean_env(),
        )

    def _port_args(self) -> list[str]:
        # The port is known only now: write the configuration before nginx reads it.
        self._conf.write_text(
            NGINX_CONF.format(
                prefix=self._prefix,
                host=HOST,
                port=self.port,
                cert=self._certs.cert,
                key=self._certs.key,
                canned=nginx_string(self._canned.decode()),
            )
        )
        return []

    def log_tail(self, lines: int = 15) -> str:
        error_log = self._prefix / "error.log"
        text = error_log.read_text(errors="replace") if error_log.exists() else ""
        return (super().log_tail(lines) + "\n" + "\n".join(text.splitlines()[-lines:])).strip()
