"""The audit on a large cluster: time and peak memory, from a dump and live (python -m
benchmarks.audit_scale --pods 10000).

Builds a cluster in the shapes of tests/audit_shapes.py (pods with Multus's network-status,
whereabouts NADs, nodes with allocatable VFs, FailedScheduling events; one pod in a hundred with
a problem), then runs `gpu-rdma-injector audit -o summary` as a child process three ways: on
the YAML dump `kubectl get ... -o yaml` would print, on the JSON one, and live against the
API double (tests/kube_api_double.py: the real client, paged lists of 500). Each run's wall time,
CPU time and peak RSS (the audit's own, measured under a small wrapper process) are printed as
JSON lines.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from audit_shapes import (  # noqa: E402
    OPT_IN,
    RDMA,
    as_list,
    failed_scheduling,
    nad,
    namespace,
    network_status,
    node,
    pod,
    sriov_rdma_config,
    status_entry,
    whereabouts,
)

NAMESPACES = 50
NODES = 1250  # 8 GPUs and 8 VFs each: 10,000 pods fill them
EVENTS = 500


def cluster(pods: int) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    spaces = [f"team-{index:02d}" for index in range(NAMESPACES)]
    for index, name in enumerate(spaces):
        objects.append(namespace(name, OPT_IN if index % 10 else None))
        config = sriov_rdma_config("sriov-rdma-net", whereabouts(f"10.{index}.0.0/16"))
        objects.append(nad("sriov-rdma-net", config, name, resource=RDMA))
    objects += [node(f"gpu-node-{index:04d}", {RDMA: 8}) for index in range(NODES)]
    for index in range(pods):
        space = spaces[index % NAMESPACES]
        network = f"{space}/sriov-rdma-net"
        address = f"10.{index % NAMESPACES}.{index // 250 % 256}.{index % 250 + 1}"
        broken = index % 100 == 99
        status = network_status(
            f"10.128.{index // 250 % 256}.{index % 250 + 1}",
            status_entry(network, "net1", [] if broken else [address], "0000:3b:02.1", "mlx5_3"),
        )
        objects.append(
            pod(
                f"trainer-{index:05d}",
                space,
                networks="sriov-rdma-net",
                units={RDMA: 1},
                node=f"gpu-node-{index % NODES:04d}",
                status=status,
            )
        )
    for index in range(EVENTS):
        waiting = pod(
            f"waiting-{index:03d}",
            spaces[index % NAMESPACES],
            networks="sriov-rdma-net",
            units={RDMA: 1},
            node=None,
            phase="Pending",
        )
        message = "0/1250 nodes are available: 1250 Insufficient openshift.io/mellanoxnics."
        objects += [waiting, failed_scheduling(waiting, message)]
    return objects


# The audit runs under a small wrapper process: a child forked straight from this (large)
# process would carry this process's resident size into its own peak.
_WRAPPER = """
import json, resource, subprocess, sys, time
started = time.monotonic()
done = subprocess.run(sys.argv[1:], capture_output=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"exit": done.returncode, "wall": time.monotonic() - started,
    "cpu": usage.ru_utime + usage.ru_stime, "maxrss_kib": usage.ru_maxrss,
    "out": done.stdout.decode(), "err": done.stderr.decode()[-300:]}))
"""


def measure(label: str, command: list[str]) -> dict[str, Any]:
    wrapped = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *command], capture_output=True, check=True
    )
    run = json.loads(wrapped.stdout)
    result = json.loads(run["out"]) if run["out"].strip() else {"error": run["err"]}
    return {
        "run": label,
        "exit": run["exit"],
        "wall_s": round(run["wall"], 2),
        "cpu_s": round(run["cpu"], 2),
        "peak_rss_mib": round(run["maxrss_kib"] / 1024, 1),
        "objects": result.get("objects"),
        "findings": result.get("summary"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--skip-live", action="store_true")
    args = parser.parse_args()
    audit = [sys.executable, "-m", "webhook", "audit", "-o", "summary"]
    objects = cluster(args.pods)
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        import yaml

        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        listed = as_list(*objects)
        (work / "dump.yaml").write_text(yaml.dump(listed, Dumper=dumper, sort_keys=True))
        (work / "dump.json").write_text(json.dumps(listed, indent=4))
        for name in ("dump.yaml", "dump.json"):
            size = round((work / name).stat().st_size / 2**20, 1)
            run = measure(name, [*audit, "--from", str(work / name)])
            print(json.dumps({**run, "size_mib": size}))
        if args.skip_live:
            return 0
        from kube_api_double import KubeApiDouble

        with KubeApiDouble() as api:
            uids: dict[tuple[str, str], str] = {}
            for obj in sorted(objects, key=lambda o: o["kind"] != "Namespace"):
                for field in ("resourceVersion", "uid", "creationTimestamp", "generation"):
                    obj["metadata"].pop(field, None)
                if obj["kind"] == "Event":  # the uid its pod got from the server
                    subject = obj["involvedObject"]
                    subject["uid"] = uids[(subject["namespace"], subject["name"])]
                created = api.create(obj)["metadata"]
                uids[(created.get("namespace", ""), created["name"])] = created["uid"]
            kubeconfig = api.kubeconfig(work / "kubeconfig")
            print(json.dumps(measure("live", [*audit, "--kubeconfig", str(kubeconfig)])))
    return 0


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE))
    sys.exit(main())
