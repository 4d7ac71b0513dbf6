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

POST /mutate is answered by the protocol itself when it is given the app's `Reviews`: the body is
gathered as the parser delivers it (within `Reviews.max_body_bytes`, the shared body budget and
`BODY_TIMEOUT`) and answered synchronously when complete, in one write, without the ASGI cycle
(a task, scope, receive and send per request: about half the CPU of a review on the way in and
out). The answer's bytes are those the ASGI endpoint would send through uvicorn (status line,
uvicorn's default headers, then ours). Everything else, and a POST /mutate whose path is spelt
otherwise or that arrives while an ASGI request on the connection is still being answered,
goes to the ASGI app as before.

The connection also reports its end (`on_closed`), for the listener's connection count.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from webhook.admission import error_body
from webhook.logs import LOGGER_NAME
from webhook.reviews import BODY_TIMEOUT, CLOSING_STATUSES, Busy, Reservation, Reviews

log = logging.getLogger(LOGGER_NAME)


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
        tail = self._tail
        # Past this, the head is refused for its size wherever its end is: look no further.
        reach = min(len(data), max(0, limits.max_bytes - self.size) + 3)
        ends = []
        crlf = data.find(b"\n\r\n", 0, reach)
        if crlf >= 0:
            ends.append(crlf + 3)
        lf = data.find(b"\n\n", 0, crlf + 2 if crlf >= 0 else reach)
        if lf >= 0:
            ends.append(lf + 2)
        if tail:  # a blank line begun at the end of the previous read
            joined = tail + data[:2]
            ends.extend(
                at + len(mark) - len(tail)
                for mark in (b"\n\r\n", b"\n\n")
                if (at := joined.find(mark)) >= 0
            )
        complete = bool(ends)
        counted = data[: min(ends)] if complete else data
        self.size += len(counted)
        self.lines += counted.count(b"\n")
        self._tail = (tail + data)[-2:] if len(data) < 2 else data[-2:]
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


class _Direct:
    """One POST /mutate the protocol answers itself: its body so far, and how it ends."""

    __slots__ = ("answered", "chunks", "held", "keep_alive", "size", "started", "timer")

    def __init__(self, held: Reservation, keep_alive: bool) -> None:
        self.held = held
        self.keep_alive = keep_alive
        self.started = time.perf_counter()
        self.chunks: list[bytes] = []
        self.size = 0
        self.answered = False
        self.timer: asyncio.TimerHandle | None = None


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with `HeadLimits`, a callback when the connection ends, and
    POST /mutate answered directly when `reviews` is given."""

    def __init__(
        self,
        *args: Any,
        limits: HeadLimits,
        on_closed: Callable[[], None],
        on_refused: Callable[[str], None],
        reviews: Reviews | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._on_closed = on_closed
        self._on_refused = on_refused
        self._reviews = reviews
        self._head: HeadCounter | None = HeadCounter()
        # One timer between requests: uvicorn's keep-alive (no byte at all for
        # `timeout_keep_alive` seconds after an answer) and the head deadline (a head complete
        # within `limits.timeout` seconds of the connection or the previous answer).
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_deadline = 0.0
        self._quiet = False  # no byte arrived since the previous answer
        self._refused = False
        self._direct: _Direct | None = None
        self._reading_paused = False
        # The start of the last answer's head, up to its content-length value.
        self._head_status = 0
        self._head_defaults: object = None
        self._head_start = b""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._head_deadline = self.loop.time() + self._limits.timeout
        self._head_timer = self.loop.call_at(self._head_deadline, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._drop_direct()
        try:
            super().connection_lost(exc)
        finally:
            self._on_closed()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering after a 431: read and drop
        self._quiet = False
        if self._head is not None:
            problem = self._head.feed(data, self._limits)
            if problem is not None:
                self._refuse(problem)
                return
        super().data_received(data)
        direct = self._direct
        if direct is not None and direct.timer is None:
            # A body still on its way (armed only now: most arrive with their head).
            direct.timer = self.loop.call_later(BODY_TIMEOUT, self._body_timed_out)

    def on_message_begin(self) -> None:
        # uvicorn builds the ASGI scope here; it is built only for requests that go the ASGI
        # way (on_headers_complete), the head read so far carried over.
        self.url = b""
        self.expect_100_continue = False
        self.headers = []

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        self._head = None
        if self._reviews is not None and self._answers_directly():
            self._start_direct(self._reviews)
            return
        url, headers, expect = self.url, self.headers, self.expect_100_continue
        super().on_message_begin()
        self.url, self.expect_100_continue = url, expect
        self.headers.extend(headers)  # the list the new scope holds
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        direct = self._direct
        if direct is None:
            super().on_body(body)
            return
        if direct.answered:
            return  # answered early: the rest of the body is read and dropped
        assert self._reviews is not None
        direct.size += len(body)
        if direct.size > self._reviews.max_body_bytes:
            self._answer_direct(self._reviews.too_large())
            return
        try:
            direct.held.grow_to(direct.size)
        except Busy:
            self._answer_direct(self._reviews.busy())
            return
        direct.chunks.append(body)

    def on_message_complete(self) -> None:
        direct = self._direct
        if direct is None:
            super().on_message_complete()
            self._head = HeadCounter()  # the next request's head starts here
            return
        self._head = HeadCounter()
        if not direct.answered:
            assert self._reviews is not None
            chunks = direct.chunks
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            try:
                answer = self._reviews.answer(body, direct.started)
            except Exception:  # a bug outside the decision (which has its own answer)
                log.exception("answering a review failed")
                answer = 500, error_body("internal error while answering the review", 500)
                direct.keep_alive = False
            self._answer_direct(answer)
        self._drop_direct()
        self.on_response_complete()
        if self.transport.is_closing():
            return
        if self.flow.write_paused and not self._reading_paused:
            # The client does not read its answers: read no more requests until it does.
            self.flow.pause_reading()
            self._reading_paused = True

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._reading_paused:
            self._reading_paused = False
            self.flow.resume_reading()

    def shutdown(self) -> None:
        direct = self._direct
        if direct is not None and not direct.answered:
            direct.keep_alive = False  # answer the review being received, then close
            return
        super().shutdown()

    # -- POST /mutate, answered here ---------------------------------------------------------------

    def _answers_directly(self) -> bool:
        if self.parser.get_method() != b"POST" or self.url.partition(b"?")[0] != b"/mutate":
            return False
        if self.cycle is not None and not self.cycle.response_complete:
            return False  # an ASGI answer on this connection comes first: keep the order
        return not self.parser.should_upgrade()

    def _start_direct(self, reviews: Reviews) -> None:
        content_type, declared = b"", None
        for name, value in self.headers:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                declared = value
        keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
        direct = self._direct = _Direct(Reservation(reviews.bodies), keep_alive)
        refused = reviews.refuse_head(content_type, declared)
        if refused is None and declared is not None and declared.isdigit():
            try:
                direct.held.grow_to(int(declared))
            except Busy:
                refused = reviews.busy()
        if refused is not None:
            self._answer_direct(refused)
        elif self.expect_100_continue:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _answer_direct(self, answer: tuple[int, bytes]) -> None:
        """Write the whole answer at once, as uvicorn would for the ASGI endpoint's."""
        direct = self._direct
        assert direct is not None
        direct.answered = True
        direct.held.release()
        direct.chunks = []
        status, payload = answer
        close = status in CLOSING_STATUSES or not direct.keep_alive
        defaults = self.server_state.default_headers  # a new list when the date changes
        if status != self._head_status or defaults is not self._head_defaults:
            self._head_status, self._head_defaults = status, defaults
            self._head_start = b"".join(
                [
                    STATUS_LINE[status],
                    *(name + b": " + value + b"\r\n" for name, value in defaults),
                    b"content-type: application/json\r\ncontent-length: ",
                ]
            )
        ending = b"\r\nconnection: close\r\n\r\n" if close else b"\r\n\r\n"
        self.transport.write(b"%s%d%s%s" % (self._head_start, len(payload), ending, payload))
        if close:
            self.transport.close()

    def _body_timed_out(self) -> None:
        direct = self._direct
        if direct is None or self._reviews is None:
            return
        direct.timer = None
        if direct.answered:
            self.transport.close()  # answered early, and the rest of the body never came
        else:
            self._answer_direct(self._reviews.timed_out())

    def _drop_direct(self) -> None:
        direct, self._direct = self._direct, None
        if direct is not None:
            if direct.timer is not None:
                direct.timer.cancel()
            direct.held.release()

    def on_response_complete(self) -> None:
        """uvicorn's, with its keep-alive timer folded into the head deadline's."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:  # a pipelined ASGI request waits: its head is complete already
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._cancel_head_timer()
        now = self.loop.time()
        self._head_deadline = now + self._limits.timeout
        self._quiet = True
        self._head_timer = self.loop.call_at(now + self.timeout_keep_alive, self._idle_timed_out)

    def _idle_timed_out(self) -> None:
        self._head_timer = None
        if self._quiet or self.transport.is_closing():
            self.timeout_keep_alive_handler()  # no byte of a next request: keep-alive is over
        else:  # a head on its way: it has until its own deadline
            self._head_timer = self.loop.call_at(self._head_deadline, self._head_timed_out)

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

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()
