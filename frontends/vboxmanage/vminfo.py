"""Reads one machine through the Main API into the plain dict the showvminfo renderers take.

Keeping API access here and formatting in render_vminfo means the layouts are tested on
plain data and `--json` prints the very same facts.  Values are the API's (IMachine,
IPlatform/IPlatformX86, IFirmwareSettings, IGraphicsAdapter, controllers, adapters, ports);
enum values are kept as ints and named by the renderers.
"""

from .names import enum_int
from .output import current_identity

HID_POINTING = {1: "none", 2: "ps2mouse", 3: "usbmouse", 4: "usbtablet", 5: "combomouse", 6: "usbmultitouch",
                7: "usbmtscreenpluspad"}
HID_KEYBOARD = {1: "none", 2: "ps2kbd", 3: "usbkbd", 4: "combokbd"}
BOOT_MENU = {0: "disabled", 1: "menuonly", 2: "messageandmenu"}
APIC_MODE = {0: "disabled", 1: "apic", 2: "x2apic"}
IOMMU = {0: "none", 1: "automatic", 2: "amd", 3: "intel"}
PROC_PRIORITY = {0: "invalid", 1: "default", 2: "flat", 3: "low", 5: "normal", 6: "high"}
ARCH = {0: "none", 1: "x86", 2: "ARM"}
NIC_SLOTS = {1: 8, 2: 36}  # PIIX3 / ICH9
UART_SLOTS = 4
EXTRA_BOOT = (("boot_kernel", "vboxpy/BootKernel"), ("boot_initrd", "vboxpy/BootInitrd"),
              ("boot_cmdline", "vboxpy/BootCmdline"))


def os_description(vbox, os_type_id: str) -> str:
    """showvminfo prints the OS type's description, falling back to the id."""
    try:
        return vbox.get_guest_os_type(os_type_id).description
    except Exception:
        return os_type_id


class Cpu:
    """CPUPropertyTypeX86 values showvminfo asks for (VirtualBox.xidl; plain ints: showvminfo does
    not build the enumeration classes, tests/unit/frontends/vboxmanage checks the values)."""

    PAE, LongMode, TripleFaultReset, APIC, X2APIC, HWVirt = 1, 2, 3, 4, 5, 8


class Hw:
    """HWVirtExPropertyType values showvminfo asks for (VirtualBox.xidl)."""

    Enabled, VPID, NestedPaging, UnrestrictedExecution, LargePages, VirtVmsaveVmload = 1, 2, 3, 4, 5, 8


def plans(vbox=None, console: bool = False) -> dict:
    """What collect() reads of each interface, so that prefetch() reads it in a few batches; with
    `vbox`, the description of the machine's OS type too (os_description), and with `console`, what
    showvminfo reads of a running VM's console (through the session)."""
    from .fetch import Plan

    cpu = [("get_cpu_property", (p,)) for p in (Cpu.PAE, Cpu.LongMode, Cpu.TripleFaultReset, Cpu.APIC,
                                                 Cpu.X2APIC, Cpu.HWVirt)]
    hw = [("get_hw_virt_ex_property", (p,)) for p in (Hw.Enabled, Hw.NestedPaging, Hw.LargePages, Hw.VPID,
                                                       Hw.UnrestrictedExecution, Hw.VirtVmsaveVmload)]
    machine_calls = ([("get_boot_order", (i,)) for i in range(1, 5)]
                     + [("get_effective_paravirt_provider", ())]
                     + [("get_network_adapter", (slot,)) for slot in range(NIC_SLOTS[1])]
                     + [("get_serial_port", (slot,)) for slot in range(UART_SLOTS)]
                     + [("get_extra_data", (key,)) for _, key in EXTRA_BOOT])
    return {
        "IMachine": Plan(("accessible", "id", "name", "groups", "os_type_id", "settings_file_path",
                          "snapshot_folder", "log_folder", "hardware_uuid", "memory_size",
                          "page_fusion_enabled", "cpu_execution_cap", "cpu_profile", "cpu_count",
                          "cpuid_portability_level", "paravirt_provider", "state", "last_state_change",
                          "state_file_path", "autostart_enabled", "autostart_delay", "default_frontend",
                          "vm_process_priority", "pointing_hid_type", "keyboard_hid_type", "description",
                          "memory_balloon_size", "paravirt_debug", "shared_folders", "session_name",
                          "platform", "firmware_settings", "graphics_adapter", "medium_attachments",
                          "storage_controllers", "audio_settings", "vrde_server", "usb_controllers",
                          "clipboard_mode", "clipboard_file_transfers_enabled", "dn_d_mode",
                          "snapshot_count"), machine_calls,
                         later=None if vbox is None else
                         lambda m: [(vbox, "get_guest_os_type", (m.os_type_id,))]),
        "IGuestOSType": Plan(("description",)),
        "IPlatform": Plan(("architecture", "chipset_type", "rtc_use_utc", "iommu_type", "x86")),
        "IPlatformX86": Plan(("hpet_enabled",), cpu + hw),
        "IFirmwareSettings": Plan(("firmware_type", "boot_menu_mode", "acpi_enabled", "ioapic_enabled",
                                   "apic_mode", "time_offset")),
        "IGraphicsAdapter": Plan(("vram_size", "graphics_controller_type", "monitor_count",
                                  "accelerate3d_enabled")),
        "IAudioSettings": Plan(("adapter",)),
        "IAudioAdapter": Plan(("enabled", "audio_driver", "audio_controller", "audio_codec", "enabled_in",
                               "enabled_out")),
        "IVRDEServer": Plan(("enabled", "auth_type", "allow_multi_connection", "reuse_single_connection",
                             "vrde_properties"),
                            later=lambda v: [("get_vrde_property", (k,)) for k in v.vrde_properties]),
        "IUSBController": Plan(("type",)),
        "INetworkAdapter": Plan(("slot", "enabled", "mac_address", "attachment_type", "cable_connected",
                                 "adapter_type", "line_speed", "trace_enabled", "trace_file",
                                 *_NIC_NETWORK_ATTR.values(), "nat_engine")),
        "INATEngine": Plan(("network", "redirects"), (("get_network_settings", ()),)),
        "ISerialPort": Plan(("slot", "enabled", "io_address", "irq", "host_mode", "server", "path",
                             "uart_type")),
        "IStorageController": Plan(("name", "controller_type", "bus", "instance", "max_port_count",
                                    "port_count", "max_devices_per_port_count", "bootable",
                                    "use_host_io_cache")),
        "IMediumAttachment": Plan(("controller", "medium", "port", "device", "type", "hot_pluggable",
                                   "non_rotational", "discard", "passthrough", "temporary_eject",
                                   "is_ejected")),
        "IMedium": Plan(("id", "location")),
        "ISharedFolder": Plan(("name", "host_path", "writable", "auto_mount", "auto_mount_point")),
        **({"ISession": Plan(("console",)),
            "IConsole": Plan(("shared_folders", "vrde_server_info")),
            "IVRDEServerInfo": Plan(("active", "port", "number_of_clients"))} if console else {}),
    }


def collect(vbox, machine, batched: bool = True) -> dict:
    """The facts showvminfo prints; `batched` reads them in a few round trips (the same reads)."""
    if batched:
        from .fetch import prefetch

        machine = prefetch(machine, plans())
    if not machine.accessible:
        return {"accessible": False, "uuid": machine.id, "cfg_file": machine.settings_file_path,
                "access_error": _access_error(machine)}
    platform = machine.platform
    x86 = platform.x86
    fw = machine.firmware_settings
    gfx = machine.graphics_adapter
    chipset = enum_int(platform.chipset_type)
    os_id = machine.os_type_id
    v71 = current_identity().is_7_1
    info = {
        "accessible": True, "name": machine.name, "groups": list(machine.groups),
        "platform_arch": ARCH.get(enum_int(platform.architecture), "x86") if v71 else "",
        "os_type_id": os_id, "os_type": os_description(vbox, os_id), "uuid": machine.id,
        "cfg_file": machine.settings_file_path, "snapshot_folder": machine.snapshot_folder,
        "log_folder": machine.log_folder, "hardware_uuid": machine.hardware_uuid or machine.id,
        "memory": machine.memory_size, "page_fusion": bool(machine.page_fusion_enabled),
        "vram": gfx.vram_size, "cpu_exec_cap": machine.cpu_execution_cap, "cpu_profile": machine.cpu_profile,
        "chipset": chipset, "firmware": enum_int(fw.firmware_type), "cpus": machine.cpu_count,
        "hpet": bool(x86.hpet_enabled),
        "pae": bool(x86.get_cpu_property(Cpu.PAE)), "longmode": bool(x86.get_cpu_property(Cpu.LongMode)),
        "triplefaultreset": bool(x86.get_cpu_property(Cpu.TripleFaultReset)),
        "apic": bool(x86.get_cpu_property(Cpu.APIC)), "x2apic": bool(x86.get_cpu_property(Cpu.X2APIC)),
        "nested_hw_virt": bool(x86.get_cpu_property(Cpu.HWVirt)),
        "hwvirtex": bool(x86.get_hw_virt_ex_property(Hw.Enabled)),
        "nestedpaging": bool(x86.get_hw_virt_ex_property(Hw.NestedPaging)),
        "largepages": bool(x86.get_hw_virt_ex_property(Hw.LargePages)),
        "vtxvpid": bool(x86.get_hw_virt_ex_property(Hw.VPID)),
        "vtxux": bool(x86.get_hw_virt_ex_property(Hw.UnrestrictedExecution)),
        "virtvmsavevmload": bool(x86.get_hw_virt_ex_property(Hw.VirtVmsaveVmload)),
        "cpuid_portability_level": machine.cpuid_portability_level,
        "bootmenu": BOOT_MENU.get(enum_int(fw.boot_menu_mode), "messageandmenu"),
        "boot": [enum_int(machine.get_boot_order(i)) for i in range(1, 5)],
        "acpi": bool(fw.acpi_enabled), "ioapic": bool(fw.ioapic_enabled),
        "biosapic": APIC_MODE.get(enum_int(fw.apic_mode), "apic"), "time_offset": int(fw.time_offset),
        "nvram_file": "", "rtc_utc": bool(platform.rtc_use_utc),
        "iommu": IOMMU.get(enum_int(platform.iommu_type), "none"),
        "paravirt": enum_int(machine.paravirt_provider),
        "eff_paravirt": enum_int(machine.get_effective_paravirt_provider()),
        "state": enum_int(machine.state), "state_change_ms": int(machine.last_state_change),
        "state_file": machine.state_file_path or "",
        "graphics": enum_int(gfx.graphics_controller_type), "monitor_count": gfx.monitor_count,
        "accelerate3d": bool(gfx.accelerate3d_enabled),
        "autostart_enabled": bool(machine.autostart_enabled), "autostart_delay": machine.autostart_delay,
        "default_frontend": machine.default_frontend or "",
        "vm_process_priority": PROC_PRIORITY.get(enum_int(machine.vm_process_priority), "default"),
        "controllers": controllers(machine),
        "nics": [nic(machine.get_network_adapter(slot)) for slot in range(NIC_SLOTS.get(chipset, 8))],
        "hid_pointing": HID_POINTING.get(enum_int(machine.pointing_hid_type), "ps2mouse"),
        "hid_keyboard": HID_KEYBOARD.get(enum_int(machine.keyboard_hid_type), "ps2kbd"),
        "uarts": [uart(machine.get_serial_port(slot)) for slot in range(UART_SLOTS)],
        "description": machine.description or "",
        "memory_balloon": int(machine.memory_balloon_size), "paravirt_debug": machine.paravirt_debug or "",
        "running": False, "session_name": "",
        "snapshots": None, "current_snapshot": "",
        "shared_folders": [_folder(f) for f in machine.shared_folders], "transient_folders": [],
    }
    info.update(devices(machine))
    if 6 <= info["state"] <= 19:  # online: a VM process holds the session
        info["session_name"] = machine.session_name or ""
    for key, extra in EXTRA_BOOT:
        info[key] = machine.get_extra_data(extra)
    return info


def devices(machine) -> dict:
    """USB controllers, audio, clipboard, drag and drop and the VRDE server, as plain data."""
    audio = machine.audio_settings.adapter
    vrde = machine.vrde_server
    usb = {enum_int(c.type) for c in machine.usb_controllers}
    return {
        "usb_ohci": 1 in usb, "usb_ehci": 2 in usb, "usb_xhci": 3 in usb,
        "audio_enabled": bool(audio.enabled), "audio_driver": enum_int(audio.audio_driver),
        "audio_controller": enum_int(audio.audio_controller), "audio_codec": enum_int(audio.audio_codec),
        "audio_in": bool(audio.enabled_in), "audio_out": bool(audio.enabled_out),
        "clipboard": enum_int(machine.clipboard_mode), "clipboard_file_transfers": bool(
            machine.clipboard_file_transfers_enabled),
        "dnd": enum_int(machine.dn_d_mode),
        "vrde": {"enabled": bool(vrde.enabled), "auth_type": enum_int(vrde.auth_type),
                 "multi_con": bool(vrde.allow_multi_connection),
                 "reuse_con": bool(vrde.reuse_single_connection),
                 "properties": {k: vrde.get_vrde_property(k) for k in vrde.vrde_properties}},
    }


def _folder(f) -> dict:
    return {"name": f.name, "host_path": f.host_path, "writable": bool(f.writable),
            "auto_mount": bool(f.auto_mount), "auto_mount_point": f.auto_mount_point or ""}


def transient_folders(console) -> list[dict]:
    return [_folder(f) for f in console.shared_folders]


def _access_error(machine) -> str:
    try:
        err = machine.access_error
        return err.text if err is not None else ""
    except Exception:
        return ""


def controllers(machine) -> list[dict]:
    out = []
    attachments = list(machine.medium_attachments)
    for ctl in machine.storage_controllers:
        name = ctl.name
        atts = []
        for att in attachments:
            if att.controller != name:
                continue
            medium = att.medium
            atts.append({
                "port": att.port, "device": att.device, "type": enum_int(att.type),
                "medium": None if medium is None else {"uuid": medium.id, "location": medium.location},
                "hotpluggable": bool(att.hot_pluggable), "nonrotational": bool(att.non_rotational),
                "discard": bool(att.discard), "passthrough": bool(att.passthrough),
                "temp_eject": bool(att.temporary_eject), "is_ejected": bool(att.is_ejected),
            })
        out.append({"name": name, "type": enum_int(ctl.controller_type), "bus": enum_int(ctl.bus),
                    "instance": ctl.instance, "max_ports": ctl.max_port_count, "ports": ctl.port_count,
                    "devices_per_port": ctl.max_devices_per_port_count, "bootable": bool(ctl.bootable),
                    "host_io_cache": bool(ctl.use_host_io_cache), "attachments": atts})
    return out


_NIC_NETWORK_ATTR = {2: "bridged_interface", 3: "internal_network", 4: "host_only_interface",
                     5: "generic_driver", 6: "nat_network"}


def nic(adapter) -> dict:
    kind = enum_int(adapter.attachment_type)
    attr = _NIC_NETWORK_ATTR.get(kind)
    out = {"slot": adapter.slot, "enabled": bool(adapter.enabled), "mac": adapter.mac_address,
           "attachment": kind, "cable": bool(adapter.cable_connected), "type": enum_int(adapter.adapter_type),
           "speed": int(adapter.line_speed), "network": getattr(adapter, attr) if attr else "",
           "trace": bool(adapter.trace_enabled), "trace_file": adapter.trace_file or ""}
    if kind == 1 and out["enabled"]:
        engine = adapter.nat_engine
        out["network"] = engine.network or ""
        out["nat_settings"] = [int(v) for v in engine.get_network_settings()]
        out["redirects"] = list(engine.redirects)
    return out


def uart(port) -> dict:
    return {"slot": port.slot, "enabled": bool(port.enabled), "io": int(port.io_address),
            "irq": int(port.irq), "mode": enum_int(port.host_mode), "server": bool(port.server),
            "path": port.path or "", "type": enum_int(port.uart_type)}


def snapshot_tree(machine) -> tuple[dict | None, str]:
    """(root snapshot as nested dicts, current snapshot uuid) via IMachine.findSnapshot("")."""
    root = machine.find_snapshot("")
    current = machine.current_snapshot

    def walk(snap) -> dict:
        return {"name": snap.name, "uuid": snap.id, "description": snap.description or "",
                "children": [walk(c) for c in snap.children]}

    return walk(root), (current.id if current is not None else "")
