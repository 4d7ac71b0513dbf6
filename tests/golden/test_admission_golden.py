"""Golden AdmissionReview cases, run through the real app.

Each folder under tests/fixtures/admission/ holds `request.json` (an AdmissionReview as the API
server sends it), optionally `policy.yaml`, `nads.yaml` (NADs, and DRA claims), `namespace.yaml`
and `oldest-kubernetes.txt` (the first version whose Pod schema the case needs), and the answer:
`response.json` (the exact bytes) and `patch.json` (the decoded patch, for reading). The test
also applies the patch to the request's pod with `jsonpatch`, validates the result against the
Kubernetes Pod schema, and re-reviews the mutated pod, which must need nothing more.
Regenerate the expected files with `UPDATE_GOLDEN=1 make unit` and review the diff.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import FIXTURES, AppClient, apply_patch, decoded_patch, load_json, validate_pod

from webhook.claims import NO_CLAIMS
from webhook.nads import StaticNads, StaticNamespaces, load_facts_file
from webhook.plan import MAX_WARNING_LENGTH
from webhook.policy import Policy, default_policy, load_policy
from webhook.reload import PolicyStore
from webhook.server import AppContext, create_app

CASES = sorted(path for path in (FIXTURES / "admission").iterdir() if path.is_dir())
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def _client(case: Path, policy: Policy | None = None) -> AppClient:
    """The app for a golden case: its policy (or `policy`), NADs, claims and namespace."""
    if policy is None:
        policy_file = case / "policy.yaml"
        policy = load_policy(policy_file) if policy_file.exists() else default_policy()
    nads_file = case / "nads.yaml"
    facts = (
        load_facts_file(nads_file.read_text(), policy.resource_name_annotations)
        if nads_file.exists()
        else None
    )
    nads = facts.nads if facts else StaticNads((), authoritative=False)
    claims = facts.claims if facts else NO_CLAIMS
    namespace_file = case / "namespace.yaml"
    namespace = yaml.safe_load(namespace_file.read_text()) if namespace_file.exists() else None
    namespaces = StaticNamespaces(
        {namespace["metadata"]["name"]: namespace["metadata"].get("annotations") or {}}
        if namespace
        else {}
    )
    context = AppContext(
        policy=PolicyStore(policy), nads=nads, namespaces=namespaces, claims=claims
    )
    return AppClient(create_app(context))


def _review(client: AppClient, body: bytes) -> tuple[bytes, dict[str, Any]]:
    response = client.post("/mutate", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    return response.content, response.json()


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_golden_case(case: Path) -> None:
    body = (case / "request.json").read_bytes()
    request = json.loads(body)["request"]
    client = _client(case)
    raw, review = _review(client, body)
    patch = decoded_patch(review["response"])
    if UPDATE:
        (case / "response.json").write_bytes(raw)
        (case / "patch.json").write_text(json.dumps(patch, indent=2) + "\n")

    assert raw == (case / "response.json").read_bytes(), "response differs from response.json"
    again_raw, _ = _review(client, body)  # answered from the kept answers (webhook.decisions)
    assert again_raw == raw, "a second review of the same request answers differently"
    assert patch == load_json(case / "patch.json")
    answer = review["response"]
    assert review["apiVersion"] == "admission.k8s.io/v1"
    assert review["kind"] == "AdmissionReview"
    assert answer["uid"] == request["uid"]
    assert all(
        len(warning) < 120 and len(warning) <= MAX_WARNING_LENGTH
        for warning in answer.get("warnings", [])
    )
    if not answer["allowed"]:
        assert "patch" not in answer
        assert answer["status"]["message"]
        return
    if request["operation"] != "CREATE":
        assert not patch
        return

    mutated = apply_patch(request["object"], patch)
    oldest = case / "oldest-kubernetes.txt"
    validate_pod(mutated, oldest.read_text().strip() if oldest.exists() else None)

    again = copy.deepcopy(json.loads(body))
    again["request"]["object"] = mutated
    _, second = _review(client, json.dumps(again).encode())
    assert "patch" not in second["response"], "mutating a mutated pod must add nothing"


def test_every_case_has_expected_files() -> None:
    for case in CASES:
        assert (case / "about.txt").read_text().strip(), case.name
        assert (case / "response.json").exists(), case.name
        assert (case / "expected.yaml").exists(), case.name
