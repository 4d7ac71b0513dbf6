"""uvicorn's HTTP/1.1 protocol with bounded request heads (edge layer): a deadline, a size, a count.

uvicorn bounds the idle time between requests (keep-alive) but neither the time a request head
takes to arrive nor its size: the parser underneath buffers a header of any length until its end
arrives. Here, whatever the parser:

- a head must be complete within `HeadLimits.timeout` seconds of the connection opening or of the
  previous response (slowloris), else the connection is closed;
- a head of more than `HeadLimits.max_bytes` bytes (request line, header lines and the blank
  line) or more than `HeadLimits.max_headers` header lines is answered 431 and the connection
  closed. The bytes are counted as they arrive, before the parser sees them, so the parser
  never holds more than the limit. (A pipelined request whose head starts inside the same read
  as the end of the previous request is counted from the next read on: at most one read, 256
  KiB, more. The API server does not pipeline.)

The connection also reports its end (`on_closed`), for the listener's connection count.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from webhook.admission import error_body


@dataclass(frozen=True, slots=True)
class HeadLimits:
    timeout: float = 10.0
    max_bytes: int = 64 * 1024
    max_headers: int = 100


# After a 431 the rest of what the client sends is read and dropped for this long before the
# connection is closed, so that the client can read the answer (closing a socket with unread
# data resets it at once).
LINGER_SECONDS = 1.0


class HeadCounter:
    """Counts the bytes and lines of one request head as they arrive, before any parser."""

    __slots__ = ("_tail", "lines", "size")

    def __init__(self) -> None:
        self.size = 0
        self.lines = 0
        self._tail = b""

    def feed(self, data: bytes, limits: HeadLimits) -> str | None:
        """Count the part of `data` up to the head's blank line; why the head is refused, or None.

        A blank line is LF CRLF or LF LF, so the count never runs past the parser's own end.
        """
        window = self._tail + data
        marks = ((b"\n\r\n", 3), (b"\n\n", 2))
        ends = [at + n for mark, n in marks if (at := window.find(mark)) >= 0]
        complete = bool(ends)
        counted = data[: min(ends) - len(self._tail)] if complete else data
        self.size += len(counted)
        self.lines += counted.count(b"\n")
        self._tail = window[-2:]
        header_lines = self.lines - (2 if complete else 1)  # the request line; the blank line
        if self.size > limits.max_bytes:
            return (
                f"the request head is larger than {limits.max_bytes} bytes; send at most "
                f"{limits.max_bytes} bytes of request line and headers"
            )
        if header_lines > limits.max_headers:
            return (
                f"the request has more than {limits.max_headers} header lines; send at most "
                f"{limits.max_headers}"
            )
        return None


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with `HeadLimits` and a callback when the connection ends."""

    def __init__(
        self,
        *args: Any,
        limits: HeadLimits,
        on_closed: Callable[[], None],
        on_refused: Callable[[str], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._on_closed = on_closed
        self._on_refused = on_refused
        self._head: HeadCounter | None = HeadCounter()
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        try:
            super().connection_lost(exc)
        finally:
            self._on_closed()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering after a 431: read and drop
        if self._head is not None:
            problem = self._head.feed(data, self._limits)
            if problem is not None:
                self._refuse(problem)
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        self._head = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head = HeadCounter()  # the next request's head starts here

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_timer()

    def _refuse(self, problem: str) -> None:
        self._refused = True
        self._cancel_head_timer()
        self._on_refused(problem)
        body = error_body(problem, 431)
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self._limits.timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()
