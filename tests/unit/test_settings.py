"""webhook.settings through the real command line: flags over environment over defaults, and a
bad value of either is one sentence naming where it came from."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from webhook.__main__ import parse
from webhook.settings import DEFAULT_MAX_CONNECTIONS, ServeSettings, UsageError


def run(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhook", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env},
        cwd=cwd,
    )


def test_version_reads_no_settings_so_a_bad_variable_cannot_break_it() -> None:
    result = run("version", env={"GPU_RDMA_INJECTOR_PORT": "abc"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("gpu-rdma-injector ")
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "GPU_RDMA_INJECTOR_PORT",
            "abc",
            "error: environment variable GPU_RDMA_INJECTOR_PORT 'abc': input should be a valid "
            "integer, unable to parse string as an integer",
        ),
        (
            "GPU_RDMA_INJECTOR_NO_KUBE",
            "maybe",
            "error: environment variable GPU_RDMA_INJECTOR_NO_KUBE 'maybe': input should be a "
            "valid boolean, unable to interpret input",
        ),
        (
            "GPU_RDMA_INJECTOR_MAX_CONNECTIONS",
            "0",
            "error: environment variable GPU_RDMA_INJECTOR_MAX_CONNECTIONS '0': input should be "
            "greater than or equal to 1",
        ),
        (
            "GPU_RDMA_INJECTOR_ON_INTERNAL_ERROR",
            "ignore",
            "error: environment variable GPU_RDMA_INJECTOR_ON_INTERNAL_ERROR 'ignore': input "
            "should be 'deny' or 'allow'",
        ),
    ],
)
def test_a_bad_variable_is_one_sentence_naming_it(
    variable: str, value: str, expected: str, tmp_path: Path
) -> None:
    result = run("serve", env={variable: value}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == expected
    assert result.stdout == ""


def test_a_bad_flag_is_one_sentence_naming_the_flag(tmp_path: Path) -> None:
    result = run(
        "serve", "--no-kube", "--workers", "0", env={"GPU_RDMA_INJECTOR_WORKERS": "x"}, cwd=tmp_path
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip() == "error: --workers '0': input should be greater than or equal to 1"
    )


def test_flags_win_over_variables_which_win_over_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPU_RDMA_INJECTOR_PORT", "9443")
    monkeypatch.setenv("GPU_RDMA_INJECTOR_MAX_CONNECTIONS", "64")
    monkeypatch.setenv("GPU_RDMA_INJECTOR_NAD_NAMESPACES", "team-a, team-b,")
    monkeypatch.setenv("GPU_RDMA_INJECTOR_CONFIG", "")  # empty: unset
    settings = parse(["serve", "--port", "10443"]).settings
    assert isinstance(settings, ServeSettings)
    assert settings.port == 10443
    assert settings.max_connections == 64
    assert settings.nad_namespaces == ("team-a", "team-b")
    assert settings.config is None
    assert settings.on_internal_error == "deny"
    monkeypatch.delenv("GPU_RDMA_INJECTOR_MAX_CONNECTIONS")
    assert parse(["serve"]).settings.max_connections == DEFAULT_MAX_CONNECTIONS


def test_every_serve_option_is_a_flag_and_a_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """One model: each field has its flag and its variable (no option hand-written twice)."""
    help_text = run("serve", "--help", env={}).stdout
    for name in ServeSettings.model_fields:
        assert "--" + name.replace("_", "-") in help_text
    monkeypatch.setenv("GPU_RDMA_INJECTOR_ON_INTERNAL_ERROR", "allow")
    assert parse(["serve"]).settings.on_internal_error == "allow"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--tls-cert-file", "a.crt"], "give both --tls-cert-file and --tls-key-file"),
        (
            ["serve", "--no-kube", "--self-signed-secret", "s"],
            "--self-signed-secret needs the Kubernetes API; drop --no-kube",
        ),
        (
            ["serve", "--self-signed-secret", "s", "--service-name", "x"],
            "--self-signed-secret also needs --webhook-configuration, --pod-namespace, "
            "--tls-cert-file, --tls-key-file",
        ),
        (
            [
                "serve",
                "--self-signed-secret=s",
                "--service-name=x",
                "--webhook-configuration=w",
                "--pod-namespace=n",
                "--tls-cert-file=/a/tls.crt",
                "--tls-key-file=/b/tls.key",
            ],
            "must be in one directory",
        ),
        (["mutate", "-", "--nads", "a", "--kubeconfig", "b"], "give --nads or --kubeconfig"),
        (["certs", "generate", "--out-dir", "x", "--dns-name", "a", "--days", "0"], "--days '0'"),
    ],
)
def test_options_that_go_together(argv: list[str], message: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        parse(argv)


def test_short_flags_of_mutate() -> None:
    invocation = parse(["mutate", "pod.yaml", "-n", "team-a", "-o", "pod"])
    assert (invocation.file, invocation.settings.namespace, invocation.settings.output) == (
        "pod.yaml",
        "team-a",
        "pod",
    )
