"""IMachine::applyDefaults: the OS type's recommended hardware (`VBoxManage createvm --default`)."""

from __future__ import annotations

from ..api.enums import DeviceType
from .fields import assign


def apply_defaults(view, os_type, flags: str = "") -> None:
    hw = view._d.hardware
    assign(hw, "memory_mb", os_type.recommended_ram)
    assign(hw, "vram_mb", os_type.recommended_vram)
    assign(hw, "graphics_controller", os_type.recommended_graphics_controller.name)
    assign(hw, "firmware", os_type.recommended_firmware.name)
    assign(hw, "ioapic", os_type.recommended_ioapic)
    assign(hw, "pae", os_type.recommended_pae)
    assign(hw, "long_mode", os_type.is64_bit)
    assign(hw, "rtc_use_utc", os_type.recommended_rtc_use_utc)
    assign(hw, "cpu_count", max(hw.cpu_count, os_type.recommended_cpu_count))
    if os_type.recommended_usbhid:
        assign(hw, "pointing_hid", "USBTablet")
        assign(hw, "keyboard_hid", "USBKeyboard")
    # storage: a controller for the DVD drive and one for hard disks, named after their bus
    dvd_bus = os_type.recommended_dvd_storage_bus
    hd_bus = os_type.recommended_hd_storage_bus
    for bus in dict.fromkeys([dvd_bus, hd_bus]):
        if not any(c.bus == bus.name for c in hw.storage_controllers):
            view.add_storage_controller(bus.name, bus)
    ctl = next(c for c in hw.storage_controllers if c.bus == dvd_bus.name)
    if not any(d.type == "DVD" for c in hw.storage_controllers for d in c.devices):
        port = 1  # the secondary master on IDE, port 1 on SATA, as VirtualBox
        if not any(d.port == port and d.device == 0 for d in ctl.devices) and port < ctl.port_count:
            view.attach_device_without_medium(ctl.name, port, 0, DeviceType.DVD)
