"""POST /mutate without the I/O (edge layer): what to answer for a request's head and its body.

A review reaches the server one of two ways: the HTTP protocol answers POST /mutate itself
(webhook.protocol, the way every review from the API server takes), or the ASGI endpoint in
front of FastAPI does (webhook.server: in-process clients, and requests the protocol hands on).
Each receives the body its own way; everything else is decided here, once: the content type,
the body's bounds (its own size, and the budget of bytes all bodies in flight hold together),
the answer (a kept one when the review reads the same as one answered before,
webhook.decisions), the admission's log line and its metrics. Answers are (status, payload).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from webhook import logs
from webhook.admission import (
    AdmissionRequest,
    Decide,
    ReviewError,
    error_body,
    internal_error,
    parse_review,
    response_head,
    response_tail,
)
from webhook.claims import NO_CLAIMS, ClaimLookup
from webhook.context import AppContext
from webhook.decisions import Answer, DecisionCache
from webhook.mutation import Decision
from webhook.nads import NadLookup, NamespaceLookup
from webhook.policy import Policy

# A review body must arrive within this long of its head (its head has its own deadline,
# webhook.protocol); the API server sends a review in one go, only a stalling client is slower.
BODY_TIMEOUT = 10.0
JSON_TYPES = ("application/json",)
# Fields copied from a request into a log line are cut to this length (real ones are far shorter).
_LOGGED_FIELD_LENGTH = 256
# An answer given before the whole body was read ends the connection: what is left of the body
# must not be taken for the next request.
CLOSING_STATUSES = frozenset({408, 413, 503})

Response = tuple[int, bytes]


class Busy(Exception):
    """The bodies being received already hold the whole body budget."""


class BodyBudget:
    """Bytes of request bodies held at once by one process (one event loop: no lock needed)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    @contextlib.contextmanager
    def reservation(self) -> Iterator[Reservation]:
        held = Reservation(self)
        try:
            yield held
        finally:
            held.release()


class Reservation:
    __slots__ = ("budget", "size")

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.size = 0

    def grow_to(self, size: int) -> None:
        """Hold `size` bytes in all; Busy when the budget cannot give them."""
        if size <= self.size:
            return
        if self.budget.used + size - self.size > self.budget.limit:
            raise Busy
        self.budget.used += size - self.size
        self.size = size

    def release(self) -> None:
        self.budget.used -= self.size
        self.size = 0


class Reviews:
    """The answers of POST /mutate for one app (see the module)."""

    def __init__(self, context: AppContext, decide: Decide) -> None:
        self.context = context
        self.decide = decide
        self.bodies = BodyBudget(context.body_budget)
        self.kept = DecisionCache(self._decide, max_entries=context.kept_answers)
        self.log = logs.get()
        self.admission_log = logs.AdmissionLog(self.log)

    @property
    def max_body_bytes(self) -> int:
        return self.context.max_body_bytes

    def refuse_head(self, content_type: bytes, declared: bytes | None) -> Response | None:
        """The answer to give before reading the body, or None to read it."""
        if content_type != b"application/json":  # as the API server sends it: nothing to parse
            media_type = content_type.split(b";")[0].strip().lower().decode("latin-1")
            if media_type not in JSON_TYPES:
                return self.reject(
                    415, f"content type must be application/json, not {media_type!r}"
                )
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return self.too_large()
        return None

    def too_large(self) -> Response:
        return self.reject(413, f"request body is larger than {self.max_body_bytes} bytes")

    def busy(self) -> Response:
        return self.reject(
            503,
            f"the webhook is already receiving {self.bodies.limit} bytes of request bodies; retry",
        )

    def timed_out(self) -> Response:
        return self.reject(408, f"request body did not arrive within {BODY_TIMEOUT:.0f} s")

    def answer(self, body: bytes, started: float) -> Response:
        """The answer to a whole body received since `started` (time.perf_counter)."""
        try:
            review = parse_review(body)
        except ReviewError as error:
            return self.reject(error.status, str(error))
        context = self.context
        try:
            answer = self.kept.answer(
                review,
                context.policy.current,
                context.nads,
                context.namespaces,
                context.excluded_namespaces,
                context.claims,
            )
        except _DecisionFailed as failed:
            answer = failed.answer
        decision = answer.decision
        payload = response_head(review.uid) + answer.tail
        elapsed = time.perf_counter() - started
        context.metrics.admissions.add(decision.outcome, decision.reason, elapsed)
        self.admission_log(
            {
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
        )
        return 200, payload

    def _decide(
        self,
        request: AdmissionRequest,
        policy: Policy,
        nads: NadLookup,
        namespaces: NamespaceLookup,
        excluded_namespaces: frozenset[str] = frozenset(),
        claims: ClaimLookup = NO_CLAIMS,
    ) -> Decision:
        """`decide`, with a crash logged, counted and turned into `--on-internal-error`'s
        answer (raised as _DecisionFailed, so that it is never kept)."""
        try:
            return self.decide(request, policy, nads, namespaces, excluded_namespaces, claims)
        except Exception:
            answer = self.context.on_internal_error
            self.context.metrics.internal_errors.labels(answer).inc()
            self.log.exception(
                "decision failed; "
                + ("refusing the pod" if answer == "deny" else "admitting the pod unchanged"),
                extra={
                    "fields": {
                        "uid": request.uid[:_LOGGED_FIELD_LENGTH],
                        "namespace": request.namespace[:_LOGGED_FIELD_LENGTH],
                    }
                },
            )
            decision = internal_error(answer)
            raise _DecisionFailed(Answer(decision, response_tail(decision))) from None

    def reject(self, status: int, message: str) -> Response:
        self.context.metrics.rejected_requests.labels(str(status)).inc()
        self.log.warning("rejected request", extra={"fields": {"status": status, "error": message}})
        return status, error_body(message, status)


class _DecisionFailed(Exception):
    """The decision crashed; `answer` is what `--on-internal-error` says to answer."""

    def __init__(self, answer: Answer) -> None:
        super().__init__()
        self.answer = answer
