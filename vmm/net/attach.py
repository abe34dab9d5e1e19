"""The host side of each NIC, from its CFGM node: the attachment's backend and the optional trace.

Attachments (NetworkAttachmentType names): NAT (libslirp, vmm.net.nat), Null (no peer),
Internal (vmm.net.intnet: VMs of this host on the same network name), Generic (only the
drivers named here); Bridged and HostOnly need a host interface the VM process may not open,
and are refused with a message that says so.
"""

from __future__ import annotations

from vmm.cfgm import CfgNode
from vmm.net.frame import NetBackend, NullBackend
from vmm.net.nat import NatBackend, NatConfig, NatError, NatRule


class AttachError(Exception):
    """The attachment cannot be made; the text names the adapter and the reason."""


def nat_config(node: CfgNode, adapter: int) -> NatConfig:
    nat = node.child("NAT") or CfgNode()
    rules = []
    for r in nat.children.get("Rules", CfgNode()):
        rules.append(NatRule(r.get_str("Name"), r.get_bool("UDP", False), r.get_str("HostIP", ""),
                             r.get_int("HostPort"), r.get_str("GuestIP", ""), r.get_int("GuestPort")))
    return NatConfig(network=nat.get_str("Network", ""), slot=adapter, rules=rules,
                     localhost_reachable=nat.get_bool("LocalhostReachable", True),
                     bind_ip=nat.get_str("BindIP", ""), dns_proxy=nat.get_bool("DNSProxy", False),
                     dns_host_resolver=nat.get_bool("UseHostResolver", False),
                     tftp_prefix=nat.get_str("TFTPPrefix", ""), tftp_boot_file=nat.get_str("BootFile", ""),
                     tftp_next_server=nat.get_str("NextServer", ""), mtu=nat.get_int("MTU", 0),
                     alias_mode=nat.get_int("AliasMode", 0))


def create_backend(node: CfgNode, adapter: int, runtime_dir: str = "") -> NetBackend:
    kind = node.get_str("Attachment", "Null")
    label = f"network adapter {adapter + 1}"
    if kind == "NAT":
        try:
            return NatBackend(nat_config(node, adapter))
        except NatError as e:
            raise AttachError(f"{label}: NAT: {e}") from None
    if kind == "Null":
        return NullBackend()
    if kind == "Internal":
        from vmm.net.intnet import IntNetBackend, IntNetError
        name = node.get_str("Network", "") or "intnet"
        try:
            return IntNetBackend(name, runtime_dir)
        except IntNetError as e:
            raise AttachError(f"{label}: internal network '{name}': {e}") from None
    if kind in ("Bridged", "HostOnly", "HostOnlyNetwork"):
        what = node.get_str("Network", "")
        raise AttachError(f"{label}: the {kind} attachment{f' ({what})' if what else ''} needs a "
                          f"host network "
                          "interface (a tap device) that this VM process is not allowed to create; use NAT "
                          "or an internal network")
    if kind == "Generic":
        driver = node.get_str("Network", "")
        raise AttachError(f"{label}: the generic driver '{driver}' is unknown to vboxpy")
    raise AttachError(f"{label}: the {kind} attachment is not available in vboxpy")
