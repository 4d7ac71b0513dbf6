"""webhook.protocol answers POST /mutate itself, byte for byte as the ASGI endpoint does.

Each case is a byte stream a client sends on one connection (whole, in pieces, pipelined). It is
fed to the real `BoundedHttpProtocol` twice, on a real event loop with a transport that records
what is written: once with the app's `Reviews` (the direct path) and once without (uvicorn's
ASGI cycle into the app's endpoint). What the client receives and whether the connection is
closed must be the same. The ASGI endpoint is the reference: it is what every in-process test
and the golden cases run through.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
import uvicorn
from conftest import FIXTURES
from uvicorn.server import ServerState

from webhook.policy import default_policy
from webhook.protocol import BoundedHttpProtocol, HeadLimits
from webhook.reload import PolicyStore
from webhook.reviews import BODY_TIMEOUT
from webhook.server import AppContext, create_app, reviews_of

BODY = (FIXTURES / "admission-reviews" / "create-gpu-pod-no-annotations.json").read_bytes()
DATE = (b"date", b"Mon, 30 Nov 2026 21:00:00 GMT")


def post(
    body: bytes = BODY,
    path: bytes = b"/mutate",
    content_type: bytes = b"application/json",
    extra: bytes = b"",
    version: bytes = b"1.1",
    length: int | None = None,
) -> bytes:
    declared = len(body) if length is None else length
    return (
        b"POST " + path + b" HTTP/" + version + b"\r\nHost: webhook.test\r\n"
        b"Content-Type: " + content_type + b"\r\n"
        b"Content-Length: %d\r\n" % declared + extra + b"\r\n" + body
    )


def chunked(body: bytes, piece: int = 700) -> bytes:
    parts = [body[i : i + piece] for i in range(0, len(body), piece)]
    encoded = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts)
    return (
        b"POST /mutate HTTP/1.1\r\nHost: webhook.test\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + encoded + b"0\r\n\r\n"
    )


def review(uid: str) -> bytes:
    document = json.loads(BODY)
    document["request"]["uid"] = uid
    return json.dumps(document).encode()


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


CASES: dict[str, list[bytes]] = {
    "one review": [post()],
    "the API server's query string": [post(path=b"/mutate?timeout=10s")],
    "byte by byte": pieces(post(), 1),
    "in pieces of 100": pieces(post(), 100),
    "two pipelined in one read": [post(review("one")) + post(review("two"))],
    "chunked body": [chunked(BODY)],
    "not JSON": [post(b"{not json")],
    "not a review": [post(b'{"kind": "Pod"}')],
    "empty body": [post(b"")],
    "wrong content type, then a review": [post(content_type=b"text/plain") + post()],
    "content type with parameters": [post(content_type=b"application/json; charset=utf-8")],
    "declared too large": [post(b"{}", length=4 * 1024 * 1024)],
    "chunked, too large": [chunked(b" " * (3 * 1024 * 1024 + 1), piece=256 * 1024)],
    "HTTP/1.0": [post(version=b"1.0")],
    "Connection: close": [post(extra=b"Connection: close\r\n")],
    "expect 100-continue": [
        post(b"", extra=b"Expect: 100-continue\r\n", length=len(BODY)),
        BODY,
    ],
    "GET /mutate": [b"GET /mutate HTTP/1.1\r\nHost: webhook.test\r\n\r\n"],
    "percent-encoded path": [post(path=b"/mutat%65")],
    "health check, then a review, pipelined": [
        b"GET /healthz HTTP/1.1\r\nHost: webhook.test\r\n\r\n" + post()
    ],
    "a review, then a health check, pipelined": [
        post() + b"GET /healthz HTTP/1.1\r\nHost: webhook.test\r\n\r\n"
    ],
}


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closed = False
        self.reading = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8443)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


def connection(
    direct: bool, context: AppContext | None = None
) -> tuple[BoundedHttpProtocol, Transport]:
    app = create_app(context or AppContext(policy=PolicyStore(default_policy())))
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
    config.load()
    state = ServerState()
    state.default_headers = [DATE]
    protocol = BoundedHttpProtocol(
        config=config,
        server_state=state,
        app_state={},
        limits=HeadLimits(),
        on_closed=lambda: None,
        on_refused=lambda problem: None,
        reviews=reviews_of(app) if direct else None,
    )
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport


async def _settle(protocol: BoundedHttpProtocol, steps: int = 1000) -> None:
    """Let the ASGI tasks of the connection run (to their end, within `steps`)."""
    for _ in range(steps):
        if not protocol.tasks:
            return
        await asyncio.sleep(0)


def exchange(
    direct: bool, reads: list[bytes], context: AppContext | None = None
) -> tuple[bytes, bool]:
    async def run() -> tuple[bytes, bool]:
        protocol, transport = connection(direct, context)
        for data in reads:
            if transport.closed:
                break
            protocol.data_received(data)
            await _settle(protocol, steps=10)  # a task waiting for more body waits on
        await _settle(protocol)
        closed_by_server = transport.closed
        protocol.connection_lost(None)  # the client hangs up
        await _settle(protocol)
        return b"".join(transport.written), closed_by_server

    return asyncio.run(run())


@pytest.mark.parametrize("reads", CASES.values(), ids=CASES.keys())
def test_the_direct_answer_is_the_asgi_answer(reads: list[bytes]) -> None:
    direct, asgi = exchange(True, reads), exchange(False, reads)
    assert direct == asgi
    assert direct[0].startswith(b"HTTP/1.1 ")


def _answers(written: bytes) -> list[bytes]:
    return re.findall(rb"HTTP/1\.1 \d{3} [^\r]*", written)


def test_pipelined_reviews_are_answered_in_order() -> None:
    written, closed = exchange(True, [post(review("one")) + post(review("two"))])
    assert _answers(written) == [b"HTTP/1.1 200 OK"] * 2
    assert written.index(b'"uid":"one"') < written.index(b'"uid":"two"')
    assert not closed


def test_an_early_answer_on_a_kept_connection_drops_the_rest_of_that_body() -> None:
    written, closed = exchange(True, [post(content_type=b"text/plain") + post()])
    assert _answers(written) == [b"HTTP/1.1 415 Unsupported Media Type", b"HTTP/1.1 200 OK"]
    assert not closed


def test_the_body_budget_refuses_with_503_and_closes() -> None:
    context = AppContext(policy=PolicyStore(default_policy()), body_budget=len(BODY) - 1)
    for direct in (True, False):
        written, closed = exchange(direct, [post()], context)
        assert _answers(written) == [b"HTTP/1.1 503 Service Unavailable"]
        assert closed


def test_a_body_that_stops_arriving_is_answered_408_at_its_deadline() -> None:
    async def run() -> tuple[bytes, bool, float]:
        protocol, transport = connection(True)
        protocol.data_received(post()[: -len(BODY) // 2])
        direct = protocol._direct
        assert direct is not None
        assert isinstance(direct.timer, asyncio.TimerHandle)
        deadline = direct.timer.when() - asyncio.get_running_loop().time()
        callback: Callable[[], None] = direct.timer._callback  # type: ignore[attr-defined]
        direct.timer.cancel()
        callback()  # the deadline, reached
        return b"".join(transport.written), transport.closed, deadline

    written, closed, deadline = asyncio.run(run())
    assert 0 < deadline <= BODY_TIMEOUT == 10.0
    assert _answers(written) == [b"HTTP/1.1 408 Request Timeout"]
    assert closed


def test_the_budget_is_given_back_whatever_happens() -> None:
    async def run() -> int:
        protocol, _ = connection(True)
        reviews = protocol._reviews
        assert reviews is not None
        protocol.data_received(post()[:-100])  # a body on its way holds its declared size
        assert reviews.bodies.used == len(BODY)
        protocol.connection_lost(None)  # the client goes away
        return reviews.bodies.used

    assert asyncio.run(run()) == 0


def test_shutdown_lets_a_review_being_received_finish_then_closes() -> None:
    async def run() -> tuple[bytes, bool, bool]:
        protocol, transport = connection(True)
        request = post()
        protocol.data_received(request[:-100])
        protocol.shutdown()
        still_open = not transport.closed
        protocol.data_received(request[-100:])
        return b"".join(transport.written), still_open, transport.closed

    written, still_open, closed = asyncio.run(run())
    assert still_open
    assert _answers(written) == [b"HTTP/1.1 200 OK"]
    assert b"connection: close\r\n" in written
    assert closed


def test_a_client_that_does_not_read_its_answers_is_not_read_from() -> None:
    async def run() -> tuple[bool, bool]:
        protocol, transport = connection(True)
        protocol.pause_writing()  # the transport's buffer is full
        protocol.data_received(post())
        paused = not transport.reading
        protocol.resume_writing()
        return paused, transport.reading

    assert asyncio.run(run()) == (True, True)
