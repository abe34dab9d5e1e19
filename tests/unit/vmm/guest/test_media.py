"""The bootable guest media: MBR layout and boot menu text, then the cached artifacts themselves
(the disk's partition table, FAT contents and VDI copy; the ISO's El Torito boot catalog).

The artifact tests read what `python -m vmm.guest.builder --media disk,iso` left in the guest
cache and skip when it has not been run.
"""

import struct

import pytest

from vmm.guest import bootmenu
from vmm.guest.builder import cache_dir, guest_files
from vmm.guest.mbr import (
    SECTOR,
    TYPE_FAT16_LBA,
    TYPE_LINUX,
    MbrError,
    Partition,
    build_mbr,
    chs,
    parse_mbr,
)
from vmm.guest.media import PARTITION_START, media_files, read_manifest
from vmm.storage.opener import open_image

ISO_BLOCK = 2048


# --- MBR -------------------------------------------------------------------------------------

def test_mbr_roundtrip():
    code = bytes(range(200))
    parts = [Partition(2048, 10000, TYPE_FAT16_LBA, active=True), Partition(12048, 500, TYPE_LINUX)]
    sector = build_mbr(code, parts, 0xDEADBEEF, 20000)
    assert len(sector) == SECTOR and sector[510:] == b"\x55\xaa" and sector[:200] == code
    sig, back = parse_mbr(sector)
    assert sig == 0xDEADBEEF and back == parts
    assert sector[446] == 0x80 and sector[462] == 0


def test_chs_small_and_beyond_1024_cylinders():
    assert chs(0) == bytes((0, 1, 0))                  # cylinder 0, head 0, sector 1
    assert chs(2048) == bytes((32, 33, 0))             # 2048 = 0*16065 + 32*63 + 32
    assert chs(16065 * 300) == bytes((0, 1 | ((300 >> 2) & 0xC0), 300 & 0xFF))
    assert chs(16065 * 5000) == bytes((254, 0xFF, 0xFF))


@pytest.mark.parametrize("parts, size, code", [
    ([Partition(0, 10, TYPE_LINUX)], 100, b""),                                      # over the MBR
    ([Partition(10, 100, TYPE_LINUX)], 100, b""),                                    # off the disk
    ([Partition(10, 20, TYPE_LINUX), Partition(20, 5, TYPE_LINUX)], 100, b""),       # overlap
    ([Partition(1 + i, 1, TYPE_LINUX) for i in range(5)], 100, b""),                 # five entries
    ([Partition(1, 1, TYPE_LINUX)], 100, b"x" * 441),                                # code too big
    ([Partition(1, 1 << 32, TYPE_LINUX)], 1 << 33, b""),                             # beyond 2 TiB
])
def test_mbr_rejects_bad_layouts(parts, size, code):
    with pytest.raises(MbrError):
        build_mbr(code, parts, 0, size)


def test_parse_rejects_sector_without_signature():
    with pytest.raises(MbrError):
        parse_mbr(bytes(512))


# --- boot menu -------------------------------------------------------------------------------

def test_menu_has_two_entries_serial_and_short_timeout():
    cfg = bootmenu.config()
    lines = cfg.splitlines()
    assert lines[0].startswith("SERIAL 0 ")          # must be the first directive to mirror the menu
    assert lines.count("UI menu.c32") == 1 and f"TIMEOUT {bootmenu.TIMEOUT_TENTHS}" in lines
    labels = [ln.split()[1] for ln in lines if ln.startswith("LABEL ")]
    assert len(labels) >= 2 and len(set(labels)) == len(labels)
    assert f"DEFAULT {labels[0]}" in lines
    appends = [ln.strip() for ln in lines if ln.strip().startswith("APPEND ")]
    assert len(appends) == len(labels) and len(set(appends)) == len(appends)
    for a in appends:                                   # the shell on ttyS0, messages on VGA too
        consoles = [w for w in a.split() if w.startswith("console=")]
        assert consoles[0] == "console=tty0" and consoles[-1].startswith("console=ttyS0")


# --- the cached disk image -------------------------------------------------------------------

def _media():
    d = cache_dir()
    files = media_files(d)
    if not (files.disk_raw.is_file() and files.iso.is_file() and guest_files(d).exist()):
        pytest.skip("bootable media not built (python -m vmm.guest.builder --media disk,iso)")
    return d, files


class Fat16:
    """Just enough FAT16 to list the root directory and read a file by its cluster chain."""

    def __init__(self, image: bytes, offset: int):
        self.img, self.off = image, offset
        bs = image[offset:offset + SECTOR]
        assert bs[510:512] == b"\x55\xaa" and bs[54:62] == b"FAT16   "
        (self.bps, self.spc, reserved, nfats, root_entries, _, _, fat_sectors) = struct.unpack_from(
            "<HBHBHHBH", bs, 11)
        self.fat = offset + reserved * self.bps
        self.root = self.fat + nfats * fat_sectors * self.bps
        self.data = self.root + root_entries * 32
        self.root_entries = root_entries

    @staticmethod
    def _entries(buf: bytes, start: int, count: int):
        for i in range(count):
            e = buf[start + 32 * i:start + 32 * i + 32]
            if len(e) < 32 or e[0] == 0:
                return
            if e[0] == 0xE5 or e[11] == 0x0F:           # deleted, long-name part
                continue
            name = e[:8].decode().rstrip() + ("." + e[8:11].decode().rstrip() if e[8:11].strip() else "")
            yield name, e[11], struct.unpack_from("<H", e, 26)[0], struct.unpack_from("<I", e, 28)[0]

    def root_dir(self) -> dict:
        return {n: (a, c, s) for n, a, c, s in self._entries(self.img, self.root, self.root_entries)}

    def _chain(self, cluster: int):
        seen = set()
        while 2 <= cluster < 0xFFF8:
            assert cluster not in seen
            seen.add(cluster)
            yield cluster
            cluster = struct.unpack_from("<H", self.img, self.fat + 2 * cluster)[0]

    def read(self, cluster: int, size: int | None = None) -> bytes:
        csize = self.spc * self.bps
        out = b"".join(self.img[self.data + (c - 2) * csize:self.data + (c - 1) * csize]
                       for c in self._chain(cluster))
        return out if size is None else out[:size]

    def listdir(self, cluster: int) -> dict:
        raw = self.read(cluster)
        return {n: (a, c, s) for n, a, c, s in self._entries(raw, 0, len(raw) // 32)}


def test_disk_mbr_has_one_active_fat_partition():
    d, files = _media()
    img = files.disk_raw.read_bytes()
    sig, parts = parse_mbr(img[:SECTOR])
    assert len(parts) == 1
    p = parts[0]
    assert p.active and p.type_id == TYPE_FAT16_LBA and p.start_lba == PARTITION_START
    assert p.end_lba == len(img) // SECTOR
    assert any(img[:440])                               # boot code present
    # The partition's boot sector is SYSLINUX's, its hidden sectors = the partition start.
    bs = img[p.start_lba * SECTOR:(p.start_lba + 1) * SECTOR]
    assert bs[3:11] == b"SYSLINUX"
    assert struct.unpack_from("<I", bs, 28)[0] == p.start_lba


def test_disk_fat_holds_kernel_initrd_and_syslinux():
    d, files = _media()
    img = files.disk_raw.read_bytes()
    fat = Fat16(img, PARTITION_START * SECTOR)
    root = fat.root_dir()
    guest = guest_files(d)
    for name, src in (("VMLINUZ", guest.vmlinuz), ("INITRD.IMG", guest.initrd)):
        attr, cluster, size = root[name]
        data = src.read_bytes()
        assert size == len(data) and fat.read(cluster, size) == data
    attr, cluster, _ = root["SYSLINUX"]
    assert attr & 0x10                                   # a directory
    sub = fat.listdir(cluster)
    for name in ("LDLINUX.SYS", "LDLINUX.C32", "SYSLINUX.CFG", "MENU.C32", "LIBUTIL.C32", "LIBCOM32.C32"):
        assert name in sub, name
    attr, c, size = sub["SYSLINUX.CFG"]
    assert fat.read(c, size).decode() == bootmenu.config()


def test_disk_vdi_has_the_raw_contents():
    d, files = _media()
    raw = files.disk_raw.read_bytes()
    with open_image(str(files.disk_vdi), read_only=True) as vdi:
        assert vdi.size == len(raw)
        assert vdi.read_at(0, len(raw)) == raw


def test_manifest_records_the_loader_versions():
    d, files = _media()
    m = read_manifest(d)
    for kind in ("disk", "iso"):
        assert set(m[kind]["key"]["loaders"]) == {"syslinux", "syslinux-common", "isolinux"}


# --- the cached ISO --------------------------------------------------------------------------

def _iso_root(iso: bytes) -> dict:
    pvd = iso[16 * ISO_BLOCK:17 * ISO_BLOCK]
    extent, size = struct.unpack_from("<I", pvd, 156 + 2)[0], struct.unpack_from("<I", pvd, 156 + 10)[0]
    names, pos, data = {}, 0, iso[extent * ISO_BLOCK:extent * ISO_BLOCK + size]
    while pos < len(data):
        n = data[pos]
        if n == 0:                                      # records do not cross blocks
            pos = (pos // ISO_BLOCK + 1) * ISO_BLOCK
            continue
        rec = data[pos:pos + n]
        name = rec[33:33 + rec[32]]
        if name not in (b"\0", b"\1"):
            names[name.decode().split(";")[0].rstrip(".").upper()] = (
                struct.unpack_from("<I", rec, 2)[0], struct.unpack_from("<I", rec, 10)[0])
        pos += n
    return names


def test_iso_has_el_torito_no_emulation_boot_of_isolinux():
    d, files = _media()
    iso = files.iso.read_bytes()
    assert iso[16 * ISO_BLOCK:16 * ISO_BLOCK + 6] == b"\x01CD001"
    brvd = iso[17 * ISO_BLOCK:18 * ISO_BLOCK]
    assert brvd[:7] == b"\x00CD001\x01" and brvd[7:30] == b"EL TORITO SPECIFICATION"
    catalog_lba = struct.unpack_from("<I", brvd, 0x47)[0]
    cat = iso[catalog_lba * ISO_BLOCK:catalog_lba * ISO_BLOCK + 64]
    assert cat[0] == 1 and cat[30:32] == b"\x55\xaa"    # validation entry
    assert sum(struct.unpack_from("<16H", cat, 0)) & 0xFFFF == 0
    boot_indicator, media, _, _, _, count, rba = struct.unpack_from("<BBHBBHI", cat, 32)
    assert boot_indicator == 0x88 and media == 0 and count == 4     # bootable, no emulation, 2 KiB
    loader = iso[rba * ISO_BLOCK:]
    # -boot-info-table: the image carries the PVD's LBA and its own LBA at offset 8.
    assert struct.unpack_from("<II", loader, 8) == (16, rba)


def test_iso_holds_kernel_and_initrd():
    d, files = _media()
    iso = files.iso.read_bytes()
    root = _iso_root(iso)
    guest = guest_files(d)
    for name, src in (("VMLINUZ", guest.vmlinuz), ("INITRD.IMG", guest.initrd)):
        extent, size = root[name]
        assert iso[extent * ISO_BLOCK:extent * ISO_BLOCK + size] == src.read_bytes()
    assert "ISOLINUX" in root


# --- the command line ------------------------------------------------------------------------

def test_media_option_parses_lists_and_rejects_unknown(capsys):
    from vmm.guest.builder import _media_list, main
    assert _media_list("disk, iso") == {"disk", "iso"}
    assert _media_list("all") == {"disk", "iso", "debian"}
    with pytest.raises(SystemExit) as e:
        main(["--media", "disk,floppy"])
    assert e.value.code == 2 and "unknown medium floppy" in capsys.readouterr().err
