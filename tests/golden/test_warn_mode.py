"""Warn mode through every golden case: the same decision, said and never done.

Each case under tests/fixtures/admission/ runs through the real app twice: with its own policy
(whose answer `response.json` pins) and with that policy switched to `mode: warn`. In warn mode
every answer must admit the pod with no patch and no status, and its warnings must say what the
enforce answer did: each enforce warning reworded ("added" -> "would add", "set" -> "would
set"), every resource the enforce patch sets named with its count, and a refusal's whole
message, word for word, in the "would refuse:" lines. Answers that change nothing are the same
bytes in both modes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, AppClient, decoded_patch
from test_admission_golden import _client as golden_client

from webhook.mutation import Decision
from webhook.plan import MAX_WARNING_LENGTH, MAX_WARNINGS, WARNING_PREFIX
from webhook.policy import Policy, default_policy, load_policy
from webhook.warn_mode import WOULD_DENY, WOULD_MUTATE, warn_only, would

CASES = sorted(path for path in (FIXTURES / "admission").iterdir() if path.is_dir())
# The API server keeps about 4 KiB of warnings per response.
WARNINGS_BUDGET = 4096


def _policy(case: Path) -> Policy:
    policy_file = case / "policy.yaml"
    return load_policy(policy_file) if policy_file.exists() else default_policy()


def _client(case: Path, policy: Policy) -> AppClient:
    """The golden case's app, with `policy` (the case's, switched to a mode)."""
    return golden_client(case, policy)


def _answer(client: AppClient, body: bytes) -> tuple[bytes, dict[str, Any]]:
    response = client.post("/mutate", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    return response.content, response.json()["response"]


def _refusal(warnings: list[str]) -> str:
    """The denial message the "would refuse:" lines carry, joined back."""
    parts = []
    for text in warnings:
        body = text.removeprefix(WARNING_PREFIX)
        if body.startswith("would refuse: "):
            parts.append(body.removeprefix("would refuse: "))
        elif body.startswith("(cont.) "):
            parts.append(body.removeprefix("(cont.) "))
    return " ".join(parts)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_warn_mode_says_what_enforce_does(case: Path) -> None:
    body = (case / "request.json").read_bytes()
    policy = _policy(case)
    assert policy.mode == "enforce"
    enforce_raw, enforce = _answer(_client(case, policy), body)
    assert enforce_raw == (case / "response.json").read_bytes()
    warn_raw, warn = _answer(_client(case, policy.model_copy(update={"mode": "warn"})), body)

    assert warn["allowed"] is True
    assert "patch" not in warn
    assert "patchType" not in warn
    assert "status" not in warn
    said = warn.get("warnings", [])
    assert len(said) <= MAX_WARNINGS
    assert all(len(text) <= MAX_WARNING_LENGTH for text in said)
    assert sum(len(text.encode()) for text in said) <= WARNINGS_BUDGET

    if not enforce["allowed"]:
        assert _refusal(said) == enforce["status"]["message"]
        return
    patch = decoded_patch(enforce)
    if not patch:
        assert warn_raw == enforce_raw
        return
    # What the patch sets, said whole; every other enforce warning reworded, in order.
    pod = json.loads(body)["request"]["object"]
    for op in patch:
        resource = re.fullmatch(
            r"/spec/containers/(\d+)/resources/(limits|requests)/(.+)", op["path"]
        )
        if resource and op["op"] != "remove":
            container = pod["spec"]["containers"][int(resource[1])]["name"]
            name = resource[3].replace("~1", "/").replace("~0", "~")
            assert any(
                f"{name}={op['value']}" in text and f"in container {container!r}" in text
                for text in said
                if text.startswith(WARNING_PREFIX + "would set ")
            ), op
        if op["path"].startswith("/metadata"):
            assert any(text.startswith(WARNING_PREFIX + "would add networks ") for text in said)
    kept = [would(text) for text in enforce["warnings"] if not _about_units_or_cut(text)]
    assert [text for text in said if not _about_units_or_cut(text)] == kept


def _about_units_or_cut(text: str) -> bool:
    body = text.removeprefix(WARNING_PREFIX)
    return body.startswith(("set ", "would set ", "would remove ")) or (
        body.startswith(("added networks", "would add networks")) and text.endswith("...")
    )


def test_warn_only_keeps_answers_that_change_nothing() -> None:
    unchanged = Decision(True, "unchanged", "nothing-missing", warnings=("gpu-rdma-injector: x",))
    assert warn_only(unchanged, {}) is unchanged
    skipped = Decision(True, "skipped", "opted-out")
    assert warn_only(skipped, {}) is skipped


def test_warn_only_reasons_name_what_would_happen() -> None:
    denied = Decision(
        False, "denied", "unknown-network", message="NAD 'x' does not exist", code=400
    )
    answer = warn_only(denied, {})
    assert (answer.allowed, answer.outcome, answer.reason) == (
        True,
        "unchanged",
        f"{WOULD_DENY}:unknown-network",
    )
    assert answer.warnings == ("gpu-rdma-injector: would refuse: NAD 'x' does not exist",)
    mutated = Decision(
        True, "mutated", "injected", patch=(), warnings=("gpu-rdma-injector: added networks a",)
    )
    assert warn_only(mutated, {}) is mutated  # no patch: nothing would be done
    from webhook.patch import Op, pointer

    op = Op("add", pointer("metadata", "annotations"), {"a": "b"})
    answer = warn_only(Decision(True, "mutated", "injected", (op,), mutated.warnings), {})
    assert answer.reason == WOULD_MUTATE
    assert answer.patch == ()
    assert answer.warnings == ("gpu-rdma-injector: would add networks a",)


def test_a_long_refusal_is_said_whole_within_the_warning_limits() -> None:
    message = " ".join(f"word{index:03d}" for index in range(400))  # about 3 KiB
    answer = warn_only(Decision(False, "denied", "malformed-annotation", message=message), {})
    assert all(len(text) <= MAX_WARNING_LENGTH for text in answer.warnings)
    assert len(answer.warnings) <= MAX_WARNINGS
    if len(answer.warnings) < MAX_WARNINGS:
        assert _refusal(list(answer.warnings)) == message


def test_would_rewords_a_cut_warning_within_the_limit() -> None:
    long = "gpu-rdma-injector: set " + "x" * 200
    assert len(would(long)) == MAX_WARNING_LENGTH
    assert would(long).startswith("gpu-rdma-injector: would set x")
    assert would("gpu-rdma-injector: NAD 'a' not found") == "gpu-rdma-injector: NAD 'a' not found"


def test_every_case_is_checked() -> None:
    assert len(CASES) >= 30
    kinds = {
        json.loads((case / "response.json").read_text())["response"]["allowed"] for case in CASES
    }
    assert kinds == {True, False}


def test_warn_mode_answers_are_counted_by_what_would_happen() -> None:
    case = FIXTURES / "admission" / "gpu-pod-no-annotations"
    refused = FIXTURES / "admission" / "cross-namespace-refused"
    client = _client(case, _policy(case).model_copy(update={"mode": "warn"}))
    _answer(client, (case / "request.json").read_bytes())
    _answer(client, (refused / "request.json").read_bytes())
    metrics = client.get("/metrics").text
    assert (
        'gpu_rdma_injector_admissions_total{outcome="unchanged",reason="would-mutate"} 1.0'
        in metrics
    )
    assert (
        'gpu_rdma_injector_admissions_total{outcome="unchanged",'
        'reason="would-deny:namespace-not-allowed"} 1.0' in metrics
    )


def test_the_policy_reads_mode_and_refuses_others_in_one_sentence() -> None:
    from webhook.policy import PolicyError, parse_policy

    assert default_policy().mode == "enforce"
    assert parse_policy("mode: warn", "p.yaml").mode == "warn"
    with pytest.raises(PolicyError) as error:
        parse_policy("mode: audit", "p.yaml")
    assert str(error.value) == (
        "policy file 'p.yaml': mode: Input should be 'enforce' or 'warn' (got 'audit')"
    )
