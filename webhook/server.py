"""The HTTP edge: `create_app(...)` builds the ASGI app; the only module that knows HTTP routes.

POST /mutate answers AdmissionReviews; GET /healthz (the process serves), /readyz (certificates
loaded, policy valid, caches synced) and /metrics (Prometheus text); nothing else (no OpenAPI
document, no docs pages). A body that is not a review gets a 4xx with one line saying why; a
bug while deciding is logged, counted and answered with a well-formed review, refusing the pod
(`on_internal_error="deny"`, code 500) or admitting it unchanged with a warning ("allow").
The decision itself comes in as `decide`, so a test can put a crashing or slow one behind the
real HTTP stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from webhook import __version__, logs
from webhook.admission import Decide, decide_request, error_body
from webhook.certs import CertError
from webhook.context import DEFAULT_BODY_BUDGET, DEFAULT_MAX_BODY_BYTES, AppContext
from webhook.metrics import CONTENT_TYPE
from webhook.reviews import BODY_TIMEOUT, CLOSING_STATUSES, Busy, Reservation, Reviews

__all__ = [
    "DEFAULT_BODY_BUDGET",
    "DEFAULT_MAX_BODY_BYTES",
    "AppContext",
    "create_app",
    "describe",
    "reviews_of",
]


class _MutateEndpoint:
    """POST /mutate as a plain ASGI app in front of FastAPI: the hot path skips routing,
    dependency solving and Request objects. Everything else goes on to the FastAPI app. (The
    server's own protocol answers POST /mutate before ASGI, webhook.protocol; this endpoint
    serves in-process clients and what the protocol hands on.)"""

    def __init__(self, app: ASGIApp, reviews: Reviews) -> None:
        self.app = app
        self.reviews = reviews

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/mutate":
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await _send(send, 405, error_body("use POST for /mutate", 405), ((b"allow", b"POST"),))
            return
        try:
            status, payload = await self._answer(scope, receive)
        except _ClientGone:
            self.reviews.log.debug("client closed the connection before sending its whole body")
            return
        close = ((b"connection", b"close"),) if status in CLOSING_STATUSES else ()
        await _send(send, status, payload, close)

    async def _answer(self, scope: Scope, receive: Receive) -> tuple[int, bytes]:
        started = time.perf_counter()
        content_type, declared = b"", None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                declared = value
        reviews = self.reviews
        refused = reviews.refuse_head(content_type, declared)
        if refused is not None:
            return refused
        with reviews.bodies.reservation() as held:
            try:
                async with asyncio.timeout(BODY_TIMEOUT):
                    body = await _read_body(receive, declared, reviews.max_body_bytes, held)
            except TimeoutError:
                return reviews.timed_out()
            except Busy:
                return reviews.busy()
            if body is None:
                return reviews.too_large()
            return reviews.answer(body, started)


class _ClientGone(Exception):
    """The client closed the connection before its request body arrived."""


async def _read_body(
    receive: Receive, declared: bytes | None, limit: int, held: Reservation
) -> bytes | None:
    """The request body, or None when it is (or says it will be) larger than `limit`; its bytes
    are held in the budget from the head on (the declared length) or as they arrive."""
    if declared is not None and declared.isdigit():
        if int(declared) > limit:
            return None
        held.grow_to(int(declared))
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        held.grow_to(size)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _send(
    send: Send, status: int, payload: bytes, extra_headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode("ascii")),
        *extra_headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def create_app(context: AppContext, decide: Decide = decide_request) -> FastAPI:
    """The app serving `context`; `decide` turns a review into a decision (the seam for tests)."""
    metrics = context.metrics

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_reload_loop(context))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(
        title="gpu-rdma-injector",
        version=__version__,
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    reviews = Reviews(context, decide)
    app.state.reviews = reviews
    app.add_middleware(_MutateEndpoint, reviews=reviews)

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b"ok\n", media_type="text/plain")

    @app.get("/readyz")
    async def readyz() -> Response:
        problems = _not_ready(context)
        if problems:
            return Response(("\n".join(problems) + "\n").encode(), 503, media_type="text/plain")
        return Response(b"ready\n", media_type="text/plain")

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return app


def reviews_of(app: FastAPI) -> Reviews:
    """The POST /mutate answers of an app from `create_app`, for the server's protocol."""
    reviews = app.state.reviews
    if not isinstance(reviews, Reviews):
        raise TypeError("not an app made by webhook.server.create_app")
    return reviews


def _not_ready(context: AppContext) -> list[str]:
    problems = []
    if context.tls is None:
        problems.append("TLS certificate not loaded")
    problems.extend(problem for check in context.readiness_checks if (problem := check()))
    return problems


async def _reload_loop(context: AppContext) -> None:
    """Poll the policy and certificate files; apply changes, keep the last good on errors."""
    log = logs.get()
    while True:
        await asyncio.sleep(context.reload_interval)
        result = await asyncio.to_thread(context.policy.check)
        if result != "unchanged":
            context.metrics.policy_reloads.labels(result).inc()
            context.metrics.policy_valid.set(1 if result == "applied" else 0)
            if result == "applied":
                log.info("policy reloaded", extra={"fields": {"path": str(context.policy.path)}})
            else:
                log.error(
                    "policy reload rejected; keeping the last good policy",
                    extra={"fields": {"error": context.policy.last_error}},
                )
        if context.tls is not None:
            try:
                # On the event loop's own thread, never beside it: OpenSSL does not let a
                # context's certificate change while another thread starts a handshake with it.
                if context.tls.reload_if_changed():
                    context.metrics.certificate_reloads.labels("applied").inc()
                    context.metrics.certificate_expiry.set(context.tls.not_after().timestamp())
                    log.info("serving certificate reloaded")
            except CertError as error:
                context.metrics.certificate_reloads.labels("rejected").inc()
                log.error(
                    "certificate reload rejected; serving the previous certificate",
                    extra={"fields": {"error": str(error)}},
                )


def describe(context: AppContext) -> dict[str, Any]:
    """A summary of the running configuration for the start-up log line."""
    policy = context.policy.current
    return {
        "policy": str(context.policy.path) if context.policy.path else "embedded default",
        "networks": [network.name for network in policy.networks],
        "gpu_resources": list(policy.gpu_resources),
        "nad_source": "cluster" if context.nads.authoritative else "policy only",
    }
