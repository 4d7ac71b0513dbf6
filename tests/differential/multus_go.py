"""The Go side of the differential tests: multus_reader.go, built once per session with Go.

Go comes from Debian's golang-go, which scripts/install-tools installs (so `make test` and CI
have it). Without Go these tests fail with one sentence saying so; they never skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

from webhook import golang
from webhook.networks import AnnotationError, parse, parse_default_network

HERE = Path(__file__).parent


class GoReader:
    """multus_reader running as a subprocess: one request line in, one answer line out."""

    def __init__(self, binary: Path) -> None:
        self.process = subprocess.Popen(
            [str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
        )

    def read(self, value: str, namespace: str = "pod-ns", mode: str = "networks") -> Any:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        request = {"value": value, "namespace": namespace, "mode": mode}
        self.process.stdin.write(orjson.dumps(request) + b"\n")
        line = self.process.stdout.readline()
        assert line, "multus_reader stopped"
        answer = orjson.loads(line)
        if answer["ok"]:
            return [_normal(entry) for entry in answer.get("entries", [])]
        return None

    def close(self) -> None:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)
        self.process.stdout.close()


def _normal(entry: dict[str, Any]) -> dict[str, Any]:
    return {**entry, "ips": _tuple(entry["ips"]), "routes": _tuple(entry["routes"])}


def _tuple(items: list[str] | None) -> tuple[str, ...] | None:
    return None if items is None else tuple(items)


def python_view(value: str, namespace: str = "pod-ns", mode: str = "networks") -> Any:
    """The webhook's reading in multus_reader's shape, or None when it refuses the value."""
    try:
        entries = (parse_default_network(value),) if mode == "default" else parse(value).entries
    except AnnotationError:
        return None
    view = []
    for entry in entries:
        selection = entry.selection
        routes = selection.default_route if selection else None
        view.append(
            {
                "namespace": entry.namespace or namespace,
                "name": entry.name,
                "interface": entry.interface or "",
                "ips": selection.ips if selection else None,
                "mac": selection.mac if selection else "",
                "guid": selection.infiniband_guid if selection else "",
                "deviceID": selection.device_id if selection else "",
                "routes": None if routes is None else tuple(map(golang.ip_string, routes)),
            }
        )
    return view


def start_go_reader(build: Path) -> GoReader:
    """Build multus_reader.go into `build` and start it; a clear failure when Go is missing."""
    go = shutil.which("go")
    if go is None:
        pytest.fail(
            "Go is not installed; the differential tests need it: run scripts/install-tools "
            "(it installs Debian's golang-go)"
        )
    environment = {**os.environ, "GOCACHE": str(build / "cache"), "GOPATH": str(build / "gopath")}
    environment.pop("GOFLAGS", None)
    binary = build / "multus_reader"
    subprocess.run(
        [go, "build", "-o", str(binary), str(HERE / "multus_reader.go")],
        check=True,
        cwd=build,
        env=environment,
        capture_output=True,
    )
    return GoReader(binary)
