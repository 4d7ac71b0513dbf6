"""Go standard-library rules that Multus applies to the networks annotation (core layer).

Multus is written in Go; wherever Python's own notion differs (what counts as whitespace, how
long a string is, which IP and MAC spellings parse), the webhook uses these functions so that it
reads an annotation exactly as Multus does. Each mirrors one Go function, named in its docstring;
tests/differential/ checks them against Go itself.
"""

from __future__ import annotations

import socket

# unicode.IsSpace: the Latin-1 spaces Go lists by hand, then Unicode's White_Space property.
# Python's str.isspace() also counts U+001C..U+001F, which Go does not.
GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)
_GO_SPACE_SET = frozenset(GO_SPACE)
# syscall.IFNAMSIZ - 1: the kernel's limit on an interface name, in bytes.
IFNAMSIZ_MAX = 15
_HEX = frozenset("0123456789abcdefABCDEF")
_DIGITS = frozenset("0123456789")
# Go's dtoi gives up at this value (net/parse.go `big`).
_DTOI_BIG = 0xFFFFFF
# How an IPv4 address looks in Go's 16-byte form (net.IPv4 and ParseIP return it so).
_V4_PREFIX = b"\x00" * 10 + b"\xff\xff"


def trim_space(text: str) -> str:
    """strings.TrimSpace: strip Go's whitespace (not Python's) from both ends."""
    return text.strip(GO_SPACE)


def byte_length(text: str) -> int:
    """len(s) of a Go string: its UTF-8 length in bytes."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def interface_name_problem(name: str) -> str | None:
    """Why libcni's ValidateInterfaceName refuses `name` (None when it accepts it).

    Every CNI ADD goes through it, so a name it refuses fails the pod at sandbox creation.
    """
    if not name:
        return "it is empty"
    if byte_length(name) > IFNAMSIZ_MAX:
        return f"it is longer than {IFNAMSIZ_MAX} bytes"
    if name in {".", ".."}:
        return "it is '.' or '..'"
    if any(char in "/:" or char in _GO_SPACE_SET for char in name):
        return "it contains '/', ':' or whitespace"
    return None


def parse_mac(text: str) -> bytes | None:
    """net.ParseMAC: 6, 8 or 20 octets as xx:xx.., xx-xx.. or xxxx.xxxx..; None if refused."""
    if not text.isascii() or len(text) < 14:
        return None
    if text[2] in ":-":
        separator = text[2]
        if (len(text) + 1) % 3:
            return None
        count = (len(text) + 1) // 3
        if count not in (6, 8, 20):
            return None
        octets = []
        for index in range(count):
            start = index * 3
            pair = text[start : start + 2]
            if start + 2 < len(text) and text[start + 2] != separator:
                return None
            if len(pair) != 2 or not _HEX.issuperset(pair):
                return None
            octets.append(int(pair, 16))
        return bytes(octets)
    if text[4] == ".":
        if (len(text) + 1) % 5:
            return None
        count = 2 * (len(text) + 1) // 5
        if count not in (6, 8, 20):
            return None
        octets = []
        for start in range(0, len(text), 5):
            group = text[start : start + 4]
            if start + 4 < len(text) and text[start + 4] != ".":
                return None
            if len(group) != 4 or not _HEX.issuperset(group):
                return None
            octets += [int(group[:2], 16), int(group[2:], 16)]
        return bytes(octets)
    return None


def parse_ip(text: str) -> bytes | None:
    """net.ParseIP: dotted IPv4 (no leading zeros) or IPv6 without a zone; 16 bytes, or None.

    glibc's inet_pton follows the same grammar as Go's parser (tests/differential/ checks it).
    """
    if not text.isascii() or "\x00" in text:
        return None
    try:
        if ":" in text:
            return socket.inet_pton(socket.AF_INET6, text)
        return _V4_PREFIX + socket.inet_pton(socket.AF_INET, text)
    except OSError:
        return None


def parse_cidr(text: str) -> tuple[bytes, int] | None:
    """net.ParseCIDR: an address as parse_ip takes it, '/', a decimal prefix within its length."""
    address, slash, prefix = text.partition("/")
    if not slash:
        return None
    parsed = parse_ip(address)
    if parsed is None or not prefix or not _DIGITS.issuperset(prefix):
        return None
    # dtoi fails once the value reaches `big`; leading zeros add nothing to it.
    significant = prefix.lstrip("0") or "0"
    if len(significant) > 8 or int(significant) >= _DTOI_BIG:
        return None
    length = int(significant)
    return (parsed, length) if length <= (128 if ":" in address else 32) else None


def ip_string(address: bytes | None) -> str:
    """net.IP.String: dotted for IPv4 (and IPv4-mapped IPv6), RFC 5952 for IPv6."""
    if address is None:
        return "<nil>"
    if address[:12] == _V4_PREFIX:
        return socket.inet_ntop(socket.AF_INET, address[12:])
    groups = [address[index] << 8 | address[index + 1] for index in range(0, 16, 2)]
    # The longest run of two or more zero groups (the first of equals) becomes "::".
    best_start, best_length, start = -1, 1, -1
    for index, group in enumerate([*groups, 1]):
        if group == 0 and start < 0:
            start = index
        elif group != 0 and start >= 0:
            if index - start > best_length:
                best_start, best_length = start, index - start
            start = -1
    if best_start < 0:
        return ":".join(f"{group:x}" for group in groups)
    head = ":".join(f"{group:x}" for group in groups[:best_start])
    tail = ":".join(f"{group:x}" for group in groups[best_start + best_length :])
    return f"{head}::{tail}"
