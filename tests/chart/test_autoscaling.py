"""The chart's optional HorizontalPodAutoscaler, and a PodDisruptionBudget consistent with it.

Rendered with the real helm binary; the objects are validated against the Kubernetes OpenAPI
schemas by tests/chart/test_chart.py (its "autoscaling" combination), here their meaning: the
autoscaler aims at the CPU request, the Deployment leaves its replica count to it, and no
budget the chart renders can block every eviction at the fewest replicas it may run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from test_chart import (
    CHART,
    FULLNAME,
    RELEASE,
    find,
    one,
    run_helm,
    template_args,
    values_file,
)


def render(tmp_path: Path, values: dict[str, Any]) -> list[dict[str, Any]]:
    result = run_helm(*template_args(RELEASE, [values_file(tmp_path, "values", values)]))
    assert result.returncode == 0, result.stderr
    return [obj for obj in yaml.safe_load_all(result.stdout) if obj]


def refusal(tmp_path: Path, values: dict[str, Any]) -> str:
    result = run_helm(*template_args(RELEASE, [values_file(tmp_path, "values", values)]))
    assert result.returncode != 0, "rendered"
    return result.stderr


def test_off_by_default(tmp_path: Path) -> None:
    objects = render(tmp_path, {})
    assert find(objects, "HorizontalPodAutoscaler") == []
    assert one(objects, "Deployment")["spec"]["replicas"] == 2
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["autoscaling"]
    assert defaults == {
        "enabled": False,
        "minReplicas": 2,
        "maxReplicas": 6,
        "targetCPUUtilizationPercentage": 80,
        "scaleDownStabilizationSeconds": 300,
    }


def test_the_autoscaler_scales_the_deployment_on_its_cpu_request(tmp_path: Path) -> None:
    objects = render(tmp_path, {"autoscaling": {"enabled": True}})
    deployment = one(objects, "Deployment")
    assert "replicas" not in deployment["spec"]  # left to the autoscaler
    autoscaler = one(objects, "HorizontalPodAutoscaler")
    assert autoscaler["apiVersion"] == "autoscaling/v2"
    spec = autoscaler["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": FULLNAME,
    }
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 6)
    assert spec["metrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 80},
            },
        }
    ]
    assert spec["behavior"] == {"scaleDown": {"stabilizationWindowSeconds": 300}}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"]["cpu"]  # what the utilization is a share of
    budget = one(objects, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1


@pytest.mark.parametrize(
    ("values", "budget"),
    [
        ({"autoscaling": {"enabled": True, "minReplicas": 1}}, None),
        ({"autoscaling": {"enabled": True, "minReplicas": 3}}, {"minAvailable": 1}),
        (
            {
                "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 3},
                "podDisruptionBudget": {"minAvailable": 2},
            },
            {"minAvailable": 2},
        ),
        (
            {"autoscaling": {"enabled": True}, "podDisruptionBudget": {"minAvailable": "50%"}},
            {"minAvailable": "50%"},
        ),
        (
            {"autoscaling": {"enabled": True}, "podDisruptionBudget": {"maxUnavailable": 1}},
            {"maxUnavailable": 1},
        ),
        # The autoscaler's minimum counts, not replicaCount.
        (
            {"replicaCount": 1, "autoscaling": {"enabled": True, "minReplicas": 2}},
            {"minAvailable": 1},
        ),
        ({"replicaCount": 5, "autoscaling": {"enabled": True, "minReplicas": 1}}, None),
    ],
    ids=[
        "one-replica-no-budget",
        "three",
        "two-of-three",
        "half",
        "max-unavailable",
        "minimum-counts-not-replica-count",
        "minimum-one-no-budget",
    ],
)
def test_the_budget_follows_the_fewest_replicas(
    tmp_path: Path, values: dict[str, Any], budget: dict[str, Any] | None
) -> None:
    budgets = find(render(tmp_path, values), "PodDisruptionBudget")
    if budget is None:
        assert budgets == []
    else:
        (rendered,) = budgets
        assert {k: v for k, v in rendered["spec"].items() if k != "selector"} == budget


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {
                "autoscaling": {"enabled": True, "minReplicas": 3},
                "podDisruptionBudget": {"minAvailable": 3},
            },
            "podDisruptionBudget.minAvailable 3 keeps all 3 replicas (autoscaling.minReplicas) "
            "and so blocks every eviction",
        ),
        (
            {"autoscaling": {"enabled": True}, "podDisruptionBudget": {"minAvailable": "100%"}},
            "podDisruptionBudget.minAvailable 100% keeps all 2 replicas (autoscaling.minReplicas)",
        ),
        (
            {"autoscaling": {"enabled": True}, "podDisruptionBudget": {"minAvailable": "51%"}},
            "podDisruptionBudget.minAvailable 51% keeps all 2 replicas",
        ),
        (
            {"replicaCount": 2, "podDisruptionBudget": {"minAvailable": 2}},
            "podDisruptionBudget.minAvailable 2 keeps all 2 replicas (replicaCount)",
        ),
        (
            {"autoscaling": {"enabled": True}, "podDisruptionBudget": {"maxUnavailable": 0}},
            "podDisruptionBudget.maxUnavailable 0 blocks every eviction",
        ),
        (
            {"podDisruptionBudget": {"maxUnavailable": "0%"}},
            "podDisruptionBudget.maxUnavailable 0% blocks every eviction",
        ),
        (
            {"autoscaling": {"enabled": True, "minReplicas": 4, "maxReplicas": 3}},
            "autoscaling.maxReplicas (3) is below autoscaling.minReplicas (4)",
        ),
        (
            {"autoscaling": {"enabled": True}, "resources": {"requests": {"cpu": None}}},
            "autoscaling.enabled needs resources.requests.cpu",
        ),
    ],
    ids=[
        "min-available-all",
        "min-available-100-percent",
        "min-available-rounds-up-to-all",
        "without-autoscaler-too",
        "max-unavailable-zero",
        "max-unavailable-zero-percent",
        "bounds-reversed",
        "no-cpu-request",
    ],
)
def test_the_chart_refuses_a_budget_or_autoscaler_that_cannot_work(
    tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    assert message in refusal(tmp_path, values)


@pytest.mark.parametrize(
    "values",
    [
        {"autoscaling": {"enabled": True, "minReplicas": 0}},
        {"autoscaling": {"enabled": True, "targetCPUUtilizationPercentage": 150}},
        {"autoscaling": {"enabled": True, "targetCPUUtilizationPercentage": 5}},
        {"autoscaling": {"enabled": "yes"}},
        {"autoscaling": {"scaleUp": {}}},
    ],
    ids=["min-zero", "target-above-100", "target-below-10", "enabled-not-bool", "unknown-key"],
)
def test_the_schema_bounds_the_autoscaler(tmp_path: Path, values: dict[str, Any]) -> None:
    stderr = refusal(tmp_path, values)
    assert "schema" in stderr
    assert "autoscaling" in stderr
