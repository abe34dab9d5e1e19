"""VirtualBox shared folders with nothing installed in the guest: the Debian kernel's own
vboxguest and vboxsf modules (from the test initramfs) against VMMDev and the VBoxSharedFolders
service, on REM through the dev runner with the kernel handed over.  One boot for the module."""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

from tests.integration.vm.guest_console import READY_MARKER, GuestConsole
from vmm.guest.builder import cache_dir, guest_files

GUEST = guest_files()
MANIFEST = cache_dir() / "manifest.json"


def _has_vboxsf() -> bool:
    try:
        return "vboxsf" in json.loads(MANIFEST.read_text()).get("modules", [])
    except (OSError, ValueError):
        return False


pytestmark = [
    pytest.mark.guest,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(not GUEST.exist(), reason="no guest kernel: run python -m vmm.guest.builder"),
    pytest.mark.skipif(not _has_vboxsf(), reason="the guest's initramfs has no vboxsf: rebuild it with "
                                                 "python -m vmm.guest.builder"),
]


@pytest.fixture(scope="module")
def guest(tmp_path_factory):
    base = tmp_path_factory.mktemp("shares")
    rw, ro, outside = base / "rw", base / "ro", base / "outside"
    for d in (rw, ro, outside):
        d.mkdir()
    (rw / "hello.txt").write_text("hello from the host\n")
    (ro / "readme.txt").write_text("read only\n")
    (outside / "secret").write_text("host secret\n")
    os.symlink(str(outside / "secret"), rw / "abs-escape")
    os.symlink("../outside/secret", rw / "rel-escape")
    many = rw / "many"
    many.mkdir()
    for i in range(10_000):
        (many / f"file{i:05d}").write_bytes(b"")
    con = GuestConsole([sys.executable, "-m", "vmm.run", "--engine", "rem", "--memory", "256",
                        "--append", "console=ttyS0",
                        "--kernel", str(GUEST.vmlinux), "--initrd", str(GUEST.initrd),
                        "--share", f"share={rw}", "--share", f"ro={ro},ro"],
                       log_path=str(base / "console.log"))
    try:
        con.wait_for(READY_MARKER, 900)
        con.run("dmesg -n 1", 120)            # kernel messages off the console the tests parse
        yield con, rw, ro, outside
    finally:
        con.proc.kill()
        con.close()


def sh(con, command: str, timeout: float = 600) -> str:
    status, out = con.run(command, timeout)
    assert status == 0, (command, out)
    return out


def mount(con) -> None:
    """Mount both shares unless this guest has them already: the tests of this module may run in
    any order, split between test processes that each boot their own guest."""
    sh(con, "mkdir -p /mnt/share /mnt/ro; "
            "grep -q ' /mnt/share ' /proc/mounts || mount -t vboxsf share /mnt/share; "
            "grep -q ' /mnt/ro ' /proc/mounts || mount -t vboxsf ro /mnt/ro")


@pytest.fixture
def shares(guest):
    mount(guest[0])
    return guest


def test_mount_and_read_a_host_file(guest):
    con, rw, ro, _ = guest
    assert "vboxguest" in sh(con, "cat /proc/interrupts")
    mount(con)
    assert "vboxsf" in sh(con, "grep /mnt/share /proc/mounts")
    assert sh(con, "cat /mnt/share/hello.txt") == "hello from the host\n"


def test_write_mkdir_rename_delete(shares):
    con, rw, _, _ = shares
    sh(con, "echo written by the guest > /mnt/share/from-guest.txt && sync")
    assert (rw / "from-guest.txt").read_text() == "written by the guest\n"
    sh(con, "mkdir /mnt/share/newdir && mv /mnt/share/from-guest.txt /mnt/share/newdir/moved.txt")
    assert not (rw / "from-guest.txt").exists()
    assert (rw / "newdir" / "moved.txt").read_text() == "written by the guest\n"
    sh(con, "rm /mnt/share/newdir/moved.txt && rmdir /mnt/share/newdir")
    assert not (rw / "newdir").exists()
    (rw / "made-on-host").write_text("x")
    assert "made-on-host" in sh(con, "ls /mnt/share").split()


def test_list_ten_thousand_files(shares):
    con, _, _, _ = shares
    assert sh(con, "ls /mnt/share/many | wc -l").split()[-1] == "10000"
    assert sh(con, "ls /mnt/share/many | tail -n 1").split()[-1] == "file09999"


def test_append_while_the_host_reads(shares):
    con, rw, _, _ = shares
    log = rw / "append.log"
    con.proc.stdin.write(b"(for i in $(seq 1 60); do echo line $i; sleep 0.1; done) >> "
                         b"/mnt/share/append.log; "
                         b"echo APPEND''-DONE\n")
    con.proc.stdin.flush()
    seen = []
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        data = log.read_text() if log.exists() else ""
        if not seen or data != seen[-1]:
            seen.append(data)
        if data.count("\n") >= 60:
            break
        time.sleep(0.05)
    con.wait_for("APPEND-DONE", 600)
    assert log.read_text() == "".join(f"line {i}\n" for i in range(1, 61))
    partial = [s for s in seen if 0 < s.count("\n") < 60]
    assert partial, "the host never saw the file while the guest was still appending"
    assert all(s == log.read_text()[:len(s)] for s in partial)


def test_read_only_share_refuses_writes(shares):
    con, _, ro, _ = shares
    assert sh(con, "cat /mnt/ro/readme.txt") == "read only\n"
    status, out = con.run("echo x > /mnt/ro/new.txt", 120)
    assert status != 0 and "Read-only file system" in out
    status, out = con.run("rm /mnt/ro/readme.txt", 120)
    assert status != 0
    assert (ro / "readme.txt").exists() and not (ro / "new.txt").exists()


def test_escapes_fail(shares):
    con, rw, _, outside = shares
    for link in ("abs-escape", "rel-escape"):
        status, out = con.run(f"cat /mnt/share/{link}", 120)
        assert "host secret" not in out
        assert status != 0
    assert "host secret" not in con.run("cat /mnt/share/../outside/secret", 120)[1]
    status, out = con.run("ln -s /etc/passwd /mnt/share/made-link", 120)
    assert status != 0 and "Operation not permitted" in out
    assert not os.path.lexists(rw / "made-link")
    assert (outside / "secret").read_text() == "host secret\n"
