"""The worst-case inputs of benchmarks/worst_cases.py answer as each case says.

Time is the benchmark's business (benchmarks/WORST-CASES.md); here each worst input, at or just
past a bound, must get its expected outcome and a well-formed answer, and stay within what the
API server would send (a 3 MiB body).
"""

from __future__ import annotations

import json

import pytest

from benchmarks.worst_cases import MAX_BODY, Case, cases, render, run
from webhook.admission import build_response, decide_request, parse_review
from webhook.nads import NO_NAMESPACES, StaticNads

CASES = cases()


@pytest.mark.parametrize("case", CASES, ids=[case.key for case in CASES])
def test_worst_input_gets_its_outcome(case: Case) -> None:
    assert len(case.body) <= MAX_BODY
    request = parse_review(case.body)
    nads = StaticNads((), authoritative=False)
    decision = decide_request(request, case.policy, nads, NO_NAMESPACES, claims=case.claims)
    assert decision.outcome == case.expect, decision.message
    answer = json.loads(build_response(request.uid, decision))["response"]
    assert answer["uid"] == request.uid
    if not decision.allowed:
        assert len(answer["status"]["message"]) < 1000


def test_report_has_a_row_per_case() -> None:
    results = run(1)
    table = render(results)
    assert [row["key"] for row in results["rows"]] == [case.key for case in CASES]
    assert all(f"`{case.key}`" in table for case in CASES)
    assert json.loads(json.dumps(results))["machine"]
