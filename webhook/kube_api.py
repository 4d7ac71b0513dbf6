"""The Kubernetes API as the informers speak it (edge layer): client configuration, the watch
stream's lines, Status errors, object keys.

The pieces of the list/watch protocol that know nothing of informers: how a client is
configured, how a streamed watch body splits into event lines (each at most `MAX_EVENT_BYTES`:
an object is at most 1.5 MiB in etcd, so a longer line is a broken or hostile stream), how an
ERROR event or an ApiException reads as one line, and how to cut a blocked read short.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator, Mapping
from typing import Any

import kubernetes.client
import kubernetes.config
import orjson
from kubernetes.client.exceptions import ApiException

MAX_EVENT_BYTES = 8 * 1024 * 1024
_MAX_ERROR_LENGTH = 300

Key = tuple[str, str]
"""(namespace, name); the namespace is "" for cluster-scoped objects."""


class WatchExpired(Exception):
    """The resourceVersion is older than the server's history (410 Gone): list again."""


class WatchErrorEvent(Exception):
    """The server sent an ERROR event other than 410 Gone."""


class ShortWatch(Exception):
    """The server ended a watch at once without sending anything (treated as a failure)."""


class WatchLineTooLong(ValueError):
    """A watch event line grew past the bound (treated as a failure: the watch starts again)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"a watch event line is longer than {limit} bytes")


class KubeConfigError(Exception):
    """The Kubernetes client configuration cannot be loaded."""


def watch_lines(response: Any, max_line_bytes: int = MAX_EVENT_BYTES) -> Iterator[bytes]:
    """The non-blank lines of a streamed body, whatever the chunk boundaries; WatchLineTooLong
    when a line grows past `max_line_bytes` (the rest of the stream is not read)."""
    pending = bytearray()
    for chunk in response.stream(amt=None, decode_content=True):
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            pending += chunk[start:end]
            if len(pending) > max_line_bytes:
                raise WatchLineTooLong(max_line_bytes)
            if pending.strip():
                yield bytes(pending)
            pending.clear()
            start = end + 1
        pending += chunk[start:]
        if len(pending) > max_line_bytes:
            raise WatchLineTooLong(max_line_bytes)
    if pending.strip():
        yield bytes(pending)


def interrupt(response: Any) -> None:
    """Unblock a thread reading `response` (urllib3 >= 2.3 has shutdown(); else the socket)."""
    try:
        response.shutdown()
    except (AttributeError, ValueError, RuntimeError, OSError):
        sock = getattr(getattr(response, "connection", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def key_of(obj: Mapping[str, Any]) -> Key | None:
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping):
        return None
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        return None
    namespace = metadata.get("namespace")
    return (namespace if isinstance(namespace, str) else "", name)


def resource_version_of(obj: Mapping[str, Any]) -> str | None:
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping):
        return None
    resource_version = metadata.get("resourceVersion")
    return resource_version if isinstance(resource_version, str) and resource_version else None


def error_from_status(status: Mapping[str, Any]) -> Exception:
    code = status.get("code")
    text = f"{status.get('reason', 'Unknown')}: {status.get('message', '')}"
    if code == 410:
        return WatchExpired(text)
    return WatchErrorEvent(f"ERROR event {code} {text}")


def describe_error(exc: Exception) -> str:
    if isinstance(exc, ApiException):
        text = f"HTTP {exc.status} {exc.reason or ''}".rstrip()
        message = _status_message(exc.body)
        if message:
            text = f"{text}: {message}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _MAX_ERROR_LENGTH else text[: _MAX_ERROR_LENGTH - 3] + "..."


def _status_message(body: Any) -> str | None:
    try:
        status = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None
    message = status.get("message") if isinstance(status, dict) else None
    return message if isinstance(message, str) else None


def load_kube_api_client(kubeconfig: str | None) -> kubernetes.client.ApiClient:
    """An ApiClient from the in-cluster service account (kubeconfig None) or a kubeconfig file.

    The configuration is private to the returned client: the process-wide default
    configuration of the kubernetes package is left untouched.
    """
    configuration = kubernetes.client.Configuration()
    try:
        if kubeconfig is None:
            kubernetes.config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        else:
            kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, client_configuration=configuration, persist_config=False
            )
    except (kubernetes.config.ConfigException, OSError) as exc:
        if kubeconfig is None:
            raise KubeConfigError(
                f"Cannot load the in-cluster Kubernetes configuration ({exc}); run inside a pod "
                "with a service account, or give a kubeconfig file."
            ) from None
        raise KubeConfigError(f"Cannot load the kubeconfig file {kubeconfig!r}: {exc}") from None
    return kubernetes.client.ApiClient(configuration)
