"""How values from a request appear in messages (core layer): quoted, and cut to a bound.

A denial or warning quotes what the user wrote so they can find it; a hostile value of a
megabyte must not make a megabyte message. Every user-supplied value in a message goes
through `quote`.
"""

from __future__ import annotations

QUOTE_LIMIT = 200
KEY_LIMIT = 64


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """`repr` of the value's text, cut to `limit` characters with a count of what was left out."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text) - limit} more characters)"


def quote_key(key: str) -> str:
    """A JSON key as written, for a message that already puts it in double quotes."""
    shown = key if len(key) <= KEY_LIMIT else key[:KEY_LIMIT] + "..."
    return shown.encode("unicode_escape").decode("ascii").replace('"', '\\"')
