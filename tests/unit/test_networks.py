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
    new_entry,
    parse,
    render,
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
    assert json.loads(render("json", parsed.entries)) == json.loads(value)


def test_json_deprecated_interface_request() -> None:
    assert parse('[{"name": "a", "interfaceRequest": "net7"}]').entries[0].interface == "net7"


@pytest.mark.parametrize("value", ["", "   "])
def test_blank_is_empty(value: str) -> None:
    assert parse(value) == EMPTY


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("a,,b", "empty entry at position 2"),
        ("a,", "empty entry at position 2"),
        ("ns/a/b", "more than one '/'"),
        ("a@net1@net2", "more than one '@'"),
        ("Bad_Name", "'Bad_Name' is not a DNS-1123"),
        ("UPPER/a", "namespace 'UPPER'"),
        ("a@", "interface ''"),
        ("a@averyveryverylongname", "is not a Linux"),
        ("[not json", "not valid JSON"),
        ('{"name": "a"}', "must be a JSON list"),
        ('["a"]', "entry 1 must be an object"),
        ('[{"interface": "net1"}]', 'needs a "name"'),
        ('[{"name": "ns/a"}]', 'put the namespace in "namespace"'),
        ('[{"name": "a", "namespace": 3}]', '"namespace" that is not a string'),
        ('[{"name": "a", "ips": ["10.0.0.300"]}]', "not an IP address"),
        ('[{"name": "a", "ips": "10.0.0.1"}]', "not a list of strings"),
        ('[{"name": "a", "mac": "zz:00"}]', "not a MAC address"),
        ('[{"name": "a", "interface": "a/b"}]', "not a Linux interface"),
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


def test_new_entries_in_each_form() -> None:
    assert render("comma", [new_entry("comma", "a", "ns", "net1")]) == "ns/a@net1"
    assert render("json", [new_entry("json", "a", "ns", "net1")]) == (
        '[{"name":"a","namespace":"ns","interface":"net1"}]'
    )


def test_rendering_keeps_user_text() -> None:
    parsed = parse("ns/a@net1,  b")
    entries = [*parsed.entries, new_entry("comma", "c", None, None)]
    assert render("comma", entries) == "ns/a@net1,b,c"


label = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?\Z")
interface = st.from_regex(r"\A[a-z][a-z0-9]{0,9}\Z")
refs = st.builds(
    NetworkRef, name=label, namespace=st.none() | label, interface=st.none() | interface
)


@given(st.lists(refs, max_size=8))
def test_comma_form_round_trips(entries: list[NetworkRef]) -> None:
    value = render("comma", [new_entry("comma", e.name, e.namespace, e.interface) for e in entries])
    reparsed = parse(value)
    assert list(reparsed.entries) == entries
    assert render("comma", reparsed.entries) == value


@given(st.lists(refs, max_size=8), st.lists(st.ip_addresses().map(str), max_size=2))
def test_json_form_round_trips(entries: list[NetworkRef], ips: list[str]) -> None:
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
    value = json.dumps(objects)
    reparsed = parse(value)
    if objects:
        assert list(reparsed.entries) == entries
        assert json.loads(render("json", reparsed.entries)) == objects


@given(st.text(max_size=60))
def test_parser_never_fails_other_than_annotation_error(value: str) -> None:
    try:
        parsed = parse(value)
    except AnnotationError:
        return
    assert parse(render(parsed.form, parsed.entries)).entries == parsed.entries


def test_too_many_entries_and_too_deep_json_are_refused() -> None:
    with pytest.raises(AnnotationError, match="lists 257 networks; at most 256"):
        parse(",".join(["a"] * 257))
    with pytest.raises(AnnotationError, match="deeper than 32 levels"):
        parse('[{"name": "a", "x": ' + "[" * 40 + "]" * 40 + "}]")
