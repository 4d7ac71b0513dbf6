"""The chart's policy values for every cluster shape: rendered, loaded by the real policy loader,
and the read access DRA needs granted only when the policy names device classes."""

from __future__ import annotations

from typing import Any

import yaml
from test_chart import RELEASE, run_helm, template_args

from webhook.policy import parse_policy


def render(*extra: str) -> list[dict[str, Any]]:
    result = run_helm(*template_args(RELEASE, []), *extra)
    assert result.returncode == 0, result.stderr
    return [obj for obj in yaml.safe_load_all(result.stdout) if obj]


def cluster_rules(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for obj in objects if obj["kind"] == "ClusterRole" for rule in obj["rules"]]


def test_every_shape_renders_into_a_policy_the_webhook_loads() -> None:
    objects = render(
        "--set-json",
        'policy.gpuResources=["nvidia.com/gpu","nvidia.com/mig-*"]',
        "--set-json",
        'policy.networks=[{"name":"rdma-shared-macvlan","resourceName":"rdma/rdma_shared_device_a",'
        '"resourceUnits":"perContainer","perGpu":true}]',
        "--set",
        "policy.injectNodeSelector=true",
        "--set",
        "policy.podNetInfo.enabled=true",
        "--set-json",
        'policy.gpuDeviceClasses=["gpu.nvidia.com"]',
    )
    (configmap,) = [o for o in objects if o["kind"] == "ConfigMap" and "policy.yaml" in o["data"]]
    policy = parse_policy(configmap["data"]["policy.yaml"], "the chart's ConfigMap")
    assert policy.is_gpu_resource("nvidia.com/mig-1g.10gb")
    assert policy.networks[0].resource_units == "perContainer"
    assert policy.inject_node_selector
    assert policy.pod_net_info.enabled
    assert policy.gpu_device_classes == ("gpu.nvidia.com",)
    dra = [r for r in cluster_rules(objects) if r["apiGroups"] == ["resource.k8s.io"]]
    assert dra == [
        {
            "apiGroups": ["resource.k8s.io"],
            "resources": ["resourceclaimtemplates", "resourceclaims"],
            "verbs": ["get", "list", "watch"],
        }
    ]


def test_no_dra_access_without_device_classes() -> None:
    assert not [r for r in cluster_rules(render()) if "resource.k8s.io" in r["apiGroups"]]


def test_an_unknown_resource_units_value_is_refused_by_the_schema() -> None:
    result = run_helm(
        *template_args(RELEASE, []),
        "--set-json",
        'policy.networks=[{"name":"a","resourceUnits":"perNode"}]',
    )
    assert result.returncode != 0
    assert "resourceUnits" in result.stderr
