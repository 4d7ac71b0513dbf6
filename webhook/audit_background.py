"""The background audit of `serve --audit-interval` (edge layer: a child process, files, metrics).

Every interval one audit runs as a child process, `gpu-rdma-injector audit --write-reports -o
summary`: off the event loop and out of the server's interpreter (no lock shared with the
reviews, a lower CPU priority), its memory handed back when it exits, and its own bounds (lists
in pages, findings capped). A thread only waits for it.

With `--workers N` every server process runs such a thread, but one audit runs at a time: the
runs take a lock file, and the latest outcome is kept in a state file beside it that every
process reads for its metrics, so all of them export the same numbers whichever one ran. A run
that fails (the API down, a child killed at its timeout) is counted and logged, and the last
result stays: the findings gauges keep their values until a run succeeds.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from webhook.findings import CHECKS, KIND_NAMES, SEVERITIES

log = logging.getLogger("gpu_rdma_injector.audit")

DEFAULT_STATE_DIR = Path(tempfile.gettempdir()) / "gpu-rdma-injector-audit"
RUN_TIMEOUT = 15 * 60.0
"""A run taking longer is killed (and counted as failed)."""
FIRST_DELAY = 30.0
"""The first run waits this long after start-up, so the webhook is serving first."""
OUTPUT_LIMIT = 1024 * 1024
ERROR_LIMIT = 300
NICENESS = 10
RESULTS = ("success", "reports-failed", "failed")


class BackgroundAudit:
    def __init__(
        self,
        command: Sequence[str],
        interval: float,
        state_dir: Path = DEFAULT_STATE_DIR,
        *,
        first_delay: float = FIRST_DELAY,
        timeout: float = RUN_TIMEOUT,
    ) -> None:
        self.command = list(command)
        self.interval = interval
        self.state_dir = state_dir
        self.first_delay = min(first_delay, interval)
        self.timeout = timeout
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._child_lock = threading.Lock()

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._loop, name="background-audit", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        with self._child_lock:
            if self._child is not None and self._child.poll() is None:
                self._child.kill()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        delay = self.first_delay
        while not self._stopping.wait(delay):
            try:
                delay = self.tick()
            except Exception:  # a bug here must not end the audits for good
                log.exception("background audit failed")
                delay = self.interval

    # -- one turn ---------------------------------------------------------------------------------

    def tick(self) -> float:
        """Run the audit if it is due and no other process runs it; seconds until the next look."""
        due = float(self.state().get("lastAttempt", 0.0)) + self.interval - time.time()
        if due > 0:
            return due
        with self._locked() as held:
            if not held:
                return min(self.interval, 60.0)  # another worker runs it now
            state = self.state()
            due = float(state.get("lastAttempt", 0.0)) + self.interval - time.time()
            if due > 0:
                return due
            self._write(self._run(state))
        return self.interval

    def _run(self, state: dict[str, Any]) -> dict[str, Any]:
        started = time.time()
        code, summary, error = self._child_run()
        runs = dict(state.get("runs") or {})
        new = {**state, "lastAttempt": started, "duration": time.time() - started}
        written = summary.get("reports") if summary else None
        if summary is not None and code in (0, 1):
            result = "success"
        elif summary is not None and isinstance(written, dict) and "error" in written:
            result, error = "reports-failed", str(written["error"])
        else:
            result = "failed"
        runs[result] = runs.get(result, 0) + 1
        new["runs"] = runs
        if summary is not None:
            new["summary"] = summary
            new["lastSuccess"] = time.time()
        new["lastError"] = error if result != "success" else None
        fields = {"result": result, "duration_s": round(new["duration"], 3)}
        if summary is not None:
            fields.update(summary.get("summary") or {})
        if result == "success":
            log.info("background audit", extra={"fields": fields})
        else:
            log.warning("background audit", extra={"fields": {**fields, "error": error}})
        return new

    def _child_run(self) -> tuple[int | None, dict[str, Any] | None, str]:
        out_path, err_path = self.state_dir / "stdout", self.state_dir / "stderr"
        with out_path.open("wb") as out, err_path.open("wb") as err, self._child_lock:
            if self._stopping.is_set():
                return None, None, "stopping"
            self._child = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, close_fds=True
            )
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, self._child.pid, NICENESS)
        try:
            code: int | None = self._child.wait(self.timeout)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()
            code = None
        with out_path.open("rb") as out:
            raw = out.read(OUTPUT_LIMIT)
        summary = _summary(raw)
        error = _last_line(err_path)
        if code is None:
            error = f"the audit did not finish within {self.timeout:.0f} s and was stopped"
        elif summary is None and not error:
            error = f"the audit exited with status {code} and printed no result"
        return code, summary, error

    # -- state shared by the server processes -----------------------------------------------------

    def state(self) -> dict[str, Any]:
        try:
            state = orjson.loads((self.state_dir / "state.json").read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return {}
        return state if isinstance(state, dict) else {}

    def _write(self, state: dict[str, Any]) -> None:
        """Replace the state file at once: a reader sees the old state or the new."""
        temporary = self.state_dir / f".state.{os.getpid()}.json"
        temporary.write_bytes(orjson.dumps(state))
        temporary.replace(self.state_dir / "state.json")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[bool]:
        with (self.state_dir / "lock").open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -- metrics ----------------------------------------------------------------------------------

    def collector(self) -> Collector:
        return _AuditMetrics(self)


class _AuditMetrics(Collector):
    def __init__(self, audit: BackgroundAudit) -> None:
        self._audit = audit

    def collect(self) -> Iterable[Metric]:
        state = self._audit.state()
        summary = state.get("summary") or {}
        by_check = summary.get("byCheck") or {}
        findings = GaugeMetricFamily(
            "gpu_rdma_injector_audit_findings",
            "Findings of the latest background audit, by check and severity (kept when a run "
            "fails).",
            labels=["check", "severity"],
        )
        for check in CHECKS:
            for severity in SEVERITIES:
                findings.add_metric([check, severity], (by_check.get(check) or {}).get(severity, 0))
        yield findings
        runs = CounterMetricFamily(
            "gpu_rdma_injector_audit_runs",
            "Background audit runs, by result (success, reports-failed: audited but the "
            "PolicyReports could not be written, failed).",
            labels=["result"],
        )
        for result in RESULTS:
            runs.add_metric([result], (state.get("runs") or {}).get(result, 0))
        yield runs
        objects = GaugeMetricFamily(
            "gpu_rdma_injector_audit_objects",
            "Objects the latest background audit read, by kind.",
            labels=["kind"],
        )
        for kind in KIND_NAMES:
            objects.add_metric([kind], (summary.get("objects") or {}).get(kind, 0))
        yield objects
        yield GaugeMetricFamily(
            "gpu_rdma_injector_audit_last_success_timestamp_seconds",
            "Unix time of the latest background audit that produced findings (0: none yet).",
            value=state.get("lastSuccess") or 0,
        )
        yield GaugeMetricFamily(
            "gpu_rdma_injector_audit_last_duration_seconds",
            "Seconds the latest background audit run took.",
            value=state.get("duration") or 0,
        )

    def describe(self) -> Iterable[Metric]:
        return []


def _summary(raw: bytes) -> dict[str, Any] | None:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return document if isinstance(document, dict) and "byCheck" in document else None


def _last_line(path: Path) -> str:
    """The last line the child wrote to stderr (its one-sentence error), bounded."""
    with contextlib.suppress(OSError), path.open("rb") as file:
        file.seek(0, os.SEEK_END)
        file.seek(max(0, file.tell() - 4096))
        lines = file.read().decode("utf-8", "replace").strip().splitlines()
        if lines:
            line = lines[-1].removeprefix("error: ")
            return line[:ERROR_LIMIT]
    return ""


def audit_command(
    python: str,
    *,
    config: Path | None,
    kubeconfig: Path | None,
    serving_cert: Path | None,
    webhook_configuration: str | None,
) -> list[str]:
    """The child's command line: the CLI's own audit, writing reports, printing its counts."""
    command = [python, "-m", "webhook", "audit", "--write-reports", "--output", "summary"]
    for flag, value in (
        ("--config", config),
        ("--kubeconfig", kubeconfig),
        ("--serving-cert", serving_cert),
        ("--webhook-configuration", webhook_configuration),
    ):
        if value is not None:
            command += [flag, str(value)]
    return command
