"""Accepting connections (edge layer): at most N at once, each TLS handshake within a deadline.

uvicorn lets the event loop accept every connection the kernel hands over and gives each TLS
handshake 60 s, so 1,500 connections that never send a ClientHello hold about 70 MB for a
minute. Here at most `ConnectionLimits.max_connections` are open at once, handshakes included.
At the limit, a new connection takes the slot of the oldest one still in its TLS handshake (a
real client's handshake takes milliseconds: a flood of silent connections cannot crowd it out);
when every open connection has finished its handshake, new ones wait in the kernel's listen
backlog until one closes, as nginx and Go's LimitListener do. A handshake that does not finish
within `ConnectionLimits.handshake_timeout` seconds is aborted and its slot freed. Then
uvicorn's HTTP protocol (webhook.protocol) takes over; `BoundedServer` is uvicorn's server with
these listeners in place of the event loop's.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from webhook.protocol import BoundedHttpProtocol, HeadLimits
from webhook.reviews import Reviews

log = logging.getLogger("gpu_rdma_injector.listener")

STARTUP_FAILURE = 3  # uvicorn's exit status when the app's start-up fails

# Errors of accept() that say "no file descriptors or memory right now": wait, then go on.
_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_connections: int
    handshake_timeout: float = 10.0
    head: HeadLimits = field(default_factory=HeadLimits)


@dataclass(slots=True)
class ConnectionCounts:
    """What the listeners saw, for metrics (one event loop writes, the scrape reads)."""

    open: int = 0
    handshakes_failed: int = 0
    evicted: int = 0
    heads_refused: int = 0


class Listener:
    """Accepts TLS connections on a listening socket, at most `max_connections` at once."""

    def __init__(
        self,
        sock: socket.socket,
        ssl_context: ssl.SSLContext,
        limits: ConnectionLimits,
        counts: ConnectionCounts,
        make_protocol: Callable[[Callable[[], None]], asyncio.Protocol],
    ) -> None:
        self._sock = sock
        self._ssl = ssl_context
        self._limits = limits
        self._counts = counts
        self._make_protocol = make_protocol
        self._slots = asyncio.Semaphore(limits.max_connections)
        self._handshakes: dict[asyncio.Task[None], None] = {}  # oldest first
        self._sock.setblocking(False)
        self._accepting = asyncio.get_running_loop().create_task(self._accept())

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                connection, _ = await loop.sock_accept(self._sock)
            except OSError as error:
                if error.errno not in _RESOURCE_ERRORS:
                    raise
                log.warning("cannot accept a connection now (%s); retrying", error.strerror)
                await asyncio.sleep(0.1)
                continue
            if self._slots.locked() and self._handshakes:
                # Full: the oldest connection still in its handshake makes room. A client's
                # handshake takes milliseconds; one that stalls in it costs a slot, not service.
                oldest = next(iter(self._handshakes))
                del self._handshakes[oldest]
                oldest.cancel()
                self._counts.evicted += 1
            try:
                await self._slots.acquire()  # full of served connections: wait for one to close
            except BaseException:
                connection.close()
                raise
            self._counts.open += 1
            task = loop.create_task(self._start(connection))
            self._handshakes[task] = None
            task.add_done_callback(lambda done: self._handshakes.pop(done, None))

    async def _start(self, connection: socket.socket) -> None:
        """The TLS handshake, then the HTTP protocol; the slot is freed when the connection ends."""
        freed = False

        def free() -> None:
            nonlocal freed
            if not freed:
                freed = True
                self._counts.open -= 1
                self._slots.release()

        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: self._make_protocol(free),
                connection,
                ssl=self._ssl,
                ssl_handshake_timeout=self._limits.handshake_timeout,
            )
        except asyncio.CancelledError:  # made room for a newer connection, or shutting down
            connection.close()
            free()
        except Exception as error:  # a failed, aborted or timed-out handshake
            self._counts.handshakes_failed += 1
            log.debug("TLS handshake failed: %s", error)
            connection.close()
            free()

    # What uvicorn's shutdown calls on its servers.
    def close(self) -> None:
        self._accepting.cancel()
        for task in self._handshakes:
            task.cancel()

    async def wait_closed(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self._accepting
        await asyncio.gather(*self._handshakes, return_exceptions=True)


class BoundedServer(uvicorn.Server):
    """uvicorn's server on given listening sockets, behind `Listener`s; with `reviews`, its
    connections answer POST /mutate themselves (webhook.protocol)."""

    def __init__(
        self,
        config: uvicorn.Config,
        ssl_context: ssl.SSLContext,
        limits: ConnectionLimits,
        counts: ConnectionCounts,
        reviews: Reviews | None = None,
    ) -> None:
        super().__init__(config)
        self._ssl_context = ssl_context
        self._limits = limits
        self._counts = counts
        self._reviews = reviews

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            raise SystemExit(STARTUP_FAILURE)
        if not sockets:
            raise ValueError("BoundedServer serves only sockets it is given")
        listeners: list[Any] = [  # uvicorn's shutdown calls close() and wait_closed() on them
            Listener(sock, self._ssl_context, self._limits, self._counts, self._protocol)
            for sock in sockets
        ]
        self.servers = listeners
        self.started = True

    def _protocol(self, on_closed: Callable[[], None]) -> asyncio.Protocol:
        return BoundedHttpProtocol(
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
            limits=self._limits.head,
            on_closed=on_closed,
            on_refused=self._refused,
            reviews=self._reviews,
        )

    def _refused(self, problem: str) -> None:
        self._counts.heads_refused += 1
        log.warning("request head refused", extra={"fields": {"status": 431, "error": problem}})
