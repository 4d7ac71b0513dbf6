"""Run the real `gpu-rdma-injector serve` process for tests over real TLS."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
from cryptography import x509

from webhook.certs import CertPaths, generate_bundle


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """`python -m webhook serve ...` on 127.0.0.1 with a free port; stopped with SIGTERM.

    Static mode (--no-kube) unless `no_kube=False`, for tests that bring an API server double.
    """

    def __init__(
        self,
        args: Sequence[str],
        ca_file: Path | None,
        cwd: Path,
        env: dict[str, str] | None = None,
        *,
        no_kube: bool = True,
    ) -> None:
        self.port = free_port()
        self.ca_file = ca_file
        self.log_path = cwd / f"server-{self.port}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "webhook",
                "serve",
                *(["--no-kube"] if no_kube else []),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                *args,
            ],
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )

    @classmethod
    def with_certificate(
        cls, paths: CertPaths, workdir: Path, *args: str, no_kube: bool = True
    ) -> ServerProcess:
        """Serve `paths`' certificate and key (clients trust `paths.ca_cert`), plus `args`."""
        return cls(
            ["--tls-cert-file", str(paths.cert), "--tls-key-file", str(paths.key), *args],
            paths.ca_cert,
            workdir,
            no_kube=no_kube,
        )

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def client(self, **kwargs: object) -> httpx.Client:
        verify = kwargs.pop("verify", None) or ssl.create_default_context(cafile=str(self.ca_file))
        return httpx.Client(base_url=self.url, verify=verify, timeout=10, **kwargs)  # type: ignore[arg-type]

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}: {self.log()}")
            try:
                with self.client() as client:
                    if client.get("/readyz").status_code == 200:
                        return
            except (httpx.HTTPError, OSError):  # not listening yet, or dev CA not written yet
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready after {timeout}s: {self.log()}")

    def served_serial(self) -> int:
        """The serial number of the certificate the server presents to a new connection."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def serve_in_cluster_mode(kubeconfig: Path, policy: str, workdir: Path) -> ServerProcess:
    """`serve` reading NADs and namespaces from the API server `kubeconfig` points at (the
    tests' double), with `policy` and a fresh certificate for localhost; not yet waited for."""
    paths = generate_bundle(workdir / "tls", ["localhost"])
    (workdir / "policy.yaml").write_text(policy)
    return ServerProcess.with_certificate(
        paths,
        workdir,
        "--kubeconfig",
        str(kubeconfig),
        "--config",
        str(workdir / "policy.yaml"),
        no_kube=False,
    )
