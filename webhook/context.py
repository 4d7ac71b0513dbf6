"""What one server process serves from (edge layer): `AppContext`, built by the CLI or a test.

The policy store, metrics, NAD, namespace and DRA claim lookups, TLS, readiness checks and the
bounds of request bodies and kept answers; `webhook.server`, `webhook.reviews` and
`webhook.protocol` read it, nothing here does any I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from webhook.admission import InternalErrorAnswer
from webhook.claims import NO_CLAIMS, ClaimLookup
from webhook.decisions import DEFAULT_MAX_ENTRIES
from webhook.metrics import Metrics
from webhook.mutation import NO_NADS
from webhook.nads import NO_NAMESPACES, NadLookup, NamespaceLookup
from webhook.reload import PolicyStore
from webhook.tls import ReloadingTLS

DEFAULT_MAX_BODY_BYTES = 3 * 1024 * 1024  # the API server caps objects at 1.5 MiB; a review has one
DEFAULT_BODY_BUDGET = 64 * 1024 * 1024
"""Bytes of request bodies one process holds at once, over all its connections: past it, 503.
(A body may take 10 s to arrive; without this, 256 stalled 3 MiB bodies would hold 768 MiB.)"""


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
    # Answers kept for reviews that read the same (webhook.decisions); 0 keeps none.
    kept_answers: int = DEFAULT_MAX_ENTRIES
