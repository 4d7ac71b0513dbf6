"""Structured logging (edge layer): one JSON object per line on stderr, written in batches.

`configure` sends the webhook's and uvicorn's records to stderr as JSON lines, one write per
record. A server process then calls `batch_lines`: from there on, lines go to a `LineWriter`,
whose thread writes what has gathered in one system call at least every `FLUSH_SECONDS`
(a review's admission line used to cost a `write` of its own, about a sixth of the CPU of a
review). Nothing is lost on the way: a warning or an error is written at once together with
every line before it; when `MAX_PENDING_BYTES` are waiting (the stream is slow, or blocked) the
line's producer writes them itself, as without the writer; `close()` (at shutdown, and at
exit) writes what is left. The admission line has a direct path (`AdmissionLog`) that builds the
same JSON object without a `LogRecord`.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any, Protocol

import orjson

LOGGER_NAME = "gpu_rdma_injector"

FLUSH_SECONDS = 0.1
"""A line waits at most this long (plus one write) before it reaches the stream."""
WAKE_BYTES = 64 * 1024
"""Waiting lines of this many bytes wake the writer before its interval is over."""
MAX_PENDING_BYTES = 1024 * 1024
"""Waiting lines never hold more: the producer of the line that reaches it writes them itself."""


class ByteStream(Protocol):
    """Where lines go: stderr's bytes, or whatever a test gives."""

    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...


def _timestamp(created: float) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        + f".{int((created - int(created)) * 1000):03d}Z"
    )


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class LineWriter:
    """Writes lines to a binary stream from a thread of its own, in batches (see the module).

    One producer thread at a time is assumed only for ordering within that thread; `put` and
    `flush` may be called from any thread. `wait` is the writer's way to let a batch gather
    (a seam for tests: `threading.Event.wait` semantics, `timeout` in seconds).
    """

    def __init__(
        self,
        stream: ByteStream,
        *,
        interval: float = FLUSH_SECONDS,
        wake_bytes: int = WAKE_BYTES,
        max_pending_bytes: int = MAX_PENDING_BYTES,
    ) -> None:
        self.stream = stream
        self.interval = interval
        self.wake_bytes = wake_bytes
        self.max_pending_bytes = max_pending_bytes
        self._lines: list[bytes] = []
        self._pending = 0
        self._lock = threading.Lock()  # the waiting lines
        self._write_lock = threading.Lock()  # batches reach the stream one at a time, in order
        self._has_lines = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._running = False
        self._wait: Callable[[float], object] = self._stopping.wait
        self.inline_flushes = 0
        """How often a producer found MAX_PENDING_BYTES waiting and wrote them itself."""

    def start(self) -> LineWriter:
        if self._thread is not None:
            raise RuntimeError("this LineWriter was already started")
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._running = True
        self._thread.start()
        atexit.register(self.close)
        return self

    @property
    def running(self) -> bool:
        return self._running

    def put(self, line: bytes, *, urgent: bool = False) -> None:
        """Queue one line (with its newline); `urgent` writes it, and all before it, now."""
        with self._lock:
            self._lines.append(line)
            self._pending += len(line)
            pending = self._pending
            if len(self._lines) == 1 or pending >= self.wake_bytes:
                self._has_lines.set()
        if urgent or pending >= self.max_pending_bytes or not self._running:
            if pending >= self.max_pending_bytes:
                self.inline_flushes += 1
            self.flush()

    def flush(self) -> None:
        """Write every waiting line now, in one call."""
        with self._write_lock:
            with self._lock:
                lines, self._lines, self._pending = self._lines, [], 0
                if not self._stopping.is_set():  # else close() is waking the thread to end
                    self._has_lines.clear()
            if not lines:
                return
            try:
                self.stream.write(b"".join(lines))
                self.stream.flush()
            except (OSError, ValueError):
                pass  # stderr is gone or closed: there is nowhere left to say so

    def close(self) -> None:
        """Stop the thread and write what is left; later lines are written at once."""
        thread, self._thread = self._thread, None
        self._running = False
        if thread is not None:
            self._stopping.set()
            self._has_lines.set()
            thread.join()
            atexit.unregister(self.close)
        self.flush()

    def _run(self) -> None:
        try:
            while True:
                self._has_lines.wait()
                if self._stopping.is_set():
                    break  # close() writes what is left
                if self._pending < self.wake_bytes:
                    self._wait(self.interval)  # let a batch gather (cut short by close)
                self.flush()
        finally:
            self._running = False  # producers write for themselves from now on


class JsonLinesHandler(logging.Handler):
    """Formats records as JSON lines; writes each at once, or hands it to a `LineWriter`."""

    def __init__(self, stream: ByteStream) -> None:
        super().__init__()
        self.stream = stream
        self.writer: LineWriter | None = None
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record).encode() + b"\n"
        except Exception:
            self.handleError(record)
            return
        self.put(line, urgent=record.levelno >= logging.WARNING)

    def put(self, line: bytes, *, urgent: bool = False) -> None:
        writer = self.writer
        if writer is not None:
            writer.put(line, urgent=urgent)
            return
        try:
            self.stream.write(line)
            self.stream.flush()
        except (OSError, ValueError):
            pass


class AdmissionLog:
    """The line each admission logs, built directly: the object `JsonFormatter` would write for
    `logger.info("admission", extra={"fields": fields})`, without a LogRecord. Falls back to
    exactly that call when the logger does not write through a `JsonLinesHandler`."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._second = -1
        self._prefix = ""

    def __call__(self, fields: dict[str, Any]) -> None:
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        handlers = logger.handlers
        handler = handlers[0] if len(handlers) == 1 else None
        if (
            type(handler) is not JsonLinesHandler
            or handler.level > logging.INFO
            or handler.filters
            or logger.propagate
            or logger.filters
        ):
            logger.info("admission", extra={"fields": fields})
            return
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        line = {
            "time": f"{self._prefix}.{int((now - second) * 1000):03d}Z",
            "level": "info",
            "logger": logger.name,
            "msg": "admission",
        }
        line.update(fields)
        handler.put(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE, default=str))


class _TextStream:
    """A text stream (a test's captured stderr) taking the handler's bytes."""

    def __init__(self, text: IO[str]) -> None:
        self.text = text

    def write(self, data: bytes) -> int:
        return self.text.write(data.decode())

    def flush(self) -> None:
        self.text.flush()


def _stderr() -> ByteStream:
    buffer: ByteStream | None = getattr(sys.stderr, "buffer", None)
    return buffer if buffer is not None else _TextStream(sys.stderr)


def configure(level: str, stream: ByteStream | None = None) -> logging.Logger:
    """JSON lines for our logger and uvicorn's, on `stream` (stderr's bytes); returns the
    webhook's logger. Each line is written at once until `batch_lines`."""
    # The JSON lines use none of these; gathering them costs system calls on every record.
    logging.logProcesses = False
    logging.logThreads = False
    logging.logMultiprocessing = False
    handler = JsonLinesHandler(stream or _stderr())
    for name in (LOGGER_NAME, "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True
    return logging.getLogger(LOGGER_NAME)


def batch_lines(**limits: Any) -> LineWriter | None:
    """From now on, write the configured JSON lines in batches from a thread; the caller
    `close()`s the writer when the process stops. None when `configure` was not called."""
    handler = next(
        (h for h in get().handlers if isinstance(h, JsonLinesHandler)),
        None,
    )
    if handler is None:
        return None
    writer = LineWriter(handler.stream, **limits).start()
    handler.writer = writer
    return writer


def get() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)
