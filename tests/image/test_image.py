"""The container image, built from the Dockerfile as it is and run the way the chart runs it.

`test_image_check` runs scripts/image-check: it installs podman, runc and debootstrap when they
are missing (root), builds the image on a debootstrap stand-in for python:3.11.x-slim-bookworm
and checks it (see the script's docstring). There is no skip: where podman cannot run, the test
fails with the script's one sentence saying why. The other tests cover the script's pure pieces.
"""

from __future__ import annotations

import configparser
import importlib.machinery
import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "image-check"


def load_script() -> ModuleType:
    sys.path.insert(0, str(SCRIPT.parent))  # the script imports scripts/image_run.py
    try:
        loader = importlib.machinery.SourceFileLoader("image_check", str(SCRIPT))
        spec = importlib.util.spec_from_loader("image_check", loader)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["image_check"] = module
        loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(SCRIPT.parent))


image_check = load_script()
image_run = sys.modules["image_run"]


@pytest.mark.timeout(1800)
def test_image_check() -> None:
    # --host-pip-config: pip in the build reaches the package index as this machine's pip does
    # (here: through a proxy that re-signs TLS, so with the machine's CA bundle).
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--host-pip-config"],
        capture_output=True,
        text=True,
        timeout=1750,
        check=False,
    )
    print(result.stdout)
    if result.returncode != 0:
        said = result.stderr.strip() or result.stdout.strip()[-3000:]
        pytest.fail(f"scripts/image-check exited {result.returncode}:\n{said}", pytrace=False)
    assert "image-check: passed" in result.stdout


DEB822 = """\
Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_mirror_from_deb822_sources() -> None:
    sources = {
        "/etc/apt/sources.list.d/debian.sources": DEB822,
        "/etc/apt/sources.list.d/nodesource.sources": (
            "Types: deb\nURIs: http://node.example/node_20.x\nSuites: nodistro\n"
        ),
    }
    assert image_check.debian_mirror(sources) == "http://mirror.example/debian"


def test_mirror_from_one_line_sources_skips_other_archives_and_disabled_files() -> None:
    sources = {
        "/etc/apt/sources.list": (
            "# deb http://old.example/debian bookworm main\n"
            "deb http://cloud.example/apt cloud-sdk-bookworm main\n"
            "deb [signed-by=/usr/share/keyrings/k.gpg] http://mirror.example/debian trixie main\n"
        ),
        "/etc/apt/sources.list.d/x.sources.disabled": DEB822,
    }
    assert image_check.debian_mirror(sources) == "http://mirror.example/debian"
    disabled = DEB822.replace("Types: deb\n#", "Enabled: no\nTypes: deb\n#", 1)
    assert image_check.debian_mirror({"a.sources": disabled}) is None
    assert image_check.debian_mirror({}) is None


def test_engine_settings_stay_within_the_machine() -> None:
    wanted = image_check.engine_settings(20000, 96365, 32768, cgroup_v2_only=False)
    assert wanted == {
        "containers": {"default_ulimits": ["nofile=20000:20000", "nproc=32768:32768"]},
        "engine": {"runtime": "runc"},
    }
    big = image_check.PODMAN_DEFAULT_ULIMIT
    assert image_check.engine_settings(big, big, 4194304, cgroup_v2_only=True) == {}


def test_containers_conf_gets_only_what_it_lacks() -> None:
    wanted = image_check.engine_settings(20000, 96365, 32768, cgroup_v2_only=False)
    fresh = image_check.merge_containers_conf("", wanted)
    assert tomllib.loads(fresh) == wanted
    assert image_check.merge_containers_conf(fresh, wanted) == fresh

    own = '[engine]\nruntime = "crun"\n\n[network]\nnetwork_backend = "cni"\n'
    merged = tomllib.loads(image_check.merge_containers_conf(own, wanted))
    assert merged["engine"]["runtime"] == "crun", "a setting already made is left alone"
    assert merged["network"] == {"network_backend": "cni"}
    assert merged["containers"] == wanted["containers"]

    section = '[containers]\nlog_driver = "k8s-file"\n'
    merged = tomllib.loads(image_check.merge_containers_conf(section, wanted))
    assert merged["containers"]["log_driver"] == "k8s-file"
    assert merged["containers"]["default_ulimits"] == ["nofile=20000:20000", "nproc=32768:32768"]


PIP_CONFIG_LIST = """\
:env:.cert='/etc/ssl/certs/ca-certificates.crt'
:env:.default-timeout='180'
:env:.find-links='/opt/wheels'
global.cert='/etc/ssl/other.crt'
global.constraint='/etc/xdg/pip/constraints.txt'
global.extra-index-url='file:///opt/pypi/simple https://index.example/simple'
global.index-url='https://proxy.example/simple'
"""


def test_host_pip_settings_reach_the_build_without_local_paths(tmp_path: Path) -> None:
    host = image_check.host_pip_config(PIP_CONFIG_LIST)
    assert host["cert"] == "/etc/ssl/certs/ca-certificates.crt", "the environment wins"
    bundle = tmp_path / "bundle.crt"
    bundle.write_text("not read here\n")
    host["cert"] = str(bundle)
    options, said = image_check.pip_build_options(tmp_path, None, host)
    conf = configparser.ConfigParser()
    conf.read(tmp_path / "pip.conf")
    assert dict(conf["global"]) == {
        "cert": image_check.BUILD_CA,
        "default-timeout": "180",
        "extra-index-url": "https://index.example/simple",
        "index-url": "https://proxy.example/simple",
    }
    assert options == [
        "--volume",
        f"{bundle}:{image_check.BUILD_CA}:ro",
        "--volume",
        f"{tmp_path / 'pip.conf'}:/etc/pip.conf:ro",
    ]
    assert "cert" in said


def test_no_pip_settings_mean_no_build_options(tmp_path: Path) -> None:
    assert image_check.pip_build_options(tmp_path, None, {})[0] == []
    with pytest.raises(image_run.CheckFailed, match="is not a file"):
        image_check.pip_build_options(tmp_path, tmp_path / "missing.crt", {})


def test_apply_patch_as_the_api_server_would() -> None:
    pod = {"metadata": {}, "spec": {"containers": [{"resources": {"limits": {}}}]}}
    patched = image_run.apply_patch(
        pod,
        [
            {"op": "add", "path": "/metadata/annotations", "value": {"a/b": "x"}},
            {"op": "add", "path": "/spec/containers/0/resources/limits/vendor~1nic", "value": "1"},
            {"op": "add", "path": "/spec/containers/-", "value": {"name": "sidecar"}},
            {"op": "replace", "path": "/metadata/annotations/a~1b", "value": "y"},
        ],
    )
    assert patched["metadata"]["annotations"] == {"a/b": "y"}
    assert patched["spec"]["containers"][0]["resources"]["limits"] == {"vendor/nic": "1"}
    assert patched["spec"]["containers"][1] == {"name": "sidecar"}
    assert pod == {"metadata": {}, "spec": {"containers": [{"resources": {"limits": {}}}]}}
    with pytest.raises(image_run.CheckFailed, match="does not apply"):
        image_run.apply_patch(pod, [{"op": "remove", "path": "/metadata"}])
