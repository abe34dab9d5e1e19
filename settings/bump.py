"""Format-version rules for machine files: which settings need which 1.x
(`MachineConfigFile::bumpSettingsVersionIfNeeded`), and how an existing tree is moved to a newer
layout when a save has to bump it, so that nothing in it is lost on the way.
"""

from __future__ import annotations

from lxml import etree

from . import hardware_xml, storage_xml
from .hardware_xml import CPU_ATTRS, OWNER_CHILDREN, PLATFORM_CHILDREN
from .models import Hardware, MachineSettings
from .xmltree import child, children, new_child, remove

SAME_KIND = {"LsiLogic": "LsiLogic", "BusLogic": "BusLogic"}


def _hardware_minor(h: Hardware) -> int:
    """What one Hardware needs: `MachineConfigFile::bumpSettingsVersionIfNeeded` for the settings
    we model (7.1's rules for 1.20 from the reference)."""
    nics = h.network_adapters
    enabled = [a for a in nics if a.enabled]
    ctrls = h.storage_controllers
    used = [c for c in ctrls if c.devices]
    kinds = [SAME_KIND.get(c.controller_type, c.bus) for c in ctrls]
    rules = [
        (20, h.graphics_controller == "QemuRamFB" or h.chipset == "ARMv8Virtual"),
        # 7.0: host-only network attachment
        (19, any(a.attachment_type == "HostOnlyNetwork" for a in nics)),
        # 6.1: virtio-scsi, cloud networks
        (18, any(c.controller_type == "VirtioSCSI" for c in ctrls)
         or any(a.attachment_type == "Cloud" for a in enabled)),
        # 6.0: nested hardware virtualisation, UART type
        (17, h.nested_hw_virt or any(p.uart_type != "U16550A" for p in h.uarts)),
        # 5.1: NVMe, CPU profile, APIC settings
        (16, any(c.controller_type == "NVMe" for c in ctrls) or h.cpu_profile != "host"
         or h.bios_apic_mode != "APIC" or not h.apic or h.x2apic),
        # 5.0: paravirt providers, explicit hot-plug flag (AHCI used to be hot-pluggable, nothing
        # else), USB storage, TCP serial ports
        (15, h.paravirt_provider != "Legacy" or any(c.controller_type == "USB" for c in ctrls)
         or any(d.hotpluggable != (c.controller_type == "IntelAhci") for c in ctrls for d in c.devices)
         or any(p.port_mode == "TCP" for p in h.uarts)),
        # 4.3: graphics controller, explicit long mode, NAT networks
        (14, h.graphics_controller != "VBoxVGA" or h.long_mode is not None
         or any(a.attachment_type == "NATNetwork" for a in nics)),
        # 4.1: promiscuous mode policy, generic driver
        (12, any(a.promisc_mode_policy != "Deny" or a.attachment_type == "Generic" or a.generic_driver
                 for a in nics)),
        # 4.0: execution cap, ICH9, several controllers of one kind, bandwidth groups
        (11, h.cpu_execution_cap != 100 or h.chipset == "ICH9" or len(set(kinds)) != len(kinds)
         or any(d.bandwidth_group for c in ctrls for d in c.devices)),
        # 3.2: host I/O cache off, page fusion, UTC clock, CPU hot-plug, HID, HPET, NAT details
        (10, any(not c.use_host_io_cache for c in used) or h.page_fusion or h.rtc_use_utc or h.cpu_hotplug
         or (h.pointing_hid, h.keyboard_hid) != ("PS2Mouse", "PS2Keyboard") or h.hpet
         or any(a.attachment_type == "NAT" and a.nat_rules or a.boot_priority for a in enabled)),
        # 3.1: EFI, hardware UUID, controller instances; DVD and floppy moved into controllers
        (9, h.firmware != "BIOS" or h.hardware_uuid is not None or any(c.instance for c in used)),
    ]
    return max([v for v, needed in rules if needed], default=7)


def required_minor(s: MachineSettings, read_minor: int = 20) -> int:
    """The lowest 1.x that can hold the settings in use. Files read older than 1.9 are written
    as 1.9: their DVD/floppy drives are modelled as controller attachments."""
    need = max(_hardware_minor(h) for h in [s.hardware] + [x.hardware for x in s.snapshots()])
    if s.groups != ["/"] or s.directory_includes_uuid:  # 4.2: groups, UUID in the directory name
        need = max(need, 13)
    if not s.media_registry.is_empty():  # 4.0: per-machine media registries
        need = max(need, 11)
    if read_minor < 9:
        need = max(need, 9)
    return need


def _owners(root: etree._Element) -> list[etree._Element]:
    m = child(root, "Machine")
    if m is None:
        return []
    return [m] + [e for e in m.iter() if isinstance(e.tag, str) and etree.QName(e).localname == "Snapshot"]


def migrate_layout(root: etree._Element, old: int, new: int) -> None:
    """Move existing elements to where version `new` keeps them (content, unknown parts included,
    moves along)."""
    for owner in _owners(root):
        hw = child(owner, "Hardware")
        if hw is None:
            continue
        if old < 8 <= new:  # pre-1.8 short controller names
            for c in children(child(owner, "StorageControllers"), "StorageController"):
                if c.get("name") in storage_xml.SHORT_NAMES:
                    c.set("name", storage_xml.SHORT_NAMES[c.get("name")])
        if old < 9 <= new:  # the drives are written as attachments now
            for tag in ("DVDDrive", "FloppyDrive"):
                remove(child(hw, tag))
        if old < 17 <= new:
            sc = child(owner, "StorageControllers")
            if sc is not None:
                owner.remove(sc)
                anchor = hardware_xml.new_child(hw, "StorageControllers", hardware_xml.HW_CHILDREN)
                anchor.addprevious(sc)
                hw.remove(anchor)
        if old < 20 <= new:
            _to_platform(owner, hw)


def _to_platform(owner: etree._Element, hw: etree._Element) -> None:
    platform = child(owner, "Platform")
    if platform is None:
        platform = new_child(owner, "Platform", OWNER_CHILDREN)
        platform.set("architecture", "x86")
    for tag in ("RTC", "Chipset", "Iommu"):
        el = child(hw, tag)
        if el is not None:
            hw.remove(el)
            platform.append(el)
    x86 = child(platform, "x86")
    if x86 is None:
        x86 = new_child(platform, "x86", PLATFORM_CHILDREN)
    hpet = child(hw, "HPET")
    if hpet is not None:
        hw.remove(hpet)
        x86.insert(0, hpet)
    cpu = child(hw, "CPU")
    if cpu is not None:
        hw.remove(cpu)
        generic = new_child(platform, "CPU", PLATFORM_CHILDREN)
        for k in CPU_ATTRS:
            if k in cpu.attrib:
                generic.set(k, cpu.attrib.pop(k))
        tree = child(cpu, "CpuTree")
        if tree is not None:
            cpu.remove(tree)
            generic.append(tree)
        old = child(x86, "CPU")
        remove(old)
        x86.append(cpu)
    bios = child(hw, "BIOS")
    if bios is not None:
        fw = child(hw, "Firmware")
        if fw is None:
            fw = new_child(hw, "Firmware", hardware_xml.HW_CHILDREN)
        for c in list(bios):
            fw.append(c)
        for k, v in bios.attrib.items():
            fw.set(k, v)
        hw.remove(bios)
    for port in children(child(hw, "UART"), "Port") if child(hw, "UART") is not None else []:
        if "IOBase" in port.attrib and "IOAddress" not in port.attrib:
            items = [("IOAddress" if k == "IOBase" else k, v) for k, v in port.attrib.items()]
            port.attrib.clear()
            for k, v in items:
                port.set(k, v)
