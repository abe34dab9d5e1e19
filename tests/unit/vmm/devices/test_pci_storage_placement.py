"""Storage controllers placed on the PCI host bridge from controller specs, over real VDI files."""

import shutil
import struct
import subprocess

import pytest

from vmm.bus import Bus
from vmm.devices.ahci import Ahci
from vmm.devices.base import IrqLine
from vmm.devices.pci import PciHostBridge
from vmm.devices.storage_placement import (
    DiskAttachmentSpec,
    StorageControllerSpec,
    place_storage_controllers,
)
from vmm.devices.virtio.pci import VirtioPciTransport
from vmm.memory import GuestMemory
from vmm.storage.create import create_vdi


@pytest.fixture
def machine(tmp_path):
    io, mmio = Bus("io"), Bus("mmio")
    bridge = PciHostBridge(io, mmio)
    io.register(0xCF8, 8, bridge)
    mem = GuestMemory(8 << 20)
    lines = {}
    paths = []
    for name in ("sata.vdi", "virtio.vdi"):
        p = tmp_path / name
        create_vdi(str(p), 32 << 20).close()
        paths.append(str(p))
    yield io, mmio, bridge, mem, lines, paths
    mem.close()


def test_places_both_controllers_and_they_do_io(machine):
    io, mmio, bridge, mem, lines, (sata, virtio) = machine
    specs = [
        StorageControllerSpec("SATA", "IntelAhci", port_count=2,
                              attachments=[DiskAttachmentSpec(1, sata, nonrotational=True)]),
        StorageControllerSpec("VirtIO", "VirtioSCSI", port_count=1, use_host_io_cache=True,
                              attachments=[DiskAttachmentSpec(0, virtio, discard=True)]),
    ]
    placed = place_storage_controllers(specs, mem, bridge, lambda n: lines.setdefault(n, IrqLine()))
    ahci, vio = placed[0].device, placed[1].device
    assert isinstance(ahci, Ahci) and isinstance(vio, VirtioPciTransport)
    assert placed[0].slot == 13 and placed[1].slot == 15
    assert ahci.interrupt_line == 11 and vio.interrupt_line == 10 and ahci.irq is lines[11]
    assert ahci.ports[1].disk.options.non_rotational and ahci.ports[1].disk.options.write_through
    assert not vio.device.disks[0].options.write_through and vio.device.disks[0].options.discard
    bridge.assign_resources()
    abar = ahci.bar_address(5)
    assert mmio.read(abar + 0x0C, 4) == 0b11                      # PI: two ports
    assert mmio.read(abar + 0x100 + 0x80 + 0x28, 4) == 0x123        # port 1 has the disk
    common = vio.bar_address(4)
    assert mmio.read(common + 0x12, 2) == 3                          # virtio-scsi: 3 queues
    # A write through the AHCI port lands in the VDI.
    clb, fb, ctba, data = 0x10000, 0x11000, 0x12000, 0x20000
    port = abar + 0x180
    mmio.write(port + 0x00, 4, clb)
    mmio.write(port + 0x08, 4, fb)
    mmio.write(port + 0x18, 4, 0x11)
    mem.write(data, b"VBOXPY!!" * 64)
    mem.write(clb, struct.pack("<IIQ", 5 | 1 << 6 | 1 << 16, 0, ctba))
    fis = bytes([0x27, 0x80, 0x35, 0, 9, 0, 0, 0x40, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    mem.write(ctba, fis)
    mem.write(ctba + 0x80, struct.pack("<QII", data, 0, 511))
    mmio.write(port + 0x38, 4, 1)
    assert mmio.read(port + 0x38, 4) == 0 and not mmio.read(port + 0x20, 4) & 1
    for pc in placed:
        pc.close()
    if shutil.which("qemu-img"):
        subprocess.run(["qemu-img", "check", sata], check=True, capture_output=True)
        out = sata + ".raw"
        subprocess.run(["qemu-img", "convert", "-O", "raw", sata, out], check=True, capture_output=True)
        with open(out, "rb") as f:
            f.seek(9 * 512)
            assert f.read(512) == b"VBOXPY!!" * 64


def test_unsupported_controller_and_bad_port_close_images(machine):
    io, mmio, bridge, mem, lines, (sata, virtio) = machine
    closed = []

    class Img:
        size, read_only, path = 1 << 20, False, "x"

        def flush(self):
            pass

        def close(self):
            closed.append(1)

    with pytest.raises(ValueError, match="LsiLogic"):
        place_storage_controllers([StorageControllerSpec("SCSI", "LsiLogic")], mem, bridge,
                                  lambda n: IrqLine(), opener=lambda p, ro, parents: Img())
    with pytest.raises(ValueError, match="beyond"):
        place_storage_controllers(
            [StorageControllerSpec("V", "VirtioSCSI", attachments=[DiskAttachmentSpec(0, "a")]),
             StorageControllerSpec("S", "IntelAhci", attachments=[DiskAttachmentSpec(31, "b")])],
            mem, bridge, lambda n: IrqLine(), opener=lambda p, ro, parents: Img())
    assert len(closed) == 2


def test_unopenable_medium_is_a_value_error(machine, tmp_path):
    io, mmio, bridge, mem, lines, (sata, virtio) = machine
    spec = StorageControllerSpec("SATA", "IntelAhci",
                                 attachments=[DiskAttachmentSpec(0, str(tmp_path / "missing.vdi"))])
    with pytest.raises(ValueError, match="'SATA' port 0"):
        place_storage_controllers([spec], mem, bridge, lambda n: IrqLine())


def test_diff_chain_parents_from_the_registry(tmp_path):
    """A linked clone's diff whose parent lives in another machine's folder opens through the
    chain the VM process got from the media registry, and not without it."""
    from vmm.devices.storage_placement import _open
    from vmm.storage import create_diff_vdi, create_vdi
    from vmm.storage.image import DiskImageError as ImgError

    (tmp_path / "src").mkdir()
    (tmp_path / "clone" / "Snapshots").mkdir(parents=True)
    base = create_vdi(str(tmp_path / "src" / "base.vdi"), 4 << 20)
    base.write_at(0, b"base data")
    base.close()
    diff = create_diff_vdi(str(tmp_path / "clone" / "Snapshots" / "d.vdi"),
                           str(tmp_path / "src" / "base.vdi"))
    parent_uuid = str(diff.parent_uuid)
    diff.close()
    with pytest.raises(ImgError):
        _open(str(tmp_path / "clone" / "Snapshots" / "d.vdi"), False, {})
    img = _open(str(tmp_path / "clone" / "Snapshots" / "d.vdi"), False,
                {parent_uuid: str(tmp_path / "src" / "base.vdi")})
    assert img.read_at(0, 9) == b"base data"
    img.close()


def test_ide_controller_with_disk_and_dvd_drives(machine, tmp_path):
    from vmm.devices.atapi import AtapiDrive
    from vmm.devices.piix_ide import PiixIde
    io, mmio, bridge, mem, lines, (disk, _) = machine
    iso = tmp_path / "x.iso"
    iso.write_bytes(b"CD001" * 2048)
    specs = [StorageControllerSpec("IDE", "PIIX4", port_count=2, attachments=[
        DiskAttachmentSpec(0, disk, device=0),
        DiskAttachmentSpec(1, str(iso), device=0, kind="DVD"),
        DiskAttachmentSpec(1, "", device=1, kind="DVD")])]
    placed = place_storage_controllers(specs, mem, bridge, lambda n: lines.setdefault(n, IrqLine()))
    ide = placed[0].device
    assert isinstance(ide, PiixIde) and placed[0].address == "00:01.1"
    assert bridge.function_at(1, 1) is ide and ide.config_read(0, 4) == 0x7111_8086
    assert isinstance(ide.device_at(1, 0), AtapiDrive) and ide.device_at(1, 0).image.read_only
    assert ide.device_at(1, 1).image is None and ide.device_at(0, 1) is None
    assert ide.channels[0].irq is lines[14] and ide.channels[1].irq is lines[15]
    assert {(n, p, s) for n, p, s, _d, _i in placed[0].legacy} == {
        ("ide.primary", 0x1F0, 8), ("ide.primary.ctl", 0x3F6, 1),
        ("ide.secondary", 0x170, 8), ("ide.secondary.ctl", 0x376, 1)}
    for pc in placed:
        pc.close()


@pytest.mark.parametrize("attachments,error", [
    ([DiskAttachmentSpec(2, "", kind="DVD")], "ports 0-1 with devices 0-1"),
    ([DiskAttachmentSpec(0, "", kind="DVD"), DiskAttachmentSpec(0, "", kind="DVD")], "two devices"),
    ([DiskAttachmentSpec(0, "/nonexistent.iso", kind="DVD")], "port 0 device 0"),
])
def test_bad_ide_attachments_are_refused(machine, attachments, error):
    _io, _mmio, bridge, mem, lines, _ = machine
    with pytest.raises(ValueError, match=error):
        place_storage_controllers([StorageControllerSpec("IDE", "PIIX3", attachments=attachments)],
                                  mem, bridge,
                                  lambda n: lines.setdefault(n, IrqLine()))
    assert bridge.function_at(1, 1) is None


def test_dvd_drives_on_ahci_and_refused_on_virtio(machine, tmp_path):
    from vmm.devices.atapi import AtapiDrive
    _io, _mmio, bridge, mem, lines, (disk, _) = machine
    iso = tmp_path / "x.iso"
    iso.write_bytes(bytes(4096))
    placed = place_storage_controllers([StorageControllerSpec("SATA", "IntelAhci", port_count=3, attachments=[
        DiskAttachmentSpec(0, disk), DiskAttachmentSpec(1, str(iso), kind="DVD"),
        DiskAttachmentSpec(2, "", kind="DVD")])],
        mem, bridge, lambda n: lines.setdefault(n, IrqLine()))
    ahci = placed[0].device
    assert isinstance(ahci.ports[1].disk, AtapiDrive) and ahci.ports[1].disk.blocks == 2
    assert ahci.ports[2].disk.image is None and ahci.ports[1].s.sig == 0xEB14_0101
    placed[0].close()
    with pytest.raises(ValueError, match="IDE and SATA"):
        place_storage_controllers([StorageControllerSpec("VirtIO", "VirtioSCSI", attachments=[
            DiskAttachmentSpec(0, "", kind="DVD")])], mem, bridge, lambda n: lines.setdefault(n, IrqLine()))


def test_device_at_finds_drives_and_nothing_else(machine, tmp_path):
    from vmm.devices.atapi import AtapiDrive
    _io, _mmio, bridge, mem, lines, _ = machine
    placed = place_storage_controllers([
        StorageControllerSpec("IDE", "ICH6", attachments=[DiskAttachmentSpec(1, "", device=1, kind="DVD")]),
        StorageControllerSpec("SATA", "IntelAhci", port_count=2,
                              attachments=[DiskAttachmentSpec(1, "", kind="DVD")])],
        mem, bridge, lambda n: lines.setdefault(n, IrqLine()))
    ide, ahci = placed[0].device, placed[1].device
    assert (isinstance(ide.device_at(1, 1), AtapiDrive) and ide.device_at(2, 0) is None
            and ide.device_at(0, 0) is None)
    assert (isinstance(ahci.device_at(1), AtapiDrive) and ahci.device_at(5) is None
            and ahci.device_at(1, 1) is None)
    for pc in placed:
        pc.close()
