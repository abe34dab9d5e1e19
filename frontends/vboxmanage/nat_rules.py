"""The NAT engine options of modifyvm and controlvm (VBoxManageModifyVM.cpp, VBoxManageControlVM.cpp):
the port-forwarding rule `name,tcp|udp,hostip,hostport,guestip,guestport` and the engine settings."""

from __future__ import annotations

from .api import call
from .cli import onoff
from .modifyvm_opts import LONG_NAME
from .output import CommandFailed, SyntaxFailure, msg_lines

_FILE = "VBoxManageModifyVM.cpp"
ALIAS_WORDS = {"log": 1, "proxyonly": 2, "sameports": 4}


class NatRuleSyntax(Exception):
    """The rule text lacks a field (VBoxManage's "Missing or invalid argument")."""


def parse_rule(text: str) -> tuple[str, str, str, str, str, str]:
    """Split a rule into its six fields (the last takes the rest, as VBoxManage's parser does)."""
    parts = text.split(",", 5)
    if len(parts) != 6:
        raise NatRuleSyntax(text)
    return tuple(parts)  # type: ignore[return-value]


def to_uint(text: str) -> int:
    """RTStrToUInt32: the leading digits, 0 when there are none."""
    digits = ""
    for ch in text.strip():
        if not ch.isdigit():
            break
        digits += ch
    return int(digits) & 0xFFFF_FFFF if digits else 0


def to_port(text: str) -> int:
    """RTStrToUInt16: as to_uint, wrapped to 16 bits."""
    return to_uint(text) & 0xFFFF


def protocol(text: str, nic: int):
    from vboxsvc.api import NATProtocol
    low = text.lower()
    if low == "udp":
        return NATProtocol.UDP
    if low == "tcp":
        return NATProtocol.TCP
    raise CommandFailed(msg_lines("error: ", f"Invalid proto '{text}' specified for NIC {nic}"))


def add_rule(engine, text: str, nic: int, option: str, command: str, context_line: int = 1880,
             source: str = _FILE) -> None:
    try:
        name, proto, host_ip, host_port, guest_ip, guest_port = parse_rule(text)
    except NatRuleSyntax:
        raise SyntaxFailure(f"Missing or invalid argument to '{option}'", command) from None
    p = protocol(proto, nic)
    with call("engine->AddRedirect(Bstr(strName).raw(), proto, Bstr(strHostIp).raw(), "
              "RTStrToUInt16(strHostPort), Bstr(strGuestIp).raw(), RTStrToUInt16(strGuestPort))",
              context_line, source):
        engine.add_redirect(name, p, host_ip, to_port(host_port), guest_ip, to_port(guest_port))


def remove_rule(engine, name: str, context_line: int = 1900, source: str = _FILE) -> None:
    with call("engine->RemoveRedirect(Bstr(ValueUnion.psz).raw())", context_line, source):
        engine.remove_redirect(name)


def apply_nat_option(engine, oid: str, index: int, values: list[str], command: str) -> None:
    value = values[0]
    opt = f"{LONG_NAME[oid]}{index}"
    if oid == "natpf":
        if value == "delete":
            remove_rule(engine, values[1])
        else:
            add_rule(engine, value, index, LONG_NAME[oid], command)
        return
    with call(f"engine->COMSETTER({oid})", 1850, _FILE):
        if oid == "natnet":
            engine.network = "" if value == "default" else value
        elif oid == "natbindip":
            engine.host_ip = value
        elif oid == "natsettings":
            parts = value.split(",")
            if len(parts) != 5:
                raise SyntaxFailure(f"Missing or invalid argument to '{LONG_NAME[oid]}'", command)
            engine.set_network_settings(*[to_uint(p) for p in parts])
        elif oid == "natdnspassdomain":
            engine.dns_pass_domain = onoff(opt, value, command)
        elif oid == "natdnsproxy":
            engine.dns_proxy = onoff(opt, value, command)
        elif oid == "natdnshostresolver":
            engine.dns_use_host_resolver = onoff(opt, value, command)
        elif oid == "natlocalhostreachable":
            engine.localhost_reachable = onoff(opt, value, command)
        elif oid == "nataliasmode":
            mode = 0
            if value != "default":
                for word in value.split(","):
                    if word not in ALIAS_WORDS:
                        raise SyntaxFailure(f"Invalid NAT alias mode '{word}' for option {opt}: expected "
                                            "default or a list of log, proxyonly, sameports", command)
                    mode |= ALIAS_WORDS[word]
            engine.alias_mode = mode
        elif oid == "nattftpprefix":
            engine.tftp_prefix = value
        elif oid == "nattftpfile":
            engine.tftp_boot_file = value
        elif oid == "nattftpserver":
            engine.tftp_next_server = value
