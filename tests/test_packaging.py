"""The lock files pin every dependency pyproject.toml declares."""

from __future__ import annotations

import re
import tomllib

from conftest import ROOT


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        if line and not line.startswith("#"):
            package, _, version = line.partition("==")
            assert version, f"{name}: {line!r} is not pinned with =="
            pins[re.sub(r"[-_.]+", "-", package).lower()] = version
    return pins


def _names(requirements: list[str]) -> set[str]:
    return {re.sub(r"[-_.]+", "-", re.split(r"[\[<>=!~ ;]", r)[0]).lower() for r in requirements}


def test_locks_cover_declared_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _names(project["dependencies"])
    assert runtime <= set(_pins("requirements.lock")), runtime - set(_pins("requirements.lock"))
    extras = project["optional-dependencies"]
    dev = runtime | _names(extras["test"]) | _names(extras["bench"])
    assert dev <= set(_pins("requirements-dev.lock")), dev - set(_pins("requirements-dev.lock"))


def test_locks_agree_with_each_other() -> None:
    runtime, dev = _pins("requirements.lock"), _pins("requirements-dev.lock")
    assert {name: runtime[name] for name in runtime} == {name: dev.get(name) for name in runtime}
