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
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from webhook import __version__, logs
from webhook.admission import (
    AdmissionRequest,
    Decide,
    InternalErrorAnswer,
    ReviewError,
    build_response,
    decide_request,
    error_body,
    internal_error,
    parse_review,
)
from webhook.certs import CertError
from webhook.claims import NO_CLAIMS, ClaimLookup
from webhook.metrics import CONTENT_TYPE, Metrics
from webhook.mutation import NO_NADS, Decision
from webhook.nads import NO_NAMESPACES, NadLookup, NamespaceLookup
from webhook.reload import PolicyStore
from webhook.tls import ReloadingTLS

# A review body must arrive within this long of its head (its head has its own deadline,
# webhook.protocol); the API server sends a review in one go, only a stalling client is slower.
BODY_TIMEOUT = 10.0
DEFAULT_MAX_BODY_BYTES = 3 * 1024 * 1024  # the API server caps objects at 1.5 MiB; a review has one
DEFAULT_BODY_BUDGET = 64 * 1024 * 1024
"""Bytes of request bodies one process holds at once, over all its connections: past it, 503.
(A body may take 10 s to arrive; without this, 256 stalled 3 MiB bodies would hold 768 MiB.)"""
JSON_TYPES = ("application/json",)
# Fields copied from a request into a log line are cut to this length (real ones are far shorter).
_LOGGED_FIELD_LENGTH = 256


@dataclass
class AppContext:
    """Everything the app needs, built by the CLI (or a test) and passed in."""

    policy: PolicyStore
    metrics: Metrics = field(default_factory=Metrics)
    nads: NadLookup = NO_NADS
    namespaces: NamespaceLookup = NO_NAMESPACES
    claims: ClaimLookup = NO_CLAIMS
    tls: ReloadingTLS | None = None
    # Extra readiness conditions (e.g. caches synced): each returns None when ready, else why not.
    readiness_checks: list[Callable[[], str | None]] = field(default_factory=list)
    # Namespaces never mutated besides the policy's excludedNamespaces: the webhook's own.
    excluded_namespaces: frozenset[str] = frozenset()
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    body_budget: int = DEFAULT_BODY_BUDGET
    reload_interval: float = 2.0
    on_internal_error: InternalErrorAnswer = "deny"


class _MutateEndpoint:
    """POST /mutate as a plain ASGI app in front of FastAPI: the hot path skips routing,
    dependency solving and Request objects. Everything else goes on to the FastAPI app."""

    def __init__(self, app: ASGIApp, context: AppContext, decide: Decide) -> None:
        self.app = app
        self.context = context
        self.decide = decide
        self.bodies = _BodyBudget(context.body_budget)
        self.log = logs.get()

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
            self.log.debug("client closed the connection before sending its whole body")
            return
        # An answer before the whole body was read ends the connection: what is left of the
        # body must not be taken for the next request.
        close = ((b"connection", b"close"),) if status in (408, 413, 503) else ()
        await _send(send, status, payload, close)

    async def _answer(self, scope: Scope, receive: Receive) -> tuple[int, bytes]:
        started = time.perf_counter()
        content_type, declared = b"", None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                declared = value
        media_type = content_type.split(b";")[0].strip().lower().decode("latin-1")
        if media_type not in JSON_TYPES:
            return self._reject(415, f"content type must be application/json, not {media_type!r}")
        with self.bodies.reservation() as held:
            return self._review(await self._body(receive, declared, held), started)

    async def _body(
        self, receive: Receive, declared: bytes | None, held: _Reservation
    ) -> bytes | tuple[int, bytes]:
        """The request body, or the rejection to answer instead."""
        limit = self.context.max_body_bytes
        try:
            async with asyncio.timeout(BODY_TIMEOUT):
                body = await _read_body(receive, declared, limit, held)
        except TimeoutError:
            return self._reject(408, f"request body did not arrive within {BODY_TIMEOUT:.0f} s")
        except _Busy:
            return self._reject(
                503,
                f"the webhook is already receiving {self.bodies.limit} bytes of request bodies; "
                "retry",
            )
        if body is None:
            return self._reject(413, f"request body is larger than {limit} bytes")
        return body

    def _review(self, body: bytes | tuple[int, bytes], started: float) -> tuple[int, bytes]:
        if isinstance(body, tuple):
            return body
        try:
            review = parse_review(body)
        except ReviewError as error:
            return self._reject(error.status, str(error))
        decision = self._decide(review)
        payload = build_response(review.uid, decision)
        elapsed = time.perf_counter() - started
        metrics = self.context.metrics
        metrics.admissions.labels(decision.outcome, decision.reason).inc()
        metrics.admission_seconds.observe(elapsed)
        self.log.info(
            "admission",
            extra={
                "fields": {
                    "uid": review.uid[:_LOGGED_FIELD_LENGTH],
                    "namespace": review.namespace[:_LOGGED_FIELD_LENGTH],
                    "pod": review.name[:_LOGGED_FIELD_LENGTH],
                    "operation": review.operation,
                    "dry_run": review.dry_run,
                    "outcome": decision.outcome,
                    "reason": decision.reason,
                    "patch_ops": len(decision.patch),
                    "duration_ms": round(elapsed * 1000, 3),
                }
            },
        )
        return 200, payload

    def _decide(self, review: AdmissionRequest) -> Decision:
        context = self.context
        try:
            return self.decide(
                review,
                context.policy.current,
                context.nads,
                context.namespaces,
                context.excluded_namespaces,
                context.claims,
            )
        except Exception:
            answer = context.on_internal_error
            context.metrics.internal_errors.labels(answer).inc()
            self.log.exception(
                "decision failed; "
                + ("refusing the pod" if answer == "deny" else "admitting the pod unchanged"),
                extra={
                    "fields": {
                        "uid": review.uid[:_LOGGED_FIELD_LENGTH],
                        "namespace": review.namespace[:_LOGGED_FIELD_LENGTH],
                    }
                },
            )
            return internal_error(answer)

    def _reject(self, status: int, message: str) -> tuple[int, bytes]:
        self.context.metrics.rejected_requests.labels(str(status)).inc()
        self.log.warning("rejected request", extra={"fields": {"status": status, "error": message}})
        return status, error_body(message, status)


class _ClientGone(Exception):
    """The client closed the connection before its request body arrived."""


class _Busy(Exception):
    """The bodies being received already hold the whole body budget."""


class _BodyBudget:
    """Bytes of request bodies held at once by one app (one event loop: no lock needed)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    @contextlib.contextmanager
    def reservation(self) -> Iterator[_Reservation]:
        held = _Reservation(self)
        try:
            yield held
        finally:
            self.used -= held.size


class _Reservation:
    __slots__ = ("budget", "size")

    def __init__(self, budget: _BodyBudget) -> None:
        self.budget = budget
        self.size = 0

    def grow_to(self, size: int) -> None:
        """Hold `size` bytes in all; _Busy when the budget cannot give them."""
        if size <= self.size:
            return
        if self.budget.used + size - self.size > self.budget.limit:
            raise _Busy
        self.budget.used += size - self.size
        self.size = size


async def _read_body(
    receive: Receive, declared: bytes | None, limit: int, held: _Reservation
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
    app.add_middleware(_MutateEndpoint, context=context, decide=decide)

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
