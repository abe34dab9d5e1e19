"""`<Network>` adapters and `<UART>` serial ports (reference §3.6).

VirtualBox writes only adapters and ports whose settings differ from the defaults; the models
always hold every slot (8 adapters, 36 with ICH9 when the file has them; 4 UARTs). The active
attachment is a direct child of `<Adapter>`; the names of the inactive modes live in
`<DisabledModes>`.
"""

from __future__ import annotations

from lxml import etree

from .models import UART_DEFAULTS, NatRule, NetworkAdapter, SerialPort
from .xmllists import sync_keyed
from .xmltree import (
    child,
    children,
    ensure_child,
    get_bool,
    get_int,
    is_empty,
    new_child,
    problem,
    put,
    put_bool,
    put_int,
    put_str,
    remove,
    required,
)

ADAPTER_XML = {"I82540EM": "82540EM", "I82543GC": "82543GC", "I82545EM": "82545EM", "Virtio": "virtio"}
ADAPTER_API = {v: k for k, v in ADAPTER_XML.items()}
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
MODE_OF_ELEMENT = {v[0]: k for k, v in MODES.items()}
ADAPTER_CHILDREN = ("NAT", "BridgedInterface", "InternalNetwork", "HostOnlyInterface",
                    "GenericInterface", "NATNetwork", "CloudNetwork", "HostOnlyNetwork", "DisabledModes")
FORWARD_ATTRS = ("name", "proto", "hostip", "hostport", "guestip", "guestport")
UART_XML = {"U16450": "16450", "U16550A": "16550A", "U16750": "16750"}
UART_API = {v: k for k, v in UART_XML.items()}
PORT_MODES = ("Disconnected", "HostPipe", "HostDevice", "RawFile", "TCP")


def default_adapter_type(sv: int) -> str:
    return "Am79C973" if sv >= 16 else "Am79C970A"


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


def read_adapters(hw: etree._Element | None, sv: int, count: int = 8) -> list[NetworkAdapter]:
    adapters = {i: NetworkAdapter(slot=i, type=default_adapter_type(sv)) for i in range(count)}
    for el in children(child(hw, "Network"), "Adapter") if hw is not None else []:
        slot = get_int(el, "slot", -1)
        if slot < 0 or required(el, "slot") is None:
            raise problem(el, "Required Adapter/@slot attribute is missing")
        if slot > 35:
            raise problem(el, f"Invalid value {slot} in Adapter/@slot")
        if slot >= len(adapters):  # more slots than the chipset default: ICH9 has 36
            adapters.update({i: NetworkAdapter(slot=i, type=default_adapter_type(sv))
                             for i in range(len(adapters), 36)})
        xml_type = el.get("type")
        atype = ADAPTER_API.get(xml_type, xml_type) if xml_type else default_adapter_type(sv)
        fields = dict(slot=slot, enabled=get_bool(el, "enabled", False), type=atype,
                      mac=el.get("MACAddress", ""), cable_connected=get_bool(el, "cable", True),
                      line_speed=get_int(el, "speed", 0), boot_priority=get_int(el, "bootPriority", 0),
                      promisc_mode_policy=el.get("promiscuousModePolicy", "Deny"))
        active = _active_mode(el)
        fields["attachment_type"] = MODE_OF_ELEMENT[etree.QName(active).localname] if active is not None \
            else "Null"
        disabled = child(el, "DisabledModes")
        for _mode, (tag, attr, field) in MODES.items():
            if field is None:
                continue
            src = child(el, tag)
            if src is None:
                src = child(disabled, tag)
            if src is not None and src.get(attr):
                fields[field] = src.get(attr)
        nat = child(el, "NAT")
        fields["nat_rules"] = _read_rules(nat if nat is not None else child(disabled, "NAT"))
        try:
            adapters[slot] = NetworkAdapter(**fields)
        except ValueError as e:
            raise problem(el, f"Invalid network adapter settings: {e}")
    return [adapters[i] for i in sorted(adapters)]


def _adapter_is_default(a: NetworkAdapter, sv: int) -> bool:
    return (not a.enabled and a.cable_connected and a.line_speed == 0 and a.boot_priority == 0
            and a.promisc_mode_policy == "Deny" and a.attachment_type == "Null"
            and a.type == default_adapter_type(sv) and not a.nat_rules
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


def _write_attachment(el: etree._Element, a: NetworkAdapter) -> None:
    active = _active_mode(el)
    current = MODE_OF_ELEMENT[etree.QName(active).localname] if active is not None else "Null"
    disabled = child(el, "DisabledModes")
    if current != a.attachment_type:
        if active is not None:  # park the old mode's element (and its names) in DisabledModes
            disabled = disabled if disabled is not None else new_child(el, "DisabledModes", ADAPTER_CHILDREN)
            old = child(disabled, etree.QName(active).localname)
            remove(old)
            disabled.append(active)
        if a.attachment_type != "Null":
            tag = MODES[a.attachment_type][0]
            parked = child(disabled, tag)
            if parked is not None:
                disabled.remove(parked)
                el.insert(0, parked)
            else:
                new_child(el, tag, ADAPTER_CHILDREN)
    for mode, (tag, attr, field) in MODES.items():
        if field is None:
            continue
        value = getattr(a, field)
        target = child(el, tag) if mode == a.attachment_type else child(disabled, tag)
        if target is None and value:
            disabled = disabled if disabled is not None else new_child(el, "DisabledModes", ADAPTER_CHILDREN)
            target = new_child(disabled, tag)
        if target is not None:
            put_str(target, attr, value, default="" if mode != a.attachment_type else None)
    if disabled is not None and is_empty(disabled):
        remove(disabled)
    nat = child(el, "NAT") if a.attachment_type == "NAT" else child(disabled, "NAT")
    if nat is None and a.nat_rules:
        disabled = disabled if disabled is not None else new_child(el, "DisabledModes", ADAPTER_CHILDREN)
        nat = new_child(disabled, "NAT")
    if nat is not None:
        _write_rules(nat, a.nat_rules)


def _write_adapter(el: etree._Element, a: NetworkAdapter, sv: int) -> None:
    put_int(el, "slot", a.slot, always=True, order=ADAPTER_ATTRS)
    put_bool(el, "enabled", a.enabled, default=False, always=True, order=ADAPTER_ATTRS)
    put_str(el, "MACAddress", a.mac, order=ADAPTER_ATTRS)
    put_bool(el, "cable", a.cable_connected, default=True, always=sv < 16, order=ADAPTER_ATTRS)
    put_int(el, "speed", a.line_speed, default=0, order=ADAPTER_ATTRS)
    put_int(el, "bootPriority", a.boot_priority, default=0, order=ADAPTER_ATTRS)
    put_str(el, "promiscuousModePolicy", a.promisc_mode_policy, default="Deny", order=ADAPTER_ATTRS)
    put(el, "type", ADAPTER_XML.get(a.type, a.type), default=ADAPTER_XML.get(default_adapter_type(sv),
        default_adapter_type(sv)), always=sv < 16, order=ADAPTER_ATTRS)
    _write_attachment(el, a)


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
    for el in children(child(hw, "UART"), "Port") if hw is not None else []:
        required(el, "slot")
        slot = get_int(el, "slot", 0)
        if not 0 <= slot <= 3:
            raise problem(el, f"Invalid value {slot} in UART/Port/@slot")
        mode = el.get("hostMode", "Disconnected")
        if mode not in PORT_MODES:
            raise problem(el, f"Invalid value '{mode}' in UART/Port/@hostMode attribute")
        io = get_int(el, io_attr, get_int(el, "IOBase", UART_DEFAULTS[slot][0]))
        ports[slot] = SerialPort(
            slot=slot, enabled=get_bool(el, "enabled", False), io_base=io,
            irq=get_int(el, "IRQ", UART_DEFAULTS[slot][1]),
            uart_type=UART_API.get(el.get("uartType", "16550A"), "U16550A"),
            port_mode=mode, path=el.get("path", ""), server=get_bool(el, "server", False))
    return [ports[i] for i in range(4)]


def _uart_is_default(p: SerialPort) -> bool:
    return (not p.enabled and p.port_mode == "Disconnected" and p.uart_type == "U16550A"
            and not p.path and (p.io_base, p.irq) in (UART_DEFAULTS[p.slot], UART_DEFAULTS[0]))


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
