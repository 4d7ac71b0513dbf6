"""How values from a request appear in messages (core layer): quoted, and cut to a bound.

A denial or warning quotes what the user wrote so they can find it; a hostile value of a
megabyte must not make a megabyte message. Every user-supplied value in a message goes
through `quote`.
"""

from __future__ import annotations

QUOTE_LIMIT = 200
KEY_LIMIT = 64


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """A string quoted (`repr`), anything else as its `repr`, cut to `limit` characters with a
    count of what was left out."""
    if not isinstance(value, str):
        shown = repr(value)
        return shown if len(shown) <= limit else f"{shown[:limit]}... ({len(shown) - limit} more)"
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value) - limit} more characters)"


def quote_key(key: str) -> str:
    """A JSON key as written, for a message that already puts it in double quotes."""
    shown = key if len(key) <= KEY_LIMIT else key[:KEY_LIMIT] + "..."
    return shown.encode("unicode_escape").decode("ascii").replace('"', '\\"')
