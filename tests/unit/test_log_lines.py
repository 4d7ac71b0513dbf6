"""webhook.logs: JSON lines written in batches by a thread, with nothing lost on the way.

The writer's thread is driven through its seam (`_wait`, how it lets a batch gather) so that no
test depends on timing: what is asserted is what reaches the stream and when, in steps.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from webhook import logs
from webhook.logs import (
    FLUSH_SECONDS,
    MAX_PENDING_BYTES,
    AdmissionLog,
    JsonFormatter,
    JsonLinesHandler,
    LineWriter,
)


class Stream(io.BytesIO):
    """A stream that counts its writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.writes += 1
        return super().write(data)

    def lines(self) -> list[bytes]:
        return self.getvalue().splitlines()


class Gate:
    """Stands in for the writer's wait: the thread blocks here until the test opens it."""

    def __init__(self) -> None:
        self.timeouts: list[float] = []
        self.entered = threading.Semaphore(0)
        self._open = threading.Event()

    def __call__(self, timeout: float) -> bool:
        self.timeouts.append(timeout)
        self.entered.release()
        self._open.wait()
        return False

    def open(self) -> None:
        self._open.set()


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    saved = {
        name: (logger.handlers[:], logger.level, logger.propagate)
        for name in (logs.LOGGER_NAME, "uvicorn", "uvicorn.error")
        for logger in [logging.getLogger(name)]
    }
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.fixture
def gated() -> Iterator[tuple[LineWriter, Stream, Gate]]:
    stream = Stream()
    writer = LineWriter(stream)
    gate = Gate()
    writer._wait = gate
    writer.start()
    yield writer, stream, gate
    gate.open()
    writer.close()


def test_lines_wait_for_the_batch_and_go_in_one_write(
    gated: tuple[LineWriter, Stream, Gate],
) -> None:
    writer, stream, gate = gated
    writer.put(b"one\n")
    assert gate.entered.acquire(timeout=10)  # the thread woke for the first line ...
    writer.put(b"two\n")
    writer.put(b"three\n")
    assert stream.writes == 0  # ... and lets the batch gather
    assert gate.timeouts == [FLUSH_SECONDS] == [0.1]
    gate.open()
    writer.close()
    assert stream.lines() == [b"one", b"two", b"three"]
    assert stream.writes == 1


def test_a_warning_is_written_at_once_with_every_line_before_it(
    gated: tuple[LineWriter, Stream, Gate],
) -> None:
    writer, stream, gate = gated
    writer.put(b"info\n")
    assert gate.entered.acquire(timeout=10)
    writer.put(b"warning\n", urgent=True)
    assert stream.lines() == [b"info", b"warning"]
    assert stream.writes == 1


def test_at_the_pending_bound_the_producer_writes_itself(
    gated: tuple[LineWriter, Stream, Gate],
) -> None:
    """Lines one byte short of MAX_PENDING_BYTES wait; the line that reaches it is written,
    with all before it, by the caller: memory stays bounded and nothing is dropped."""
    writer, stream, gate = gated
    assert writer.max_pending_bytes == MAX_PENDING_BYTES == 1024 * 1024
    line = b"x" * 1023 + b"\n"
    writer.put(line)
    assert gate.entered.acquire(timeout=10)
    for _ in range(MAX_PENDING_BYTES // len(line) - 2):
        writer.put(line)
    writer.put(b"y" * (len(line) - 2) + b"\n")  # MAX_PENDING_BYTES - 1 bytes wait now
    assert stream.writes == 0
    assert writer.inline_flushes == 0
    writer.put(b"\n")  # exactly MAX_PENDING_BYTES
    assert stream.writes == 1
    assert len(stream.getvalue()) == MAX_PENDING_BYTES
    assert writer.inline_flushes == 1


def test_close_writes_what_is_left_and_later_lines_go_at_once() -> None:
    stream = Stream()
    writer = LineWriter(stream)
    writer._wait = lambda timeout: threading.Event().wait(60)  # never ends a batch by itself
    writer.start()
    writer.put(b"pending\n")
    writer.close()
    assert stream.lines() == [b"pending"]
    writer.put(b"after\n")
    assert stream.lines() == [b"pending", b"after"]
    writer.close()  # twice is harmless


def test_the_thread_writes_a_batch_without_anything_else_happening() -> None:
    stream = Stream()
    writer = LineWriter(stream).start()
    try:
        writer.put(b"alone\n")
        written = threading.Event()
        for _ in range(1000):  # generous: the thread writes after its interval
            if stream.lines():
                written.set()
                break
            threading.Event().wait(0.01)
        assert written.is_set()
        assert stream.lines() == [b"alone"]
    finally:
        writer.close()


def test_a_broken_stream_loses_the_lines_quietly() -> None:
    class Broken(Stream):
        def write(self, data: bytes) -> int:  # type: ignore[override]
            raise BrokenPipeError

    writer = LineWriter(Broken())
    writer.put(b"nowhere\n")  # not started: written at once, and the error swallowed
    writer.close()


def _configured(level: str = "info") -> tuple[logging.Logger, Stream]:
    stream = Stream()
    return logs.configure(level, stream), stream


def test_the_admission_line_is_what_the_formatter_writes_for_the_same_record() -> None:
    logger, stream = _configured()
    fields = {
        "uid": 'u\u00e9"\\',
        "namespace": "team-a",
        "pod": "p-*",
        "operation": "CREATE",
        "dry_run": False,
        "outcome": "mutated",
        "reason": "injected",
        "patch_ops": 17,
        "duration_ms": 0.512,
    }
    AdmissionLog(logger)(fields)
    logger.info("admission", extra={"fields": fields})
    direct, through_logging = (json.loads(line) for line in stream.lines())
    assert list(direct) == list(through_logging)  # same keys, same order
    direct.pop("time"), through_logging.pop("time")
    assert direct == through_logging


def test_the_admission_time_has_the_formatters_shape() -> None:
    logger, stream = _configured()
    AdmissionLog(logger)({"uid": "u"})
    stamp = json.loads(stream.lines()[0])["time"]
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    expected = json.loads(JsonFormatter().format(record))["time"]
    assert len(stamp) == len(expected) == len("2026-01-01T00:00:00.000Z")
    assert stamp[10] == "T"
    assert stamp.endswith("Z")


def test_no_admission_line_below_info() -> None:
    logger, stream = _configured("warning")
    AdmissionLog(logger)({"uid": "u"})
    assert stream.lines() == []


def test_without_a_json_lines_handler_the_admission_line_goes_through_logging(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("test-logs-plain")
    logger.setLevel(logging.INFO)
    with caplog.at_level(logging.INFO, logger="test-logs-plain"):
        AdmissionLog(logger)({"uid": "u"})
    assert [record.getMessage() for record in caplog.records] == ["admission"]
    assert caplog.records[0].fields == {"uid": "u"}  # type: ignore[attr-defined]


def test_batch_lines_routes_every_configured_logger_through_one_writer() -> None:
    logger, stream = _configured()
    writer = logs.batch_lines()
    assert writer is not None
    try:
        handler = logger.handlers[0]
        assert isinstance(handler, JsonLinesHandler)
        assert handler.writer is writer
        assert logging.getLogger("uvicorn.error").handlers == [handler]
        logger.info("first")
        logging.getLogger("uvicorn.error").error("second")  # urgent: both written now
        assert [json.loads(line)["msg"] for line in stream.lines()] == ["first", "second"]
    finally:
        writer.close()
