"""webhook.workers: the supervisor never forks beside a running thread."""

from __future__ import annotations

import threading

import pytest
from serverproc import free_port

from webhook.workers import ForkWithThreadsError, run_workers


def test_no_worker_is_forked_while_another_thread_runs() -> None:
    release = threading.Event()
    thread = threading.Thread(target=release.wait, name="a-renewer", daemon=True)
    thread.start()
    forked: list[object] = []
    try:
        with pytest.raises(ForkWithThreadsError, match=r"while other threads run \(a-renewer\)"):
            run_workers(1, "127.0.0.1", free_port(), forked.append)  # type: ignore[arg-type]
    finally:
        release.set()
        thread.join()
    assert forked == []
