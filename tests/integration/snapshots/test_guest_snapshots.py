"""Snapshots end to end, on REM with the project's Debian guest, through the real service: one
boot, then everything else by saved state (so the test costs a single REM boot).

- savestate/restore keeps a counting shell loop going;
- a file written on the disk, snapshots taken (online) between changes; restoring a snapshot
  brings back the content the disk had then (page cache dropped, read from the image chain);
- deleting the middle snapshot merges its differencing image and every later state still reads
  correctly;
- a linked clone of a snapshot starts (from the snapshot's saved state) and diverges from its
  source, which keeps its own content.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from frontends.headless.console_state import console_save_state
from tests.integration.snapshots.vmproc import VmProcess
from vboxsvc.api import AccessMode, CloneMode, CloneOptions, DeviceType, LockType, MachineState, StorageBus

ROOT = Path(__file__).resolve().parents[3]
GUEST = ROOT / ".cache" / "guest"
READY = "VBOXPY-GUEST-READY"
BOOT_TIMEOUT = 1800

pytestmark = [
    pytest.mark.guest,
    pytest.mark.timeout(3600),
    pytest.mark.skipif(not (GUEST / "vmlinux").exists(),
                       reason="no guest kernel: run python -m vmm.guest.builder"),
]


def configure(cfg) -> None:
    cfg.set("RamSize", 256 << 20)
    cfg.set("Boot/Kernel", str(GUEST / "vmlinux"))
    cfg.set("Boot/Initrd", str(GUEST / "initrd.img"))
    cfg.set("Boot/Cmdline", "console=ttyS0 quiet")


def wait(progress) -> None:
    progress.wait_for_completion(-1)
    assert progress.result_code == 0, (
        progress.error_info.text if progress.error_info else progress.result_code
    )


def take(client, m, name) -> str:
    s = client.session()
    m.lock_machine(s, LockType.Shared)
    sid, progress = s.machine.take_snapshot(name, "", True)
    wait(progress)
    s.unlock_machine()
    return sid


def offline(client, m, action) -> None:
    s = client.session()
    m.lock_machine(s, LockType.Write)
    wait(action(s.machine))
    s.unlock_machine()


def restore(client, m, name) -> None:
    offline(client, m, lambda sm: sm.restore_snapshot(sm.find_snapshot(name)))


def read_file(vm: VmProcess) -> str:
    return vm.serial.run("echo 3 > /proc/sys/vm/drop_caches; cat /mnt/f").strip()


def counter(vm: VmProcess) -> int:
    return int(vm.serial.run("cat /tmp/cnt").strip().splitlines()[-1])


def test_snapshots_with_the_debian_guest(client, vbox, monkeypatch):
    # a name of its own per attempt: a rerun after a failure must not meet the first attempt's files
    m = vbox.create_machine("", f"deb-{os.getpid()}-{time.monotonic_ns()}", os_type_id="Debian_64")
    m.save_settings()
    vbox.register_machine(m)
    s = client.session()
    m.lock_machine(s, LockType.Write)
    s.machine.memory_size = 256
    s.machine.add_storage_controller("SATA", StorageBus.SATA)
    disk = os.path.join(os.path.dirname(m.settings_file_path), "deb.vdi")
    med = vbox.create_medium("VDI", disk, AccessMode.ReadWrite, DeviceType.HardDisk)
    wait(med.create_base_storage(32 << 20, []))
    s.machine.attach_device("SATA", 0, 0, DeviceType.HardDisk, med)
    s.machine.save_settings()
    s.unlock_machine()

    vm = VmProcess(client, m, configure)
    vm.power_up()
    vm.serial.wait_for(READY, BOOT_TIMEOUT)
    dev = re.search(r"\b(sd[a-z])\b", vm.serial.run("ls /sys/block")).group(1)
    vm.serial.run(f"mke2fs -q /dev/{dev} && mkdir -p /mnt && mount /dev/{dev} /mnt")
    vm.serial.run("{ (i=0; while :; do i=$((i+1)); echo $i > /tmp/cnt; sleep 0.2; done) >/dev/null 2>&1 & }")
    for word in ("one", "two", "three"):
        vm.serial.run(f"echo {word} > /mnt/f && sync")
        take(client, m, f"s-{word}")
    vm.serial.run("echo four > /mnt/f && sync")

    # savestate -> restore: the loop keeps counting, the file is there
    before = counter(vm)
    console_save_state(vm.vm, vm.session.machine)
    vm.power_down()
    assert m.state == MachineState.Saved
    vm = VmProcess(client, m, configure)
    assert vm.power_up() is True
    after = counter(vm)
    assert after >= before
    time.sleep(1)
    assert counter(vm) > after, "the shell loop keeps counting after the restore"
    assert read_file(vm) == "four"
    vm.power_down()

    # restoring a snapshot brings its disk content back
    restore(client, m, "s-two")
    vm = VmProcess(client, m, configure)
    assert vm.power_up() is True
    assert read_file(vm) == "two"
    vm.power_down()

    # delete the middle snapshot (from s-three's branch: s-two's disk then has one child) and the
    # later and earlier states still read right
    restore(client, m, "s-three")
    s = client.session()
    m.lock_machine(s, LockType.Write)
    wait(s.machine.delete_snapshot(s.machine.find_snapshot("s-two").id))
    s.unlock_machine()
    assert m.snapshot_count == 2
    for name, word in (("s-three", "three"), ("s-one", "one")):
        restore(client, m, name)
        vm = VmProcess(client, m, configure)
        assert vm.power_up() is True
        assert read_file(vm) == word
        vm.power_down()

    # a linked clone of a snapshot starts from its state and diverges from the source
    clone = vbox.create_machine("", "deb-linked", os_type_id="Debian_64")
    wait(m.find_snapshot("s-three").machine.clone_to(clone, CloneMode.MachineState, [CloneOptions.Link]))
    vbox.register_machine(clone)
    assert clone.state == MachineState.Saved
    cvm = VmProcess(client, clone, configure, monkeypatch)
    assert cvm.power_up() is True
    assert read_file(cvm) == "three"
    cvm.serial.run("echo clone > /mnt/f && sync")
    assert read_file(cvm) == "clone"
    cvm.power_down()
    restore(client, m, "s-three")
    vm = VmProcess(client, m, configure)
    assert vm.power_up() is True
    assert read_file(vm) == "three"
    vm.power_down()
