"""`<Network>` adapters and `<UART>` serial ports (Settings.cpp, readNetworkAdapters/readSerialPorts).

VirtualBox writes only adapters and ports whose settings differ from the defaults; the models
always hold every slot (8 adapters, 36 with ICH9 when the file has them; 4 UARTs). The active
attachment is a direct child of `<Adapter>`; the names of the inactive modes live in
`<DisabledModes>`.
"""

from __future__ import annotations

from lxml import etree

from .models import UART_DEFAULTS, NatRule, NatSettings, NetworkAdapter, SerialPort
from .xmllists import sync_keyed
from .xmltree import (
    child,
    child_index,
    children,
    ensure_child,
    get_bool,
    get_enum,
    get_int,
    is_bare,
    is_empty,
    new_child,
    problem,
    put,
    put_bool,
    put_int,
    put_str,
    remove,
    required,
    set_attr,
)

ADAPTER_XML = {"I82540EM": "82540EM", "I82543GC": "82543GC", "I82545EM": "82545EM", "Virtio": "virtio",
               "ELNK2": "3C503", "ELNK1": "3C501"}
ADAPTER_API = {v: k for k, v in ADAPTER_XML.items()} | {
    t: t for t in ("Am79C970A", "Am79C973", "Am79C960", "NE1000", "NE2000", "WD8003", "WD8013")}
PROMISC = {v: v for v in ("Deny", "AllowNetwork", "AllowAll")}
ADAPTER_ATTRS = ("slot", "enabled", "MACAddress", "cable", "speed", "bootPriority", "trace",
                 "tracefile", "bandwidthGroup", "promiscuousModePolicy", "type")
# attachment type -> (element, attribute holding the name, model field)
MODES = {
    "NAT": ("NAT", None, None),
    "Bridged": ("BridgedInterface", "name", "bridged_interface"),
    "Internal": ("InternalNetwork", "name", "internal_network"),
    "HostOnly": ("HostOnlyInterface", "name", "host_only_interface"),
    "Generic": ("GenericInterface", "driver", "generic_driver"),
    "NATNetwork": ("NATNetwork", "name", "nat_network"),
    "Cloud": ("CloudNetwork", "name", "cloud_network"),
    "HostOnlyNetwork": ("HostOnlyNetwork", "name", "host_only_network"),
}
MODE_OF_ELEMENT = {v[0]: k for k, v in MODES.items()} | {"HostInterface": "Bridged"}  # pre-2.1 name
ADAPTER_CHILDREN = ("DisabledModes", "NAT", "BridgedInterface", "InternalNetwork", "HostOnlyInterface",
                    "GenericInterface", "NATNetwork", "CloudNetwork", "HostOnlyNetwork")
FORWARD_ATTRS = ("name", "proto", "hostip", "hostport", "guestip", "guestport")
NAT_ATTRS = ("network", "hostip", "mtu", "sockrcv", "socksnd", "tcprcv", "tcpsnd", "localhost-reachable")
NAT_CHILDREN = ("DNS", "Alias", "TFTP", "Forwarding")
# (attribute, model field) of the integer NAT attributes, written when non-zero
NAT_INTS = (("mtu", "mtu"), ("sockrcv", "sock_rcv"), ("socksnd", "sock_snd"), ("tcprcv", "tcp_rcv"),
            ("tcpsnd", "tcp_snd"))
NAT_FLAG_CHILDREN = {
    "DNS": (("pass-domain", "dns_pass_domain", True), ("use-proxy", "dns_proxy", False),
            ("use-host-resolver", "dns_use_host_resolver", False)),
    "Alias": (("logging", "alias_log", False), ("proxy-only", "alias_proxy_only", False),
              ("use-same-ports", "alias_use_same_ports", False)),
}
NAT_TFTP = (("prefix", "tftp_prefix"), ("boot-file", "tftp_boot_file"), ("next-server", "tftp_next_server"))
UART_XML = {"U16450": "16450", "U16550A": "16550A", "U16750": "16750"}
UART_API = {v: k for k, v in UART_XML.items()}
PORT_MODES = ("Disconnected", "HostPipe", "HostDevice", "RawFile", "TCP")


def default_adapter_type(sv: int) -> str:
    """From 1.16 (VirtualBox 5.1) an adapter defaults to PCnet-FAST III with the cable connected;
    before, to PCnet-PCI II with the cable unplugged."""
    return "Am79C973" if sv >= 16 else "Am79C970A"


def default_cable(sv: int) -> bool:
    return sv >= 16


def default_localhost_reachable(sv: int) -> bool:
    """`NAT::areLocalhostReachableDefaultSettings`: reachable before 1.19, not from 1.19 (7.0)."""
    return sv < 19


def _default_adapter(slot: int, sv: int) -> NetworkAdapter:
    return NetworkAdapter(slot=slot, type=default_adapter_type(sv), cable_connected=default_cable(sv),
                          nat=NatSettings(localhost_reachable=default_localhost_reachable(sv)))


def _read_nat(nat: etree._Element | None, sv: int) -> NatSettings:
    if nat is None:
        return NatSettings(localhost_reachable=default_localhost_reachable(sv))
    fields = dict(network=nat.get("network", ""), bind_ip=nat.get("hostip", ""),
                  localhost_reachable=get_bool(nat, "localhost-reachable", default_localhost_reachable(sv)))
    for attr, name in NAT_INTS:
        fields[name] = get_int(nat, attr, 0)
    for tag, flags in NAT_FLAG_CHILDREN.items():
        el = child(nat, tag)
        for attr, name, default in flags:
            fields[name] = get_bool(el, attr, default)
    tftp = child(nat, "TFTP")
    for attr, name in NAT_TFTP:
        fields[name] = tftp.get(attr, "") if tftp is not None else ""
    return NatSettings(**fields)


def _nat_is_default(n: NatSettings, sv: int) -> bool:
    return n == NatSettings(localhost_reachable=default_localhost_reachable(sv))


def _write_nat(nat: etree._Element, n: NatSettings, sv: int) -> None:
    put_str(nat, "network", n.network, order=NAT_ATTRS)
    put_str(nat, "hostip", n.bind_ip, order=NAT_ATTRS)
    for attr, name in NAT_INTS:
        put_int(nat, attr, getattr(n, name), default=0, order=NAT_ATTRS)
    put_bool(nat, "localhost-reachable", n.localhost_reachable, default=default_localhost_reachable(sv),
             order=NAT_ATTRS)
    for tag, flags in NAT_FLAG_CHILDREN.items():
        el = child(nat, tag)
        if el is None and all(getattr(n, name) == default for _a, name, default in flags):
            continue
        if el is None:
            el = new_child(nat, tag, NAT_CHILDREN)
        for attr, name, default in flags:
            put_bool(el, attr, getattr(n, name), default=default, order=[a for a, _n, _d in flags])
    el = child(nat, "TFTP")
    if any(getattr(n, name) for _a, name in NAT_TFTP):
        if el is None:
            el = new_child(nat, "TFTP", NAT_CHILDREN)
        for attr, name in NAT_TFTP:
            put_str(el, attr, getattr(n, name), order=[a for a, _n in NAT_TFTP])
    elif el is not None and is_bare(el, *(a for a, _n in NAT_TFTP)):
        remove(el)


def _mode_el(parent: etree._Element | None, mode: str) -> etree._Element | None:
    return _indexed_mode_el(child_index(parent), mode)


def _active_mode(el: etree._Element) -> etree._Element | None:
    return next((c for c in el if isinstance(c.tag, str) and etree.QName(c).localname in MODE_OF_ELEMENT),
                None)


def _read_rules(nat: etree._Element | None) -> list[NatRule]:
    rules = []
    for f in children(nat, "Forwarding") if nat is not None else []:
        rules.append(NatRule(name=required(f, "name"), proto="UDP" if get_int(f, "proto", 1) == 0 else "TCP",
                             host_ip=f.get("hostip", ""), host_port=get_int(f, "hostport", 0),
                             guest_ip=f.get("guestip", ""), guest_port=get_int(f, "guestport", 0)))
    return rules


def _indexed_mode_el(index: dict, mode: str) -> etree._Element | None:
    """The element of attachment `mode` among a parent's children (child_index() of the parent);
    pre-2.1 files name the bridged one HostInterface."""
    el = index.get(MODES[mode][0])
    if el is None and mode == "Bridged":
        el = index.get("HostInterface")
    return el


def read_adapters(hw: etree._Element | None, sv: int, count: int = 8) -> list[NetworkAdapter]:
    """Every adapter slot of the chipset: those the file has, the others at their defaults."""
    size = count
    adapters: dict[int, NetworkAdapter] = {}
    for el in children(child(hw, "Network"), "Adapter") if hw is not None else []:
        required(el, "slot")
        slot = get_int(el, "slot", -1)
        if not 0 <= slot <= 35:
            raise problem(el, f"Invalid value {slot} in Adapter/@slot attribute")
        if slot >= size:  # more slots than the chipset default: ICH9 has 36
            size = 36
        modes = [c for c in el if isinstance(c.tag, str)]
        if len(modes) > 2:
            raise problem(el, f"Invalid number of modes ('{len(modes)}') attached to Adapter attribute")
        fields = dict(slot=slot, enabled=get_bool(el, "enabled", False),
                      trace_enabled=get_bool(el, "trace", False), trace_file=el.get("tracefile", ""),
                      type=get_enum(el, "type", default_adapter_type(sv), ADAPTER_API, "Adapter"),
                      mac=el.get("MACAddress", ""), cable_connected=get_bool(el, "cable", default_cable(sv)),
                      line_speed=get_int(el, "speed", 0), boot_priority=get_int(el, "bootPriority", 0),
                      promisc_mode_policy=get_enum(el, "promiscuousModePolicy", "Deny", PROMISC, "Adapter"))
        active = _active_mode(el)
        fields["attachment_type"] = MODE_OF_ELEMENT[etree.QName(active).localname] if active is not None \
            else "Null"
        own = child_index(el)
        disabled = own.get("DisabledModes")
        parked = child_index(disabled)
        for mode, (_tag, attr, field) in MODES.items():
            if field is None:
                continue
            src = _indexed_mode_el(own, mode)
            if src is None:
                src = _indexed_mode_el(parked, mode)
            if src is not None and src.get(attr):
                fields[field] = src.get(attr)
        nat = own.get("NAT")
        if nat is None:
            nat = parked.get("NAT")
        fields["nat_rules"] = _read_rules(nat)
        fields["nat"] = _read_nat(nat, sv)
        try:
            adapters[slot] = NetworkAdapter(**fields)
        except ValueError as e:
            raise problem(el, f"Invalid network adapter settings: {e}")
    return [adapters[i] if i in adapters else _default_adapter(i, sv) for i in range(size)]


def _adapter_is_default(a: NetworkAdapter, sv: int) -> bool:
    """`NetworkAdapter::areDefaultSettings`: such adapters are not written."""
    return (not a.enabled and not a.mac and a.cable_connected == default_cable(sv) and a.line_speed == 0
            and a.boot_priority == 0
            and a.promisc_mode_policy == "Deny" and a.attachment_type == "Null"
            and a.type == default_adapter_type(sv) and not a.nat_rules and _nat_is_default(a.nat, sv)
            and not a.trace_enabled and not a.trace_file
            and not any(getattr(a, f) for _, _, f in MODES.values() if f))


def _write_rules(nat: etree._Element, rules: list[NatRule]) -> None:
    def write(e: etree._Element, r: NatRule) -> None:
        put_str(e, "name", r.name, always=True, order=FORWARD_ATTRS)
        put_int(e, "proto", 0 if r.proto == "UDP" else 1, default=1, always=True, order=FORWARD_ATTRS)
        put_str(e, "hostip", r.host_ip, order=FORWARD_ATTRS)
        put_int(e, "hostport", r.host_port, always=True, order=FORWARD_ATTRS)
        put_str(e, "guestip", r.guest_ip, order=FORWARD_ATTRS)
        put_int(e, "guestport", r.guest_port, always=True, order=FORWARD_ATTRS)
    sync_keyed(nat, "Forwarding", rules, lambda e: e.get("name"), lambda r: r.name, write)


def _write_attachment(el: etree._Element, a: NetworkAdapter, sv: int) -> None:
    """The active mode is a direct child; the other modes' names live in `<DisabledModes>`."""
    active = _active_mode(el)
    current = MODE_OF_ELEMENT[etree.QName(active).localname] if active is not None else "Null"
    disabled = child(el, "DisabledModes")

    def ensure_disabled() -> etree._Element:
        nonlocal disabled
        if disabled is None:
            disabled = new_child(el, "DisabledModes", ADAPTER_CHILDREN)
        return disabled

    if current != a.attachment_type:
        if active is not None:  # park the old mode's element, with everything in it
            box = ensure_disabled()
            remove(_mode_el(box, current))
            box.append(active)
        if a.attachment_type != "Null":
            parked = _mode_el(disabled, a.attachment_type)
            if parked is not None:
                disabled.addnext(parked)
            else:
                new_child(el, MODES[a.attachment_type][0], ADAPTER_CHILDREN)
    for mode, (tag, attr, field) in MODES.items():
        if field is None:
            continue
        value = getattr(a, field)
        is_active = mode == a.attachment_type
        target = _mode_el(el if is_active else disabled, mode)
        if target is None:
            if not value:
                continue
            target = new_child(ensure_disabled(), tag, ADAPTER_CHILDREN[1:])
        if (target.get(attr) or "") != value:
            set_attr(target, attr, value or None)
        if not value and not is_active and is_bare(target):
            remove(target)
    nat = _mode_el(el if a.attachment_type == "NAT" else disabled, "NAT")
    if nat is None and (a.nat_rules or not _nat_is_default(a.nat, sv)):
        nat = new_child(ensure_disabled(), "NAT", ADAPTER_CHILDREN[1:])
    if nat is not None:
        _write_nat(nat, a.nat, sv)
        _write_rules(nat, sorted(a.nat_rules, key=lambda r: r.name))   # VirtualBox keeps them in a map
    if disabled is not None and is_empty(disabled):
        remove(disabled)


def _write_adapter(el: etree._Element, a: NetworkAdapter, sv: int) -> None:
    put_int(el, "slot", a.slot, always=True, order=ADAPTER_ATTRS)
    put_bool(el, "enabled", a.enabled, default=False, order=ADAPTER_ATTRS)
    put_str(el, "MACAddress", a.mac, order=ADAPTER_ATTRS)
    put_bool(el, "cable", a.cable_connected, default=default_cable(sv), order=ADAPTER_ATTRS)
    put_int(el, "speed", a.line_speed, default=0, order=ADAPTER_ATTRS)
    put_int(el, "bootPriority", a.boot_priority, default=0, order=ADAPTER_ATTRS)
    put_bool(el, "trace", a.trace_enabled, default=False, order=ADAPTER_ATTRS)
    put_str(el, "tracefile", a.trace_file, order=ADAPTER_ATTRS)
    put_str(el, "promiscuousModePolicy", a.promisc_mode_policy, default="Deny", order=ADAPTER_ATTRS)
    put(el, "type", a.type, default=default_adapter_type(sv), order=ADAPTER_ATTRS,
        fmt=lambda t: ADAPTER_XML.get(t, t), read=lambda e, n, d: ADAPTER_API.get(e.get(n), d))
    _write_attachment(el, a, sv)


def write_adapters(hw: etree._Element, adapters: list[NetworkAdapter], sv: int, order) -> None:
    box = child(hw, "Network")
    if box is None:
        if all(_adapter_is_default(a, sv) for a in adapters):
            return
        box = ensure_child(hw, "Network", order)

    def key(e):
        return get_int(e, "slot", -1)
    sync_keyed(box, "Adapter", adapters, key, lambda a: a.slot, lambda e, a: _write_adapter(e, a, sv),
               keep=lambda a: not _adapter_is_default(a, sv))


# ------------------------------------------------------------------ UART

def read_uarts(hw: etree._Element | None, sv: int) -> list[SerialPort]:
    ports = {i: SerialPort(slot=i) for i in range(4)}
    io_attr = "IOAddress" if sv >= 20 else "IOBase"
    seen = set()
    for el in children(child(hw, "UART"), "Port"):
        required(el, "slot", "UART/Port")
        slot = get_int(el, "slot", 0)
        if slot in seen:
            raise problem(el, f"Invalid value {slot} in UART/Port/@slot attribute: value is not unique")
        if not 0 <= slot <= 3:
            raise problem(el, f"Invalid value {slot} in UART/Port/@slot attribute")
        seen.add(slot)
        for attr in ("enabled", io_attr if el.get(io_attr) is not None or sv >= 20 else "IOBase", "IRQ",
                     "hostMode"):
            required(el, attr, "UART/Port")
        ports[slot] = SerialPort(
            slot=slot, enabled=get_bool(el, "enabled", False),
            io_base=get_int(el, io_attr, get_int(el, "IOBase", UART_DEFAULTS[slot][0])),
            irq=get_int(el, "IRQ", UART_DEFAULTS[slot][1]),
            uart_type=get_enum(el, "uartType", "U16550A", UART_API, "UART/Port"),
            port_mode=get_enum(el, "hostMode", "Disconnected", {m: m for m in PORT_MODES}, "UART/Port"),
            path=el.get("path", ""), server=get_bool(el, "server", False))
    return [ports[i] for i in range(4)]


def _uart_is_default(p: SerialPort) -> bool:
    """Unused ports at their slot's COM address are not written. (VirtualBox also skips the
    old-style 0x3f8/4 in any slot; we write those so that they read back unchanged.)"""
    return (not p.enabled and p.port_mode == "Disconnected" and p.uart_type == "U16550A"
            and not p.path and not p.server and (p.io_base, p.irq) == UART_DEFAULTS[p.slot])


def _write_uart(el: etree._Element, p: SerialPort, sv: int) -> None:
    io_attr = "IOAddress" if sv >= 20 else "IOBase"
    order = ("slot", "enabled", io_attr, "IRQ", "server", "path", "hostMode", "uartType")
    put_int(el, "slot", p.slot, always=True, order=order)
    io_default, irq_default = UART_DEFAULTS[p.slot]
    put_bool(el, "enabled", p.enabled, default=False, always=True, order=order)
    put_int(el, io_attr, p.io_base, default=io_default, always=True, order=order, hexa=True)
    put_int(el, "IRQ", p.irq, default=irq_default, always=True, order=order)
    put_bool(el, "server", p.server, default=False, always=p.port_mode in ("TCP", "HostPipe"), order=order)
    if p.port_mode not in ("TCP", "HostPipe"):
        el.attrib.pop("server", None)
    put_str(el, "path", p.path, default="" if p.port_mode != "Disconnected" else None, order=order)
    if p.port_mode == "Disconnected":
        el.attrib.pop("path", None)
    put_str(el, "hostMode", p.port_mode, default="Disconnected", always=True, order=order)
    put(el, "uartType", UART_XML[p.uart_type], default="16550A", order=order)


def write_uarts(hw: etree._Element, ports: list[SerialPort], sv: int, order) -> None:
    box = child(hw, "UART")
    if box is None:
        if all(_uart_is_default(p) for p in ports):
            return
        box = ensure_child(hw, "UART", order)
    sync_keyed(box, "Port", ports, lambda e: get_int(e, "slot", -1), lambda p: p.slot,
               lambda e, p: _write_uart(e, p, sv), keep=lambda p: not _uart_is_default(p))
