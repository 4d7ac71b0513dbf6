"""The webhook reads every networks annotation exactly as Multus does: checked against Go itself.

multus_reader.go decodes each value with Go's encoding/json into a struct with the fields and
json tags of Multus's NetworkSelectionElement, and checks MACs and IPs with Go's net package;
the webhook's parser must give the same (namespace, name, interface, ips, mac, guid, deviceID,
default-route) for every entry, or both must refuse. Hypothesis generates the values: case
variants and Unicode folds of every key, duplicate keys, nulls, values of every JSON type,
odd MACs and IPs, whitespace Go and Python disagree about, both forms, and the default-network
annotation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multus_go import GoReader, python_view, start_go_reader

from webhook.networks import (
    MAX_ATTACHMENTS,
    MAX_CNI_ARGS_VALUES,
    MAX_JSON_BRACKETS,
    MAX_JSON_DEPTH,
    MAX_LIST_ITEMS,
)


@pytest.fixture(scope="module")
def go_reader(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GoReader]:
    reader = start_go_reader(tmp_path_factory.mktemp("multus-reader"))
    yield reader
    reader.close()


EXAMPLES = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- JSON text with duplicate keys, raw numbers and escapes -------------------------------------


@dataclass(frozen=True)
class Obj:
    """A JSON object as written: pairs in order, duplicates kept."""

    pairs: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Raw:
    """A JSON number literal written as is (1e400, 1.0, -0, a 400-digit integer...)."""

    text: str


def dumps(value: Any, escape: bool = False, space: str = "") -> str:
    if isinstance(value, Obj):
        inner = f",{space}".join(
            f"{dumps(key, escape)}:{space}{dumps(item, escape, space)}" for key, item in value.pairs
        )
        return "{" + space + inner + space + "}"
    if isinstance(value, list):
        return "[" + f",{space}".join(dumps(item, escape, space) for item in value) + "]"
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, str) and escape:
        return (
            '"'
            + "".join(
                f"\\u{ord(char):04x}"
                if char.isalpha() and ord(char) < 0x10000
                else json.dumps(char)[1:-1]
                for char in value
            )
            + '"'
        )
    return json.dumps(value)


FIELDS = [
    "name",
    "namespace",
    "ips",
    "mac",
    "infiniband-guid",
    "interface",
    "interfaceRequest",
    "portMappings",
    "bandwidth",
    "deviceID",
    "cni-args",
    "default-route",
]
UNKNOWN_KEYS = ["ipam-claim-reference", "names", "nam", "\u0131ps", "\u0130ps", "name\u200b", "x"]


@st.composite
def key_variants(draw: st.DrawFn, key: str) -> str:
    chars = []
    for char in key:
        choice = draw(st.integers(0, 9))
        if char in "sS" and choice == 0:
            chars.append("\u017f")
        elif char in "kK" and choice == 0:
            chars.append("\u212a")
        elif choice < 3:
            chars.append(char.swapcase())
        else:
            chars.append(char)
    return "".join(chars)


KEYS = st.one_of(
    st.sampled_from(FIELDS),
    st.sampled_from(FIELDS).flatmap(key_variants),
    st.sampled_from(UNKNOWN_KEYS),
)

NAMES = st.sampled_from(
    [
        "net1",
        "sriov-rdma-net",
        "kube-system",
        "team-a",
        "",
        " net1",
        "Net1",
        "a.b",
        "a/b",
        "ns/net",
        "x" * 63,
        "x" * 64,
        "x" * 253,
        "x" * 254,
        "-a",
        "a-",
        "a_b",
        "n\u00e4me",
        "net\ud800",
    ]
)
INTERFACES = st.sampled_from(
    [
        "net1",
        "",
        "a" * 15,
        "a" * 16,
        "\u00e9" * 7,
        "\u00e9" * 8,
        "net:1",
        "net/1",
        "net 1",
        "net\v1",
        "net\x1c1",
        "net\x851",
        "net\xa01",
        "net\u20001",
        "net\ufffd",
        "net\ud800",
        ".",
        "..",
        "net1\n",
    ]
)


@st.composite
def macs(draw: st.DrawFn) -> str:
    octets = draw(st.sampled_from([6, 8, 20, 5, 7, 9, 10]))
    hexes = [
        draw(st.sampled_from(["02", "ab", "CD", "0f", "zz", "1", "123"])) for _ in range(octets)
    ]
    style = draw(st.sampled_from([":", "-", ".", "mixed"]))
    if style == ".":
        text = "".join(hexes)
        return ".".join(text[index : index + 4] for index in range(0, len(text), 4))
    if style == "mixed":
        return "".join(h + draw(st.sampled_from([":", "-"])) for h in hexes)[:-1]
    return style.join(hexes)


IP_TEXTS = [
    "10.0.0.1",
    "10.0.0.1/24",
    "10.0.0.01",
    "10.0.0.1/255.255.255.0",
    "fe80::1",
    "fe80::1%eth0",
    "::ffff:1.2.3.4",
    "::1.2.3.4",
    "1::2::3",
    "10.0.0.1/33",
    "::1/128",
    "::1/129",
    "10.0.0.1/024",
    "10.0.0.1/00000000000024",
    "10.0.0.1/16777216",
    "10.0.0.1/",
    "/24",
    "1.2.3",
    "1.2.3.4.5",
    "256.1.1.1",
    "0x1.1.1.1",
    "1.2.3.4 ",
    " 1.2.3.4",
    "::ffff:01.2.3.4",
    "1:2:3:4:5:6:1.2.3.4",
    "1:2:3:4:5:6:7:1.2.3.4",
    "::",
    "::/0",
    "0.0.0.0/0",
    "12345::",
    "1:2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7:8:9",
    "::ffff:1.2.3.4/24",
    "\u0661.\u0662.\u0663.\u0664",
    "1.2.3.4/+8",
    "1.2.3.4/ 8",
    "::102:304",
    "2001:db8:0:0:1:0:0:1",
    "2001:DB8::1",
    "",
]
IPS = st.one_of(st.sampled_from(IP_TEXTS), st.text(alphabet="0123456789abcdef.:/%", max_size=12))
NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from(
        [Raw("1e400"), Raw("-1e400"), Raw("1.0"), Raw("-0"), Raw("1E2"), Raw("1" * 400), Raw("0.5")]
    ),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=6))


def lists_of(items: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(items, max_size=4),
        st.lists(items, min_size=MAX_LIST_ITEMS - 1, max_size=MAX_LIST_ITEMS + 1),
    )


def objects_with(keys: list[str], values: st.SearchStrategy[Any]) -> st.SearchStrategy[Obj]:
    pair = st.tuples(st.sampled_from(keys).flatmap(key_variants), values)
    return st.lists(pair, max_size=4).map(lambda pairs: Obj(tuple(pairs)))


ANY = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.lists(st.tuples(st.text(max_size=4), children), max_size=3).map(
            lambda pairs: Obj(tuple(pairs))
        ),
    ),
    max_leaves=8,
)


def values_for(field: str) -> st.SearchStrategy[Any]:
    """Values a key that folds onto `field` gets: mostly the right type, sometimes not."""
    folded = field.lower().replace("\u017f", "s").replace("\u212a", "k")
    right: st.SearchStrategy[Any]
    if folded in ("name", "namespace", "deviceid"):
        right = NAMES
    elif folded in ("interface", "interfacerequest"):
        right = INTERFACES
    elif folded in ("mac", "infiniband-guid"):
        right = st.one_of(macs(), st.just(""))
    elif folded == "ips":
        right = lists_of(st.one_of(IPS, st.none()))
    elif folded == "default-route":
        right = lists_of(st.one_of(IPS, st.none(), st.just(""), NUMBERS))
    elif folded == "bandwidth":
        right = objects_with(["ingressRate", "egressBurst", "x"], SCALARS)
    elif folded == "portmappings":
        right = lists_of(
            st.one_of(st.none(), objects_with(["hostPort", "protocol", "hostIP"], SCALARS))
        )
    elif folded == "cni-args":
        right = ANY.map(lambda value: Obj((("k", value),)))
    else:
        return ANY
    return st.one_of(right, right, right, st.none(), SCALARS, ANY)


@st.composite
def entries(draw: st.DrawFn) -> Any:
    kind = draw(st.integers(0, 19))
    if kind == 0:
        return draw(SCALARS)
    pairs = []
    if draw(st.integers(0, 5)):
        pairs.append(("name", draw(NAMES.filter(lambda name: name != ""))))
    for _ in range(draw(st.integers(0, 5))):
        key = draw(KEYS)
        pairs.append((key, draw(values_for(key))))
    order = draw(st.permutations(pairs))
    return Obj(tuple(order))


@st.composite
def json_annotations(draw: st.DrawFn) -> str:
    items = draw(st.lists(entries(), max_size=4))
    document: Any = items if draw(st.integers(0, 15)) else draw(st.sampled_from([Obj(()), "x"]))
    return dumps(document, escape=draw(st.booleans()), space=draw(st.sampled_from(["", " ", "\n"])))


SPACES = st.sampled_from(
    ["", " ", "\t", "\v", "\f", "\r", "\x1c", "\x1f", "\x85", "\xa0", "\u200b"]
)
LABELS = st.sampled_from(["net1", "team-a", "", "Net1", "a.b", "a_b", "x" * 253, "x" * 254, "-a"])


@st.composite
def comma_items(draw: st.DrawFn) -> str:
    text = draw(SPACES)
    if draw(st.booleans()):
        text += draw(SPACES) + draw(LABELS) + draw(SPACES) + "/"
    text += draw(SPACES) + draw(LABELS) + draw(SPACES)
    if draw(st.booleans()):
        # An annotation value is UTF-8 text: no lone surrogates outside JSON escapes.
        interface = draw(INTERFACES.filter(lambda i: "\ud800" not in i))
        text += "@" + draw(SPACES) + interface + draw(SPACES)
    if not draw(st.integers(0, 20)):
        text += draw(st.sampled_from(["/x", "@y", "/"]))
    return text + draw(SPACES)


COMMA = st.lists(comma_items(), min_size=1, max_size=4).map(",".join)


@given(value=json_annotations())
@EXAMPLES
def test_json_form_reads_as_go_reads_it(go_reader: GoReader, value: str) -> None:
    assert python_view(value) == go_reader.read(value), value


@given(value=COMMA)
@EXAMPLES
def test_comma_form_reads_as_multus_reads_it(go_reader: GoReader, value: str) -> None:
    assert python_view(value) == go_reader.read(value), value


@given(value=st.one_of(COMMA, json_annotations()))
@settings(max_examples=500, deadline=None)
def test_default_network_reads_as_multus_reads_it(go_reader: GoReader, value: str) -> None:
    ours = python_view(value, "kube-system", "default")
    assert ours == go_reader.read(value, "kube-system", "default"), value


@given(value=st.text(max_size=40))
@settings(max_examples=500, deadline=None)
def test_any_text_reads_as_multus_reads_it(go_reader: GoReader, value: str) -> None:
    assert python_view(value) == go_reader.read(value), value


# --- The cases the issue names, each checked against Go and against the expected reading --------

CASES = [
    # Go's JSON keys are case-insensitive: the namespace boundary depends on it.
    ('[{"name":"net1","Namespace":"kube-system"}]', ("kube-system", "net1")),
    ('[{"name":"net1","NAMESPACE":"kube-system"}]', ("kube-system", "net1")),
    ('[{"name":"net1","name\u017fpace":"kube-system"}]', ("kube-system", "net1")),
    ('[{"name":"net1","namespace":"a","Namespace":"b"}]', ("b", "net1")),
    ('[{"name":"net1","namespace":"a","Namespace":null}]', ("a", "net1")),
    ('[{"Name":"net2","name":"net1"}]', ("pod-ns", "net1")),
    ('[{"name":"net1","NaMe":"net2"}]', ("pod-ns", "net2")),
    ('[{"name":"net1","\u0131nterface":"x y"}]', ("pod-ns", "net1")),
    # Lenient where Multus is lenient.
    ("net1@", ("pod-ns", "net1")),
    ("/net1", ("pod-ns", "net1")),
    ('[{"name":"net1","namespace":"","interface":"","mac":""}]', ("pod-ns", "net1")),
    ("x" * 253, ("pod-ns", "x" * 253)),
    # Refused where Multus (or CNI) refuses.
    ("   ", None),
    ('[{"name":"net1","infiniband-guid":"zz"}]', None),
    ('[{"name":"net1","default-route":["10.0.0.256"]}]', None),
    ('[{"name":"net1","cni-args":[1]}]', None),
    ('[{"name":"net1","bandwidth":"fast"}]', None),
    ('[{"name":"net1","portMappings":{"hostPort":1}}]', None),
    ('[{"name":"net1","deviceID":7}]', None),
    ('[{"name":"net1","interface":"' + "\u00e9" * 8 + '"}]', None),
    ('[{"name":"net1","interface":"net\\u000b1"}]', None),
    ('[{"name":"net1","mac":"02:00:00-00:00:01"}]', None),
    ('[{"name":"net1","mac":"0200.0000.0001.0002.0003"}]', None),
    ('[{"name":"net1","ips":["fe80::1%eth0"]}]', None),
    ('[{"name":"net1","ips":["10.0.0.1/255.255.255.0"]}]', None),
    ("[null]", None),
]


@pytest.mark.parametrize(("value", "expected"), CASES)
def test_named_cases(go_reader: GoReader, value: str, expected: tuple[str, str] | None) -> None:
    ours = python_view(value)
    assert ours == go_reader.read(value)
    if expected is None:
        assert ours is None
    else:
        assert ours is not None
        assert (ours[0]["namespace"], ours[0]["name"]) == expected


def test_null_keeps_earlier_ips_as_go_does(go_reader: GoReader) -> None:
    value = '[{"name":"a","ips":["10.0.0.1","10.0.0.2"],"ips":["10.0.0.3"],"IPS":[null,null]}]'
    ours = python_view(value)
    assert ours == go_reader.read(value)
    assert ours is not None
    assert ours[0]["ips"] == ("10.0.0.3", "10.0.0.2")


@pytest.mark.parametrize(
    "value",
    [
        ",".join(["net"] * MAX_ATTACHMENTS),
        ",".join(["net"] * (MAX_ATTACHMENTS + 1)),
        json.dumps([{"name": "a"}] * MAX_ATTACHMENTS),
        json.dumps([{"name": "a"}] * (MAX_ATTACHMENTS + 1)),
        json.dumps([{"name": "a", "ips": ["10.0.0.1"] * MAX_LIST_ITEMS}]),
        json.dumps([{"name": "a", "ips": ["10.0.0.1"] * (MAX_LIST_ITEMS + 1)}]),
        "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH,
        '[{"name":"a","x":[' + ",".join(["{}"] * (MAX_JSON_BRACKETS - 3)) + "]}]",
        '[{"name":"a","x":[' + ",".join(["{}"] * (MAX_JSON_BRACKETS - 2)) + "]}]",
        '[{"name":"a","x":"' + "[" * MAX_JSON_BRACKETS + '"}]',
        json.dumps([{"name": "a", "cni-args": {"k": [1] * (MAX_CNI_ARGS_VALUES - 1)}}]),
        json.dumps([{"name": "a", "cni-args": {"k": [1] * MAX_CNI_ARGS_VALUES}}]),
        json.dumps([{"name": "a", "CNI-ARGS": {"k": [[1]] * (MAX_CNI_ARGS_VALUES // 2)}}]),
        '[{"name":"a","x":' + "[" * (MAX_JSON_DEPTH - 2) + "]" * (MAX_JSON_DEPTH - 2) + "}]",
        '[{"name":"a","x":' + "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1) + "}]",
    ],
)
def test_bounds_at_and_past_the_limit(go_reader: GoReader, value: str) -> None:
    assert python_view(value) == go_reader.read(value)


def test_only_long_s_and_kelvin_fold_onto_ascii(go_reader: GoReader) -> None:
    """webhook.gojson.fold special-cases exactly the runes Go's folding maps onto ASCII."""
    found = {(entry["name"], entry["interface"]) for entry in go_reader.read("", mode="fold")}
    assert found == {("\u017f", "s"), ("\u212a", "k")}
