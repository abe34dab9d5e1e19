"""The objects hanging off an IMachine: platform, firmware, graphics, NICs, serial ports,
storage controllers and medium attachments. Each is a live view onto its machine's
settings (the session copy for a session machine), so setters follow the machine's rules.
"""

from __future__ import annotations

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

    graphics_controller_type = field("hardware.graphics_controller", MUTABLE, *enum_names(GraphicsControllerType))
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
    cable_connected = _slot_field("cable_connected", MUTABLE_OR_RUNNING)
    line_speed = _slot_field("line_speed", MUTABLE)
    promisc_mode_policy = _slot_field("promisc_mode_policy", MUTABLE_OR_RUNNING,
                               *enum_names(NetworkAdapterPromiscModePolicy))
    boot_priority = _slot_field("boot_priority", MUTABLE, check=in_range("boot priority", 0, 4))
    trace_enabled = False  # packet tracing is not available in vboxpy
    trace_file = ""


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
        dev = None if c is None else next((d for d in c.devices if d.port == self.port and d.device == self.device),
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
