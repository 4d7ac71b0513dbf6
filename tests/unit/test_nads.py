"""webhook.nads: facts from NAD objects, the NAD file loader, the static lookups."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from webhook.nads import (
    NO_NAMESPACES,
    RESOURCE_NAME_ANNOTATION,
    NadFacts,
    NadLookup,
    NamespaceLookup,
    StaticNads,
    StaticNamespaces,
    load_facts_file,
    load_nad_file,
    nad_facts_from_object,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "nads"
LEGACY_ANNOTATION = "example.com/legacy-resource"


def nad(name: str = "rail-1", namespace: str = "ml-training", **annotations: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": metadata,
        "spec": {"config": '{"cniVersion":"1.0.0","type":"sriov"}'},
    }


def with_resource(value: str, name: str = "rail-1") -> dict[str, Any]:
    obj = nad(name)
    obj["metadata"]["annotations"] = {RESOURCE_NAME_ANNOTATION: value}
    return obj


def fixture_text(*names: str) -> str:
    return "---\n".join((FIXTURES / name).read_text() for name in names)


# -- nad_facts_from_object ------------------------------------------------------------------------


def test_resource_name_comes_from_the_annotation() -> None:
    facts = nad_facts_from_object(with_resource("nvidia.com/sriov_resource_rail_3"))
    assert facts == NadFacts("ml-training", "rail-1", "nvidia.com/sriov_resource_rail_3")


@pytest.mark.parametrize(
    "annotations",
    [None, {}, {"other": "x"}, {RESOURCE_NAME_ANNOTATION: ""}, {RESOURCE_NAME_ANNOTATION: "  "}],
    ids=["no-annotations", "empty-annotations", "unrelated", "empty-value", "blank-value"],
)
def test_a_nad_without_a_resource_name_needs_no_device(annotations: Any) -> None:
    obj = nad()
    if annotations is not None:
        obj["metadata"]["annotations"] = annotations
    assert nad_facts_from_object(obj).resource_name is None


def test_surrounding_whitespace_is_dropped() -> None:
    facts = nad_facts_from_object(with_resource(" openshift.io/mellanoxnics\n"))
    assert facts.resource_name == "openshift.io/mellanoxnics"


def test_the_first_non_empty_annotation_in_the_given_order_wins() -> None:
    obj = nad()
    obj["metadata"]["annotations"] = {
        RESOURCE_NAME_ANNOTATION: "nvidia.com/standard",
        LEGACY_ANNOTATION: "nvidia.com/legacy",
    }
    legacy_first = [LEGACY_ANNOTATION, RESOURCE_NAME_ANNOTATION]
    standard_first = [RESOURCE_NAME_ANNOTATION, LEGACY_ANNOTATION]
    assert nad_facts_from_object(obj, legacy_first).resource_name == "nvidia.com/legacy"
    assert nad_facts_from_object(obj, standard_first).resource_name == "nvidia.com/standard"
    obj["metadata"]["annotations"][LEGACY_ANNOTATION] = ""
    assert nad_facts_from_object(obj, legacy_first).resource_name == "nvidia.com/standard"


def test_only_the_given_annotation_keys_are_read() -> None:
    obj = with_resource("nvidia.com/standard")
    assert nad_facts_from_object(obj, [LEGACY_ANNOTATION]).resource_name is None


def test_the_input_object_is_not_changed() -> None:
    obj = with_resource(" nvidia.com/x ")
    before = yaml.safe_dump(obj)
    nad_facts_from_object(obj)
    assert yaml.safe_dump(obj) == before


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"kind": "NetworkAttachmentDefinition"}, "has no metadata"),
        ({"metadata": "rail-1"}, "has no metadata"),
        ({"metadata": {"namespace": "ml-training"}}, "has no metadata.name"),
        ({"metadata": {"name": "", "namespace": "ml-training"}}, "has no metadata.name"),
        ({"metadata": {"name": "rail-1"}}, "'rail-1' has no metadata.namespace"),
        (
            {"metadata": {"name": "rail-1", "namespace": "ns", "annotations": ["a"]}},
            "metadata.annotations of NetworkAttachmentDefinition ns/rail-1 must be a mapping",
        ),
        (
            {
                "metadata": {
                    "name": "rail-1",
                    "namespace": "ns",
                    "annotations": {RESOURCE_NAME_ANNOTATION: 3},
                }
            },
            "must be a string, not int 3; quote it in YAML",
        ),
    ],
)
def test_malformed_objects_get_a_clear_sentence(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="NetworkAttachmentDefinition") as caught:
        nad_facts_from_object(obj)
    assert message in str(caught.value)


def test_a_single_string_of_annotation_keys_is_refused() -> None:
    with pytest.raises(TypeError, match="not a string"):
        nad_facts_from_object(nad(), RESOURCE_NAME_ANNOTATION)


# -- load_nad_file --------------------------------------------------------------------------------


def test_the_fixtures_load_as_operators_write_them() -> None:
    nads = load_nad_file(
        fixture_text(
            "sriov-rdma-net.yaml",
            "nvidia-rails.yaml",
            "ipoib-net.yaml",
            "macvlan-net.yaml",
            "gpu-infra-sriov-rdma-vf.yaml",
        )
    )
    assert nads.authoritative
    assert len(nads) == 12
    assert nads.get("ml-training", "sriov-rdma-net") == NadFacts(
        "ml-training", "sriov-rdma-net", "openshift.io/mellanoxnics"
    )
    assert nads.get("ml-training", "rail-3") == NadFacts(
        "ml-training", "rail-3", "nvidia.com/sriov_resource_rail_3"
    )
    assert nads.get("gpu-infra", "sriov-rdma-vf") == NadFacts(
        "gpu-infra", "sriov-rdma-vf", "nvidia.com/sriov_rdma_vf"
    )
    assert nads.get("ml-training", "ipoib-net") == NadFacts("ml-training", "ipoib-net", None)
    assert nads.get("ml-training", "macvlan-net") == NadFacts("ml-training", "macvlan-net", None)
    assert nads.names_in("gpu-infra") == ("sriov-rdma-vf",)


def test_a_list_document_is_unwrapped() -> None:
    for kind in ("List", "NetworkAttachmentDefinitionList"):
        text = yaml.safe_dump(
            {
                "apiVersion": "v1" if kind == "List" else "k8s.cni.cncf.io/v1",
                "kind": kind,
                "items": [with_resource("nvidia.com/a", "a"), nad("b")],
            }
        )
        nads = load_nad_file(text)
        assert nads.get("ml-training", "a") == NadFacts("ml-training", "a", "nvidia.com/a")
        assert nads.get("ml-training", "b") == NadFacts("ml-training", "b", None)


def test_lists_and_single_documents_mix_and_empty_documents_are_skipped() -> None:
    text = "---\n".join(
        [
            yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [nad("a")]}),
            "# only a comment\n",
            yaml.safe_dump(nad("b")),
            yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": None}),
        ]
    )
    assert load_nad_file(text).names_in("ml-training") == ("a", "b")


def test_an_empty_file_describes_a_cluster_without_nads() -> None:
    nads = load_nad_file("")
    assert nads.authoritative
    assert len(nads) == 0


def test_custom_annotation_keys_apply_to_the_file() -> None:
    obj = nad(**{LEGACY_ANNOTATION: "nvidia.com/legacy"})
    nads = load_nad_file(yaml.safe_dump(obj), [RESOURCE_NAME_ANNOTATION, LEGACY_ANNOTATION])
    facts = nads.get("ml-training", "rail-1")
    assert facts is not None
    assert facts.resource_name == "nvidia.com/legacy"


def docs(*objects: Any) -> str:
    return "---\n".join(yaml.safe_dump(obj) for obj in objects)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: [unclosed", "nads.yaml is not valid YAML"),
        (
            docs(nad("a"), ["a", "list"]),
            "nads.yaml, document 2: expected a NetworkAttachmentDefinition",
        ),
        (
            docs(nad("a"), {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
            "nads.yaml, document 2: expected kind NetworkAttachmentDefinition (or a List of them), "
            "got 'ConfigMap'",
        ),
        (docs({"metadata": {"name": "x"}}), "document 1: the object has no 'kind'"),
        (
            docs({**nad("a"), "apiVersion": "k8s.cni.cncf.io/v1beta1"}),
            "document 1: expected apiVersion k8s.cni.cncf.io/v1, got 'k8s.cni.cncf.io/v1beta1'",
        ),
        (
            docs(nad("a"), {"apiVersion": "v1", "kind": "List", "items": [nad("b"), {"kind": 1}]}),
            "nads.yaml, document 2, item 2: expected kind NetworkAttachmentDefinition",
        ),
        (
            docs({"apiVersion": "v1", "kind": "List", "items": [nad("b"), "rail"]}),
            "document 1, item 2: expected a NetworkAttachmentDefinition object (a mapping), "
            "got str",
        ),
        (
            docs({"apiVersion": "v1", "kind": "List", "items": {"a": 1}}),
            "document 1: the List has 'items' that is not a list",
        ),
        (
            docs(nad("a"), {"kind": "NetworkAttachmentDefinition", "metadata": {"name": "b"}}),
            "nads.yaml, document 2: The NetworkAttachmentDefinition 'b' has no metadata.namespace",
        ),
        (
            docs(nad("a"), nad("b"), nad("a")),
            "nads.yaml, document 3: NetworkAttachmentDefinition ml-training/a is already defined "
            "in nads.yaml, document 1",
        ),
    ],
    ids=[
        "yaml",
        "not-a-mapping",
        "wrong-kind",
        "no-kind",
        "wrong-api-version",
        "wrong-item-kind",
        "item-not-a-mapping",
        "items-not-a-list",
        "no-namespace",
        "duplicate",
    ],
)
def test_bad_files_name_the_document(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"^nads\.yaml") as caught:
        load_nad_file(text, source="nads.yaml")
    assert message in str(caught.value)


def test_the_default_source_name_reads_as_a_sentence() -> None:
    with pytest.raises(ValueError, match=r"^the NAD file, document 1: expected kind"):
        load_nad_file(docs({"kind": "Pod", "metadata": {"name": "x"}}))


# -- StaticNads and StaticNamespaces---------------------------------------------------------------


def test_static_nads_lookups() -> None:
    nads = StaticNads(
        [
            NadFacts("ml-training", "rail-2", "nvidia.com/r2"),
            NadFacts("ml-training", "rail-10", "nvidia.com/r10"),
            NadFacts("ml-training", "ipoib-net", None),
            NadFacts("gpu-infra", "rail-2", "nvidia.com/other"),
        ],
        authoritative=True,
    )
    assert nads.get("ml-training", "rail-2") == NadFacts("ml-training", "rail-2", "nvidia.com/r2")
    assert nads.get("gpu-infra", "rail-2") == NadFacts("gpu-infra", "rail-2", "nvidia.com/other")
    assert nads.get("ml-training", "rail-3") is None
    assert nads.get("elsewhere", "rail-2") is None
    assert nads.names_in("ml-training") == ("ipoib-net", "rail-10", "rail-2")
    assert nads.names_in("elsewhere") == ()
    assert {f.name for f in nads} == {"rail-2", "rail-10", "ipoib-net"}


def test_the_no_cluster_instance_is_empty_and_not_authoritative() -> None:
    nads = StaticNads((), authoritative=False)
    assert not nads.authoritative
    assert nads.get("ml-training", "rail-1") is None
    assert nads.names_in("ml-training") == ()
    assert "authoritative=False" in repr(nads)


def test_static_nads_refuses_duplicates() -> None:
    with pytest.raises(ValueError, match="ml-training/a is given twice"):
        StaticNads([NadFacts("ml-training", "a", None)] * 2, authoritative=True)


def test_no_namespaces_knows_nothing() -> None:
    assert NO_NAMESPACES.annotations("ml-training") is None


def test_static_namespaces_answer_their_annotations_read_only() -> None:
    namespaces = StaticNamespaces({"team-a": {"gpu-rdma-injector/networks": "rail-1"}})
    annotations = namespaces.annotations("team-a")
    assert annotations == {"gpu-rdma-injector/networks": "rail-1"}
    assert namespaces.annotations("team-b") is None
    with pytest.raises(TypeError):
        annotations["x"] = "y"  # type: ignore[index]


def test_the_lookups_satisfy_their_protocols() -> None:
    # Static typing checks this in the webhook; here it guards the runtime shape.
    nad_lookup: NadLookup = StaticNads((), authoritative=False)
    namespace_lookup: NamespaceLookup = StaticNamespaces({})
    assert nad_lookup.names_in("x") == ()
    assert namespace_lookup.annotations("x") is None


def test_facts_are_immutable() -> None:
    facts = NadFacts("ml-training", "rail-1", None)
    with pytest.raises(AttributeError):
        facts.resource_name = "nvidia.com/x"  # type: ignore[misc]


# -- load_facts_file: NADs and Namespaces ---------------------------------------------------------


def test_a_facts_file_mixes_nads_and_namespaces_in_documents_and_lists() -> None:
    text = docs(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ml-training"}},
        {
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                nad("a"),
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": "team-b", "annotations": {"x/networks": "a"}},
                },
            ],
        },
        {"kind": "NamespaceList", "items": [{"metadata": {"name": "team-c"}}]},
    )
    facts = load_facts_file(text)
    assert facts.nads.names_in("ml-training") == ("a",)
    assert facts.namespaces.annotations("ml-training") == {}
    assert facts.namespaces.annotations("team-b") == {"x/networks": "a"}
    assert facts.namespaces.annotations("team-c") == {}
    assert facts.namespaces.annotations("team-d") is None


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"kind": "Namespace", "metadata": {}}, "The Namespace has no metadata.name"),
        (
            {"kind": "Namespace", "metadata": {"name": "a", "annotations": {"k": 1}}},
            "The metadata.annotations of Namespace a must be a mapping of strings to strings",
        ),
        (
            {"apiVersion": "v2", "kind": "Namespace", "metadata": {"name": "a"}},
            "expected apiVersion v1, got 'v2'",
        ),
    ],
)
def test_bad_namespaces_name_the_document(document: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=r"^ns\.yaml, document 1") as caught:
        load_facts_file(docs(document), source="ns.yaml")
    assert message in str(caught.value)


def test_a_namespace_given_twice_is_refused() -> None:
    namespace = {"kind": "Namespace", "metadata": {"name": "a"}}
    with pytest.raises(ValueError, match=r"Namespace a is already defined in ns\.yaml, document 1"):
        load_facts_file(docs(namespace, namespace), source="ns.yaml")


def test_the_nad_file_still_takes_nads_only() -> None:
    with pytest.raises(ValueError, match="expected kind NetworkAttachmentDefinition \\(or a List"):
        load_nad_file(docs({"kind": "Namespace", "metadata": {"name": "a"}}))
