"""A NetworkAttachmentDefinition's CNI configuration, read for the audit (core layer).

`spec.config` is the JSON of one CNI plugin (`"type"`) or of a plugin list (`"plugins"`), as
libcni reads it; an empty or absent `spec.config` means Multus reads the configuration from a
file on each node, which the audit cannot see. From it the audit needs the plugins' types, the
main plugin's IPAM, and the size of a whereabouts address pool, counted as whereabouts counts
it: from the range's first address (the network address + 1) to its last (the broadcast address
- 1 for IPv4), narrowed by `range_start` and `range_end`, less the `exclude` CIDRs.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

SRIOV_TYPES = frozenset({"sriov", "ib-sriov", "host-device"})
"""CNI types that take their device from a device plugin (host-device: unless given one)."""
HOST_DEVICE_SELECTORS = ("device", "hwaddr", "kernelpath", "pciBusID")
"""host-device names its device itself with one of these; then it needs no resource."""
RDMA_TYPES = frozenset({"rdma", "ib-sriov"})
"""An attachment through these plugins gets an RDMA device."""


class CniConfigError(ValueError):
    """A spec.config that libcni would refuse; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class CniConfig:
    plugins: tuple[Mapping[str, Any], ...]
    """The plugin configurations in order (one for a single-plugin config)."""

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(str(plugin.get("type")) for plugin in self.plugins)

    @property
    def main(self) -> Mapping[str, Any]:
        return self.plugins[0]

    @property
    def ipam(self) -> Mapping[str, Any]:
        """The IPAM section of the first plugin that has one ({} when none has)."""
        for plugin in self.plugins:
            ipam = plugin.get("ipam")
            if isinstance(ipam, Mapping) and ipam:
                return ipam
        return {}

    @property
    def ipam_type(self) -> str:
        value = self.ipam.get("type")
        return value if isinstance(value, str) else ""

    @property
    def needs_device(self) -> bool:
        """Whether the main plugin takes its device from a device plugin."""
        kind = self.main.get("type")
        if kind not in SRIOV_TYPES:
            return False
        return kind != "host-device" or not any(self.main.get(k) for k in HOST_DEVICE_SELECTORS)

    @property
    def rdma(self) -> bool:
        return any(kind in RDMA_TYPES for kind in self.types)


def read_config(nad: Mapping[str, Any]) -> CniConfig | None:
    """The NAD's CNI configuration; None when it has none (Multus then reads a file on the node);
    CniConfigError when libcni would refuse it."""
    spec = nad.get("spec")
    raw = spec.get("config") if isinstance(spec, Mapping) else None
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if not isinstance(raw, str):
        raise CniConfigError("spec.config is not a string of JSON")
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise CniConfigError(f"spec.config is not valid JSON ({error})") from None
    if not isinstance(document, dict):
        raise CniConfigError("spec.config is not a JSON object")
    plugins = document.get("plugins")
    if plugins is None:
        if not isinstance(document.get("type"), str) or not document["type"]:
            raise CniConfigError('spec.config has no "type" (and no "plugins" list)')
        return CniConfig((document,))
    if not isinstance(plugins, list) or not plugins:
        raise CniConfigError('spec.config has a "plugins" that is not a list of plugins')
    for index, plugin in enumerate(plugins, start=1):
        if not isinstance(plugin, dict) or not isinstance(plugin.get("type"), str):
            raise CniConfigError(f'plugin {index} of spec.config has no "type"')
    return CniConfig(tuple(plugins))


@dataclass(frozen=True, slots=True)
class Pool:
    """One whereabouts address pool: whereabouts keys it by network name and range."""

    key: tuple[str, str]
    size: int
    range: str


def whereabouts_pools(ipam: Mapping[str, Any]) -> list[Pool]:
    """The address pools of a whereabouts IPAM section ([] for another IPAM, or a range that
    does not parse: whereabouts refuses those pods, which shows up as no-ip)."""
    if ipam.get("type") != "whereabouts":
        return []
    network_name = str(ipam.get("network_name") or "")
    sections = [ipam] if ipam.get("range") else []
    ranges = ipam.get("ipRanges")
    if isinstance(ranges, list):
        sections += [r for r in ranges if isinstance(r, Mapping) and r.get("range")]
    pools = []
    for section in sections:
        counted = _pool_size(section)
        if counted is not None:
            network, size = counted
            pools.append(Pool((network_name, str(network)), size, str(section["range"])))
    return pools


def _pool_size(
    section: Mapping[str, Any],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int] | None:
    text = str(section["range"]).strip()
    start_text = section.get("range_start")
    end_text = section.get("range_end")
    try:
        if "-" in text:  # "first-last/prefix"
            first_text, _, rest = text.partition("-")
            last_text, _, prefix = rest.partition("/")
            network = ipaddress.ip_network(f"{last_text}/{prefix}", strict=False)
            start_text, end_text = start_text or first_text, end_text or last_text
            given = ipaddress.ip_address(first_text)
        else:
            interface = ipaddress.ip_interface(text)
            network, given = interface.network, interface.ip
        first = int(given)
        if first == int(network.network_address):
            first += 1
        last = int(network.broadcast_address) - (1 if network.version == 4 else 0)
        if isinstance(start_text, str) and start_text:
            first = max(first, int(ipaddress.ip_address(start_text)))
        if isinstance(end_text, str) and end_text:
            last = min(last, int(ipaddress.ip_address(end_text)))
        excluded = [
            ipaddress.ip_network(str(cidr), strict=False) for cidr in section.get("exclude") or ()
        ]
    except ValueError:
        return None
    if last < first:
        return network, 0
    return network, last - first + 1 - _excluded(first, last, excluded)


def _excluded(first: int, last: int, excluded: list[Any]) -> int:
    """Addresses of [first, last] inside any excluded network (overlaps counted once)."""
    spans = sorted(
        (max(first, int(net.network_address)), min(last, int(net.broadcast_address)))
        for net in excluded
    )
    total, reach = 0, first - 1
    for low, high in spans:
        low = max(low, reach + 1)
        if high >= low:
            total += high - low + 1
            reach = high
    return total
