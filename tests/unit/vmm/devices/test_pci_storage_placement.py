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
    diff = create_diff_vdi(str(tmp_path / "clone" / "Snapshots" / "d.vdi"), str(tmp_path / "src" / "base.vdi"))
    parent_uuid = str(diff.parent_uuid)
    diff.close()
    with pytest.raises(ImgError):
        _open(str(tmp_path / "clone" / "Snapshots" / "d.vdi"), False, {})
    img = _open(str(tmp_path / "clone" / "Snapshots" / "d.vdi"), False,
                {parent_uuid: str(tmp_path / "src" / "base.vdi")})
    assert img.read_at(0, 9) == b"base data"
    img.close()
