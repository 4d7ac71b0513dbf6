from __future__ import annotations

import os
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


def test_a_deleted_or_unreadable_file_is_reported_once_then_recovered(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("networks: [{name: a, resourceName: example.com/a}]\n")
    store = PolicyStore.from_file(path)
    path.unlink()
    assert store.check() == "rejected"
    assert store.last_error == (
        f"policy file '{path}' cannot be read (No such file or directory); keeping the last good "
        "policy until it can"
    )
    assert store.check() == "unchanged"  # said once, not on every poll
    assert store.current.networks[0].name == "a"
    path.write_text("networks: [{name: a, resourceName: example.com/a}]\n")
    assert store.check() == "applied"
    assert store.last_error is None
    path.chmod(0o000)
    try:
        if os.geteuid() != 0:  # root reads whatever the mode
            assert store.check() == "rejected"
            assert "cannot be read (Permission denied)" in (store.last_error or "")
    finally:
        path.chmod(0o644)


def test_a_directory_where_the_file_was_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("networks: []\n")
    store = PolicyStore.from_file(path)
    path.unlink()
    path.mkdir()
    assert store.check() == "rejected"
    assert "cannot be read (Is a directory)" in (store.last_error or "")


def test_restart_only_fields_are_refused_by_a_reload(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("networks: [{name: a, resourceName: example.com/a}]\n")
    store = PolicyStore.from_file(path)
    store.restart_only = ("resource_name_annotations",)
    path.write_text(
        "networks: [{name: b, resourceName: example.com/b}]\n"
        "resourceNameAnnotations: [example.com/resource]\n"
    )
    assert store.check() == "rejected"
    assert store.last_error == (
        f"policy file '{path}': resourceNameAnnotations cannot change while the webhook runs "
        "(its caches in cluster mode are built from it); restart the webhook to apply it"
    )
    assert store.current.networks[0].name == "a"
    assert store.current.resource_name_annotations == ("k8s.v1.cni.cncf.io/resourceName",)
    path.write_text("networks: [{name: b, resourceName: example.com/b}]\n")
    assert store.check() == "applied"  # other fields still reload
    assert store.current.networks[0].name == "b"


def test_without_restart_only_fields_the_annotation_keys_reload(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("networks: []\n")
    store = PolicyStore.from_file(path)
    path.write_text("resourceNameAnnotations: [example.com/resource]\n")
    assert store.check() == "applied"
    assert store.current.resource_name_annotations == ("example.com/resource",)
