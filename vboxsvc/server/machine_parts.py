"""The objects hanging off an IMachine: platform, firmware, graphics, NICs, serial ports,
storage controllers and medium attachments. Each is a live view onto its machine's
settings (the session copy for a session machine), so setters follow the machine's rules.
"""

from __future__ import annotations

import logging

from ..api import errors as rc
from ..api.enums import (
    APICMode,
    ChipsetType,
    CPUPropertyTypeX86,
    DeviceType,
    FirmwareBootMenuMode,
    FirmwareType,
    GraphicsControllerType,
    HWVirtExPropertyType,
    IommuType,
    MachineState,
    NATProtocol,
    NetworkAdapterPromiscModePolicy,
    NetworkAdapterType,
    NetworkAttachmentType,
    PlatformArchitecture,
    PortMode,
    StorageBus,
    StorageControllerType,
    UartType,
)
from ..api.errors import VBoxError
from .fields import assign, enum_names, field, in_range
from .statedeps import MUTABLE, MUTABLE_OR_RUNNING, MUTABLE_OR_SAVED
from .sysprops import bus_limits

log = logging.getLogger("vboxsvc.machine")


class _Part:
    def __init__(self, view):
        self._mv = view
        self.__bus_tag__ = view.__bus_tag__


class Platform(_Part):
    __interface__ = "IPlatform"
    __component__ = "PlatformWrap"

    architecture = property(lambda self: PlatformArchitecture.x86)
    chipset_type = field("hardware.chipset", MUTABLE, *enum_names(ChipsetType))
    iommu_type = property(lambda self: IommuType["None"])
    rtc_use_utc = field("hardware.rtc_use_utc", MUTABLE)

    def __init__(self, view):
        super().__init__(view)
        self._x86 = PlatformX86(view)

    @property
    def x86(self):
        return self._x86


_CPU_PROPS = {
    CPUPropertyTypeX86.PAE: "pae",
    CPUPropertyTypeX86.LongMode: "long_mode",
    CPUPropertyTypeX86.TripleFaultReset: "triple_fault_reset",
    CPUPropertyTypeX86.APIC: "apic",
    CPUPropertyTypeX86.X2APIC: "x2apic",
    CPUPropertyTypeX86.HWVirt: "nested_hw_virt",
}
_HWVIRT_PROPS = {
    HWVirtExPropertyType.Enabled: "hw_virt_ex",
    HWVirtExPropertyType.VPID: "vpid",
    HWVirtExPropertyType.NestedPaging: "nested_paging",
    HWVirtExPropertyType.UnrestrictedExecution: "unrestricted_execution",
    HWVirtExPropertyType.LargePages: "large_pages",
}


class PlatformX86(_Part):
    __interface__ = "IPlatformX86"
    __component__ = "PlatformX86Wrap"

    hpet_enabled = field("hardware.hpet", MUTABLE)

    def get_cpu_property(self, property: CPUPropertyTypeX86) -> bool:
        name = _CPU_PROPS.get(property)
        if name is None:
            return False  # speculation-control knobs: not modelled, reported off
        value = getattr(self._mv._d.hardware, name)
        if value is None:  # long mode "legacy": follows the OS type
            from . import guestos
            t = guestos.lookup(self._mv._d.os_type)
            return bool(t and t.is64_bit)
        return bool(value)

    def set_cpu_property(self, property: CPUPropertyTypeX86, value: bool) -> None:
        self._mv._check_mutable(MUTABLE)
        name = _CPU_PROPS.get(property)
        if name is None:
            raise VBoxError(rc.E_INVALIDARG, f"CPU property {property.name} is not supported by vboxpy")
        assign(self._mv._d.hardware, name, value)

    def get_hw_virt_ex_property(self, property: HWVirtExPropertyType) -> bool:
        name = _HWVIRT_PROPS.get(property)
        if name is None:
            return False  # Force / UseNativeApi / VirtVmsaveVmload are not stored: off
        return bool(getattr(self._mv._d.hardware, name))

    def set_hw_virt_ex_property(self, property: HWVirtExPropertyType, value: bool) -> None:
        self._mv._check_mutable(MUTABLE)
        name = _HWVIRT_PROPS.get(property)
        if name is None:
            raise VBoxError(rc.E_INVALIDARG, f"Hardware virtualization property {property.name} is not "
                                             "supported by vboxpy")
        assign(self._mv._d.hardware, name, value)


class FirmwareSettings(_Part):
    __interface__ = "IFirmwareSettings"
    __component__ = "FirmwareSettingsWrap"

    firmware_type = field("hardware.firmware", MUTABLE, *enum_names(FirmwareType))
    boot_menu_mode = field("hardware.boot_menu_mode", MUTABLE, *enum_names(FirmwareBootMenuMode))
    acpi_enabled = field("hardware.acpi", MUTABLE)
    ioapic_enabled = field("hardware.ioapic", MUTABLE)
    apic_mode = field("hardware.bios_apic_mode", MUTABLE, *enum_names(APICMode))
    time_offset = field("hardware.time_offset_ms", MUTABLE)
    logo_fade_in = field("hardware.bios_logo.fade_in", MUTABLE)
    logo_fade_out = field("hardware.bios_logo.fade_out", MUTABLE)
    logo_display_time = field("hardware.bios_logo.display_time", MUTABLE,
                              check=in_range("logo display time", 0, 65535, "ms"))
    logo_image_path = field("hardware.bios_logo.image_path", MUTABLE)
    pxe_debug_enabled = False
    smbios_uuid_little_endian = True


class GraphicsAdapter(_Part):
    __interface__ = "IGraphicsAdapter"
    __component__ = "GraphicsAdapterWrap"

    graphics_controller_type = field("hardware.graphics_controller", MUTABLE,
                                     *enum_names(GraphicsControllerType))
    vram_size = field("hardware.vram_mb", MUTABLE, check=in_range("VRAM size", 0, 256, "MB"))
    monitor_count = field("hardware.monitor_count", MUTABLE, check=in_range("monitor count", 1, 64))
    accelerate3d_enabled = field("hardware.accelerate_3d", MUTABLE)


def _slot_field(path, dep=MUTABLE, to_api=None, from_api=None, check=None):
    """A property over one field of a slot's settings (`self._d`: a NIC's or a UART's model)."""
    def get(self):
        v = getattr(self._d, path)
        return to_api(v) if to_api else v

    def set_(self, value):
        self._mv._check_mutable(dep)
        if check is not None:
            check(value)
        assign(self._d, path, from_api(value) if from_api else value)
    return property(get, set_)


class NetworkAdapter(_Part):
    __interface__ = "INetworkAdapter"
    __component__ = "NetworkAdapterWrap"

    def __init__(self, view, slot: int):
        super().__init__(view)
        self.slot = slot

    @property
    def _d(self):
        return self._mv._d.hardware.network_adapters[self.slot]

    adapter_type = _slot_field("type", MUTABLE, *enum_names(NetworkAdapterType))
    enabled = _slot_field("enabled", MUTABLE)
    mac_address = _slot_field("mac", MUTABLE)
    attachment_type = _slot_field("attachment_type", MUTABLE_OR_RUNNING, *enum_names(NetworkAttachmentType))
    bridged_interface = _slot_field("bridged_interface", MUTABLE_OR_RUNNING)
    host_only_interface = _slot_field("host_only_interface", MUTABLE_OR_RUNNING)
    internal_network = _slot_field("internal_network", MUTABLE_OR_RUNNING)
    nat_network = _slot_field("nat_network", MUTABLE_OR_RUNNING)
    generic_driver = _slot_field("generic_driver", MUTABLE_OR_RUNNING)
    line_speed = _slot_field("line_speed", MUTABLE)
    promisc_mode_policy = _slot_field("promisc_mode_policy", MUTABLE_OR_RUNNING,
                               *enum_names(NetworkAdapterPromiscModePolicy))
    boot_priority = _slot_field("boot_priority", MUTABLE, check=in_range("boot priority", 0, 4))
    trace_enabled = _slot_field("trace_enabled", MUTABLE)
    trace_file = _slot_field("trace_file", MUTABLE)

    @property
    def cable_connected(self) -> bool:
        return self._d.cable_connected

    @cable_connected.setter
    def cable_connected(self, value: bool) -> None:
        self._mv._check_mutable(MUTABLE_OR_RUNNING)
        changed = bool(value) != self._d.cable_connected
        assign(self._d, "cable_connected", bool(value))
        if changed:      # NetworkAdapter::setCableConnected -> Console::onNetworkAdapterChange
            notify_console(self._mv, "on_network_adapter_change", [self.slot, bool(value)])

    @property
    def nat_engine(self):
        return self._mv._part(NatEngine, self.slot)


def notify_console(view, member: str, args: list) -> None:
    """Tell the running VM's console about a change made through a session machine (VirtualBox's
    IInternalSessionControl::on*Change); a VM that is not running hears nothing."""
    from ..ipc.dispatcher import CALL
    from .context import ctx
    core = view._core
    direct = core.direct
    console = direct.console if direct is not None else None
    if console is None or ctx.bus is None or core.state not in (MachineState.Running, MachineState.Paused):
        return
    answer = ctx.bus.call_remote(console, CALL, member, args)

    def answered(_value, err):
        if err is not None:
            log.warning("console %s failed: %s", member, getattr(err, "text", err))
    answer.add_callback(answered)


def _nat_field(name: str):
    def get(self):
        return getattr(self._d.nat, name)

    def set_(self, value):
        self._mv._check_mutable(MUTABLE_OR_RUNNING)
        assign(self._d.nat, name, value)
    return property(get, set_)


class NatEngine(_Part):
    """INATEngine of one adapter (NATEngineImpl.cpp): the NAT settings and port-forwarding rules."""

    __interface__ = "INATEngine"
    __component__ = "NATEngineWrap"

    def __init__(self, view, slot: int):
        super().__init__(view)
        self.slot = slot

    @property
    def _d(self):
        return self._mv._d.hardware.network_adapters[self.slot]

    network = _nat_field("network")
    host_ip = _nat_field("bind_ip")
    tftp_prefix = _nat_field("tftp_prefix")
    tftp_boot_file = _nat_field("tftp_boot_file")
    tftp_next_server = _nat_field("tftp_next_server")
    dns_pass_domain = _nat_field("dns_pass_domain")
    dns_proxy = _nat_field("dns_proxy")
    dns_use_host_resolver = _nat_field("dns_use_host_resolver")
    localhost_reachable = _nat_field("localhost_reachable")

    @property
    def alias_mode(self) -> int:
        n = self._d.nat
        return (
            (1 if n.alias_log else 0)
            | (2 if n.alias_proxy_only else 0)
            | (4 if n.alias_use_same_ports else 0)
        )

    @alias_mode.setter
    def alias_mode(self, value: int) -> None:
        self._mv._check_mutable(MUTABLE_OR_RUNNING)
        n = self._d.nat
        assign(n, "alias_log", bool(value & 1))
        assign(n, "alias_proxy_only", bool(value & 2))
        assign(n, "alias_use_same_ports", bool(value & 4))

    def set_network_settings(self, mtu: int, sock_snd: int, sock_rcv: int, tcp_wnd_snd: int,
                             tcp_wnd_rcv: int) -> None:
        self._mv._check_mutable(MUTABLE_OR_RUNNING)
        n = self._d.nat
        for name, value in (("mtu", mtu), ("sock_snd", sock_snd), ("sock_rcv", sock_rcv),
                            ("tcp_snd", tcp_wnd_snd), ("tcp_rcv", tcp_wnd_rcv)):
            if value:                       # NATEngine::setNetworkSettings leaves 0 values alone
                assign(n, name, int(value))

    def get_network_settings(self) -> list[int]:
        n = self._d.nat
        return [n.mtu, n.sock_snd, n.sock_rcv, n.tcp_snd, n.tcp_rcv]

    @property
    def redirects(self) -> list[str]:
        return [
            f"{r.name},{1 if r.proto == 'TCP' else 0},{r.host_ip},{r.host_port},{r.guest_ip},{r.guest_port}"
            for r in sorted(self._d.nat_rules, key=lambda r: r.name)
        ]

    def add_redirect(self, name: str, proto: NATProtocol, host_ip: str, host_port: int, guest_ip: str,
                     guest_port: int) -> None:
        from settings.models import NatRule
        self._mv._check_mutable(MUTABLE_OR_RUNNING)
        try:
            proto = NATProtocol(int(proto))
        except ValueError:
            raise VBoxError(rc.E_INVALIDARG, f"Invalid NAT protocol {proto}", "INATEngine",
                            self.__component__) from None
        proto_name = "tcp" if proto == NATProtocol.TCP else "udp"
        if not name:
            name = f"{proto_name}_{host_port}_{guest_port}"
        elif "," in name:
            raise VBoxError(rc.E_INVALIDARG, "',' - invalid character in NAT rule name", "INATEngine",
                            self.__component__)
        for r in self._d.nat_rules:
            if r.name == name:
                raise VBoxError(rc.E_INVALIDARG, "A NAT rule of this name already exists", "INATEngine",
                                self.__component__)
            if r.host_ip == host_ip and r.host_port == host_port and r.proto == proto.name:
                raise VBoxError(rc.E_INVALIDARG,
                                "A NAT rule for this host port and this host IP already exists",
                                "INATEngine", self.__component__)
        for what, port in (("host", host_port), ("guest", guest_port)):
            if not 0 <= int(port) <= 65535:
                raise VBoxError(rc.E_INVALIDARG, f"Invalid {what} port {port}", "INATEngine",
                                self.__component__)
        rule = NatRule(name=name, proto=proto.name, host_ip=host_ip or "", host_port=int(host_port),
                       guest_ip=guest_ip or "", guest_port=int(guest_port))
        assign(self._d, "nat_rules", self._d.nat_rules + [rule])
        if self._d.attachment_type == "NAT":
            notify_console(self._mv, "on_nat_redirect_rule_change",
                           [self.slot, False, name, int(proto), rule.host_ip, rule.host_port, rule.guest_ip,
                            rule.guest_port])

    def remove_redirect(self, name: str) -> None:
        self._mv._check_mutable(MUTABLE_OR_RUNNING)
        rules = self._d.nat_rules
        rule = next((r for r in rules if r.name == name), None)
        if rule is None:
            raise VBoxError(rc.E_INVALIDARG, "", "INATEngine", self.__component__)
        assign(self._d, "nat_rules", [r for r in rules if r.name != name])
        if self._d.attachment_type == "NAT":
            notify_console(self._mv, "on_nat_redirect_rule_change",
                           [self.slot, True, name, 1 if rule.proto == "TCP" else 0, rule.host_ip,
                            rule.host_port,
                            rule.guest_ip, rule.guest_port])


class SerialPort(_Part):
    __interface__ = "ISerialPort"
    __component__ = "SerialPortWrap"

    def __init__(self, view, slot: int):
        super().__init__(view)
        self.slot = slot

    @property
    def _d(self):
        return self._mv._d.hardware.uarts[self.slot]

    enabled = _slot_field("enabled", MUTABLE)
    io_address = _slot_field("io_base", MUTABLE, check=in_range("I/O port base address", 0, 0xFFFF))
    irq = _slot_field("irq", MUTABLE, check=in_range("IRQ number", 0, 255))
    host_mode = _slot_field("port_mode", MUTABLE_OR_SAVED, *enum_names(PortMode))
    server = _slot_field("server", MUTABLE_OR_SAVED)
    path = _slot_field("path", MUTABLE_OR_SAVED)
    uart_type = _slot_field("uart_type", MUTABLE, *enum_names(UartType))


class StorageController(_Part):
    __interface__ = "IStorageController"
    __component__ = "StorageControllerWrap"

    def __init__(self, view, name: str):
        super().__init__(view)
        self._name = name

    @property
    def _d(self):
        c = self._mv._d.hardware.controller(self._name)
        if c is None:
            raise VBoxError(rc.E_ACCESSDENIED, "The object is not ready (the storage controller was removed)")
        return c

    @property
    def name(self) -> str:
        return self._d.name

    @name.setter
    def name(self, value: str) -> None:
        self._mv._check_mutable(MUTABLE)
        if not value:
            raise VBoxError(rc.E_INVALIDARG, "Storage controller name must not be empty")
        if value != self._name and self._mv._d.hardware.controller(value) is not None:
            raise VBoxError(rc.VBOX_E_OBJECT_IN_USE, f"Storage controller named '{value}' already exists")
        assign(self._d, "name", value)
        self._mv._rename_part(self._name, value)
        self._name = value

    @property
    def bus(self):
        return StorageBus[self._d.bus]

    @property
    def max_devices_per_port_count(self) -> int:
        return bus_limits(self.bus)[2]

    @property
    def min_port_count(self) -> int:
        return bus_limits(self.bus)[0]

    @property
    def max_port_count(self) -> int:
        return bus_limits(self.bus)[1]

    @property
    def instance(self) -> int:
        return self._d.instance

    @instance.setter
    def instance(self, value: int) -> None:
        self._mv._check_mutable(MUTABLE)
        assign(self._d, "instance", value)

    @property
    def port_count(self) -> int:
        return self._d.port_count

    @port_count.setter
    def port_count(self, value: int) -> None:
        self._mv._check_mutable(MUTABLE)
        lo, hi = bus_limits(self.bus)[:2]
        if not lo <= value <= hi:
            raise VBoxError(rc.E_INVALIDARG, f"Invalid port count: {value} (must be in range [{lo}, {hi}])")
        if any(d.port >= value for d in self._d.devices):
            raise VBoxError(rc.VBOX_E_OBJECT_IN_USE,
                            "The port count cannot be reduced below a port that has a device attached")
        assign(self._d, "port_count", value)

    @property
    def controller_type(self):
        return StorageControllerType[self._d.controller_type]

    @controller_type.setter
    def controller_type(self, value) -> None:
        self._mv._check_mutable(MUTABLE)
        from .sysprops import BUS_OF_CONTROLLER
        if BUS_OF_CONTROLLER.get(value) != self.bus:
            raise VBoxError(rc.E_INVALIDARG, f"Controller type {StorageControllerType(value).name} does not "
                                             f"belong to the {self.bus.name} bus")
        assign(self._d, "controller_type", StorageControllerType(value).name)

    @property
    def use_host_io_cache(self) -> bool:
        return self._d.use_host_io_cache

    @use_host_io_cache.setter
    def use_host_io_cache(self, value: bool) -> None:
        self._mv._check_mutable(MUTABLE)
        assign(self._d, "use_host_io_cache", value)

    @property
    def bootable(self) -> bool:
        return self._d.bootable


class MediumAttachment(_Part):
    """A read-only view of one attached device (controller, port, device)."""

    __interface__ = "IMediumAttachment"
    __component__ = "MediumAttachmentWrap"

    def __init__(self, view, controller: str, port: int, device: int):
        super().__init__(view)
        self.controller, self.port, self.device = controller, port, device

    @property
    def _d(self):
        c = self._mv._d.hardware.controller(self.controller)
        dev = None if c is None else next((d for d in c.devices if d.port == self.port
                                           and d.device == self.device),
                                          None)
        if dev is None:
            raise VBoxError(rc.E_ACCESSDENIED, "The object is not ready (the device was detached)")
        return dev

    @property
    def machine(self):
        return self._mv

    @property
    def medium(self):
        uid = self._d.medium
        return None if uid is None else self._mv._core.vbox.media.by_id.get(str(uid))

    @property
    def type(self):
        return DeviceType[self._d.type]

    passthrough = property(lambda self: self._d.passthrough)
    temporary_eject = property(lambda self: self._d.temp_eject)
    is_ejected = property(lambda self: False)
    non_rotational = property(lambda self: self._d.nonrotational)
    discard = property(lambda self: self._d.discard)
    hot_pluggable = property(lambda self: self._d.hotpluggable)
