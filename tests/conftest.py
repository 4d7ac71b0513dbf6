"""Shared test helpers: fixture paths, applying patches, validating pods against the schema."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jsonpatch
import kubernetes_validate
import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
# The oldest Kubernetes version the project supports and the newest kubernetes-validate knows.
SCHEMA_VERSIONS = ("1.28.0", kubernetes_validate.utils.latest_version())


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())


def apply_patch(obj: dict[str, Any], patch: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply like the API server: the real JSON Patch library; a bad path raises."""
    return jsonpatch.apply_patch(copy.deepcopy(obj), patch)


def decoded_patch(response: dict[str, Any]) -> list[dict[str, Any]]:
    if "patch" not in response:
        return []
    assert response["patchType"] == "JSONPatch"
    return json.loads(base64.b64decode(response["patch"]))


def validate_pod(pod: dict[str, Any], oldest: str | None = None) -> None:
    """The pod must be valid under the official OpenAPI schema, strictly (no unknown fields),
    of every Kubernetes version tested, or of `oldest` and newer (a feature such as DRA's
    resourceClaimTemplateName exists only since then)."""
    document = {"apiVersion": "v1", "kind": "Pod", **pod}
    versions = SCHEMA_VERSIONS if oldest is None else (oldest, SCHEMA_VERSIONS[-1])
    for version in versions:
        kubernetes_validate.validate(document, version, strict=True)


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


class AppClient:
    """Calls an ASGI app in-process through httpx's ASGI transport (no sockets, no lifespan)."""

    def __init__(self, app: Any) -> None:
        self._transport = httpx.ASGITransport(app=app)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def call() -> httpx.Response:
            async with httpx.AsyncClient(
                transport=self._transport, base_url="https://webhook.test"
            ) as client:
                return await client.request(method, path, **kwargs)

        return asyncio.run(call())

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Poll `predicate` until it is true; fail after `timeout` seconds, naming what was awaited."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.01)
