"""The networks annotation parser and renderer, including property tests."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook.networks import (
    EMPTY,
    AnnotationError,
    NetworkRef,
    NetworksAnnotation,
    appended,
    new_entry,
    parse,
    parse_default_network,
)


def test_comma_form_with_namespace_and_interface() -> None:
    parsed = parse(" team-a/sriov-rdma-net@net1 , macvlan ")
    assert parsed.form == "comma"
    assert parsed.entries == (
        NetworkRef("sriov-rdma-net", "team-a", "net1"),
        NetworkRef("macvlan", None, None),
    )
    assert parsed.entries[0].resolved("other") == ("team-a", "sriov-rdma-net")
    assert parsed.entries[1].resolved("other") == ("other", "macvlan")


def test_json_form_keeps_every_field() -> None:
    value = json.dumps(
        [
            {
                "name": "a",
                "interface": "net1",
                "ips": ["10.0.0.1/24"],
                "mac": "02:00:00:00:00:01",
                "default-route": ["10.0.0.254"],
                "cni-args": {"x": 1},
            }
        ]
    )
    parsed = parse(value)
    assert parsed.form == "json"
    assert parsed.entries[0].interface == "net1"
    assert parsed.entries[0].selection is not None
    assert parsed.entries[0].selection.ips == ("10.0.0.1/24",)
    assert appended(parsed, []) == value


def test_json_deprecated_interface_request() -> None:
    assert parse('[{"name": "a", "interfaceRequest": "net7"}]').entries[0].interface == "net7"


def test_empty_is_no_network() -> None:
    assert parse("") == EMPTY


@pytest.mark.parametrize("value", ["   ", "\t", "\v"])
def test_blank_is_refused_as_multus_fails_it(value: str) -> None:
    with pytest.raises(AnnotationError, match="is blank"):
        parse(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("net1@", NetworkRef("net1")),
        ("/net1", NetworkRef("net1")),
        (" ns / net1 @ eth1 ", NetworkRef("net1", "ns", "eth1")),
        ("x" * 253, NetworkRef("x" * 253)),
        ('[{"name": "a", "namespace": "", "interface": "", "mac": ""}]', NetworkRef("a")),
        ('[{"name": "a", "Namespace": "b"}]', NetworkRef("a", "b")),
        ('[{"name": "a", "namespace": "b", "NAMESPACE": null}]', NetworkRef("a", "b")),
        ('[{"name": "a", "interface": "", "interfaceRequest": "n7"}]', NetworkRef("a", None, "n7")),
    ],
)
def test_reads_what_multus_reads(value: str, expected: NetworkRef) -> None:
    assert parse(value).entries == (expected,)


def test_default_network_is_exactly_one_nad() -> None:
    assert parse_default_network("macvlan-conf") == NetworkRef("macvlan-conf")
    assert parse_default_network('[{"name": "a", "namespace": "b"}]') == NetworkRef("a", "b")
    for value in ("", "a,b", "[]"):
        with pytest.raises(AnnotationError, match=r"v1\.multus-cni\.io/default-network"):
            parse_default_network(value)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("a,,b", "empty entry at position 2"),
        ("a,", "empty entry at position 2"),
        ("ns/a/b", "more than one '/'"),
        ("a@net1@net2", "more than one '@'"),
        ("Bad_Name", "network name 'Bad_Name' must consist"),
        ("UPPER/a", "namespace 'UPPER' must consist"),
        ("ns/", "names no network"),
        ("a@averyveryverylongname", "longer than 15 bytes"),
        ("a@net:1", "contains '/', ':' or whitespace"),
        ("x" * 254, "which no NAD can have"),
        ("[not json", "not valid JSON"),
        ('{"name": "a"}', "must be a JSON list"),
        ('["a"]', "entry 1 must be an object"),
        ("[null]", "entry 1 is null"),
        ('[{"interface": "net1"}]', "names no network"),
        ('[{"name": "ns/a"}]', 'put the namespace in "namespace"'),
        ('[{"name": "a", "namespace": 3}]', 'has "namespace" that is a number, not a string'),
        ('[{"name": "a", "Namespace": 3}]', '"Namespace" (Multus reads "namespace")'),
        ('[{"name": "a", "ips": ["10.0.0.300"]}]', "not an IP address"),
        ('[{"name": "a", "ips": ["fe80::1%eth0"]}]', "not an IP address"),
        ('[{"name": "a", "ips": ["10.0.0.1/255.255.255.0"]}]', "not an IP address"),
        ('[{"name": "a", "ips": "10.0.0.1"}]', "not a list of strings"),
        ('[{"name": "a", "mac": "zz:00"}]', "net.ParseMAC refuses"),
        ('[{"name": "a", "mac": "02:00:00-00:00:01"}]', "net.ParseMAC refuses"),
        ('[{"name": "a", "infiniband-guid": "x"}]', "infiniband-guid 'x'"),
        ('[{"name": "a", "default-route": ["10.0.0"]}]', "not an IP address"),
        ('[{"name": "a", "cni-args": []}]', "not an object"),
        ('[{"name": "a", "cni-args": {"x": 1e400}}]', "too large for a float64"),
        ('[{"name": "a", "bandwidth": {"ingressRate": 1.5}}]', "not a whole number"),
        ('[{"name": "a", "portMappings": {}}]', "not a list"),
        ('[{"name": "a", "deviceID": 1}]', '"deviceID" that is a number'),
        ('[{"name": "a", "interface": "a/b"}]', "which CNI refuses"),
        ('[{"name": "a", "interface": "' + "\u00e9" * 8 + '"}]', "longer than 15 bytes"),
        ('[{"name": "a", "interface": "a\\u000bb"}]', "whitespace"),
    ],
)
def test_malformed_values_name_the_problem(value: str, fragment: str) -> None:
    with pytest.raises(AnnotationError) as caught:
        parse(value)
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_non_string_value() -> None:
    with pytest.raises(AnnotationError, match="must be a string"):
        parse(42)  # type: ignore[arg-type]


def test_new_entries_are_appended_in_the_annotations_form() -> None:
    new = [new_entry("a", "ns", "net1"), new_entry("b", None, None)]
    assert appended(EMPTY, new) == "ns/a@net1,b"
    assert appended(NetworksAnnotation("json", ()), new) == (
        '[{"name":"a","namespace":"ns","interface":"net1"},{"name":"b"}]'
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ns/a@net1,  b", "ns/a@net1,  b,c"),
        (
            '[ {"name": "a", "Namespace": "x"} ]\n',
            '[ {"name": "a", "Namespace": "x"} ,{"name":"c"}]\n',
        ),
        ("[]", '[{"name":"c"}]'),
        (" [ ] ", ' [ {"name":"c"}] '),
    ],
)
def test_appending_keeps_the_users_text(value: str, expected: str) -> None:
    result = appended(parse(value), [new_entry("c", None, None)])
    assert result == expected
    assert parse(result).entries == (*parse(value).entries, NetworkRef("c"))


label = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?\Z")
interface = st.from_regex(r"\A[a-z][a-z0-9]{0,9}\Z")
refs = st.builds(
    NetworkRef, name=label, namespace=st.none() | label, interface=st.none() | interface
)


@given(st.lists(refs, min_size=1, max_size=8), st.sampled_from(["comma", "json"]))
def test_appended_entries_read_back(entries: list[NetworkRef], form: str) -> None:
    start = NetworksAnnotation("json", ()) if form == "json" else EMPTY
    value = appended(start, [new_entry(e.name, e.namespace, e.interface) for e in entries])
    reparsed = parse(value)
    assert reparsed.form == form
    assert list(reparsed.entries) == entries


@given(st.lists(refs, max_size=8), st.lists(st.ip_addresses().map(str), max_size=2))
def test_json_form_reads_every_entry(entries: list[NetworkRef], ips: list[str]) -> None:
    objects = []
    for entry in entries:
        obj: dict[str, object] = {"name": entry.name}
        if entry.namespace:
            obj["namespace"] = entry.namespace
        if entry.interface:
            obj["interface"] = entry.interface
        if ips:
            obj["ips"] = ips
        objects.append(obj)
    reparsed = parse(json.dumps(objects))
    assert list(reparsed.entries) == entries
    assert all(
        entry.selection and entry.selection.ips == (tuple(ips) or None)
        for entry in reparsed.entries
    )


@given(st.text(max_size=60))
def test_parser_never_fails_other_than_annotation_error(value: str) -> None:
    try:
        parsed = parse(value)
    except AnnotationError as error:
        message = str(error)
        assert "\n" not in message
        return
    assert parse(appended(parsed, [new_entry("x", None, None)])).entries == (
        *parsed.entries,
        NetworkRef("x"),
    )


def test_too_many_entries_and_too_deep_json_are_refused() -> None:
    with pytest.raises(AnnotationError, match="lists 257 networks; at most 256"):
        parse(",".join(["a"] * 257))
    with pytest.raises(AnnotationError, match="lists 257 networks; at most 256"):
        parse(json.dumps([{"name": "a"}] * 257))
    with pytest.raises(AnnotationError, match="deeper than 32 levels"):
        parse('[{"name": "a", "x": ' + "[" * 40 + "]" * 40 + "}]")
    with pytest.raises(AnnotationError, match="deeper than 32 levels"):
        parse('[{"name": "a", "x": ' + "[" * 1000 + "]" * 1000 + "}]")
    with pytest.raises(AnnotationError, match=r"holds 100002 '\[' and '\{' characters"):
        parse('[{"name": "a", "x": ' + "[" * 100_000 + "]" * 100_000 + "}]")
    with pytest.raises(AnnotationError, match="17 items; at most 16"):
        parse(json.dumps([{"name": "a", "ips": ["10.0.0.1"] * 17}]))
    assert parse(json.dumps([{"name": "a", "ips": ["10.0.0.1"] * 16}])).entries
    at_bound = '[{"name":"a","x":[' + ",".join(["{}"] * 1021) + "]}]"
    assert parse(at_bound).entries
    with pytest.raises(AnnotationError, match="holds 1025 '\\[' and '\\{' characters"):
        parse(at_bound.replace("{}", "{}", 1).replace("[{}", "[{},{}", 1))


def test_messages_quote_at_most_a_few_hundred_characters() -> None:
    huge = "x" * 1_000_000
    for value in (
        f"ns/{huge}_",
        json.dumps([{"name": "a", "ips": [huge]}]),
        json.dumps([{"name": "a", "mac": huge}]),
        json.dumps([{"name": huge + "/"}]),
    ):
        with pytest.raises(AnnotationError) as caught:
            parse(value)
        assert len(str(caught.value)) < 600
