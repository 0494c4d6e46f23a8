"""A guest NIC on the host's guest segment: its config and command line.

Params (per VM, already resolved for the host; `_hostN` overrides work):

    guest_network    yes: the VM has a NIC (default no)
    nic_model        virtio-net (default) | e1000e
    nic_mac          default 52:54:00 + 3 bytes of sha256(job_id, vm)
    nic_ip           the guest's address, default from guest_net_subnet:
                     network + 100 + sha256(job_id, vm) % 128 (both hosts of
                     a migration compute the same one)
    guest_net_subnet 198.19.0.0/24 (the lab's segment)
    nic_ifname       the tap's name on the host, default mhm<8 hex>
    nic_script       the script QEMU runs with the new tap's name to put it
                     on the bridge (the lab's: /run/mhm-lab/qemu-ifup)
    vhost            on | off (default off): vhost-net (needs /dev/vhost-net)
    nic_queues       N > 1: multiqueue (virtio-net only; N queue pairs)
    nic_kernel_ip    yes: `mhm.ip=ADDR/PREFIX` on the kernel command line (the
                     tiny guest addresses eth0 from it at boot)

QEMU creates the tap itself (`-netdev tap,ifname=...,script=...`), so the
tap exists exactly as long as the QEMU: it goes away when QEMU exits, even
when QEMU is killed.  Pure: no I/O here.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import ConfigError
from ..params import parse_bool

NIC_MODELS = {"virtio-net": "virtio-net-pci", "e1000e": "e1000e"}
DEFAULT_SUBNET = "198.19.0.0/24"
DEFAULT_SCRIPT = "/run/mhm-lab/qemu-ifup"
GUEST_FIRST = 100
GUEST_COUNT = 128
VHOST_DEVICE = "/dev/vhost-net"
ECHO_PORT = 7
TELNET_PORT = 23
_IFNAME_MAX = 15


def _digest(params: Mapping[str, Any], name: str) -> bytes:
    return hashlib.sha256(f"{params.get('job_id', 'mhm')}\0{name}".encode()).digest()


def default_mac(params: Mapping[str, Any], name: str) -> str:
    d = _digest(params, name)
    return "52:54:00:" + ":".join(f"{b:02x}" for b in d[:3])


def default_ip(params: Mapping[str, Any], name: str, subnet: ipaddress.IPv4Network) -> str:
    offset = GUEST_FIRST + int.from_bytes(_digest(params, name)[3:5], "big") % GUEST_COUNT
    return str(subnet.network_address + offset)


@dataclass(frozen=True)
class NicConfig:
    """One guest NIC, as both hosts of a migration build it."""

    model: str = "virtio-net"
    mac: str = "52:54:00:00:00:01"
    ip: str = ""
    prefixlen: int = 24
    ifname: str = "mhm0"
    script: str = DEFAULT_SCRIPT
    vhost: bool = False
    queues: int = 1
    kernel_ip: bool = False

    @property
    def device(self) -> str:
        return NIC_MODELS[self.model]

    @property
    def kernel_param(self) -> str:
        return f"mhm.ip={self.ip}/{self.prefixlen}"

    @classmethod
    def from_params(cls, name: str, params: Mapping[str, Any]) -> "NicConfig | None":
        def get(key: str, default: str = "") -> str:
            value = params.get(key)
            return default if value is None else str(value)

        if not parse_bool(get("guest_network", "no"), f"{name}: guest_network"):
            return None
        model = get("nic_model", "virtio-net")
        if model not in NIC_MODELS:
            raise ConfigError(f"{name}: nic_model={model!r}, expected one of "
                              f"{sorted(NIC_MODELS)}")
        try:
            subnet = ipaddress.IPv4Network(get("guest_net_subnet", DEFAULT_SUBNET))
            ip = get("nic_ip") or default_ip(params, name, subnet)
            if ipaddress.IPv4Address(ip) not in subnet:
                raise ValueError(f"{ip} is not in {subnet}")
        except ValueError as err:
            raise ConfigError(f"{name}: guest address: {err}") from None
        queues = get("nic_queues", "1")
        if not queues.isdigit() or int(queues) < 1:
            raise ConfigError(f"{name}: nic_queues={queues!r} must be a positive integer")
        if int(queues) > 1 and model != "virtio-net":
            raise ConfigError(f"{name}: nic_queues={queues} needs nic_model = virtio-net "
                              f"({model} has one queue)")
        ifname = get("nic_ifname") or "mhm" + _digest(params, name)[5:9].hex()
        if len(ifname) > _IFNAME_MAX or not ifname.replace("-", "").isalnum():
            raise ConfigError(f"{name}: nic_ifname={ifname!r}: at most {_IFNAME_MAX} "
                              "letters, digits or '-'")
        vhost = get("vhost", "off")
        if vhost not in ("on", "off"):
            raise ConfigError(f"{name}: vhost={vhost!r}, expected on or off")
        return cls(model=model, mac=get("nic_mac") or default_mac(params, name), ip=ip,
                   prefixlen=subnet.prefixlen, ifname=ifname,
                   script=get("nic_script", DEFAULT_SCRIPT), vhost=vhost == "on",
                   queues=int(queues),
                   kernel_ip=parse_bool(get("nic_kernel_ip", "no"), f"{name}: nic_kernel_ip"))


def qarg(value: object) -> str:
    return str(value).replace(",", ",,")


def nic_args(nic: NicConfig) -> list[str]:
    """-netdev tap (QEMU creates the tap, the script bridges it) and -device."""
    netdev = (f"tap,id=net0,ifname={qarg(nic.ifname)},script={qarg(nic.script)},"
              f"downscript=no,vhost={'on' if nic.vhost else 'off'}")
    # romfile= : no PXE option ROM (direct kernel boot needs none; one
    # less file each QEMU prefix must carry, and a faster boot)
    device = f"{nic.device},netdev=net0,mac={nic.mac},id=nic0,romfile="
    if nic.queues > 1:
        netdev += f",queues={nic.queues}"
        device += f",mq=on,vectors={2 * nic.queues + 2}"
    return ["-netdev", netdev, "-device", device]
