from __future__ import annotations

import json

import jsonpatch

from webhook.patch import Op, pointer, serialize


def test_pointer_escapes_slash_and_tilde() -> None:
    assert pointer("metadata", "annotations", "k8s.v1.cni.cncf.io/networks") == (
        "/metadata/annotations/k8s.v1.cni.cncf.io~1networks"
    )
    assert pointer("a~b", 0) == "/a~0b/0"


def test_serialized_patch_applies() -> None:
    ops = [
        Op("add", pointer("metadata", "annotations", "k8s.v1.cni.cncf.io/networks"), "n"),
        Op("replace", pointer("spec", "x~y"), 2),
    ]
    doc = {"metadata": {"annotations": {}}, "spec": {"x~y": 1}}
    patched = jsonpatch.apply_patch(doc, json.loads(serialize(ops)))
    assert patched == {
        "metadata": {"annotations": {"k8s.v1.cni.cncf.io/networks": "n"}},
        "spec": {"x~y": 2},
    }
