from __future__ import annotations

from pathlib import Path

import pytest

from webhook.policy import PolicyError
from webhook.reload import PolicyStore


def test_policy_hot_reload_keeps_last_good(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("networks: [{name: a, resourceName: example.com/a}]\n")
    store = PolicyStore.from_file(path)
    assert store.check() == "unchanged"
    path.write_text("networks: [{name: b, resourceName: example.com/b}]\n")
    assert store.check() == "applied"
    assert store.current.networks[0].name == "b"
    path.write_text("networks: [{name: B}]\n")
    assert store.check() == "rejected"
    assert store.current.networks[0].name == "b"
    assert store.last_error is not None
    assert "networks[0].name" in store.last_error
    assert store.check() == "unchanged"


def test_symlink_swap_is_seen(tmp_path: Path) -> None:
    # How a ConfigMap volume updates: ..data points at a new directory.
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    (tmp_path / "v1" / "policy.yaml").write_text("networks: [{name: a, resourceName: x.io/a}]\n")
    (tmp_path / "v2" / "policy.yaml").write_text("networks: [{name: c, resourceName: x.io/c}]\n")
    (tmp_path / "..data").symlink_to("v1")
    (tmp_path / "policy.yaml").symlink_to("..data/policy.yaml")
    store = PolicyStore.from_file(tmp_path / "policy.yaml")
    (tmp_path / "..data_new").symlink_to("v2")
    (tmp_path / "..data_new").rename(tmp_path / "..data")
    assert store.check() == "applied"
    assert store.current.networks[0].name == "c"


def test_bad_initial_file_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("networks: 3\n")
    with pytest.raises(PolicyError):
        PolicyStore.from_file(path)
