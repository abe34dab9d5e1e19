"""Whole-VM saved state on REM: a guest counting on PIT interrupts keeps counting after a save
into a file and a restore into a new machine; mismatched or corrupt files are refused clearly."""

from __future__ import annotations

import threading
import time

import pytest

from tests.unit.vmm.hm import guests
from vmm.cfgm import CfgNode
from vmm.savedstate import SavedStateError, check_state_file, restore_state, save_state
from vmm.serial.backends import SerialBackend
from vmm.vm import Machine

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(bool(guests.toolchain_missing()), reason="GNU as/ld/objcopy needed")]

COUNTER_GUEST = """
.code16
    cli
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %ss
    mov $0x7000, %sp
    cld
    movw $tick, 0x20
    movw $0, 0x22
    mov $0x11, %al
    out %al, $0x20
    mov $0x08, %al
    out %al, $0x21
    mov $0x04, %al
    out %al, $0x21
    mov $0x01, %al
    out %al, $0x21
    mov $0xFE, %al
    out %al, $0x21
    mov $0x34, %al
    out %al, $0x43
    mov $(1193 & 0xFF), %al
    out %al, $0x40
    mov $(1193 >> 8), %al
    out %al, $0x40
loop:
    sti
    hlt
    cli
    cmpw $4, ticks
    jb loop
    movw $0, ticks
    mov count, %bx
    mov $4, %cx
digit:
    rol $4, %bx
    mov %bx, %si
    and $0xF, %si
    mov hex(%si), %al
    call putc
    loop digit
    mov $0x0A, %al
    call putc
    incw count
    jmp loop
putc:
    mov %al, %ah
    mov $0x3FD, %dx
1:  in %dx, %al
    test $0x20, %al
    jz 1b
    mov %ah, %al
    mov $0x3F8, %dx
    out %al, %dx
    ret
tick:
    push %ax
    incw ticks
    mov $0x20, %al
    out %al, $0x20
    pop %ax
    iret
hex: .ascii "0123456789ABCDEF"
ticks: .word 0
count: .word 0
"""


class Capture(SerialBackend):
    def __init__(self):
        super().__init__()
        self.data = bytearray()
        self.cond = threading.Condition()

    def write(self, data: bytes) -> None:
        with self.cond:
            self.data += data
            self.cond.notify_all()

    def wait_lines(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.data.count(b"\n") < n:
                left = deadline - time.monotonic()
                assert left > 0, f"guest printed only {bytes(self.data)!r}"
                self.cond.wait(left)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    p = tmp_path_factory.mktemp("guest") / "counter.bin"
    p.write_bytes(guests.assemble(COUNTER_GUEST))
    return p


def config(kernel, ram_mb: int = 16) -> CfgNode:
    cfg = CfgNode()
    cfg.set("Name", "ssm-test")
    cfg.set("RamSize", ram_mb << 20)
    cfg.set("Engine", "rem")
    cfg.set("Boot/Kernel", str(kernel))
    cfg.set("Devices/serial/0/Enabled", True)
    return cfg


def run_until(machine: Machine, cap: Capture, lines: int) -> None:
    machine.start()
    cap.wait_lines(lines)


def stop(machine: Machine) -> None:
    machine.power_off()
    machine.wait(10)
    machine.close()


def test_counter_continues_after_restore(kernel, tmp_path):
    state = tmp_path / "vm.sav"
    cap1 = Capture()
    m1 = Machine(config(kernel), serial_backends={0: cap1})
    run_until(m1, cap1, 3)
    result = save_state(m1, state)
    before = bytes(cap1.data)
    time.sleep(0.05)
    assert bytes(cap1.data) == before, "the VM is paused after saving"
    stop(m1)
    assert result.size == state.stat().st_size
    assert result.size < 1 << 20, "16 MiB of mostly zero RAM stays small"
    meta = check_state_file(state)
    assert meta["ram"] == 16 << 20 and "pit" in meta["units"] and "uart0" in meta["units"]

    cap2 = Capture()
    m2 = Machine(config(kernel), serial_backends={0: cap2}, restoring=True)
    restore_state(m2, state)
    run_until(m2, cap2, 3)
    stop(m2)
    text = (before + bytes(cap2.data)).decode()
    lines = text.split("\n")[:-1]
    assert lines == [f"{i:04X}" for i in range(len(lines))], text
    assert len(lines) >= 6


def test_mismatch_and_corruption_are_refused(kernel, tmp_path):
    state = tmp_path / "vm.sav"
    cap = Capture()
    m1 = Machine(config(kernel), serial_backends={0: cap})
    run_until(m1, cap, 1)
    save_state(m1, state)
    stop(m1)
    bigger = Machine(config(kernel, 32), serial_backends={0: Capture()}, restoring=True)
    with pytest.raises(SavedStateError, match="for 16 MiB of RAM, the VM has 32 MiB"):
        restore_state(bigger, state)
    bigger.close()
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "bad.sav"
    bad.write_bytes(bytes(data))
    fresh = Machine(config(kernel), serial_backends={0: Capture()})
    with pytest.raises(SavedStateError, match="corrupt|truncated"):
        restore_state(fresh, bad)
    trunc = tmp_path / "trunc.sav"
    trunc.write_bytes(bytes(data[: len(data) // 3]))
    with pytest.raises(SavedStateError, match="truncated|corrupt"):
        check_state_file(trunc)
    other = tmp_path / "other.sav"
    other.write_bytes(b"not a state file at all")
    with pytest.raises(SavedStateError, match="not a vboxpy saved state"):
        check_state_file(other)
    fresh.close()


class FakeSessionMachine:
    """The session machine as the VM process sees it: state reports go to the service."""

    def __init__(self, state, state_file=""):
        self.state = state
        self.reports = []
        self._file = state_file
        self.saving_path = ""

    @property
    def state_file_path(self):
        return self.saving_path if self.state == 13 else self._file

    def update_state(self, state):
        self.reports.append(int(state))
        self.state = state


def test_console_save_and_restore_report_states(kernel, tmp_path):
    from frontends.headless.console_state import console_restore_if_saved, console_save_state
    from vboxsvc.api.enums import MachineState as S
    cap = Capture()
    m1 = Machine(config(kernel), serial_backends={0: cap})
    run_until(m1, cap, 1)
    sm = FakeSessionMachine(S.Running)
    sm.saving_path = str(tmp_path / "Snapshots" / "x.sav")
    with pytest.raises(SavedStateError):      # the folder does not exist: back to Running
        console_save_state(m1, sm)
    assert sm.reports == [S.Saving, S.Running]
    (tmp_path / "Snapshots").mkdir()
    console_save_state(m1, sm)
    assert sm.reports[2:] == [S.Saving, S.Saved]
    stop(m1)
    m2 = Machine(config(kernel), serial_backends={0: Capture()}, restoring=True)
    assert console_restore_if_saved(m2, FakeSessionMachine(S.PoweredOff)) is False
    good = FakeSessionMachine(S.Saved, sm.saving_path)
    assert console_restore_if_saved(m2, good) is True and good.reports == [S.Restoring]
    m2.close()
    data = bytearray(open(sm.saving_path, "rb").read())
    data[100:110] = bytes(10)
    bad_path = tmp_path / "bad.sav"
    bad_path.write_bytes(bytes(data))
    m3 = Machine(config(kernel), serial_backends={0: Capture()})
    bad = FakeSessionMachine(S.Saved, str(bad_path))
    with pytest.raises(SavedStateError):
        console_restore_if_saved(m3, bad)
    assert bad.reports == [S.Restoring, S.Saved]
    m3.close()


def test_online_snapshot_switches_disks_and_keeps_running(kernel, tmp_path):
    import uuid as uuidlib

    from vmm.savedstate import _disk_holders, console_take_snapshot
    from vmm.storage import create_vdi, image_info
    base = tmp_path / "disk.vdi"
    create_vdi(str(base), 4 << 20).close()
    cfg = config(kernel)
    cfg.set("Devices/storage/ahci/Type", "IntelAhci")
    cfg.set("Devices/storage/ahci/Name", "SATA")
    cfg.set("Devices/storage/ahci/PortCount", 1)
    cfg.set("Devices/storage/ahci/Attachments/0/Port", 0)
    cfg.set("Devices/storage/ahci/Attachments/0/Path", str(base))
    cap = Capture()
    m = Machine(cfg, serial_backends={0: cap})
    run_until(m, cap, 1)
    uid = str(uuidlib.uuid4())
    diff = tmp_path / f"{{{uid}}}.vdi"
    with pytest.raises(SavedStateError, match="no open disk"):
        console_take_snapshot(m, str(tmp_path / "bad.sav"), [["/nonexistent.vdi", str(diff), uid]])
    assert not diff.exists() and not (tmp_path / "bad.sav").exists()
    res = console_take_snapshot(m, str(tmp_path / "snap.sav"), [[str(base), str(diff), uid]])
    assert res.size > 0 and (tmp_path / "snap.sav").exists()
    assert image_info(str(diff)).parent_uuid == image_info(str(base)).uuid
    (_pc, holder), = list(_disk_holders(m))
    assert holder.image.path == str(diff)
    holder.image.write_at(0, b"new" * 100)          # writes land in the diff, the base keeps its content
    n = cap.data.count(b"\n")
    cap.wait_lines(n + 2)                            # the guest runs on after the snapshot
    stop(m)
    assert image_info(str(diff)).allocated_blocks == 1 and image_info(str(base)).allocated_blocks == 0
    meta = check_state_file(tmp_path / "snap.sav")
    assert "storage/SATA" in meta["units"]
