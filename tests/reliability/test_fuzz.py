"""Fuzzing POST /mutate in-process through the real app, under two policies.

Every case goes through `create_app(...)` with conftest's `AppClient` (httpx's ASGI transport,
which re-raises any exception the app lets escape), and every answer is judged by `judge()`:

- never a 5xx, never an exception out of the app;
- a 4xx is a Kubernetes `Status` whose message is one line;
- every 200 is an AdmissionReview `admission.k8s.io/v1` echoing the request's uid, `allowed` a bool,
  warnings of one line under 120 characters;
- a `patch` is base64 of a JSON list of add/replace ops that applies with `jsonpatch` to the
  request's `object`; the patched pod validates (kubernetes-validate, strict, 1.28 and newest)
  whenever the input pod did (checked on a budget: `VALIDATION_BUDGET`);
- a denial carries a one-line `status.message` and no patch;
- the decision never falls back to "internal error" (the decision's own promise: it denies bad
  pods, it does not crash on them). Bugs the fuzzing found were fixed; each has a regression
  test at the end.

Categories and their counts are printed at the end of the module (pytest -s) and written to
tests/reliability/out/fuzz-summary.json. Short mode runs a few thousand cases; long mode
(GPU_RDMA_INJECTOR_LONG=1) runs over 100,000.

Schemathesis was considered and left out: the app publishes no OpenAPI document (/mutate reads
the raw bytes of an AdmissionReview; /healthz, /readyz and /metrics take no input), so
schema-driven generation has nothing to work from. `test_there_is_no_openapi_document_to_fuzz_from`
pins that fact.

The case count is checked when the module's tests are done (in the `summary` fixture, so test
order does not matter): at least 2,000 cases in short mode, 100,000 in long mode, whenever every
category ran (a `-k` selection is not counted).
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import json
import random
import string
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import jsonpatch
import kubernetes_validate.utils
import orjson
import pytest
import yaml
from conftest import ROOT, AppClient, apply_patch, validate_pod
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from reliability_support import (
    JSON_HEADERS,
    LONG,
    capture,
    capture_paths,
    print_table,
    scaled,
    write_report,
)

from webhook.admission import INTERNAL_ERROR_WARNING
from webhook.mutation import decide
from webhook.policy import Policy, default_policy, parse_policy
from webhook.reload import PolicyStore
from webhook.server import AppContext, create_app

API_VERSION = "admission.k8s.io/v1"
MAX_BODY = 3 * 1024 * 1024
MIB = 1024 * 1024
NETWORKS = "k8s.v1.cni.cncf.io/networks"
CREATE_CAPTURES = [p.name for p in capture_paths() if p.name.startswith("create-")]
GPU_REVIEW = "create-gpu-pod-no-annotations.json"

VALIDATION_BUDGET = scaled(12, 300)
"""Schema validations of mutated pods per category (~10-20 ms each, even with schemas cached)."""

HYPOTHESIS = settings(
    max_examples=scaled(200, 10_000),
    derandomize=not LONG,  # CI runs the same cases every time; long mode explores
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


def _rails_per_gpu_policy() -> Policy:
    """The 8-rail example policy plus a perGpu pool network: 9 networks, 9 resources."""
    document = yaml.safe_load((ROOT / "examples" / "policy-multi-rail.yaml").read_text())
    document["networks"].append(
        {"name": "gpu-pool", "resourceName": "nvidia.com/sriov_gpu_pool", "perGpu": True}
    )
    return parse_policy(yaml.safe_dump(document), "<fuzz: 8 rails + perGpu pool>")


POLICIES: dict[str, Callable[[], Policy]] = {
    "default": default_policy,
    "rails-8+per-gpu": _rails_per_gpu_policy,
}


# --- bookkeeping ---------------------------------------------------------------------------------

CATEGORIES = {
    "random-bytes",
    "truncated",
    "wrong-types",
    "huge-annotations",
    "deep-nesting",
    "unicode",
    "unicode-raw",
    "invalid-base64",
    "duplicate-keys",
    "wrong-api",
    "missing-uid",
    "oversized",
    "content-type",
    "quantities",
}

TALLY: dict[str, Counter[str]] = defaultdict(Counter)
SLOWEST: dict[str, float] = defaultdict(float)
_validated: dict[bytes, bool] = {}
_validations = Counter[str]()


@pytest.fixture(scope="module", autouse=True)
def summary() -> Iterator[None]:
    """Cache the schema files kubernetes-validate re-reads on every call, then report."""
    cached = functools.lru_cache(maxsize=None)(kubernetes_validate.utils.schema_contents)
    with pytest.MonkeyPatch.context() as patcher:
        patcher.setattr(kubernetes_validate.utils, "schema_contents", cached)
        yield
    columns = ["cases", "200", "4xx", "mutated", "denied", "validated", "max ms"]
    rows = []
    for category in sorted(TALLY):
        counts = TALLY[category]
        rows.append(
            [
                category,
                counts["cases"],
                counts["http_200"],
                sum(v for k, v in counts.items() if k.startswith("http_4")),
                counts["mutated"],
                counts["denied"],
                counts["schema_validated"],
                round(SLOWEST[category] * 1000, 1),
            ]
        )
    total = sum(counts["cases"] for counts in TALLY.values())
    rows.append(["TOTAL", total, "", "", "", "", "", ""])
    print_table(f"/mutate fuzz ({'long' if LONG else 'short'} mode)", ["category", *columns], rows)
    path = write_report(
        "fuzz-summary",
        {
            "mode": "long" if LONG else "short",
            "total_cases": total,
            "categories": {category: dict(counts) for category, counts in TALLY.items()},
            "slowest_ms": {k: round(v * 1000, 1) for k, v in SLOWEST.items()},
            "schema_validations": dict(_validations),
        },
    )
    print(f"  written to {path}")
    if set(TALLY) >= CATEGORIES:
        assert total >= scaled(2_000, 100_000), f"only {total} fuzz cases ran"


@pytest.fixture(scope="module")
def clients() -> dict[str, AppClient]:
    return {
        name: AppClient(create_app(AppContext(policy=PolicyStore(make()))))
        for name, make in POLICIES.items()
    }


def post(
    client: AppClient, category: str, body: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    started = time.perf_counter()
    response = client.post("/mutate", content=body, headers=headers or JSON_HEADERS)
    SLOWEST[category] = max(SLOWEST[category], time.perf_counter() - started)
    return response


def dumps(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode("utf-8", "surrogatepass")


# --- the judge -----------------------------------------------------------------------------------


def _one_line(text: Any) -> bool:
    return isinstance(text, str) and bool(text) and "\n" not in text and "\r" not in text


def _container_names(pod: Any) -> list[str]:
    spec = pod.get("spec") if isinstance(pod, dict) else None
    containers = spec.get("containers") if isinstance(spec, dict) else None
    if not isinstance(containers, list):
        return []
    return [c["name"] for c in containers if isinstance(c, dict) and isinstance(c.get("name"), str)]


def _quantities(pod: Any) -> Iterator[Any]:
    spec = pod.get("spec") if isinstance(pod, dict) else None
    containers = spec.get("containers") if isinstance(spec, dict) else None
    for container in containers if isinstance(containers, list) else ():
        resources = container.get("resources") if isinstance(container, dict) else None
        for key in ("requests", "limits"):
            section = resources.get(key) if isinstance(resources, dict) else None
            if isinstance(section, dict):
                yield from section.values()


def _valid(pod: Any) -> bool:
    digest = hashlib.sha256(json.dumps(pod, sort_keys=True).encode()).digest()
    if digest not in _validated:
        try:
            validate_pod(pod)
            _validated[digest] = True
        except Exception:  # any schema problem: kubernetes_validate raises several kinds
            _validated[digest] = False
    return _validated[digest]


def judge(category: str, body: bytes, response: httpx.Response) -> dict[str, Any] | None:
    """Check every invariant of one answer; returns the AdmissionReview response when 200."""
    counts = TALLY[category]
    counts["cases"] += 1
    status = response.status_code
    counts[f"http_{status}"] += 1
    assert status < 500, f"{category}: HTTP {status} for {body[:300]!r}: {response.text[:500]}"
    assert response.headers["content-type"].startswith("application/json")
    if status != 200:
        problem = response.json()
        assert problem["kind"] == "Status", problem
        assert problem["code"] == status, problem
        assert _one_line(problem["message"]), problem
        return None
    review = response.json()
    assert review["apiVersion"] == API_VERSION, review
    assert review["kind"] == "AdmissionReview", review
    answer = review["response"]
    sent = orjson.loads(body)  # the server accepted it, so it is JSON (last duplicate key wins)
    pod = sent["request"].get("object")
    assert answer["uid"] == sent["request"]["uid"], (answer["uid"], sent["request"]["uid"])
    assert isinstance(answer["allowed"], bool), answer
    warnings = answer.get("warnings", [])
    assert isinstance(warnings, list), answer
    for warning in warnings:
        assert _one_line(warning), answer
        assert len(warning) < 120, warning
    assert INTERNAL_ERROR_WARNING not in warnings, (
        f"{category}: the decision crashed (see the app log) for {body[:500]!r}"
    )
    if not answer["allowed"]:
        counts["denied"] += 1
        assert "patch" not in answer, answer
        message = answer["status"]["message"]
        assert _one_line(message), answer
        assert 400 <= answer["status"]["code"] < 500, answer
        return answer
    if "patch" not in answer:
        assert "patchType" not in answer, answer
        return answer
    counts["mutated"] += 1
    assert answer["patchType"] == "JSONPatch", answer
    ops = json.loads(base64.b64decode(answer["patch"], validate=True))
    assert isinstance(ops, list), ops
    assert ops, answer
    for op in ops:
        # remove: units a container without GPUs held, moved into the GPU containers
        assert set(op) == ({"op", "path"} if op["op"] == "remove" else {"op", "path", "value"}), op
        assert op["op"] in ("add", "replace", "remove"), op
        assert op["op"] != "remove" or "/resources/" in op["path"], op
        assert isinstance(op["path"], str), op
        assert op["path"].startswith("/"), op
    patched = apply_patch(pod, ops)  # raises if any path does not exist, as the API server would
    if _validations[category] < VALIDATION_BUDGET:
        _validations[category] += 1
        if _valid(pod):
            counts["schema_validated"] += 1
            assert _valid(patched), f"{category}: the patch made a valid pod invalid: {ops}"
    return answer


# --- 1. random bytes ----------------------------------------------------------------------------

json_ish = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=20,
)


@pytest.mark.slow
@pytest.mark.timeout(scaled(120, 3600))
@settings(HYPOTHESIS, max_examples=scaled(300, 40_000))
@given(
    body=st.binary(max_size=4096)
    | json_ish.map(lambda doc: json.dumps(doc).encode())
    | st.builds(
        lambda request: json.dumps(
            {"apiVersion": API_VERSION, "kind": "AdmissionReview", "request": request}
        ).encode(),
        json_ish,
    ),
    policy=st.sampled_from(sorted(POLICIES)),
)
def test_random_bytes(clients: dict[str, AppClient], body: bytes, policy: str) -> None:
    judge("random-bytes", body, post(clients[policy], "random-bytes", body))


# --- 2. truncated reviews -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(scaled(120, 3600))
def test_every_prefix_of_a_real_capture(clients: dict[str, AppClient]) -> None:
    """Short mode: every prefix of the smallest capture; long mode: of every capture."""
    paths = capture_paths()
    chosen = paths if LONG else [min(paths, key=lambda p: p.stat().st_size)]
    for path in chosen:
        body = path.read_bytes()
        for length in range(len(body) + 1):
            prefix = body[:length]
            answer = judge("truncated", prefix, post(clients["default"], "truncated", prefix))
            # Only the whole document (its trailing newline optional) is a review.
            assert (answer is not None) == (length >= len(body.rstrip())), length


# --- 3. wrong types in every field -------------------------------------------------------------

HUGE_STRING = "A" * scaled(64 * 1024, 256 * 1024)
REPLACEMENTS: dict[str, Any] = {
    "null": None,
    "int": 3,
    "negative": -1,
    "float": 2.5,
    "bool": True,
    "str": "fuzz",
    "empty-list": [],
    "list": [1, "a", None],
    "empty-dict": {},
    "dict": {"k": "v", "n": 1},
    "huge-string": HUGE_STRING,
}
DELETE = object()


def _json_paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _json_paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _json_paths(value, (*prefix, index))


def _replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    result = copy.deepcopy(document)
    parent = result
    for key in path[:-1]:
        parent = parent[key]
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return result


def _type_cases() -> list[tuple[str, tuple[Any, ...], str]]:
    cases = []
    for path in capture_paths():
        document = json.loads(path.read_bytes())
        for where in _json_paths(document):
            for kind in [*REPLACEMENTS, "missing"]:
                if kind == "missing" and (not where or isinstance(where[-1], int)):
                    continue  # only object members can go missing
                cases.append((path.name, where, kind))
    return cases


@pytest.mark.slow
@pytest.mark.timeout(scaled(120, 3600))
def test_wrong_types_in_every_field(clients: dict[str, AppClient]) -> None:
    """Each JSON path of every capture (review and pod) gets each wrong type, or goes missing.

    Long mode: every case under both policies. Short mode: a fixed sample, policies alternating.
    """
    cases = _type_cases()
    plans = [(case, policy) for case in cases for policy in POLICIES]
    if not LONG:
        plans = [(case, list(POLICIES)[i % 2]) for i, case in enumerate(cases)]
        plans = random.Random(20261129).sample(plans, 1200)
    documents = {path.name: json.loads(path.read_bytes()) for path in capture_paths()}
    for (name, where, kind), policy in plans:
        value = DELETE if kind == "missing" else REPLACEMENTS[kind]
        body = dumps(_replaced(documents[name], where, value))
        judge("wrong-types", body, post(clients[policy], "wrong-types", body))


# --- 4. huge annotations --------------------------------------------------------------------------


def _review_with_annotations(annotations: dict[str, Any], name: str = GPU_REVIEW) -> bytes:
    review = capture(name)
    review["request"]["object"]["metadata"]["annotations"] = annotations
    return dumps(review)


def _huge_annotation_cases() -> Iterator[tuple[str, dict[str, Any]]]:
    net = "sriov-rdma-net"
    yield "networks: 1 MiB of one name", {NETWORKS: "a" * MIB}
    yield "networks: 1 MiB comma list", {NETWORKS: ",".join([net] * (MIB // (len(net) + 1)))}
    yield "networks: 1 MiB comma list of rail-1", {NETWORKS: ",".join(["rail-1"] * (MIB // 7))}
    yield "networks: 1 MiB of commas", {NETWORKS: "," * MIB}
    yield "networks: 1 MiB of spaces", {NETWORKS: " " * MIB}
    yield "networks: 1 MiB JSON list", {NETWORKS: json.dumps([{"name": net}] * (MIB // 20))}
    yield "networks: 1 MiB JSON name", {NETWORKS: json.dumps([{"name": "a" * MIB}])}
    yield (
        "networks: 1 MiB JSON extra field",
        {NETWORKS: json.dumps([{"name": net, "x": "y" * MIB}])},
    )
    yield "networks: 1 MiB interface", {NETWORKS: f"{net}@{'i' * MIB}"}
    yield "networks: 1 MiB namespace", {NETWORKS: f"{'n' * MIB}/{net}"}
    yield "container: 1 MiB", {"gpu-rdma-injector/container": "c" * MIB}
    yield "inject: 1 MiB", {"gpu-rdma-injector/inject": "f" * MIB}
    yield "unrelated: 1 MiB", {"example.com/blob": "b" * MIB}
    yield "10,000 annotations", {f"example.com/k{i}": "v" * 100 for i in range(10_000)}
    yield "1 MiB key", {"k" * MIB: "v"}


@pytest.mark.parametrize(("case", "annotations"), list(_huge_annotation_cases()))
def test_huge_annotations(clients: dict[str, AppClient], case: str, annotations: dict) -> None:  # type: ignore[type-arg]
    for policy in POLICIES:
        body = _review_with_annotations(annotations)
        judge("huge-annotations", body, post(clients[policy], "huge-annotations", body))
    for value in ("e" * MIB, "SECRET=" + "s" * MIB):
        review = capture(GPU_REVIEW)
        review["request"]["object"]["spec"]["containers"][0]["env"] = [
            {"name": "E", "value": value}
        ]
        body = dumps(review)
        judge("huge-annotations", body, post(clients["default"], "huge-annotations", body))


# --- 5. deep nesting ------------------------------------------------------------------------------

DEEP = 100_000


def _nested(depth: int, opener: str = "[", closer: str = "]") -> str:
    return opener * depth + closer * depth


def _deep_cases() -> Iterator[tuple[str, bytes]]:
    review = capture(GPU_REVIEW)
    text = json.dumps(review)
    yield "body: 100,000 nested lists", _nested(DEEP).encode()
    yield "body: 100,000 nested objects", ('{"a":' * DEEP + "1" + "}" * DEEP).encode()
    yield (
        "object: 100,000 nested lists",
        text.replace('"object": {', f'"object": {_nested(DEEP)}, "x": {{', 1).encode(),
    )
    for depth in (100, 1000, DEEP):
        yield (
            f"pod spec field: {depth} nested lists",
            text.replace(
                '"dnsPolicy": "ClusterFirst"', f'"dnsPolicy": {_nested(depth)}', 1
            ).encode(),
        )
        yield (
            f"request field: {depth} nested lists",
            text.replace('"oldObject": null', f'"oldObject": {_nested(depth)}', 1).encode(),
        )
        nested = copy.deepcopy(review)
        nested["request"]["object"]["metadata"]["annotations"] = {NETWORKS: _nested(depth)}
        yield f"networks annotation: {depth} nested lists", dumps(nested)
        nested["request"]["object"]["metadata"]["annotations"] = {
            NETWORKS: '[{"name": "sriov-rdma-net", "x": ' + _nested(depth) + "}]"
        }
        if depth < 250:  # 250 and deeper: see test_deeply_nested_json_annotation_is_not_a_crash
            yield f"networks annotation entry: {depth} nested lists", dumps(nested)
    assert '"dnsPolicy": "ClusterFirst"' in text
    assert '"oldObject": null' in text


@pytest.mark.parametrize(("case", "body"), list(_deep_cases()), ids=lambda v: str(v)[:40])
def test_deep_nesting(clients: dict[str, AppClient], case: str, body: bytes) -> None:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)  # for the test's own deepcopy in apply_patch, not the server
    try:
        for policy in POLICIES:
            judge("deep-nesting", body, post(clients[policy], "deep-nesting", body))
    finally:
        sys.setrecursionlimit(limit)


# --- 6. unicode ---------------------------------------------------------------------------------

TRICKY_TEXT = [
    "\u0000",
    "nul\u0000inside",
    "\u202eten-ayalp",  # right-to-left override
    "שלום-עולם",
    "مرحبا",
    "\u200b\u200d\ufeff",
    "e\u0301\u0301\u0301",
    "😀" * 100,
    "\u2028\u2029",
    "line\nbreak",
    "\r\n",
    "\t",
    "\ud83d\ude00",  # a surrogate pair, escaped in JSON by json.dumps
    "\uff2e\uff25\uff34",  # fullwidth NET
    "ǅ",
    "İ",
    "\x7f\x80\x9f",
    "\uffff\U0010ffff",
]

fields_for_text = st.sampled_from(
    [
        ("request", "uid"),
        ("request", "namespace"),
        ("request", "name"),
        ("request", "operation"),
        ("request", "object", "metadata", "name"),
        ("request", "object", "metadata", "namespace"),
        ("request", "object", "metadata", "labels", "app"),
        ("request", "object", "metadata", "annotations", NETWORKS),
        ("request", "object", "metadata", "annotations", "gpu-rdma-injector/container"),
        ("request", "object", "metadata", "annotations", "gpu-rdma-injector/inject"),
        ("request", "object", "metadata", "annotations", "example.com/note"),
        ("request", "object", "spec", "containers", 0, "name"),
        ("request", "object", "spec", "containers", 0, "image"),
    ]
)


def _set(document: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node = document
    for key in path[:-1]:
        if isinstance(key, str) and key not in node:
            node[key] = {}
        node = node[key]
    node[path[-1]] = value


@pytest.mark.slow
@pytest.mark.timeout(scaled(120, 3600))
@HYPOTHESIS
@given(
    edits=st.lists(
        st.tuples(fields_for_text, st.text() | st.sampled_from(TRICKY_TEXT)), min_size=1, max_size=4
    ),
    capture_name=st.sampled_from(CREATE_CAPTURES),
    policy=st.sampled_from(sorted(POLICIES)),
)
def test_unicode_everywhere(
    clients: dict[str, AppClient],
    edits: list[tuple[tuple[Any, ...], str]],
    capture_name: str,
    policy: str,
) -> None:
    review = capture(capture_name)
    for path, text in edits:
        _set(review, path, text)
    body = dumps(review)
    judge("unicode", body, post(clients[policy], "unicode", body))


RAW_UNICODE_CASES = {
    "lone high surrogate escaped": b'"\\ud800"',
    "lone low surrogate escaped": b'"\\udc00"',
    "reversed surrogate pair escaped": b'"\\udc00\\ud800"',
    "valid surrogate pair escaped": b'"\\ud83d\\ude00"',
    "NUL escaped": b'"\\u0000"',
    "raw surrogate bytes (CESU-8)": b'"\xed\xa0\x80"',
    "invalid UTF-8": b'"\xff\xfe"',
    "overlong UTF-8": b'"\xc0\xaf"',
    "latin-1 byte": b'"caf\xe9"',
    "RTL override raw": '"\u202eevil"'.encode(),
}


@pytest.mark.parametrize("case", sorted(RAW_UNICODE_CASES))
def test_raw_unicode_in_json(clients: dict[str, AppClient], case: str) -> None:
    """Byte-level encodings the json module would never produce, in the uid and in the pod."""
    template = json.dumps(capture(GPU_REVIEW))
    value = RAW_UNICODE_CASES[case]
    for old in ('"1e18dbb5-89af-4c9d-8019-18f8fdc6dce8"', '"worker"', '"nccl-test"'):
        assert old in template
        body = template.replace(old, "@@", 1).encode().replace(b"@@", value)
        judge("unicode-raw", body, post(clients["default"], "unicode-raw", body))


# --- 7. invalid base64 in fields -----------------------------------------------------------------

BAD_BASE64 = ["!!!!", "YWJj=", "YQ", "====", "YW Jj", "_-_-", "\u00ff\u00fe==", "A" * 4097 + "="]


@pytest.mark.parametrize("value", BAD_BASE64, ids=lambda v: repr(v)[:20])
def test_invalid_base64_in_fields(clients: dict[str, AppClient], value: str) -> None:
    """The review carries objects inline, never base64; base64-looking junk must change nothing
    about the answer's shape (and an object sent as a base64 string is not a pod)."""
    for path in [
        ("request", "uid"),
        ("request", "object"),
        ("request", "oldObject"),
        ("request", "object", "metadata", "annotations", NETWORKS),
        ("request", "object", "spec", "containers", 0, "resources", "limits", "nvidia.com/gpu"),
        ("response",),
        ("request", "patch"),
    ]:
        for policy in POLICIES:
            review = capture(GPU_REVIEW)
            _set(review, path, value)
            body = dumps(review)
            judge("invalid-base64", body, post(clients[policy], "invalid-base64", body))


# --- 8. duplicate keys ---------------------------------------------------------------------------


def _duplicate_cases() -> Iterator[tuple[str, bytes]]:
    text = json.dumps(capture(GPU_REVIEW))
    uid = '"uid": "1e18dbb5-89af-4c9d-8019-18f8fdc6dce8"'
    yield "uid twice", text.replace(uid, f'"uid": "first", {uid}', 1).encode()
    yield "uid twice, empty last", text.replace(uid, f'{uid}, "uid": ""', 1).encode()
    yield (
        "kind twice",
        text.replace(
            '"kind": "AdmissionReview"', '"kind": "Pod", "kind": "AdmissionReview"', 1
        ).encode(),
    )
    yield (
        "kind twice, wrong last",
        text.replace(
            '"kind": "AdmissionReview"', '"kind": "AdmissionReview", "kind": "Pod"', 1
        ).encode(),
    )
    yield (
        "request twice",
        text.replace('"request": {', '"request": {"uid": "decoy"}, "request": {', 1).encode(),
    )
    yield (
        "operation twice",
        text.replace(
            '"operation": "CREATE"', '"operation": "UPDATE", "operation": "CREATE"', 1
        ).encode(),
    )
    yield "object twice", text.replace('"object": {', '"object": null, "object": {', 1).encode()
    yield (
        "containers twice",
        text.replace('"containers": [', '"containers": [], "containers": [', 1).encode(),
    )
    yield (
        "metadata twice",
        text.replace(
            '"metadata": {"name": "gpu-worker-0"',
            '"metadata": {"annotations": {"k8s.v1.cni.cncf.io/networks": "x/y/z"}}, '
            '"metadata": {"name": "gpu-worker-0"',
            1,
        ).encode(),
    )
    annotations = (
        '"annotations": {"k8s.v1.cni.cncf.io/networks": "bad name!", '
        '"k8s.v1.cni.cncf.io/networks": "sriov-rdma-net"}, '
    )
    yield "annotation key twice", text.replace('"labels":', annotations + '"labels":', 1).encode()
    limits = '"limits": {"nvidia.com/gpu": "2"}'
    yield (
        "limit twice",
        text.replace(
            limits, '"limits": {"nvidia.com/gpu": "x", "nvidia.com/gpu": "2"}', 1
        ).encode(),
    )


@pytest.mark.parametrize(("case", "body"), list(_duplicate_cases()), ids=lambda v: str(v)[:30])
def test_duplicate_keys(clients: dict[str, AppClient], case: str, body: bytes) -> None:
    """The last duplicate wins, as in the API server's decoder; answers are judged against that."""
    assert body != dumps(capture(GPU_REVIEW)), "the case's replacement did not apply"
    for policy in POLICIES:
        judge("duplicate-keys", body, post(clients[policy], "duplicate-keys", body))


# --- 9-10. wrong apiVersion/kind, missing uid ---------------------------------------------------

WRONG_API = [
    ("admission.k8s.io/v1beta1", "AdmissionReview"),
    ("admission.k8s.io/v2", "AdmissionReview"),
    ("v1", "AdmissionReview"),
    ("", "AdmissionReview"),
    (None, "AdmissionReview"),
    (1, "AdmissionReview"),
    (API_VERSION, "Pod"),
    (API_VERSION, "admissionreview"),
    (API_VERSION, "AdmissionReviewList"),
    (API_VERSION, ""),
    (API_VERSION, None),
    (API_VERSION, ["AdmissionReview"]),
    ("v1", "Pod"),
    ("MISSING", "AdmissionReview"),
    (API_VERSION, "MISSING"),
]


@pytest.mark.parametrize(("api_version", "kind"), WRONG_API, ids=str)
def test_wrong_api_version_or_kind(
    clients: dict[str, AppClient], api_version: Any, kind: Any
) -> None:
    review = capture(GPU_REVIEW)
    for key, value in (("apiVersion", api_version), ("kind", kind)):
        if value == "MISSING":
            del review[key]
        else:
            review[key] = value
    body = dumps(review)
    assert judge("wrong-api", body, post(clients["default"], "wrong-api", body)) is None


@pytest.mark.parametrize("uid", ["MISSING", None, "", 0, 7, [], ["a"], {}, {"uid": "x"}, True])
def test_missing_or_unusable_uid(clients: dict[str, AppClient], uid: Any) -> None:
    for name in capture_paths():
        review = json.loads(name.read_bytes())
        if uid == "MISSING":
            del review["request"]["uid"]
        else:
            review["request"]["uid"] = uid
        body = dumps(review)
        response = post(clients["default"], "missing-uid", body)
        assert judge("missing-uid", body, response) is None
        assert response.status_code == 400
        assert "uid" in response.json()["message"]


# --- 11. oversized bodies -----------------------------------------------------------------------


def _padded(size: int) -> bytes:
    body = (capture_paths()[0]).read_bytes()
    return body + b" " * (size - len(body))


def test_oversized_bodies(clients: dict[str, AppClient]) -> None:
    client = clients["default"]
    at_limit = _padded(MAX_BODY)
    assert judge("oversized", at_limit, post(client, "oversized", at_limit)) is not None
    for size in (MAX_BODY + 1, 4 * MIB, 10 * MIB):
        body = _padded(size)
        response = post(client, "oversized", body)
        judge("oversized", body, response)
        assert response.status_code == 413, size

    async def chunks(size: int) -> AsyncIterator[bytes]:
        sent = 0
        while sent < size:
            piece = min(64 * 1024, size - sent)
            sent += piece
            yield b" " * piece

    # No Content-Length (chunked): the limit is enforced on what actually arrives.
    response = client.post("/mutate", content=chunks(MAX_BODY + 1), headers=JSON_HEADERS)
    TALLY["oversized"]["cases"] += 1
    TALLY["oversized"][f"http_{response.status_code}"] += 1
    assert response.status_code == 413


# --- 12. content types ----------------------------------------------------------------------------

ACCEPTED_TYPES = [
    "application/json",
    "APPLICATION/JSON",
    "application/json; charset=utf-8",
    "application/json;charset=UTF-8",
    " application/json ",
]
REFUSED_TYPES = [
    "",
    "text/plain",
    "text/json",
    "application/x-www-form-urlencoded",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/cbor",
    "multipart/form-data; boundary=x",
    "application/jsonx",
    "json",
    "*/*",
]


def test_content_types(clients: dict[str, AppClient]) -> None:
    body = capture_paths()[0].read_bytes()
    for content_type in ACCEPTED_TYPES:
        response = post(clients["default"], "content-type", body, {"content-type": content_type})
        assert judge("content-type", body, response) is not None, content_type
    for content_type in REFUSED_TYPES:
        headers = {"content-type": content_type} if content_type else {}
        response = clients["default"].post("/mutate", content=body, headers=headers)
        judge("content-type", body, response)
        assert response.status_code == 415, content_type


@pytest.mark.slow
@pytest.mark.timeout(scaled(120, 3600))
@HYPOTHESIS
@given(content_type=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60))
def test_random_content_types(clients: dict[str, AppClient], content_type: str) -> None:
    body = capture_paths()[0].read_bytes()
    response = post(clients["default"], "content-type", body, {"content-type": content_type})
    judge("content-type", body, response)
    media_type = content_type.split(";")[0].strip().lower()
    assert response.status_code == (200 if media_type == "application/json" else 415)


# --- 13. quantities -------------------------------------------------------------------------------

MAX_FUZZ_UNITS = 2048
"""Counts far above this stall the decision (see test_resource_bombs.py): kept out of the fuzz."""

quantity_text = st.one_of(
    st.integers(0, 64).map(str),
    st.builds(
        lambda n, suffix: f"{n}{suffix}",
        st.integers(0, 9),
        st.sampled_from(["", "m", "k", "Ki", "M", "e0", "e1", "e-1", "E2", ".0", ".5", "000m"]),
    ),
    st.from_regex(r"\A[+-]?[0-9]{0,3}(\.[0-9]{0,3})?([eE][+-]?[0-9])?[numkKMGTPEi]{0,2}\Z"),
    st.text(string.digits + "+-.eEmkKMGi ", max_size=8),
    st.text(max_size=6),
    st.integers(-5, 64),
    st.floats(-5, 64),
    st.booleans(),
    st.none(),
)


def _too_big(value: Any) -> bool:
    from webhook.quantity import parse_quantity

    try:
        return abs(parse_quantity(value)) > MAX_FUZZ_UNITS
    except (ValueError, ZeroDivisionError):
        return False


@pytest.mark.slow
@pytest.mark.timeout(scaled(120, 3600))
@HYPOTHESIS
@given(
    gpu=st.tuples(quantity_text, quantity_text),
    nic=st.tuples(quantity_text, quantity_text),
    missing=st.sets(st.sampled_from(["gpu-request", "gpu-limit", "nic-request", "nic-limit"])),
    policy=st.sampled_from(sorted(POLICIES)),
)
def test_quantities(
    clients: dict[str, AppClient],
    gpu: tuple[Any, Any],
    nic: tuple[Any, Any],
    missing: set[str],
    policy: str,
) -> None:
    assume(not any(_too_big(value) for value in (*gpu, *nic)))
    nic_resource = (
        "openshift.io/mellanoxnics" if policy == "default" else "nvidia.com/sriov_gpu_pool"
    )
    review = capture(GPU_REVIEW)
    resources = review["request"]["object"]["spec"]["containers"][0]["resources"]
    for resource, (request, limit), label in (
        ("nvidia.com/gpu", gpu, "gpu"),
        (nic_resource, nic, "nic"),
    ):
        for section, value in (("requests", request), ("limits", limit)):
            if f"{label}-{section[:-1]}" not in missing:
                resources[section][resource] = value
            else:
                resources[section].pop(resource, None)
    body = dumps(review)
    judge("quantities", body, post(clients[policy], "quantities", body))


# --- regressions: bugs the fuzzing found, each fixed ---------------------------------------------


def test_denial_message_is_one_line_whatever_the_container_name() -> None:
    pod = capture(GPU_REVIEW)["request"]["object"]
    pod["spec"]["containers"][0]["name"] = "work\ner"
    pod["metadata"]["annotations"] = {"gpu-rdma-injector/container": "nope"}
    decision = decide(pod, "team-a", default_policy())
    assert not decision.allowed
    assert _one_line(decision.message), decision.message


@pytest.mark.parametrize("value", ["²", "9" * 5000])
@pytest.mark.parametrize("resource", ["nvidia.com/gpu", "openshift.io/mellanoxnics"])
def test_odd_digit_strings_are_denied_as_not_a_quantity(value: str, resource: str) -> None:
    pod = capture(GPU_REVIEW)["request"]["object"]
    pod["spec"]["containers"][0]["resources"]["limits"][resource] = value
    decision = decide(pod, "team-a", default_policy())
    assert (decision.allowed, decision.reason) == (False, "malformed-pod"), decision


def test_deeply_nested_json_annotation_is_not_a_crash() -> None:
    pod = capture(GPU_REVIEW)["request"]["object"]
    entry = '{"name": "other-net", "x": ' + _nested(300) + "}"
    pod["metadata"]["annotations"] = {NETWORKS: f"[{entry}]"}
    decision = decide(pod, "team-a", default_policy())  # raises today
    if decision.allowed:
        ops = [op.as_dict() for op in decision.patch]
        patched = jsonpatch.apply_patch(pod, ops)
        assert "sriov-rdma-net" in patched["metadata"]["annotations"][NETWORKS]


# --- the openapi decision ----------------------------------------------------------------------


def test_there_is_no_openapi_document_to_fuzz_from(clients: dict[str, AppClient]) -> None:
    """Why schemathesis is not used: the app publishes no OpenAPI document (/mutate reads raw
    AdmissionReview bytes, the GET routes take no input). Should one appear, revisit that."""
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert clients["default"].get(path).status_code == 404, path
