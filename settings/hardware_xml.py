"""`<Hardware>` of the current state or of a snapshot, plus the parts that moved out of it.

Layout by version (Settings.cpp, MachineConfigFile::readHardware): StorageControllers under Hardware from 1.17
(before: under the owner, Machine or Snapshot); CPU, Chipset, RTC and HPET under Hardware up to 1.19 and under
the owner's `<Platform>` (generic CPU + `<x86>`) from 1.20; firmware details in `<BIOS>` up to
1.19 and in `<Firmware>` from 1.20. Only non-default values are written, except where VirtualBox
always writes them (RAM size, PAE, large pages).
"""

from __future__ import annotations

from lxml import etree

from . import devices_xml, guest_xml, network_xml, storage_xml
from .models import DEFAULT_BOOT_ORDER, Hardware
from .xmltree import (
    child,
    children,
    ensure_child,
    fmt_bool,
    fmt_uuid,
    get_bool,
    get_enum,
    get_int,
    is_bare,
    is_empty,
    new_child,
    opt_uuid,
    parse_uuid,
    problem,
    put,
    put_bool,
    put_flag_child,
    put_int,
    put_str,
    remove,
    required,
    set_attr,
)

HW_CHILDREN = ("Memory", "HID", "Paravirt", "Boot", "Display", "VideoCapture", "RemoteDisplay",
               "Firmware", "BIOS", "TrustedPlatformModule", "NVRAM", "USB", "Network", "UART", "LPT",
               "AudioAdapter", "SharedFolders", "Clipboard", "DragAndDrop", "IO", "HostPci",
               "EmulatedUSB", "Frontend", "Guest", "GuestProperties", "StorageControllers", "RTC",
               "Chipset", "Iommu", "CPU", "HPET")
CPU_CHILDREN = ("HardwareVirtEx", "HardwareVirtExNestedPaging", "HardwareVirtExVPID",
                "HardwareVirtExUX", "PAE", "IBPBOn", "SpecCtrl", "L1DFlushOn", "MDSClearOn", "LongMode",
                "TripleFaultReset", "APIC", "X2APIC", "NestedHWVirt", "HardwareVirtExLargePages",
                "HardwareVirtForce", "HardwareVirtExUseNativeApi", "CpuIdTree", "CpuTree")
CPU_ATTRS = ("count", "hotplug", "executionCap", "CpuIdPortabilityLevel", "CpuProfile")
PLATFORM_CHILDREN = ("RTC", "Chipset", "Iommu", "CPU", "x86")
X86_CHILDREN = ("HPET", "CPU")
BIOS_CHILDREN = ("ACPI", "IOAPIC", "APIC", "Logo", "BootMenu", "TimeOffset", "PXEDebug", "NVRAM",
                 "SmbiosUuidLittleEndian", "AutoSerialNumGen")
DISPLAY_ATTRS = ("controller", "VRAMSize", "monitorCount", "accelerate3D", "accelerate2DVideo")
BOOT_XML = {"Null": "None"}
PARAVIRT = ("None", "Default", "Legacy", "Minimal", "HyperV", "KVM")


class Places:
    """Where each part of the hardware lives for a given version and owner element."""

    def __init__(self, owner: etree._Element, hw: etree._Element | None, sv: int, create: bool = False):
        self.owner, self.hw, self.sv = owner, hw, sv
        self.storage_parent = hw if sv >= 17 else owner
        if sv >= 20:
            platform = child(owner, "Platform")
            if platform is None and create:
                platform = new_child(owner, "Platform", OWNER_CHILDREN)
                platform.set("architecture", "x86")
            self.platform = platform
            x86 = child(platform, "x86")
            if x86 is None and create and platform is not None:
                x86 = new_child(platform, "x86", PLATFORM_CHILDREN)
            self.x86 = x86
            self.cpu_parent, self.cpu_order = platform, PLATFORM_CHILDREN
            self.x86_cpu_parent, self.x86_cpu_order = x86, X86_CHILDREN
            self.hpet_parent = x86
            self.firmware_parent_tag = "Firmware"
        else:
            self.platform = self.x86 = None
            self.cpu_parent = self.x86_cpu_parent = hw
            self.cpu_order = self.x86_cpu_order = HW_CHILDREN
            self.hpet_parent = hw
            self.firmware_parent_tag = "BIOS"

    def cpu(self) -> etree._Element | None:
        return child(self.cpu_parent, "CPU")

    def x86_cpu(self) -> etree._Element | None:
        return child(self.x86_cpu_parent, "CPU")


# order of the owner's (Machine / Snapshot) children, shared with machine_xml
OWNER_CHILDREN = ("Description", "Teleporter", "MediaRegistry", "ExtraData", "Snapshot", "Hardware",
                  "StorageControllers", "Debugging", "Autostart", "Recording", "Groups", "Platform",
                  "Snapshots")


FIRMWARE = {"BIOS": "BIOS", "1": "BIOS", "EFI": "EFI", "2": "EFI", "EFI32": "EFI32", "EFI64": "EFI64",
            "EFIDUAL": "EFIDUAL"}
CHIPSET = {"PIIX3": "PIIX3", "ICH9": "ICH9", "ARMv8Virtual": "ARMv8Virtual"}
POINTING = {v: v for v in ("None", "USBMouse", "USBTablet", "PS2Mouse", "ComboMouse", "USBMultiTouch",
                           "USBMTScreenPlusPad")}
KEYBOARD = {v: v for v in ("None", "USBKeyboard", "PS2Keyboard", "ComboKeyboard")}
GRAPHICS_XML = {"Null": "None"}
GRAPHICS_API = {"VBOXVGA": "VBoxVGA", "VMSVGA": "VMSVGA", "VBOXSVGA": "VBoxSVGA", "NONE": "Null",
                "QEMURAMFB": "QemuRamFB"}
BOOT_DEVICES = {"None": "Null", "Floppy": "Floppy", "DVD": "DVD", "HardDisk": "HardDisk",
                "Network": "Network"}
APIC_MODES = {v: v for v in ("Disabled", "APIC", "X2APIC")}
BOOT_MENU = {v: v for v in ("Disabled", "MenuOnly", "MessageAndMenu")}


def paravirt_default(sv: int) -> str:
    """Absent `<Paravirt>` means Default from 1.16 (VirtualBox 5.1) on, Legacy before."""
    return "Default" if sv >= 16 else "Legacy"


def _read_boot(boot: etree._Element | None) -> list[str]:
    if boot is None:
        return list(DEFAULT_BOOT_ORDER)
    order = ["Null"] * 4  # an explicit <Boot> lists every used position
    seen = set()
    for o in children(boot, "Order"):
        pos = get_int(o, "position", -1)
        if o.get("position") is None:
            raise problem(o, "Required Boot/Order/@position attribute is missing")
        if not 1 <= pos <= 4:
            raise problem(o, f"Invalid value '{pos}' in Boot/Order/@position: must be greater than 0 "
                             "and less than 5")
        if pos in seen:
            raise problem(o, f"Invalid value '{pos - 1}' in Boot/Order/@position: value is not unique")
        seen.add(pos)
        required(o, "device", "Boot/Order")
        order[pos - 1] = get_enum(o, "device", "Null", BOOT_DEVICES, "Boot/Order")
    return order


def _read_graphics(display: etree._Element | None) -> str:
    if display is None or display.get("controller") is None:
        return "VBoxVGA"
    text = display.get("controller")
    if text.upper() not in GRAPHICS_API:
        raise problem(display, f"Invalid value '{text.upper()}' in Display/@controller attribute")
    return GRAPHICS_API[text.upper()]


def _read_storage(at: Places, hw: etree._Element, sv: int):
    controllers = storage_xml.read_controllers(at.storage_parent, sv)
    if sv < 9:
        storage_xml.read_pre_1_9_drives(hw, controllers)
    return controllers


def read_hardware(owner: etree._Element, sv: int) -> Hardware:
    hw = child(owner, "Hardware")
    if hw is None:  # VirtualBox then uses the defaults; so do we (a detached empty element)
        hw = owner.makeelement(etree.QName(owner).namespace and f"{{{etree.QName(owner).namespace}}}Hardware"
                               or "Hardware")
    at = Places(owner, hw, sv)
    cpu, xcpu = at.cpu(), at.x86_cpu()
    fw = child(hw, "Firmware")
    bios = child(hw, at.firmware_parent_tag)
    display = child(hw, "Display")
    hid = child(hw, "HID")
    provider = get_enum(child(hw, "Paravirt"), "provider", paravirt_default(sv), {p: p for p in PARAVIRT},
                        "Paravirt")
    lm = child(xcpu, "LongMode")
    long_mode = get_bool(lm, "enabled", True) if lm is not None and lm.get("enabled") is not None else None
    pae_default = sv >= 9  # pre-3.1 files default to PAE off
    chipset = child(at.cpu_parent if sv >= 20 else hw, "Chipset")
    rtc = child(at.cpu_parent if sv >= 20 else hw, "RTC")
    chipset_type = get_enum(chipset, "type", "PIIX3", CHIPSET, "Chipset", suffix="")
    try:
        return Hardware(
            version=hw.get("version", "2" if sv >= 7 else "1"),
            hardware_uuid=opt_uuid(hw, "uuid"),
            memory_mb=get_int(child(hw, "Memory"), "RAMSize", 128),
            page_fusion=get_bool(child(hw, "Memory"), "PageFusion", False),
            cpu_count=get_int(cpu, "count", 1),
            cpu_execution_cap=get_int(cpu, "executionCap", 100),
            cpu_hotplug=get_bool(cpu, "hotplug", False),
            cpu_profile=(cpu.get("CpuProfile") if cpu is not None else None) or "host",
            hw_virt_ex=get_bool(child(xcpu, "HardwareVirtEx"), "enabled", True),
            nested_paging=get_bool(child(xcpu, "HardwareVirtExNestedPaging"), "enabled", True),
            vpid=get_bool(child(xcpu, "HardwareVirtExVPID"), "enabled", True),
            unrestricted_execution=get_bool(child(xcpu, "HardwareVirtExUX"), "enabled", True),
            large_pages=get_bool(child(xcpu, "HardwareVirtExLargePages"), "enabled", False),
            nested_hw_virt=get_bool(child(xcpu, "NestedHWVirt"), "enabled", False),
            pae=get_bool(child(xcpu, "PAE"), "enabled", pae_default),
            long_mode=long_mode,
            triple_fault_reset=get_bool(child(xcpu, "TripleFaultReset"), "enabled", False),
            apic=get_bool(child(xcpu, "APIC"), "enabled", True) or get_bool(child(xcpu, "X2APIC"), "enabled",
                                                                             False),
            x2apic=get_bool(child(xcpu, "X2APIC"), "enabled", False),
            hpet=get_bool(child(at.hpet_parent, "HPET"), "enabled", False),
            paravirt_provider=provider,
            chipset=chipset_type,
            rtc_use_utc=rtc is not None and rtc.get("localOrUTC", "local").upper() == "UTC",
            boot_order=_read_boot(child(hw, "Boot")),
            firmware=get_enum(fw, "type", "BIOS", FIRMWARE, "Firmware", suffix=""),
            acpi=get_bool(child(bios, "ACPI"), "enabled", True),
            ioapic=get_bool(child(bios, "IOAPIC"), "enabled", False),
            bios_apic_mode=get_enum(child(bios, "APIC"), "mode", "APIC", APIC_MODES, "BIOS/APIC"),
            boot_menu_mode=get_enum(child(bios, "BootMenu"), "mode", "MessageAndMenu", BOOT_MENU,
                                    "BIOS/BootMenu"),
            time_offset_ms=get_int(child(bios, "TimeOffset"), "value", 0),
            pointing_hid=get_enum(hid, "Pointing", "PS2Mouse", POINTING, "HID/Pointing/@type", suffix=""),
            keyboard_hid=get_enum(hid, "Keyboard", "PS2Keyboard", KEYBOARD, "HID/Keyboard/@type", suffix=""),
            vram_mb=get_int(display, "VRAMSize", 8),
            graphics_controller=_read_graphics(display),
            monitor_count=get_int(display, "monitorCount", get_int(display, "MonitorCount", 1)),
            accelerate_3d=get_bool(display, "accelerate3D", get_bool(display, "Accelerate3D", False)),
            network_adapters=network_xml.read_adapters(hw, sv, 36 if chipset_type == "ICH9" else 8),
            uarts=network_xml.read_uarts(hw, sv),
            storage_controllers=_read_storage(at, hw, sv),
            guest_properties=guest_xml.read_guest_properties(hw),
            usb_controllers=devices_xml.read_usb(hw),
            audio=devices_xml.read_audio(hw),
            clipboard_mode=devices_xml.read_clipboard(hw)[0],
            clipboard_file_transfers=devices_xml.read_clipboard(hw)[1],
            dnd_mode=devices_xml.read_dnd(hw),
            vrde=devices_xml.read_vrde(hw),
            bios_logo=devices_xml.read_logo(bios),
            shared_folders=guest_xml.read_shared_folders(hw),
        )
    except ValueError as e:  # pydantic: a value outside what VirtualBox allows
        raise problem(hw, f"Invalid hardware settings: {e}")


def _write_cpu(at: Places, h: Hardware) -> None:
    cpu = at.cpu()
    cpu_needed = (h.cpu_count > 1 or h.cpu_execution_cap != 100 or h.cpu_hotplug
                  or h.cpu_profile != "host")
    if cpu is None and (at.sv < 20 or cpu_needed):
        cpu = new_child(at.cpu_parent, "CPU", at.cpu_order)
    if cpu is not None:
        put_int(cpu, "count", h.cpu_count, default=1, order=CPU_ATTRS)
        put_bool(cpu, "hotplug", h.cpu_hotplug, default=False, order=CPU_ATTRS)
        put_int(cpu, "executionCap", h.cpu_execution_cap, default=100, order=CPU_ATTRS)
        put_str(cpu, "CpuProfile", h.cpu_profile, default="host", order=CPU_ATTRS)
    xcpu = at.x86_cpu()
    if xcpu is None:
        xcpu = new_child(at.x86_cpu_parent, "CPU", at.x86_cpu_order)
    o = CPU_CHILDREN
    put_flag_child(xcpu, "HardwareVirtEx", h.hw_virt_ex, True, o)
    put_flag_child(xcpu, "HardwareVirtExNestedPaging", h.nested_paging, True, o)
    put_flag_child(xcpu, "HardwareVirtExVPID", h.vpid, True, o)
    put_flag_child(xcpu, "HardwareVirtExUX", h.unrestricted_execution, True, o)
    put_flag_child(xcpu, "PAE", h.pae, True, o, always=True)
    lm = child(xcpu, "LongMode")
    if h.long_mode is None:
        if lm is not None and is_bare(lm, "enabled"):
            remove(lm)
    elif lm is None:  # absent means "legacy" here, not "enabled"
        new_child(xcpu, "LongMode", o).set("enabled", fmt_bool(h.long_mode))
    elif get_bool(lm, "enabled", True) != h.long_mode:
        lm.set("enabled", fmt_bool(h.long_mode))
    put_flag_child(xcpu, "TripleFaultReset", h.triple_fault_reset, False, o)
    if h.x2apic:
        put_flag_child(xcpu, "X2APIC", True, False, o)
        put_flag_child(xcpu, "APIC", True, True, o)
    else:
        put_flag_child(xcpu, "X2APIC", False, False, o)
        put_flag_child(xcpu, "APIC", h.apic, True, o)
    put_flag_child(xcpu, "NestedHWVirt", h.nested_hw_virt, False, o)
    put_flag_child(xcpu, "HardwareVirtExLargePages", h.large_pages, False, o, always=True)


def _write_firmware(hw: etree._Element, at: Places, h: Hardware) -> None:
    fw = child(hw, "Firmware")
    if fw is not None or h.firmware != "BIOS":
        fw = fw if fw is not None else new_child(hw, "Firmware", HW_CHILDREN)
        put_str(fw, "type", h.firmware, default="BIOS" if at.sv >= 20 else None,
                always=at.sv < 20)
    bios = child(hw, at.firmware_parent_tag)
    needed = (not h.acpi or h.ioapic or h.bios_apic_mode != "APIC" or h.boot_menu_mode != "MessageAndMenu"
              or h.time_offset_ms != 0 or devices_xml.logo_needed(h.bios_logo))
    if bios is None:
        if not needed:
            return
        bios = new_child(hw, at.firmware_parent_tag, HW_CHILDREN)
    put_flag_child(bios, "ACPI", h.acpi, True, BIOS_CHILDREN)
    put_flag_child(bios, "IOAPIC", h.ioapic, False, BIOS_CHILDREN)
    put_flag_child(bios, "APIC", h.bios_apic_mode, "APIC", BIOS_CHILDREN, attr="mode")
    put_flag_child(bios, "BootMenu", h.boot_menu_mode, "MessageAndMenu", BIOS_CHILDREN, attr="mode")
    put_flag_child(bios, "TimeOffset", h.time_offset_ms, 0, BIOS_CHILDREN, attr="value")
    devices_xml.write_logo(bios, h.bios_logo, BIOS_CHILDREN)


def _write_boot(hw: etree._Element, h: Hardware) -> None:
    boot = child(hw, "Boot")
    if _read_boot(boot) == h.boot_order:
        return
    if boot is None:
        boot = new_child(hw, "Boot", HW_CHILDREN)
    for o in children(boot, "Order"):
        boot.remove(o)
    if h.boot_order == DEFAULT_BOOT_ORDER and is_empty(boot):
        remove(boot)
        return
    for i, dev in enumerate(h.boot_order):
        o = new_child(boot, "Order")
        o.set("position", str(i + 1))
        o.set("device", BOOT_XML.get(dev, dev))


def write_hardware(owner: etree._Element, h: Hardware, sv: int) -> None:
    """Bring the owner's `<Hardware>` (and Platform/StorageControllers) in line with `h`."""
    hw = child(owner, "Hardware")
    if hw is None:
        hw = new_child(owner, "Hardware", OWNER_CHILDREN)
    at = Places(owner, hw, sv, create=True)
    put_str(hw, "version", h.version, default="2")
    put(hw, "uuid", h.hardware_uuid, default=None, fmt=fmt_uuid,
        read=lambda e, n, d: parse_uuid(e.get(n)) if e.get(n) else d)
    mem = ensure_child(hw, "Memory", HW_CHILDREN)
    put_int(mem, "RAMSize", h.memory_mb, default=128, always=True, order=("RAMSize", "PageFusion"))
    put_bool(mem, "PageFusion", h.page_fusion, default=False, order=("RAMSize", "PageFusion"))
    hid = child(hw, "HID")
    if hid is not None or (h.pointing_hid, h.keyboard_hid) != ("PS2Mouse", "PS2Keyboard"):
        hid = hid if hid is not None else new_child(hw, "HID", HW_CHILDREN)
        put_str(hid, "Pointing", h.pointing_hid, default="PS2Mouse", order=("Pointing", "Keyboard"))
        put_str(hid, "Keyboard", h.keyboard_hid, default="PS2Keyboard", order=("Pointing", "Keyboard"))
    para = child(hw, "Paravirt")
    if h.paravirt_provider == paravirt_default(sv):
        if para is not None and para.get("provider", h.paravirt_provider) != h.paravirt_provider:
            if is_bare(para, "provider"):
                remove(para)
            else:
                para.set("provider", h.paravirt_provider)
    else:
        para = para if para is not None else new_child(hw, "Paravirt", HW_CHILDREN)
        if para.get("provider") != h.paravirt_provider:
            set_attr(para, "provider", h.paravirt_provider, ("provider", "debug"))
    _write_boot(hw, h)
    display = child(hw, "Display")
    if display is not None or (h.graphics_controller, h.vram_mb, h.monitor_count, h.accelerate_3d) != (
            "VBoxVGA", 8, 1, False):
        display = display if display is not None else new_child(hw, "Display", HW_CHILDREN)
        put(display, "controller", h.graphics_controller, default="VBoxVGA", order=DISPLAY_ATTRS,
            fmt=lambda v: GRAPHICS_XML.get(v, v), read=lambda e, n, d: _read_graphics(e))
        put_int(display, "VRAMSize", h.vram_mb, default=8, order=DISPLAY_ATTRS)
        put_int(display, "monitorCount", h.monitor_count, default=1, order=DISPLAY_ATTRS)
        put_bool(display, "accelerate3D", h.accelerate_3d, default=False, order=DISPLAY_ATTRS)
    _write_firmware(hw, at, h)
    network_xml.write_adapters(hw, h.network_adapters, sv, HW_CHILDREN)
    network_xml.write_uarts(hw, h.uarts, sv, HW_CHILDREN)
    devices_xml.write_vrde(hw, h.vrde, HW_CHILDREN)
    devices_xml.write_usb(hw, h.usb_controllers, HW_CHILDREN)
    devices_xml.write_audio(hw, h.audio, HW_CHILDREN)
    devices_xml.write_clipboard(hw, h.clipboard_mode, h.clipboard_file_transfers, HW_CHILDREN)
    devices_xml.write_dnd(hw, h.dnd_mode, HW_CHILDREN)
    guest_xml.write_shared_folders(hw, h.shared_folders, HW_CHILDREN)
    guest_xml.write_guest_properties(hw, h.guest_properties, HW_CHILDREN)
    storage_xml.write_controllers(at.storage_parent, h.storage_controllers, sv,
                                  HW_CHILDREN if sv >= 17 else OWNER_CHILDREN)
    plat_parent = at.cpu_parent
    rtc = child(plat_parent, "RTC")
    if rtc is not None or h.rtc_use_utc:
        rtc = rtc if rtc is not None else new_child(plat_parent, "RTC", at.cpu_order)
        put(rtc, "localOrUTC", "UTC" if h.rtc_use_utc else "local", default="local",
            read=lambda e, n, d: "UTC" if e.get(n, d).upper() == "UTC" else "local")
    put_flag_child(plat_parent, "Chipset", h.chipset, "PIIX3", at.cpu_order, attr="type")
    _write_cpu(at, h)
    put_flag_child(at.hpet_parent, "HPET", h.hpet, False, at.x86_cpu_order if sv >= 20 else HW_CHILDREN)
