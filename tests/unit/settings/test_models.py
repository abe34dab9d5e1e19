"""Model defaults (a new machine as VirtualBox makes it) and validation."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from settings.models import (
    Hardware,
    MachineSettings,
    MediaRegistry,
    Medium,
    NetworkAdapter,
    SerialPort,
    Snapshot,
    StorageController,
    generate_mac,
)


def test_new_machine_defaults():
    m = MachineSettings(name="vm")
    h = m.hardware
    assert (h.memory_mb, h.cpu_count, h.cpu_execution_cap, h.cpu_profile) == (128, 1, 100, "host")
    assert h.boot_order == ["Floppy", "DVD", "HardDisk", "Null"]
    assert (h.pointing_hid, h.keyboard_hid, h.paravirt_provider, h.vram_mb) == ("PS2Mouse", "PS2Keyboard",
                                                                               "Default", 8)
    assert (h.apic, h.x2apic, h.pae, h.long_mode) == (True, False, True, True)
    assert (h.hw_virt_ex, h.nested_paging, h.vpid, h.unrestricted_execution) == (True, True, True, True)
    assert (h.large_pages, h.hpet, h.triple_fault_reset) == (False, False, False)
    assert len(h.network_adapters) == 8 and len(h.uarts) == 4
    assert [(u.io_base, u.irq) for u in h.uarts] == [(0x3F8, 4), (0x2F8, 3), (0x3E8, 4), (0x2E8, 3)]
    assert m.snapshot_folder == "Snapshots" and m.groups == ["/"] and m.persisted_state == "PoweredOff"
    assert m.last_state_change.tzinfo is not None


def test_persisted_state():
    m = MachineSettings(name="vm", state_file="/x.sav")
    assert m.persisted_state == "Saved"
    m.aborted = True
    assert m.persisted_state == "AbortedSaved"
    m.state_file = ""
    assert m.persisted_state == "Aborted"


@pytest.mark.parametrize("bus,ctype,ports,cache", [
    ("IDE", "PIIX4", 2, True), ("SATA", "IntelAhci", 30, False), ("SCSI", "LsiLogic", 16, False),
    ("Floppy", "I82078", 1, True), ("SAS", "LsiLogicSas", 8, False), ("USB", "USB", 8, False),
    ("PCIe", "NVMe", 1, False), ("VirtioSCSI", "VirtioSCSI", 1, False)])
def test_storage_controller_defaults(bus, ctype, ports, cache):
    c = StorageController(name="c", bus=bus)
    assert (c.controller_type, c.port_count, c.use_host_io_cache) == (ctype, ports, cache)
    assert StorageController(name="c", controller_type=ctype).bus == bus


def test_storage_controller_mismatch_rejected():
    with pytest.raises(ValidationError):
        StorageController(name="c", bus="SATA", controller_type="PIIX4")


def test_validation():
    with pytest.raises(ValidationError):
        MachineSettings(name="  ")
    with pytest.raises(ValidationError):
        MachineSettings(name="vm", groups=["nope"])
    with pytest.raises(ValidationError):
        Hardware(memory_mb=2)
    with pytest.raises(ValidationError):
        NetworkAdapter(slot=0, mac="xyz")
    assert NetworkAdapter(slot=0, mac="08:00:27:aa:bb:cc").mac == "080027AABBCC"
    h = Hardware()
    with pytest.raises(ValidationError):
        h.cpu_count = 0  # assignments are validated too
    with pytest.raises(ValidationError):
        SerialPort(slot=4)


def test_timestamps_are_utc():
    t = datetime(2024, 1, 1, 12, 0, 5, 999999, tzinfo=timezone(timedelta(hours=2)))
    s = Snapshot(uuid=uuid.uuid4(), name="s", time_stamp=t)
    assert s.time_stamp.utcoffset() == timedelta(0) and s.time_stamp.hour == 10
    assert s.time_stamp.microsecond == 0 and s.time_stamp.second == 5  # the files hold whole seconds


def test_mac_generation():
    macs = {generate_mac() for _ in range(20)}
    assert all(re.fullmatch(r"080027[0-9A-F]{6}", m) for m in macs) and len(macs) > 1


def test_media_lookup_includes_diffs():
    child = Medium(uuid=uuid.uuid4(), location="/d.vdi")
    reg = MediaRegistry(hard_disks=[Medium(uuid=uuid.uuid4(), location="/b.vdi", children=[child])])
    assert reg.find(child.uuid) is child
    assert len(reg.all_media()) == 2


def test_snapshot_tree_lookup():
    leaf = Snapshot(uuid=uuid.uuid4(), name="leaf")
    m = MachineSettings(name="vm", snapshot=Snapshot(uuid=uuid.uuid4(), name="root", children=[leaf]),
                        current_snapshot=leaf.uuid)
    assert [s.name for s in m.snapshots()] == ["root", "leaf"]
    assert m.find_snapshot(leaf.uuid) is leaf
