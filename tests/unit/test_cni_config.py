"""webhook.cni_config: a NAD's CNI configuration as libcni reads it, and whereabouts pool sizes
counted as whereabouts counts them (first address after the network address, last before the
IPv4 broadcast address, range_start/range_end, exclude)."""

from __future__ import annotations

from typing import Any

import pytest

from webhook.cni_config import CniConfigError, read_config, whereabouts_pools


def nad(config: str | None) -> dict[str, Any]:
    return {"metadata": {"name": "n", "namespace": "ns"}, "spec": {"config": config}}


@pytest.mark.parametrize(
    ("ipam", "size"),
    [
        ({"range": "192.168.2.0/24"}, 254),  # .1 to .254
        ({"range": "192.168.2.0/30"}, 2),
        ({"range": "192.168.2.225/28"}, 14),  # .225 to .238: 14
        ({"range": "192.168.2.230/28"}, 9),  # from the given address: .230 to .238
        ({"range": "192.168.2.0/24", "range_start": "192.168.2.100"}, 155),
        ({"range": "192.168.2.0/24", "range_end": "192.168.2.10"}, 10),
        ({"range": "192.168.2.0/24", "exclude": ["192.168.2.0/28"]}, 239),  # .1-.15 out
        (
            {"range": "192.168.2.0/24", "exclude": ["192.168.2.0/28", "192.168.2.8/29"]},
            239,  # overlapping excludes counted once
        ),
        ({"range": "192.168.2.10-192.168.2.19/24"}, 10),
        ({"range": "fd00:10::/120"}, 255),  # IPv6: no broadcast address
        (
            {
                "range": "192.168.2.0/24",
                "range_start": "192.168.2.200",
                "range_end": "192.168.2.100",
            },
            0,
        ),
    ],
)
def test_pool_sizes(ipam: dict[str, Any], size: int) -> None:
    (pool,) = whereabouts_pools({"type": "whereabouts", **ipam})
    assert pool.size == size


def test_ip_ranges_and_network_name_make_separate_pools() -> None:
    pools = whereabouts_pools(
        {
            "type": "whereabouts",
            "network_name": "rail-1",
            "ipRanges": [{"range": "10.0.0.0/29"}, {"range": "fd00::/125"}],
        }
    )
    assert [(p.key, p.size) for p in pools] == [
        (("rail-1", "10.0.0.0/29"), 6),
        (("rail-1", "fd00::/125"), 7),
    ]


def test_not_whereabouts_or_unreadable_ranges_have_no_pool() -> None:
    assert whereabouts_pools({"type": "host-local", "subnet": "10.0.0.0/24"}) == []
    assert whereabouts_pools({"type": "whereabouts", "range": "not-a-cidr"}) == []
    assert whereabouts_pools({"type": "whereabouts"}) == []


def test_plugin_lists_and_single_plugins() -> None:
    config = read_config(
        nad(
            '{"cniVersion": "1.0.0", "plugins": [{"type": "sriov", "ipam": '
            '{"type": "whereabouts", "range": "10.0.0.0/24"}}, {"type": "rdma"}]}'
        )
    )
    assert config is not None
    assert config.types == ("sriov", "rdma")
    assert config.ipam_type == "whereabouts"
    assert config.needs_device
    assert config.rdma
    single = read_config(nad('{"cniVersion": "0.3.1", "type": "macvlan", "ipam": {}}'))
    assert single is not None
    assert (single.types, single.ipam_type, single.needs_device, single.rdma) == (
        ("macvlan",),
        "",
        False,
        False,
    )


def test_no_config_means_a_file_on_the_node() -> None:
    assert read_config(nad(None)) is None
    assert read_config(nad("")) is None
    assert read_config({"metadata": {}}) is None


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("{", "spec.config is not valid JSON"),
        ("[]", "spec.config is not a JSON object"),
        ('{"name": "x"}', 'spec.config has no "type" (and no "plugins" list)'),
        ('{"plugins": []}', 'spec.config has a "plugins" that is not a list of plugins'),
        ('{"plugins": [{"type": "sriov"}, 3]}', 'plugin 2 of spec.config has no "type"'),
    ],
)
def test_configs_libcni_refuses(config: str, message: str) -> None:
    with pytest.raises(CniConfigError) as error:
        read_config(nad(config))
    assert str(error.value).startswith(message)


def test_host_device_with_its_own_device_needs_no_resource() -> None:
    for selector in ("device", "hwaddr", "kernelpath", "pciBusID"):
        config = read_config(nad(f'{{"type": "host-device", "{selector}": "x"}}'))
        assert config is not None
        assert not config.needs_device
    pooled = read_config(nad('{"type": "host-device"}'))
    assert pooled is not None
    assert pooled.needs_device
