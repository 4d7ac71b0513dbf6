"""Several server processes on one port (edge layer): `serve --workers N`.

Python runs one core's worth of decisions per process, so throughput scales with processes. The
parent forks N workers; each binds its own listening socket with SO_REUSEPORT, so the kernel
spreads connections evenly over them, and builds its own app, caches and TLS context after the
fork (threads and connections never cross a fork). The parent only supervises: it forwards
SIGTERM/SIGINT, waits for every worker to finish its in-flight reviews, and restarts a worker
that dies unexpectedly. It runs no thread of its own, and refuses to fork if one runs: a child
forked beside a running thread inherits whatever locks that thread held.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable

log = logging.getLogger("gpu_rdma_injector.workers")

RESPAWN_PAUSE = 1.0
QUICK_FAILURE_SECONDS = 5.0
MAX_QUICK_FAILURES = 5


BACKLOG = 2048
"""Connections the kernel queues while a process is at its connection limit (webhook.listener)."""


class ForkWithThreadsError(RuntimeError):
    """Refused: forking while another thread runs would copy the locks it holds."""


def listening_socket(
    host: str, port: int, listen: bool = True, *, reuse_port: bool = True
) -> socket.socket:
    """A TCP socket, bound with SO_REUSEPORT (shared by the workers) unless told not,
    listening unless told not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    if listen:
        sock.listen(BACKLOG)
    return sock


def run_workers(count: int, host: str, port: int, worker: Callable[[socket.socket], int]) -> int:
    """Fork `count` workers running `worker(sock)`; return 0 once all stopped after a signal."""
    # Fail in the parent, with the real error, if the port cannot be had; a bound socket that
    # does not listen receives no connections, so this probe steals none from the workers.
    listening_socket(host, port, listen=False).close()
    stopping = False
    children: dict[int, int] = {}
    started: dict[int, float] = {}
    quick_failures = 0

    def spawn(slot: int) -> None:
        if threading.active_count() > 1:
            names = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
            raise ForkWithThreadsError(
                f"refusing to fork a worker while other threads run ({', '.join(names)})"
            )
        pid = os.fork()
        if pid == 0:  # the worker
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 1
            try:
                code = worker(listening_socket(host, port))
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
            except BaseException:
                log.exception("worker failed", extra={"fields": {"worker": slot}})
            finally:
                os._exit(code)
        children[pid] = slot
        started[pid] = time.monotonic()

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for first in range(count):
            spawn(first)
        log.info("workers started", extra={"fields": {"workers": count, "pids": list(children)}})
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            slot: int | None = children.pop(pid, None)
            lived = time.monotonic() - started.pop(pid, 0.0)
            if slot is None or stopping:
                continue
            quick_failures = quick_failures + 1 if lived < QUICK_FAILURE_SECONDS else 0
            if quick_failures >= MAX_QUICK_FAILURES:
                log.error("workers keep failing at start; giving up")
                forward(signal.SIGTERM, None)
                for other in list(children):
                    os.waitpid(other, 0)
                return 1
            log.error(
                "worker exited unexpectedly; starting another",
                extra={"fields": {"worker": slot, "pid": pid, "status": status}},
            )
            time.sleep(RESPAWN_PAUSE)
            if not stopping:
                spawn(slot)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
