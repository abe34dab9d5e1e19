"""Plain-data machines and media shaped like vminfo.collect / cmd_list.medium_dict output."""

UUID = "c0ffee00-0000-4000-8000-000000000001"
DISK = "d15c0000-0000-4000-8000-000000000002"


def nic(slot, enabled=False, **kw):
    data = {"slot": slot, "enabled": enabled, "mac": "080027AABBCC", "attachment": 1,
            "cable": True, "type": 3,
            "speed": 0, "network": ""}
    data.update(kw)
    return data


def uart(slot, enabled=False, **kw):
    data = {"slot": slot, "enabled": enabled, "io": 0x3F8, "irq": 4, "mode": 0, "server": False, "path": "",
            "type": 1}
    data.update(kw)
    return data


def vm_info(**overrides):
    info = {
        "accessible": True, "name": "vm1", "groups": ["/"], "platform_arch": "x86", "os_type_id": "Ubuntu_64",
        "os_type": "Ubuntu (64-bit)", "uuid": UUID, "cfg_file": "/h/VirtualBox VMs/vm1/vm1.vbox",
        "snapshot_folder": "/h/VirtualBox VMs/vm1/Snapshots", "log_folder": "/h/VirtualBox VMs/vm1/Logs",
        "hardware_uuid": UUID, "memory": 1024, "page_fusion": False, "vram": 16, "cpu_exec_cap": 100,
        "cpu_profile": "host", "chipset": 1, "firmware": 1, "cpus": 2, "hpet": False, "pae": True,
        "longmode": True, "triplefaultreset": False, "apic": True, "x2apic": False, "nested_hw_virt": False,
        "hwvirtex": True, "nestedpaging": True, "largepages": False, "vtxvpid": True, "vtxux": True,
        "virtvmsavevmload": True, "cpuid_portability_level": 0, "bootmenu": "messageandmenu",
        "boot": [1, 2, 3, 0], "acpi": True, "ioapic": True, "biosapic": "apic", "time_offset": 0,
        "nvram_file": "", "rtc_utc": False, "iommu": "none", "paravirt": 1, "eff_paravirt": 5, "state": 1,
        "state_change_ms": 1714566896789, "state_file": "", "graphics": 2, "monitor_count": 1,
        "accelerate3d": False, "autostart_enabled": False, "autostart_delay": 0, "default_frontend": "",
        "vm_process_priority": "default",
        "controllers": [{
            "name": "SATA", "type": 3, "bus": 2, "instance": 0, "max_ports": 30, "ports": 2,
            "devices_per_port": 1, "bootable": True, "host_io_cache": False,
            "attachments": [{"port": 0, "device": 0, "type": 3,
                             "medium": {"uuid": DISK, "location": "/h/VirtualBox VMs/vm1/vm1.vdi"},
                             "hotpluggable": False, "nonrotational": True, "discard": False,
                             "passthrough": False, "temp_eject": False, "is_ejected": False}]}],
        "nics": [nic(0, True)] + [nic(i) for i in range(1, 8)],
        "hid_pointing": "ps2mouse", "hid_keyboard": "ps2kbd",
        "uarts": [uart(0, True, mode=3, path="/tmp/ser.log")] + [uart(i) for i in range(1, 4)],
        "description": "", "snapshots": None, "current_snapshot": "",
        "boot_kernel": "", "boot_initrd": "", "boot_cmdline": "",
    }
    info.update(overrides)
    return info


def medium(**overrides):
    data = {"uuid": DISK, "parent": "", "state": 1, "type": 0, "location": "/h/disk.vdi", "format": "VDI",
            "logical_size": 10 << 30, "size": 2 << 20, "variant": 0, "description": "", "auto_reset": False,
            "children": []}
    data.update(overrides)
    return data
