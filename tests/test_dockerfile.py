"""Static checks of the Dockerfile: pinned base images, a multi-stage build whose final stage runs
as a numeric non-root user without build tools, and an entrypoint that pyproject.toml declares.

No Docker engine is needed: a small parser reads the instructions (continuation lines joined,
comments and parser directives dropped, global ARG defaults substituted into FROM).
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"

# python:<major>.<minor>.<patch>-slim-bookworm, optionally also pinned by digest.
PINNED_BASE = re.compile(
    r"^(docker\.io/library/)?python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?$"
)
BUILD_TOOLS = re.compile(
    r"\b(gcc|g\+\+|clang|build-essential|make|cmake|python3?-dev|libc6?-dev)\b"
)


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def logical_lines(text: str) -> list[str]:
    """Instructions one per line: comments dropped, backslash continuations joined."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # Docker skips these, also inside a continuation
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    if pending:
        lines.append(pending.rstrip())
    return lines


def substitute(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), value)


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(text):
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]  # --platform
            image = substitute(words[0], global_args)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image, name))
        elif not stages:
            assert keyword == "ARG", f"only ARG may precede the first FROM, not {keyword}"
            key, _, default = args.partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append((keyword, args))
    return global_args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text(encoding="utf-8"))[1]


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


def test_parser_joins_continuations_and_substitutes_args() -> None:
    text = (
        "# syntax=docker/dockerfile:1\n"
        "ARG BASE=python:3.11.9-slim-bookworm\n"
        "FROM ${BASE} AS build\n"
        "RUN apt-get update \\\n"
        "    # a comment inside a continuation\n"
        "    && apt-get install -y gcc\n"
        "FROM $BASE\n"
        "USER 1000\n"
    )
    global_args, parsed = parse(text)
    assert global_args == {"BASE": "python:3.11.9-slim-bookworm"}
    assert [(s.image, s.name) for s in parsed] == [
        ("python:3.11.9-slim-bookworm", "build"),
        ("python:3.11.9-slim-bookworm", None),
    ]
    assert parsed[0].all("RUN") == ["apt-get update && apt-get install -y gcc"]
    assert parsed[1].all("USER") == ["1000"]


def test_multi_stage(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    assert stages[0].name == "builder"


def test_base_images_pinned_to_a_full_patch_version(stages: list[Stage]) -> None:
    for stage in stages:
        assert PINNED_BASE.match(stage.image), (
            f"{stage.image!r}: pin python:3.11.<patch>-slim-bookworm (no latest, no 3.11-slim)"
        )
    assert stages[-1].image == stages[0].image, "the runtime must match the builder's Python"


@pytest.mark.parametrize(
    "image", ["python:latest", "python:3.11-slim", "python:3.11-slim-bookworm", "python"]
)
def test_pin_pattern_rejects_floating_tags(image: str) -> None:
    assert not PINNED_BASE.match(image)


def test_builder_installs_the_lock_and_builds_a_wheel(stages: list[Stage]) -> None:
    builder = stages[0]
    runs = " ".join(builder.all("RUN"))
    assert any("requirements.lock" in c for c in builder.all("COPY"))
    assert re.search(r"pip install [^&]*(-r|--requirement) requirements\.lock", runs)
    assert "pip wheel" in runs
    assert "python -m venv /opt/venv" in runs


def test_final_stage_copies_only_the_venv(final: Stage) -> None:
    copies = final.all("COPY") + final.all("ADD")
    assert copies == ["--from=builder /opt/venv /opt/venv"]


def test_final_stage_runs_as_numeric_non_root_user(final: Stage) -> None:
    users = final.all("USER")
    assert users, "the final stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), f"USER {users[-1]}: use a numeric UID (runAsNonRoot checks numbers)"
    assert int(uid) != 0
    if gid:
        assert gid.isdigit()
        assert int(gid) != 0


def test_final_stage_has_no_build_tools(final: Stage) -> None:
    for command in final.all("RUN"):
        words = shlex.split(command)
        if "apt-get" in words and "install" in words:
            assert not BUILD_TOOLS.search(command), command


def test_runtime_writes_only_under_tmp(final: Stage) -> None:
    """The chart's root filesystem is read-only; /tmp (an emptyDir) is the only writable path.
    `serve` without certificate files makes development ones in --dev-cert-dir, whose default
    (certs/dev) is relative, and the image's working directory is /."""
    env = dict(word.split("=", 1) for args in final.all("ENV") for word in shlex.split(args))
    assert env["HOME"] == "/tmp"
    assert env["GPU_RDMA_INJECTOR_DEV_CERT_DIR"].startswith("/tmp/")
    assert all(path.startswith("/tmp") for path in final.all("WORKDIR"))


def test_the_venv_drops_only_what_the_webhook_never_imports(stages: list[Stage]) -> None:
    """The builder deletes kubernetes.aio (the client's asyncio twin, 66 MB): nothing may use it."""
    runs = " ".join(stages[0].all("RUN"))
    assert "site-packages/kubernetes/aio" in runs
    users = [
        path.name
        for path in (REPO / "webhook").rglob("*.py")
        if re.search(
            r"kubernetes\.aio|from kubernetes import .*\baio\b|kubernetes_asyncio",
            path.read_text(encoding="utf-8"),
        )
    ]
    assert not users, f"{users} use kubernetes.aio, which the Dockerfile removes from the image"


def test_entrypoint_is_the_console_script(final: Stage) -> None:
    (entrypoint,) = final.all("ENTRYPOINT")
    assert json.loads(entrypoint) == ["gpu-rdma-injector"]
    (cmd,) = final.all("CMD")
    assert json.loads(cmd) == ["serve"]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["scripts"]["gpu-rdma-injector"] == "webhook.__main__:main"


def test_exposes_the_webhook_port(final: Stage) -> None:
    assert "8443" in " ".join(final.all("EXPOSE")).split()


def test_oci_labels(final: Stage) -> None:
    labels = " ".join(final.all("LABEL"))
    for key in ("title", "description", "version", "revision", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    entries = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert entries[0] == "*", "allowlist: ignore everything, then re-include what COPY needs"
    assert {"!pyproject.toml", "!README.md", "!requirements.lock", "!webhook/"} <= set(entries)
