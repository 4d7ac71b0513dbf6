"""The wgpolicyk8s.io CRDs' schemas as validators (tests/fixtures/policyreport-crds/)."""

from __future__ import annotations

from typing import Any

import jsonschema
import yaml
from conftest import FIXTURES

CRDS = FIXTURES / "policyreport-crds"


def _strict(schema: Any) -> Any:
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        if schema.get("type") == "object" and "properties" in schema:
            schema.setdefault("additionalProperties", False)
    elif isinstance(schema, list):
        schema = [_strict(item) for item in schema]
    return schema


def validator(kind: str) -> jsonschema.Validator:
    plural = "policyreports" if kind == "PolicyReport" else "clusterpolicyreports"
    crd = yaml.safe_load((CRDS / f"wgpolicyk8s.io_{plural}.yaml").read_text())
    assert crd["spec"]["names"]["kind"] == kind
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha2"]
    schema = _strict(version["schema"]["openAPIV3Schema"])
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
