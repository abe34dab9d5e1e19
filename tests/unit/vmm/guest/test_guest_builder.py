"""The guest builder's pieces: cpio layout, module dependency order, vmlinux extraction."""

import lzma
import struct

import pytest

from vmm.guest.builder import build_initramfs
from vmm.guest.cpio import CpioWriter
from vmm.guest.kmod import ModuleError, depends, load_order
from vmm.guest.vmlinux import VmlinuxError, extract_vmlinux


def parse_newc(data: bytes) -> list[tuple[str, int, bytes, int, int]]:
    """(name, mode, data, rdevmajor, rdevminor) for every entry up to the trailer."""
    entries, pos = [], 0
    while True:
        assert data[pos:pos + 6] == b"070701"
        f = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = f[11], f[6]
        name = data[pos + 110: pos + 110 + namesize - 1].decode()
        pos = (pos + 110 + namesize + 3) & ~3
        body = data[pos:pos + filesize]
        pos = (pos + filesize + 3) & ~3
        if name == "TRAILER!!!":
            return entries
        entries.append((name, f[1], body, f[9], f[10]))


def test_cpio_roundtrip_and_reproducible():
    def make():
        w = CpioWriter()
        w.directory("bin")
        w.file("bin/x", b"hello", 0o755)
        w.symlink("sbin", "bin")
        w.char_device("dev/console", 5, 1)
        return w.finish()
    a = make()
    assert a == make() and len(a) % 512 == 0
    ents = parse_newc(a)
    assert [e[0] for e in ents] == ["bin", "bin/x", "sbin", "dev/console"]
    assert ents[1][2] == b"hello" and ents[1][1] == 0o100755
    assert ents[2][2] == b"bin" and ents[3][3:] == (5, 1)


def test_cpio_rejects_duplicates():
    w = CpioWriter()
    w.file("a", b"")
    with pytest.raises(ValueError):
        w.file("/a/", b"")


def fake_ko(deps: str) -> bytes:
    """A minimal ELF64 with a .shstrtab and a .modinfo section."""
    shstr = b"\0.shstrtab\0.modinfo\0"
    info = f"license=GPL\0depends={deps}\0name=x\0".encode()
    shoff = 64 + len(shstr) + len(info)
    hdr = bytearray(64)
    hdr[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", hdr, 0x28, shoff)
    struct.pack_into("<HHH", hdr, 0x3A, 64, 3, 1)
    sh = bytes(64)
    sh += struct.pack("<IIQQQQ", 1, 3, 0, 0, 64, len(shstr)).ljust(64, b"\0")
    sh += struct.pack("<IIQQQQ", 11, 1, 0, 0, 64 + len(shstr), len(info)).ljust(64, b"\0")
    return bytes(hdr) + shstr + info + sh


def test_modinfo_depends_and_order(tmp_path):
    mods = {"ext4": "jbd2,mbcache,crc16", "jbd2": "", "mbcache": "", "crc16": "", "ahci": "libahci",
            "libahci": "libata", "libata": "scsi_mod", "scsi_mod": "scsi_common", "scsi_common": ""}
    index = {}
    for name, deps in mods.items():
        p = tmp_path / f"{name}.ko"
        p.write_bytes(fake_ko(deps))
        index[name] = p
    assert depends(fake_ko("a,b")) == ["a", "b"] and depends(fake_ko("")) == []
    order = load_order(["ahci", "ext4", "not_present"], index)
    assert order == ["scsi_common", "scsi_mod", "libata", "libahci", "ahci", "jbd2", "mbcache", "crc16",
                     "ext4"]
    (tmp_path / "bad.ko").write_bytes(fake_ko("missing_dep"))
    with pytest.raises(ModuleError, match="missing_dep"):
        load_order(["bad"], {"bad": tmp_path / "bad.ko"})
    with pytest.raises(ModuleError):
        depends(b"not an elf")


def test_extract_vmlinux_finds_the_elf_stream():
    elf = b"\x7fELF" + bytes(range(256)) * 10
    decoy = lzma.compress(b"not an elf", format=lzma.FORMAT_XZ)
    image = b"MZ" + bytes(100) + decoy + bytes(7) + lzma.compress(elf, format=lzma.FORMAT_XZ) + b"\0" * 9
    assert extract_vmlinux(image) == elf
    with pytest.raises(VmlinuxError):
        extract_vmlinux(b"MZ" + decoy)


def test_initramfs_layout():
    arc = build_initramfs(b"BB", ["sh", "mount", "busybox"], [("m1", b"K1"), ("m2", b"K2")])
    ents = {e[0]: e for e in parse_newc(arc)}
    assert ents["init"][1] & 0o111 and ents["init"][2].startswith(b"#!/bin/sh")
    assert b"VBOXPY-GUEST-READY" in ents["init"][2]
    assert ents["bin/sh"][2] == b"busybox" and "bin/busybox" in ents
    assert ents["lib/modules/load-order"][2] == b"m1\nm2\n"
    assert ents["dev/console"][3:] == (5, 1)
