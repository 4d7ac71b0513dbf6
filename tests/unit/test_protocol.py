"""webhook.protocol's head counter: bytes and lines of a request head, counted before any parser.

The counter looks for the head's end without copying the read and not past the size limit; its
verdicts must be those of the plain reading (join what came, find the first blank line, count up
to it), whatever the head and however the reads split it.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from webhook.protocol import HeadCounter, HeadLimits


class PlainCounter:
    """The obvious way: keep the last two bytes, search the joined window."""

    def __init__(self) -> None:
        self.size = self.lines = 0
        self.tail = b""

    def feed(self, data: bytes, limits: HeadLimits) -> str | None:
        window = self.tail + data
        ends = [
            at + n for mark, n in ((b"\n\r\n", 3), (b"\n\n", 2)) if (at := window.find(mark)) >= 0
        ]
        complete = bool(ends)
        counted = data[: min(ends) - len(self.tail)] if complete else data
        self.size += len(counted)
        self.lines += counted.count(b"\n")
        self.tail = window[-2:]
        if self.size > limits.max_bytes:
            return "size"
        if self.lines - (2 if complete else 1) > limits.max_headers:
            return "lines"
        return None


def verdicts(
    counter: HeadCounter | PlainCounter, reads: list[bytes], limits: HeadLimits
) -> list[str | None]:
    out = []
    for data in reads:
        problem = counter.feed(data, limits)
        out.append(
            None
            if problem is None
            else ("size" if "larger" in problem or problem == "size" else "lines")
        )
        if problem is not None:
            break
    return out


LINES = st.lists(
    st.sampled_from([b"a: b", b"x" * 40, b"", b"\r", b"k: " + b"v" * 100, b"\n", b"\r\n"]),
    max_size=30,
)


@settings(max_examples=300)
@given(
    lines=LINES,
    ending=st.sampled_from([b"\r\n\r\n", b"\n\n", b"\n\r\n", b"", b"\r\n"]),
    body=st.binary(max_size=300),
    cuts=st.lists(st.integers(0, 4000), max_size=6),
    max_bytes=st.sampled_from([64, 200, 1000, 65536]),
    max_headers=st.sampled_from([2, 10, 100]),
)
def test_the_counter_agrees_with_the_plain_reading(
    lines: list[bytes],
    ending: bytes,
    body: bytes,
    cuts: list[int],
    max_bytes: int,
    max_headers: int,
) -> None:
    stream = b"POST /mutate HTTP/1.1\r\n" + b"\r\n".join(lines) + ending + body
    points = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    reads = [stream[a:b] for a, b in itertools.pairwise(points) if stream[a:b]]
    limits = HeadLimits(max_bytes=max_bytes, max_headers=max_headers)
    fast, plain = HeadCounter(), PlainCounter()
    assert verdicts(fast, reads, limits) == verdicts(plain, reads, limits)
    if fast.size <= max_bytes:  # sizes agree until the head is refused for its size
        assert (fast.size, fast.lines) == (plain.size, plain.lines)
