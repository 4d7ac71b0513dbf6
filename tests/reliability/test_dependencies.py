"""Dependencies: locked exactly and completely (offline), and audited for known vulnerabilities
when pip-audit's vulnerability service can be reached (network).

From this workplace (and CI) pip-audit cannot audit anything: its PyPI service asks
https://pypi.org/pypi/<name>/<version>/json, which the registry mirror here answers with 404 for
every package (the simple index and per-project JSON are served, per-version JSON is not), so
pip-audit skips each dependency as "not found on PyPI" and still prints "No known
vulnerabilities found" with exit status 0; its OSV service, https://api.osv.dev/v1/query, does not
resolve (DNS). The network test therefore probes that URL once, skips with the precise reason
when it fails, and otherwise runs pip-audit on both lock files and requires that every
dependency was actually audited and none is vulnerable. pip-audit is pinned in scanners.lock
and installed by tests/reliability/install-scanners.

Offline, the lock files are checked for what an audit relies on: every line an exact `==` pin,
requirements.lock complete (closed under the installed packages' own requirements, markers
evaluated) and consistent with pyproject.toml, the dev lock a superset with the same versions,
and the venv the tests run in exactly the dev lock.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path

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


def _project_dependencies() -> list[Requirement]:
    document = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [Requirement(text) for text in document["project"]["dependencies"]]


def test_every_lock_line_is_an_exact_pin() -> None:
    assert len(_pins(RUNTIME_LOCK)) > 10
    assert len(_pins(DEV_LOCK)) > len(_pins(RUNTIME_LOCK))


def test_runtime_lock_satisfies_pyproject() -> None:
    pins = _pins(RUNTIME_LOCK)
    for requirement in _project_dependencies():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} (pyproject.toml) is not in requirements.lock"
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


def _audit_service_problem() -> str | None:
    """Why pip-audit's PyPI service cannot audit from here, or None when it can."""
    name, version = next(iter(_pins(RUNTIME_LOCK).values()))
    url = f"https://pypi.org/pypi/{name}/{version}/json"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            json.load(response)
    except urllib.error.HTTPError as error:
        return f"GET {url} answered HTTP {error.code} {error.reason}"
    except (OSError, ValueError) as error:
        return f"GET {url} failed: {error}"
    return None


@pytest.mark.timeout(600)
def test_pip_audit_finds_no_known_vulnerabilities(tmp_path: Path) -> None:
    problem = _audit_service_problem()
    if problem is not None:
        pytest.skip(
            f"pip-audit's vulnerability service is unreachable: {problem} (pip-audit would skip "
            "every dependency and still report no vulnerabilities); its OSV service "
            "(api.osv.dev) is not reachable from this network either"
        )
    install = subprocess.run([str(INSTALL)], capture_output=True, text=True, timeout=540)
    assert install.returncode == 0, install.stdout + install.stderr
    for lock in (RUNTIME_LOCK, DEV_LOCK):
        out = tmp_path / f"{lock.name}.json"
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
        dependencies = report.get("dependencies", [])
        skipped = [d for d in dependencies if "skip_reason" in d]
        vulnerable = {d["name"]: d["vulns"] for d in dependencies if d.get("vulns")}
        assert dependencies, result.stderr
        assert skipped == [], f"{lock.name}: pip-audit could not audit {len(skipped)} packages"
        assert vulnerable == {}, f"{lock.name}: known vulnerabilities: {vulnerable}"
        assert result.returncode == 0, result.stderr
