"""Every example policy in examples/ loads with the real policy loader and decides a GPU pod."""

from __future__ import annotations

from pathlib import Path

import pytest

from webhook.mutation import decide
from webhook.policy import load_policy

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
POLICIES = sorted(EXAMPLES.glob("policy-*.yaml"))


def test_there_is_a_policy_for_each_cluster_shape() -> None:
    assert {path.name for path in POLICIES} >= {
        "policy-multi-rail.yaml",
        "policy-shared-rdma.yaml",
        "policy-mig.yaml",
        "policy-dra.yaml",
    }


@pytest.mark.parametrize("path", POLICIES, ids=[path.name for path in POLICIES])
def test_example_policy_loads_and_injects(path: Path) -> None:
    policy = load_policy(path)
    pod = {
        "metadata": {"name": "p"},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "resources": {
                        "limits": {"nvidia.com/gpu": "1"},
                        "requests": {"nvidia.com/gpu": "1"},
                    },
                }
            ]
        },
    }
    decision = decide(pod, "team-a", policy)
    assert decision.allowed, decision.message
    assert decision.patch
