"""The modifyvm option table and its RTGetOpt-style parser (VBoxManageModifyVM.cpp).

modifyvm takes indexed options (`--nic2`, `--uart1`), options with one or two values
(`--uart1 0x3f8 4` / `--uart1 off`), both the dashed and the old spellings, in any order,
and applies them in the order given; click's declarative options cannot express that,
so the raw arguments are parsed here into (option id, index, values) steps.
"""

import re

from . import modifyvm_devices
from .output import SyntaxFailure

# id -> spellings (without the index for indexed ones)
PLAIN = {
    "name": ("--name",), "groups": ("--groups",), "description": ("--description",),
    "ostype": ("--os-type", "--ostype"), "memory": ("--memory",), "vram": ("--vram",), "cpus": ("--cpus",),
    "cpuexecutioncap": ("--cpu-execution-cap", "--cpuexecutioncap"), "firmware": ("--firmware",),
    "acpi": ("--acpi",), "ioapic": ("--ioapic",), "hwvirtex": ("--hwvirtex",),
    "nestedpaging": ("--nested-paging", "--nestedpaging"), "largepages": ("--large-pages", "--largepages"),
    "vtxvpid": ("--vtx-vpid", "--vtxvpid"), "vtxux": ("--vtx-ux", "--vtxux"),
    "pae": ("--pae",), "longmode": ("--long-mode", "--longmode"), "hpet": ("--hpet",),
    "apic": ("--apic",), "x2apic": ("--x2apic",), "nestedhwvirt": ("--nested-hw-virt",),
    "triplefaultreset": ("--triple-fault-reset", "--triplefaultreset"),
    "paravirtprovider": ("--paravirt-provider", "--paravirtprovider"),
    "paravirtdebug": ("--paravirt-debug", "--paravirtdebug"),
    "graphicscontroller": ("--graphicscontroller", "--graphics-controller"),
    "rtcuseutc": ("--rtc-use-utc", "--rtcuseutc"),
    "bootkernel": ("--boot-kernel",), "bootinitrd": ("--boot-initrd",), "bootcmdline": ("--boot-cmdline",),
}
INDEXED = {
    "boot": ("--boot",), "nic": ("--nic",), "nictype": ("--nic-type", "--nictype"),
    "cableconnected": ("--cable-connected", "--cableconnected"),
    "macaddress": ("--mac-address", "--macaddress"), "intnet": ("--intnet",),
    "bridgeadapter": ("--bridge-adapter", "--bridgeadapter"),
    "hostonlyadapter": ("--host-only-adapter", "--hostonlyadapter"),
    "natnetwork": ("--nat-network", "--natnetwork"),
    "nicgenericdrv": ("--nic-generic-drv", "--nicgenericdrv"),
    "uart": ("--uart",), "uartmode": ("--uart-mode", "--uartmode"), "uarttype": ("--uart-type", "--uarttype"),
    "nictrace": ("--nic-trace", "--nictrace"), "nictracefile": ("--nic-trace-file", "--nictracefile"),
    "natpf": ("--nat-pf", "--natpf"), "natnet": ("--nat-net", "--natnet"),
    "natbindip": ("--nat-bind-ip", "--natbindip"), "natsettings": ("--nat-settings", "--natsettings"),
    "natdnspassdomain": ("--nat-dns-pass-domain", "--natdnspassdomain"),
    "natdnsproxy": ("--nat-dns-proxy", "--natdnsproxy"),
    "natdnshostresolver": ("--nat-dns-host-resolver", "--natdnshostresolver"),
    "natlocalhostreachable": ("--nat-localhostreachable", "--natlocalhostreachable"),
    "nataliasmode": ("--nat-alias-mode", "--nataliasmode"),
    "nattftpprefix": ("--nat-tftp-prefix", "--nattftpprefix"),
    "nattftpfile": ("--nat-tftp-file", "--nattftpfile"),
    "nattftpserver": ("--nat-tftp-server", "--nattftpserver"),
}
# the first spelling of each option: what VBoxManage names in "Missing or invalid argument to '...'"
LONG_NAME = {oid: names[0] for oid, names in INDEXED.items()}
INDEX_RANGE = {"boot": (1, 4), "uart": (1, 4), "uartmode": (1, 4), "uarttype": (1, 4)}  # NICs: 1..36

PLAIN.update(modifyvm_devices.PLAIN)
INDEXED.update(modifyvm_devices.INDEXED)
_PLAIN_BY_NAME = {name: oid for oid, names in PLAIN.items() for name in names}
_INDEXED_BY_NAME = {name: oid for oid, names in INDEXED.items() for name in names}
_INDEXED_RE = re.compile(r"^(--[a-z-]+?)(\d+)$")

# uart-mode words that take a second value
UART_MODE_WITH_VALUE = ("server", "client", "tcpserver", "tcpclient", "file")


def parse(args: list[str]) -> list[tuple[str, int, list[str]]]:
    """Raw modifyvm arguments -> ordered (id, index or 0, values)."""
    steps = []
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if not token.startswith("-"):
            raise SyntaxFailure(f"Invalid parameter '{token}'", "modifyvm")
        name, eq, inline = token.partition("=")
        if name.startswith("-") and not name.startswith("--"):
            name = "-" + name  # old single-dash spellings (-memory) are accepted by RTGetOpt
        index = 0
        oid = _PLAIN_BY_NAME.get(name)
        if oid is None:
            match = _INDEXED_RE.match(name)
            oid = _INDEXED_BY_NAME.get(match.group(1)) if match else None
            if oid is None:
                raise SyntaxFailure(f"Unknown option: {token.split('=')[0]}", "modifyvm")
            index = int(match.group(2))
            lo, hi = INDEX_RANGE.get(oid, (1, 36))
            if not lo <= index <= hi:
                raise SyntaxFailure(f"Invalid index in option {name}: {index} (valid range {lo}..{hi})",
                                    "modifyvm")
        values = []
        if eq:
            values.append(inline)
        elif i < len(args):
            values.append(args[i])
            i += 1
        else:
            raise SyntaxFailure(f"Missing the 1st value for option {name}", "modifyvm")
        first = values[0].lower()
        needs_second = ((oid == "uart" and first not in ("off", "disable"))
                        or (oid == "uartmode" and first in UART_MODE_WITH_VALUE)
                        or (oid == "natpf" and values[0] == "delete"))
        if needs_second:
            if i >= len(args):
                raise SyntaxFailure(f"Missing the 2nd value for option {name}", "modifyvm")
            values.append(args[i])
            i += 1
        steps.append((oid, index, values))
    return steps
