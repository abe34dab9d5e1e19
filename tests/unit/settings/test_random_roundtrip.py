"""Randomised settings survive save/load unchanged, from a new file and from files of every version.

Reader and writer are separate code paths; random values across all modelled fields catch any
asymmetry (a value written one way and read back another, a default that is omitted but read
differently, a layout move that drops something).
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime

import pytest

from settings.machine_file import MachineFile
from settings.models import (
    AttachedDevice,
    Hardware,
    MachineSettings,
    Medium,
    NatRule,
    NetworkAdapter,
    SerialPort,
    Snapshot,
    StorageController,
)

from . import samples

ADAPTER_TYPES = ["Am79C970A", "Am79C973", "I82540EM", "I82543GC", "I82545EM", "Virtio", "NE2000"]
ATTACH = ["Null", "NAT", "Bridged", "Internal", "HostOnly", "Generic", "NATNetwork", "HostOnlyNetwork"]
BUSES = ["IDE", "SATA", "SCSI", "Floppy", "SAS", "PCIe", "VirtioSCSI"]


def _uuid(rng):
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def random_hardware(rng: random.Random, media: list[uuid.UUID]) -> Hardware:
    b = rng.random
    h = Hardware(
        memory_mb=rng.choice([4, 128, 1000, 65536]), page_fusion=b() < .2, cpu_count=rng.randint(1, 64),
        cpu_execution_cap=rng.randint(1, 100), cpu_hotplug=b() < .2,
        cpu_profile=rng.choice(["host", "Intel 80386"]), hw_virt_ex=b() < .8, nested_paging=b() < .5,
        vpid=b() < .5, large_pages=b() < .5, unrestricted_execution=b() < .5, nested_hw_virt=b() < .3,
        pae=b() < .5, long_mode=rng.choice([True, False, None]), triple_fault_reset=b() < .3,
        apic=b() < .7, x2apic=b() < .3, hpet=b() < .5,
        paravirt_provider=rng.choice(["None", "Default", "Legacy", "Minimal", "HyperV", "KVM"]),
        chipset=rng.choice(["PIIX3", "ICH9"]), rtc_use_utc=b() < .5,
        boot_order=rng.sample(["Floppy", "DVD", "HardDisk", "Network", "Null"], 4),
        firmware=rng.choice(["BIOS", "EFI", "EFI64"]), acpi=b() < .8, ioapic=b() < .5,
        bios_apic_mode=rng.choice(["Disabled", "APIC", "X2APIC"]),
        boot_menu_mode=rng.choice(["Disabled", "MenuOnly", "MessageAndMenu"]),
        time_offset_ms=rng.choice([0, -3600000, 42]), pointing_hid=rng.choice(["PS2Mouse", "USBTablet"]),
        keyboard_hid=rng.choice(["PS2Keyboard", "USBKeyboard"]), vram_mb=rng.choice([8, 16, 128]),
        graphics_controller=rng.choice(["VBoxVGA", "VMSVGA", "VBoxSVGA", "QemuRamFB", "Null"]),
        monitor_count=rng.randint(1, 4), accelerate_3d=b() < .3)
    if h.x2apic:
        h.apic = True
    count = 36 if h.chipset == "ICH9" else 8
    adapters = [NetworkAdapter(slot=i) for i in range(count)]
    for i in rng.sample(range(count), rng.randint(0, 3)):
        att = rng.choice(ATTACH)
        a = NetworkAdapter(slot=i, enabled=b() < .8, type=rng.choice(ADAPTER_TYPES),
                           mac=f"080027{rng.getrandbits(24):06X}", cable_connected=b() < .7,
                           line_speed=rng.choice([0, 1000000]), boot_priority=rng.randint(0, 4),
                           promisc_mode_policy=rng.choice(["Deny", "AllowNetwork", "AllowAll"]),
                           attachment_type=att)
        for field in ("bridged_interface", "internal_network", "host_only_interface", "generic_driver",
                      "nat_network", "host_only_network"):
            if b() < .3:
                setattr(a, field, f"{field[:3]}{rng.randint(0, 9)}")
        if att == "NAT" or b() < .2:
            a.nat_rules = [NatRule(name=f"r{j}", proto=rng.choice(["TCP", "UDP"]),
                                   host_ip=rng.choice(["", "127.0.0.1"]), host_port=rng.randint(1, 65535),
                                   guest_ip=rng.choice(["", "10.0.2.15"]), guest_port=rng.randint(1, 65535))
                           for j in range(rng.randint(0, 2))]
        adapters[i] = a
    h.network_adapters = adapters
    uarts = [SerialPort(slot=i) for i in range(4)]
    for i in rng.sample(range(4), rng.randint(0, 2)):
        mode = rng.choice(["Disconnected", "HostPipe", "HostDevice", "RawFile", "TCP"])
        uarts[i] = SerialPort(slot=i, enabled=b() < .8, io_base=rng.choice([0x3F8, 0x2F8, 0x3E8, 0x2E8]),
                              irq=rng.choice([3, 4]), uart_type=rng.choice(["U16450", "U16550A", "U16750"]),
                              port_mode=mode, path="" if mode == "Disconnected" else f"/tmp/p{i}",
                              server=mode in ("TCP", "HostPipe") and b() < .5)
    h.uarts = uarts
    controllers = []
    for n, bus in enumerate(rng.sample(BUSES, rng.randint(0, 3))):
        devs = []
        for port in range(rng.randint(0, 2)):
            dtype = "Floppy" if bus == "Floppy" else rng.choice(["HardDisk", "DVD"])
            devs.append(AttachedDevice(
                type=dtype, port=port, device=0, medium=rng.choice(media + [None]) if media else None,
                nonrotational=dtype == "HardDisk" and b() < .5, discard=dtype == "HardDisk" and b() < .5,
                hotpluggable=b() < .3, passthrough=dtype == "DVD" and b() < .3,
                temp_eject=dtype == "DVD" and b() < .3))
        controllers.append(StorageController(name=f"{bus} {n}", bus=bus, port_count=rng.randint(1, 4),
                                             instance=rng.choice([0, 1]), use_host_io_cache=b() < .5,
                                             bootable=b() < .8, devices=devs))
    h.storage_controllers = controllers
    return h


def random_machine(rng: random.Random, folder) -> MachineSettings:
    disks = []
    for _ in range(rng.randint(0, 2)):
        children = [Medium(uuid=_uuid(rng), location=str(folder / "Snapshots" / f"{rng.randint(0, 99)}.vdi"),
                           auto_reset=rng.random() < .3) for _ in range(rng.randint(0, 2))]
        disks.append(Medium(uuid=_uuid(rng), location=rng.choice([str(folder / "d.vdi"), "/abs/d.vdi"]),
                            format=rng.choice(["VDI", "VMDK"]), type=rng.choice(["Normal", "Immutable"]),
                            description=rng.choice(["", "a disk"]), properties={"k": "v"} if rng.random() < .3
                            else {}, children=children))
    isos = [Medium(uuid=_uuid(rng), location="/isos/x.iso", format="RAW", type="Readonly")
            for _ in range(rng.randint(0, 1))]
    media = [m.uuid for m in disks] + [m.uuid for m in isos]
    snap = None
    current = None
    if rng.random() < .5:
        snap = Snapshot(uuid=_uuid(rng), name="s1", description=rng.choice(["", "desc"]),
                        time_stamp=datetime(2024, 1, 1, tzinfo=UTC), hardware=random_hardware(rng, media),
                        state_file=rng.choice(["", str(folder / "Snapshots" / "a.sav")]))
        if rng.random() < .5:
            snap.children.append(Snapshot(uuid=_uuid(rng), name="s2", hardware=random_hardware(rng, media),
                                          time_stamp=datetime(2024, 1, 2, tzinfo=UTC)))
        current = rng.choice([s.uuid for s in snap.walk()])
    return MachineSettings(
        uuid=_uuid(rng), name=rng.choice(["vm", "a & b <c>", "Zürich"]), name_sync=rng.random() < .8,
        directory_includes_uuid=rng.random() < .2, os_type=rng.choice(["Other", "Ubuntu_64", "Windows10_64"]),
        description=rng.choice(["", "multi\nline \"quoted\""]),
        groups=rng.choice([["/"], ["/a"], ["/a/b", "/c"]]),
        state_file=rng.choice(["", str(folder / "Snapshots" / "now.sav")]), current_snapshot=current,
        snapshot_folder=rng.choice(["Snapshots", "snaps", "/abs/snaps"]),
        current_state_modified=rng.random() < .5, last_state_change=datetime(2024, 5, 5, 5, 5, 5, tzinfo=UTC),
        aborted=rng.random() < .2, extra_data={f"k{i}": f"v{i}" for i in range(rng.randint(0, 3))},
        media_registry={"hard_disks": disks, "dvd_images": isos},
        hardware=random_hardware(rng, media), snapshot=snap)


@pytest.mark.parametrize("seed", range(40))
def test_random_new_machine_round_trips(tmp_path, seed):
    rng = random.Random(seed)
    s = random_machine(rng, tmp_path)
    mf = MachineFile.new(tmp_path / "vm.vbox", s)
    mf.save()
    assert mf.version.minor >= 19
    assert MachineFile.load(tmp_path / "vm.vbox").settings == s


@pytest.mark.parametrize("v", range(12, 21))
def test_random_changes_to_existing_files_round_trip(tmp_path, v):
    rng = random.Random(v)
    p = tmp_path / "web" / "web.vbox"
    p.parent.mkdir()
    p.write_text(samples.machine_xml(v))
    for _ in range(4):
        mf = MachineFile.load(p)
        fresh = random_machine(rng, p.parent)
        s = mf.settings
        s.hardware = fresh.hardware
        if s.snapshot is not None:
            s.snapshot.hardware = random_hardware(rng, [])
        s.media_registry = fresh.media_registry
        s.extra_data = fresh.extra_data
        s.groups = fresh.groups
        mf.save()
        assert mf.version.minor >= v
        again = MachineFile.load(p)
        assert again.settings == s
        # the unmodelled parts are still there
        text = p.read_text()
        assert 'futureAttr="kept"' in text and "<FutureElement" in text and "AudioAdapter" in text
