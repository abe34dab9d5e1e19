"""`VBoxManage modifyvm`: Write lock, apply each option to the session machine, save, unlock.

Our direct-kernel-boot options are machine extra data (vboxpy/BootKernel, BootInitrd,
BootCmdline), so the .vbox stays valid for VirtualBox.
"""

import os
import re

import click

from . import modifyvm_devices, names
from .api import call, find_machine, locked
from .cli import choice, onoff, uint, vm_argument
from .modifyvm_opts import parse
from .output import SyntaxFailure

_FILE = "VBoxManageModifyVM.cpp"
_CMD = "modifyvm"
_MAC = re.compile(r"^[0-9A-Fa-f]{12}$")
GRAPHICS_BY_ARG = {"none": 0, "null": 0, "vboxvga": 1, "vmsvga": 2, "vboxsvga": 3, "qemuramfb": 4}
HW_PROPS = {"hwvirtex": "Enabled", "nestedpaging": "NestedPaging", "largepages": "LargePages",
            "vtxvpid": "VPID", "vtxux": "UnrestrictedExecution"}
CPU_PROPS = {"pae": "PAE", "longmode": "LongMode", "apic": "APIC", "x2apic": "X2APIC",
             "nestedhwvirt": "HWVirt", "triplefaultreset": "TripleFaultReset"}
# the C++ expression VBoxManage would print in `Context:` for a failing setter
SETTER_CONTEXT = {
    "name": ("sessionMachine->COMSETTER(Name)(Bstr(ValueUnion.psz).raw())", 732),
    "groups": ("sessionMachine->COMSETTER(Groups)(ComSafeArrayAsInParam(groups))", 742),
    "description": ("sessionMachine->COMSETTER(Description)(Bstr(ValueUnion.psz).raw())", 751),
    "ostype": ("sessionMachine->COMSETTER(OSTypeId)(Bstr(ValueUnion.psz).raw())", 757),
    "memory": ("sessionMachine->COMSETTER(MemorySize)(ValueUnion.u32)", 863),
    "vram": ("pGraphicsAdapter->COMSETTER(VRAMSize)(ValueUnion.u32)", 869),
    "cpus": ("sessionMachine->COMSETTER(CPUCount)(ValueUnion.u32)", 805),
    "cpuexecutioncap": ("sessionMachine->COMSETTER(CPUExecutionCap)(ValueUnion.u32)", 851),
    "firmware": ("firmwareSettings->COMSETTER(FirmwareType)(enmFwType)", 895),
    "boot": ("sessionMachine->SetBootOrder(GetOptState.uIndex, enmDevType)", 1010),
    "nic": ("nic->COMSETTER(AttachmentType)(enmAttachmentType)", 1376),
    "macaddress": ("nic->COMSETTER(MACAddress)(Bstr(ValueUnion.psz).raw())", 1296),
    "uart": ("uart->COMSETTER(IOAddress)(n)", 1720),
    "uartmode": ("uart->COMSETTER(HostMode)(enmMode)", 1660),
}
BOOT_EXTRA = {"bootkernel": "vboxpy/BootKernel", "bootinitrd": "vboxpy/BootInitrd",
              "bootcmdline": "vboxpy/BootCmdline"}


class _ModifyVmCommand(click.Command):
    """Completes modifyvm's table-driven options, which click itself does not know."""

    def shell_complete(self, ctx, incomplete):
        if incomplete.startswith("-"):
            return complete_options(incomplete)
        return super().shell_complete(ctx, incomplete)


@click.command("modifyvm", cls=_ModifyVmCommand,
               context_settings={"help_option_names": [], "ignore_unknown_options": True})
@vm_argument()
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def modifyvm(vm, args):
    steps = parse(list(args))
    machine = find_machine(vm, 700, _FILE)
    with locked(machine, "Write", "LockMachine(a->session, LockType_Write)", 706, _FILE) as session:
        m = session.machine
        for oid, index, values in steps:
            apply_step(m, oid, index, values)
        with call("SaveSettings()", 3500, _FILE):
            m.save_settings()
    return 0


def complete_options(incomplete: str):
    """Shell completion of modifyvm's option spellings (indexed ones with slot 1)."""
    from click.shell_completion import CompletionItem

    from .modifyvm_opts import INDEXED, PLAIN

    words = [n for names_ in PLAIN.values() for n in names_] + [f"{n}1" for names_ in INDEXED.values()
                                                                for n in names_]
    return [CompletionItem(w) for w in sorted(words) if w.startswith(incomplete)]


def apply_step(m, oid: str, index: int, values: list[str]) -> None:
    from vboxsvc.api import enums as e

    value = values[0]
    opt = f"--{oid}{index or ''}"
    expr, line = SETTER_CONTEXT.get(oid, (f"sessionMachine->COMSETTER({oid})(ValueUnion.psz)", 1000))
    with call(expr, line, _FILE):
        if modifyvm_devices.applies(oid):
            modifyvm_devices.apply(m, oid, index, value)
        elif oid == "name":
            m.name = value
        elif oid == "groups":
            m.groups = [g for g in value.split(",") if g]
        elif oid == "description":
            m.description = value
        elif oid == "ostype":
            m.os_type_id = value
        elif oid == "memory":
            m.memory_size = uint(opt, value, _CMD)
        elif oid == "vram":
            m.graphics_adapter.vram_size = uint(opt, value, _CMD)
        elif oid == "cpus":
            m.cpu_count = uint(opt, value, _CMD)
        elif oid == "cpuexecutioncap":
            m.cpu_execution_cap = uint(opt, value, _CMD, lo=1, hi=100)
        elif oid == "firmware":
            m.firmware_settings.firmware_type = e.FirmwareType(
                choice(opt, value, names.FIRMWARE_BY_ARG, _CMD))
        elif oid == "acpi":
            m.firmware_settings.acpi_enabled = onoff(opt, value, _CMD)
        elif oid == "ioapic":
            m.firmware_settings.ioapic_enabled = onoff(opt, value, _CMD)
        elif oid in HW_PROPS:
            m.platform.x86.set_hw_virt_ex_property(getattr(e.HWVirtExPropertyType, HW_PROPS[oid]),
                                                   onoff(opt, value, _CMD))
        elif oid in CPU_PROPS:
            m.platform.x86.set_cpu_property(getattr(e.CPUPropertyTypeX86, CPU_PROPS[oid]),
                                            onoff(opt, value, _CMD))
        elif oid == "hpet":
            m.platform.x86.hpet_enabled = onoff(opt, value, _CMD)
        elif oid == "rtcuseutc":
            m.platform.rtc_use_utc = onoff(opt, value, _CMD)
        elif oid == "paravirtprovider":
            m.paravirt_provider = e.ParavirtProvider(choice(opt, value, names.PARAVIRT_BY_ARG, _CMD))
        elif oid == "paravirtdebug":
            m.paravirt_debug = value
        elif oid == "graphicscontroller":
            m.graphics_adapter.graphics_controller_type = e.GraphicsControllerType(
                choice(opt, value, GRAPHICS_BY_ARG, _CMD))
        elif oid == "boot":
            m.set_boot_order(index, e.DeviceType(choice(opt, value, names.BOOT_BY_ARG, _CMD)))
        elif oid in BOOT_EXTRA:
            _boot_extra(m, oid, value)
        elif oid in ("nic", "nictype", "cableconnected", "macaddress", "intnet", "bridgeadapter",
                     "hostonlyadapter", "natnetwork", "nicgenericdrv", "nictrace", "nictracefile"):
            _nic(m.get_network_adapter(index - 1), oid, opt, value, e)
        elif oid.startswith("nat"):
            from .nat_rules import apply_nat_option
            apply_nat_option(m.get_network_adapter(index - 1).nat_engine, oid, index, values, _CMD)
        else:
            _uart(m.get_serial_port(index - 1), oid, opt, values, e)


def _boot_extra(m, oid: str, value: str) -> None:
    if oid != "bootcmdline" and value.lower() != "none" and value:
        value = os.path.abspath(value)
    elif oid != "bootcmdline":
        value = ""
    m.set_extra_data(BOOT_EXTRA[oid], value)


def _nic(adapter, oid: str, opt: str, value: str, e) -> None:
    if oid == "nic":
        if value.lower() == "none":
            adapter.enabled = False
            return
        kind = choice(opt, value, names.NIC_ATTACHMENT_BY_ARG, _CMD)
        adapter.enabled = True
        adapter.attachment_type = e.NetworkAttachmentType(kind)
    elif oid == "nictype":
        adapter.adapter_type = e.NetworkAdapterType(choice(opt, value, names.NIC_TYPE_BY_ARG, _CMD))
    elif oid == "cableconnected":
        adapter.cable_connected = onoff(opt, value, _CMD)
    elif oid == "macaddress":
        if value.lower() == "auto":
            adapter.mac_address = ""  # empty: the server generates a fresh 080027xxxxxx address
        elif _MAC.match(value):
            adapter.mac_address = value.upper()
        else:
            raise SyntaxFailure(f"Invalid MAC address '{value}'", _CMD)
    elif oid == "intnet":
        adapter.internal_network = value
    elif oid == "bridgeadapter":
        adapter.bridged_interface = "" if value.lower() == "none" else value
    elif oid == "hostonlyadapter":
        adapter.host_only_interface = "" if value.lower() == "none" else value
    elif oid == "natnetwork":
        adapter.nat_network = value
    elif oid == "nictrace":
        adapter.trace_enabled = onoff(opt, value, _CMD)
    elif oid == "nictracefile":
        adapter.trace_file = value
    else:
        adapter.generic_driver = value


def _uart(port, oid: str, opt: str, values: list[str], e) -> None:
    value = values[0]
    if oid == "uart":
        if value.lower() in ("off", "disable"):
            port.enabled = False
            return
        port.io_address = uint(opt, value, _CMD, hi=0xFFFF)
        port.irq = uint(opt, values[1], _CMD, hi=255)
        port.enabled = True
    elif oid == "uarttype":
        port.uart_type = e.UartType(choice(opt, value, names.UART_TYPE_BY_ARG, _CMD))
    else:
        mode = value.lower()
        if mode == "disconnected":
            port.host_mode = e.PortMode.Disconnected
        elif mode in ("server", "client"):
            port.server = mode == "server"
            port.path = values[1]
            port.host_mode = e.PortMode.HostPipe
        elif mode in ("tcpserver", "tcpclient"):
            port.server = mode == "tcpserver"
            port.path = values[1]
            port.host_mode = e.PortMode.TCP
        elif mode == "file":
            port.path = os.path.abspath(values[1])
            port.host_mode = e.PortMode.RawFile
        else:
            port.path = value
            port.host_mode = e.PortMode.HostDevice
