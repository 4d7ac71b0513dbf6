"""Dependencies: locked exactly and completely (offline), and audited for known vulnerabilities
when pip-audit's vulnerability service can answer (network). The one place the lock files are
read and checked.

From this workplace (and CI) pip-audit cannot audit anything: the package index reachable here
serves the simple index and per-project JSON but not the per-version JSON pip-audit asks for, so
pip-audit skips each dependency as "not found" and still prints "No known vulnerabilities found"
with exit status 0; its other service, OSV, does not resolve. The network test therefore runs
pip-audit on the runtime lock first and skips, saying so, when not one package could be audited;
otherwise it requires every dependency of both lock files audited and none vulnerable. pip-audit
is pinned in scanners.lock and installed by tests/reliability/install-scanners.

Offline, the lock files are checked for what an audit relies on: every line an exact `==` pin,
requirements.lock complete (closed under the installed packages' own requirements, markers
evaluated) and consistent with pyproject.toml, the dev lock a superset with the same versions
that also pins every extra pyproject.toml declares, and the venv the tests run in exactly the
dev lock.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from reliability_support import ROOT

RUNTIME_LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
PIP_AUDIT = ROOT / ".tools" / "scanners" / "bin" / "pip-audit"
INSTALL = ROOT / "tests" / "reliability" / "install-scanners"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.+!_-]+)$")


def _pins(path: Path) -> dict[str, tuple[str, Version]]:
    """canonical name -> (name as written, version); every line must be an exact pin."""
    pins: dict[str, tuple[str, Version]] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"{path.name}:{number}: {line!r} is not an exact name==version pin"
        name = canonicalize_name(match["name"])
        assert name not in pins, f"{path.name}:{number}: {match['name']} is pinned twice"
        pins[name] = (match["name"], Version(match["version"]))
    return pins


def _project_dependencies(*extras: str) -> list[Requirement]:
    """pyproject.toml's runtime dependencies, plus those of the optional `extras`."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    texts = list(project["dependencies"])
    for extra in extras:
        texts += project["optional-dependencies"][extra]
    return [Requirement(text) for text in texts]


def test_every_lock_line_is_an_exact_pin() -> None:
    assert len(_pins(RUNTIME_LOCK)) > 10
    assert len(_pins(DEV_LOCK)) > len(_pins(RUNTIME_LOCK))


def test_runtime_lock_satisfies_pyproject() -> None:
    pins = _pins(RUNTIME_LOCK)
    for requirement in _project_dependencies():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} (pyproject.toml) is not in requirements.lock"
        assert pins[name][1] in requirement.specifier, (requirement, pins[name])


def test_dev_lock_satisfies_pyproject_with_its_extras() -> None:
    pins = _pins(DEV_LOCK)
    for requirement in _project_dependencies("test", "bench"):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} (pyproject.toml) is not in requirements-dev.lock"
        assert pins[name][1] in requirement.specifier, (requirement, pins[name])


def test_dev_lock_pins_the_runtime_lock_unchanged() -> None:
    runtime, dev = _pins(RUNTIME_LOCK), _pins(DEV_LOCK)
    different = {
        name: (version, dev.get(name, ("", None))[1])
        for name, (_, version) in runtime.items()
        if dev.get(name, ("", None))[1] != version
    }
    assert different == {}, "requirements-dev.lock disagrees with requirements.lock"


def test_runtime_lock_is_closed_under_requirements() -> None:
    """Every requirement of every locked package (extras the project asks for included, markers
    evaluated for this interpreter) is locked at a version that satisfies it."""
    pins = _pins(RUNTIME_LOCK)
    extras: dict[str, set[str]] = {}
    for requirement in _project_dependencies():
        extras.setdefault(canonicalize_name(requirement.name), set()).update(requirement.extras)
    problems = []
    for name in pins:
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not any(
                requirement.marker.evaluate({**default_environment(), "extra": extra})
                for extra in extras.get(name, set()) | {""}
            ):
                continue
            wanted = canonicalize_name(requirement.name)
            if wanted not in pins:
                problems.append(f"{name} needs {requirement}, which is not locked")
            elif not requirement.specifier.contains(pins[wanted][1], prereleases=True):
                problems.append(f"{name} needs {requirement}, locked {pins[wanted][1]}")
    assert problems == []


def test_the_test_environment_is_the_dev_lock() -> None:
    mismatched = {}
    for name, (written, version) in _pins(DEV_LOCK).items():
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            mismatched[written] = (str(version), None)
            continue
        if installed != version:
            mismatched[written] = (str(version), str(installed))
    assert mismatched == {}, "the venv differs from requirements-dev.lock (run make venv)"


@pytest.mark.timeout(600)
def test_pip_audit_finds_no_known_vulnerabilities(tmp_path: Path) -> None:
    install = subprocess.run([str(INSTALL)], capture_output=True, text=True, timeout=540)
    assert install.returncode == 0, install.stdout + install.stderr
    for lock in (RUNTIME_LOCK, DEV_LOCK):
        dependencies, result = _audit(lock, tmp_path)
        skipped = [d for d in dependencies if "skip_reason" in d]
        if lock == RUNTIME_LOCK and dependencies and len(skipped) == len(dependencies):
            pytest.skip(
                f"pip-audit's vulnerability service could audit none of the {len(dependencies)} "
                f"locked packages ({skipped[0]['skip_reason']!r}); it would still report no "
                "vulnerabilities"
            )
        vulnerable = {d["name"]: d["vulns"] for d in dependencies if d.get("vulns")}
        assert dependencies, result.stderr
        assert skipped == [], f"{lock.name}: pip-audit could not audit {len(skipped)} packages"
        assert vulnerable == {}, f"{lock.name}: known vulnerabilities: {vulnerable}"
        assert result.returncode == 0, result.stderr


def _audit(
    lock: Path, out_dir: Path
) -> tuple[list[dict[str, Any]], subprocess.CompletedProcess[str]]:
    out = out_dir / f"{lock.name}.json"
    result = subprocess.run(
        [
            str(PIP_AUDIT),
            "--requirement",
            str(lock),
            "--no-deps",
            "--disable-pip",
            "--progress-spinner",
            "off",
            "--format",
            "json",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(out.read_text()) if out.exists() else {}
    return report.get("dependencies", []), result
