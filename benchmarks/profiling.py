"""Where the server's time goes: py-spy samples of the serve process, sorted into layers.

Each sample (a stack, as py-spy's raw "collapsed" format gives it, with native frames) is
charged to the layer of its innermost frame that belongs to a known layer: time spent in
OpenSSL under uvloop counts as TLS, time in a regex under the networks parser counts as the
decision. Frames no rule knows (a bare libc address, an interpreter builtin) pass the sample
on to their caller. Samples of waiting threads are counted apart.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.targets import VENV_BIN, BenchError

# (layer, pattern on one frame "function (file:line)"), tried innermost frame first.
LAYERS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (layer, re.compile(pattern))
    for layer, pattern in (
        (
            "TLS (OpenSSL, ssl module, uvloop's SSL protocol)",
            r"libssl|libcrypto|\(ssl\.py|_ssl\.|SSLProtocol|SSLObject|SSL_",
        ),
        ("logging (JSON log line per admission)", r"\(logging/|webhook/logs\.py"),
        ("metrics (prometheus_client)", r"prometheus_client/|webhook/metrics\.py"),
        (
            "decision (mutation, networks, policy, patch, jsonpointer)",
            r"webhook/(mutation|placement|plan|pod|references|networks|gojson|golang|policy|"
            r"patch|quantity|nads|messages)\.py|jsonpointer",
        ),
        ("kept answers (webhook.decisions: key, lookup)", r"webhook/decisions\.py"),
        ("AdmissionReview parse/build (orjson, base64)", r"webhook/admission\.py|orjson"),
        ("review handling (webhook.reviews, server.py)", r"webhook/(reviews|server)\.py"),
        ("pydantic", r"pydantic"),
        ("FastAPI/Starlette (routing, middleware, request)", r"fastapi/|starlette/"),
        (
            "HTTP/1.1 (uvicorn, httptools, webhook.protocol)",
            r"uvicorn/|httptools|parser\.c|webhook/protocol\.py",
        ),
        ("event loop, sockets (uvloop, asyncio)", r"uvloop|loop\.c|asyncio|\buv_"),
        ("garbage collection", r"gc_collect|collect_with_callback|collect_generations"),
    )
)
# A sample whose stack holds one of these is a thread waiting (the thread pool's idle workers,
# the event loop in epoll): not work, left out of the shares.
IDLE = re.compile(
    r"_queue_SimpleQueue_get|epoll_p?wait|Condition\.wait|Event\.wait|time_sleep|select_select"
)
OTHER = "other"


def py_spy() -> str:
    binary = VENV_BIN / "py-spy"
    found = str(binary) if binary.exists() else shutil.which("py-spy")
    if found is None:
        raise BenchError("py-spy is not installed; run benchmarks/run --install-only")
    return found


def record(pid: int, seconds: float, output: Path, fmt: str) -> tuple[bool, str]:
    """py-spy record of `pid`; (native frames included, py-spy's summary line)."""
    base = [py_spy(), "record", "--pid", str(pid), "--duration", f"{seconds:.0f}"]
    base += ["--rate", "100", "--format", fmt, "--output", str(output)]
    # Native frames show OpenSSL and uvloop's C code, but need the process paused per sample;
    # without them, sample without pausing.
    for native in (True, False):
        command = [*base, "--native" if native else "--nonblocking"]
        completed = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=seconds + 60
        )
        if completed.returncode == 0 and output.exists() and output.stat().st_size:
            lines = (completed.stdout + completed.stderr).splitlines()
            summary = next((x for x in lines if "Samples:" in x), "")
            return native, summary.replace("py-spy> ", "").strip()
        failure = completed.stderr.strip()[-500:]
    raise BenchError(f"py-spy record failed: {failure}")


def layer_of(stack: list[str]) -> str:
    for frame in reversed(stack):
        for layer, pattern in LAYERS:
            if pattern.search(frame):
                return layer
    return OTHER


def summarise(collapsed: str, top: int = 12) -> dict[str, Any]:
    """Shares per layer, and the functions with the most samples of their own (self time)."""
    layers: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = idle = 0
    for line in collapsed.splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        count = int(count_text)
        stack = stack_text.split(";")
        if any(IDLE.search(frame) for frame in stack):
            idle += count
            continue
        total += count
        layers[layer_of(stack)] += count
        leaves[_without_line(_innermost_known(stack))] += count
    if not total:
        return {"samples": 0, "idle_samples": idle, "layers": [], "top_self": []}
    return {
        "samples": total,
        "idle_samples": idle,
        "layers": [
            {"layer": layer, "percent": 100 * n / total} for layer, n in layers.most_common()
        ],
        "top_self": [
            {"function": name, "percent": 100 * n / total} for name, n in leaves.most_common(top)
        ],
    }


def _innermost_known(stack: list[str]) -> str:
    """The innermost frame with a name (bare addresses like 0x7f.. (libc.so.6) are skipped)."""
    for frame in reversed(stack):
        if not frame.startswith("0x"):
            return frame
    return stack[-1]


def _without_line(frame: str) -> str:
    return re.sub(r":\d+\)$", ")", frame)
