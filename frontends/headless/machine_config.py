"""The machine's settings, read through the Main API, as the VM's CFGM tree.

VirtualBox's VM process builds its configuration tree (CFGM) from IMachine in
ConsoleImpl2.cpp before the VMM exists; this is that step for vboxpy.  Everything comes from
the session machine (attributes, serial ports, storage controllers and attachments, extra
data), so the VM runs exactly what the service has.  The keys are the ones vmm/vm.py reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vboxsvc.api import (
    CPUPropertyTypeX86,
    DeviceType,
    FirmwareBootMenuMode,
    FirmwareType,
    HWVirtExPropertyType,
    MediumType,
    NetworkAdapterType,
    NetworkAttachmentType,
    PortMode,
    StorageControllerType,
    VBoxError,
)
from vmm.cfgm import CfgNode
from vmm.gim import PROVIDER_BY_VALUE

SERIAL_SLOTS = 4
NIC_SLOTS = 8          # PIIX3 (the only chipset the VMM builds)
BOOT_POSITIONS = 4
BOOT_KEYS = {"Kernel": "vboxpy/BootKernel", "Initrd": "vboxpy/BootInitrd", "Cmdline": "vboxpy/BootCmdline"}
FORCE_HM_KEY = "vboxpy/ForceHM"
# Controllers the VMM emulates (vmm.devices.storage_placement.SUPPORTED); DVD drives on IDE and SATA
IDE_CONTROLLERS = ("PIIX3", "PIIX4", "ICH6")
EMULATED_CONTROLLERS = ("IntelAhci", "VirtioSCSI") + IDE_CONTROLLERS


class ConfigError(Exception):
    """The machine's settings cannot be run (the text says which setting and why)."""


@dataclass
class MachineSettings:
    """What the VM process needs beside the CFGM tree: the engine inputs and the warnings to log."""
    name: str
    uuid: str
    os_type_id: str
    hwvirtex: bool
    force_hm: str
    cfg: CfgNode
    notes: list[str] = field(default_factory=list)


def read_settings(machine) -> MachineSettings:
    """Build the CFGM tree of `machine` (an IMachine proxy: the VM session's machine)."""
    cfg = CfgNode()
    notes: list[str] = []
    name = machine.name
    cfg.set("Name", name)
    cfg.set("UUID", machine.id)
    cfg.set("RamSize", int(machine.memory_size) << 20)
    cpus = int(machine.cpu_count)
    cfg.set("NumCPUs", cpus)
    if cpus > 1:
        notes.append(f"the VM is configured with {cpus} CPUs; the vboxpy VMM runs one vCPU")
    x86 = machine.platform.x86
    cfg.set("TripleFaultReset", bool(x86.get_cpu_property(CPUPropertyTypeX86.TripleFaultReset)))
    hwvirtex = bool(x86.get_hw_virt_ex_property(HWVirtExPropertyType.Enabled))
    cfg.set("HMEnabled", hwvirtex)
    _interrupt_controllers(machine, cfg, cpus)
    for key, extra in BOOT_KEYS.items():
        value = machine.get_extra_data(extra)
        if value:
            cfg.set(f"Boot/{key}", value)
    _firmware(machine, cfg)
    # GIM: the provider the API resolves (Machine::getEffectiveParavirtProvider), named as vmm.gim does
    cfg.set("GIM/Provider", PROVIDER_BY_VALUE[int(machine.get_effective_paravirt_provider())])
    cfg.set("GIM/OsType", machine.os_type_id)
    _serial_ports(machine, cfg)
    _storage(machine, cfg, notes)
    _network_adapters(machine, cfg, notes)
    return MachineSettings(name=name, uuid=machine.id, os_type_id=machine.os_type_id, hwvirtex=hwvirtex,
                           force_hm=machine.get_extra_data(FORCE_HM_KEY) or "", cfg=cfg, notes=notes)


def _firmware(machine, cfg: CfgNode) -> None:
    """Firmware type, boot menu policy and the boot order (--boot1..4) for the BIOS."""
    fw = machine.firmware_settings
    cfg.set("Firmware/Type", FirmwareType(fw.firmware_type).name)
    cfg.set("Firmware/BootMenu", FirmwareBootMenuMode(fw.boot_menu_mode).name)
    cfg.set("Firmware/LogoDisplayTime", int(fw.logo_display_time))
    cfg.set("ACPI", bool(fw.acpi_enabled))          # --acpi off: the firmware gets no ACPI tables
    for position in range(1, BOOT_POSITIONS + 1):
        kind = DeviceType(machine.get_boot_order(position))
        cfg.set(f"BootOrder/{position}", kind.name)


def _interrupt_controllers(machine, cfg: CfgNode, cpus: int) -> None:
    """The local APIC (CPU property APIC) and the I/O APIC (firmware settings); the combinations
    VirtualBox refuses are refused with its words (ConsoleImplConfigX86.cpp)."""
    apic = machine.platform.x86.get_cpu_property(CPUPropertyTypeX86.APIC)
    apic = True if apic is None else bool(apic)
    ioapic = bool(machine.firmware_settings.ioapic_enabled)
    if not apic:
        if str(machine.os_type_id).endswith("_64"):
            raise ConfigError("Cannot disable the APIC for a 64-bit guest.")
        if cpus > 1:
            raise ConfigError("Cannot disable the APIC for an SMP guest.")
        if ioapic:
            raise ConfigError("Cannot disable the APIC when the I/O APIC is present.")
    cfg.set("APIC", apic)
    cfg.set("IOAPIC", ioapic)


def _serial_ports(machine, cfg: CfgNode) -> None:
    for slot in range(SERIAL_SLOTS):
        port = machine.get_serial_port(slot)
        if not port.enabled:
            continue
        node = cfg.node(f"Devices/serial/{slot}")
        mode = PortMode(port.host_mode)
        path = port.path or ""
        if mode != PortMode.Disconnected and not path:
            raise ConfigError(f"serial port {slot + 1} (COM{slot + 1}) is in mode {mode.name} but has no "
                              "path/port set (modifyvm --uart-mode)")
        node.set("Enabled", True)
        node.set("IOBase", int(port.io_address))
        node.set("IRQ", int(port.irq))
        node.set("Mode", int(mode))
        node.set("Path", path)
        node.set("Server", bool(port.server))
        node.set("UartType", int(port.uart_type))


def _storage(machine, cfg: CfgNode, notes: list[str]) -> None:
    for index, ctl in enumerate(machine.storage_controllers):
        ctl_name = ctl.name
        ctl_type = StorageControllerType(ctl.controller_type).name
        optical = ctl_type in IDE_CONTROLLERS + ("IntelAhci",)
        devices = []
        for att in machine.get_medium_attachments_of_controller(ctl_name):
            medium = att.medium
            kind = DeviceType(att.type)
            if kind == DeviceType.DVD and optical:
                devices.append((att, medium))       # with a disc, or an empty drive
                continue
            if medium is None:
                continue   # an empty drive the VMM does not emulate here: nothing for the guest to see
            if kind != DeviceType.HardDisk:
                notes.append(f"{ctl_name} port {att.port} device {att.device}: {kind.name} drives are not "
                             f"emulated by vboxpy on {ctl_type} controllers; '{medium.location}' stays "
                             "invisible to the guest")
                continue
            devices.append((att, medium))
        if not devices:
            continue
        if ctl_type not in EMULATED_CONTROLLERS:
            raise ConfigError(f"storage controller '{ctl_name}' is of type {ctl_type}, which vboxpy does not "
                              f"emulate (use {' or '.join(EMULATED_CONTROLLERS)}: storagectl --controller "
                              "IntelAhci|VirtIO|PIIX4)")
        node = cfg.node(f"Devices/storage/{index}")
        node.set("Name", ctl_name)
        node.set("Type", ctl_type)
        node.set("PortCount", int(ctl.port_count))
        node.set("UseHostIOCache", bool(ctl.use_host_io_cache))
        for i, (att, medium) in enumerate(devices):
            a = node.node(f"Attachments/{i}")
            a.set("Port", int(att.port))
            a.set("Device", int(att.device))
            a.set("Kind", "DVD" if DeviceType(att.type) == DeviceType.DVD else "HardDisk")
            a.set("Path", medium.location if medium is not None else "")
            if medium is None:
                continue
            a.set("ReadOnly", bool(medium.read_only) or medium.type == MediumType.Readonly)
            a.set("NonRotational", bool(att.non_rotational))
            a.set("Discard", bool(att.discard))
            # the diff chain as the media registry knows it: a linked clone's parents live in
            # another machine's folder, where the image file alone cannot lead
            parent = medium.parent
            while parent is not None:
                a.set(f"Chain/{parent.id}", parent.location)
                parent = parent.parent
            if medium.type == MediumType.Immutable:
                notes.append(f"{ctl_name} port {att.port}: immutable medium '{medium.location}' is attached "
                             "read-only (vboxpy creates no auto-reset differencing image)")


def _network_adapters(machine, cfg: CfgNode, notes: list[str]) -> None:
    """Devices/net/<slot>: the adapter (type, MAC, cable), its attachment and the NAT engine."""
    for slot in range(NIC_SLOTS):
        nic = machine.get_network_adapter(slot)
        if not nic.enabled:
            continue
        kind = NetworkAttachmentType(nic.attachment_type)
        node = cfg.node(f"Devices/net/{slot}")
        node.set("AdapterType", NetworkAdapterType(nic.adapter_type).name)
        mac = nic.mac_address or ""
        if len(mac) != 12:
            raise ConfigError(f"network adapter {slot + 1} has no valid MAC address ('{mac}'); set one with "
                              f"modifyvm --mac-address{slot + 1} auto")
        node.set("MAC", mac)
        node.set("CableConnected", bool(nic.cable_connected))
        node.set("Attachment", kind.name)
        if nic.trace_enabled:
            node.set("Trace", True)
            node.set("TraceFile", nic.trace_file or "")
        network = {NetworkAttachmentType.Internal: nic.internal_network,
                   NetworkAttachmentType.Bridged: nic.bridged_interface,
                   NetworkAttachmentType.HostOnly: nic.host_only_interface,
                   NetworkAttachmentType.Generic: nic.generic_driver}.get(kind)
        if network is not None:
            node.set("Network", network or "")
        if kind != NetworkAttachmentType.NAT:
            continue
        engine = nic.nat_engine
        nat = node.node("NAT")
        nat.set("Network", engine.network or "")
        nat.set("BindIP", engine.host_ip or "")
        nat.set("LocalhostReachable", bool(engine.localhost_reachable))
        nat.set("DNSProxy", bool(engine.dns_proxy))
        nat.set("UseHostResolver", bool(engine.dns_use_host_resolver))
        nat.set("AliasMode", int(engine.alias_mode))
        nat.set("TFTPPrefix", engine.tftp_prefix or "")
        nat.set("BootFile", engine.tftp_boot_file or "")
        nat.set("NextServer", engine.tftp_next_server or "")
        mtu = int(engine.get_network_settings()[0])
        if mtu:
            nat.set("MTU", mtu)
        for i, text in enumerate(engine.redirects):
            name, proto, host_ip, host_port, guest_ip, guest_port = text.split(",")
            r = nat.node(f"Rules/{i}")
            r.set("Name", name)
            r.set("UDP", proto == "0")
            r.set("HostIP", host_ip)
            r.set("HostPort", int(host_port))
            r.set("GuestIP", guest_ip)
            r.set("GuestPort", int(guest_port))


def describe_error(exc: BaseException) -> str:
    """One line for the log and the exit message."""
    if isinstance(exc, VBoxError):
        return exc.text
    return str(exc) or type(exc).__name__
