"""The VM builder + EM + REM on tiny flat guests: guest power off (ACPI S5), guest reset (i8042
pulse: RAM reloaded, CMOS kept), triple fault -> Stuck or reset as configured, console pause/
resume/power off while the guest spins, and the PIT timer interrupt reaching a real-mode guest."""

import threading

import pytest

from tests.unit.vmm.rem.asm import assemble, needs_binutils
from vmm.cfgm import CfgNode
from vmm.serial.backends import SerialBackend
from vmm.vm import Machine, MachineError

pytestmark = [needs_binutils, pytest.mark.timeout(120)]

PUTC = """
    mov $0x3f8, %dx
    mov ${ch}, %al
    out %al, %dx
"""
S5 = """
    mov $0x4004, %dx
    mov $(5<<10|1<<13), %ax
    out %ax, %dx
9:  hlt
    jmp 9b
"""


class Capture(SerialBackend):
    def __init__(self):
        super().__init__()
        self.out = bytearray()

    def write(self, data: bytes) -> None:
        self.out += data


def machine(tmp_path, src: str, triple_fault_reset: bool = False):
    image = tmp_path / "guest.bin"
    image.write_bytes(assemble(".code16\n" + src, 0x7C00, bits=16))
    cfg = CfgNode()
    cfg.set("RamSize", 32 << 20)
    cfg.set("Boot/Kernel", str(image))
    cfg.set("TripleFaultReset", triple_fault_reset)
    cfg.set("Devices/serial/0/Enabled", True)
    cap = Capture()
    done = threading.Event()
    result = {}

    def stopped(kind, detail):
        result["kind"], result["detail"] = kind, detail
        done.set()
    m = Machine(cfg, on_stop=stopped, serial_backends={0: cap})
    return m, cap, done, result


def test_guest_acpi_power_off(tmp_path):
    m, cap, done, result = machine(tmp_path, PUTC.format(ch="'A'") + S5)
    m.start()
    assert done.wait(30) and m.wait(10)
    assert result["kind"] == "poweroff" and bytes(cap.out) == b"A"
    m.close()


RESET_ONCE = """
    mov $0x40, %al
    out %al, $0x70
    in $0x71, %al
    cmp $1, %al
    je 2f
    mov $0x40, %al
    out %al, $0x70
    mov $1, %al
    out %al, $0x71
""" + PUTC.format(ch="'A'") + """
    movb $0x55, 0x600          # RAM is cleared by the reset
    mov $0xfe, %al
    out %al, $0x64             # i8042 reset line
1:  hlt
    jmp 1b
2:  cmpb $0x55, 0x600
    je 3f
""" + PUTC.format(ch="'B'") + S5 + "3:" + PUTC.format(ch="'X'") + S5


def test_guest_reset_reloads_ram_and_keeps_cmos(tmp_path):
    m, cap, done, result = machine(tmp_path, RESET_ONCE)
    m.start()
    assert done.wait(30)
    assert bytes(cap.out) == b"AB" and result["kind"] == "poweroff" and m.resets == 1
    m.close()


TRIPLE = PUTC.format(ch="'T'") + """
    lidt zero
    int $3
zero: .word 0
      .long 0
"""


def test_triple_fault_goes_stuck(tmp_path):
    m, cap, done, result = machine(tmp_path, TRIPLE)
    m.start()
    assert done.wait(30)
    assert result["kind"] == "stuck" and "triple fault" in result["detail"] and bytes(cap.out) == b"T"
    m.close()


def test_triple_fault_resets_when_configured(tmp_path):
    m, cap, done, result = machine(tmp_path, TRIPLE, triple_fault_reset=True)
    m.start()
    try:
        for _ in range(200):     # the third run's 'T' comes a moment after the second reset
            if m.resets >= 2 and cap.out.startswith(b"TTT"):
                break
            done.wait(0.05)
        assert m.resets >= 2 and cap.out.startswith(b"TTT") and not done.is_set()
        m.power_off().result(10)
        assert done.wait(10) and result["kind"] == "poweroff"
    finally:
        if not done.is_set():     # never leave a guest running in the test process
            m.power_off().result(10)
        m.close()


def test_close_of_a_running_machine_stops_its_guest_first(tmp_path):
    """Nothing is freed under a running vCPU: close() powers a running guest off and waits for it."""
    m, cap, done, result = machine(tmp_path, TRIPLE, triple_fault_reset=True)
    m.start()
    assert not done.wait(0.3)            # resetting for ever
    m.close()
    assert done.is_set() and result["kind"] == "poweroff" and m.wait(0)


SPIN_WITH_TIMER = """
    xor %ax, %ax
    mov %ax, %ds
    movw $tick, 0x08*4         # IRQ0 -> vector 8 (PIC default base)
    movw $0, 0x08*4+2
    mov $0x11, %al             # PIC: ICW1..4, vector base 8, unmask IRQ0 only
    out %al, $0x20
    mov $0x08, %al
    out %al, $0x21
    mov $0x04, %al
    out %al, $0x21
    mov $0x01, %al
    out %al, $0x21
    mov $0xfe, %al
    out %al, $0x21
    mov $0x34, %al             # PIT channel 0, mode 2, ~1 kHz
    out %al, $0x43
    mov $0xa9, %al
    out %al, $0x40
    mov $0x04, %al
    out %al, $0x40
    xor %bx, %bx
    sti
1:  in $0x61, %al              # busy loop (no HLT) with a port read: a safe point for REM
    cmp $20, %bx               # until 20 ticks arrived
    jb 1b
""" + PUTC.format(ch="'K'") + """
2:  jmp 2b                     # then spin without any safe point: the console still stops it
tick:
    inc %bx
    push %ax
    mov $0x20, %al
    out %al, $0x20             # EOI
    pop %ax
    iret
"""


def test_timer_interrupts_and_console_control_of_a_spinning_guest(tmp_path):
    m, cap, done, result = machine(tmp_path, SPIN_WITH_TIMER)
    m.start()
    for _ in range(200):
        if cap.out:
            break
        done.wait(0.05)
    assert bytes(cap.out) == b"K"                  # 20 PIT ticks delivered to a guest in a busy loop
    m.pause().result(10)
    m.resume().result(10)
    m.power_off().result(10)
    assert done.wait(10) and result["kind"] == "poweroff"
    m.close()


def test_missing_kernel_or_firmware_is_a_machine_error(tmp_path):
    cfg = CfgNode()
    cfg.set("RamSize", 32 << 20)
    cfg.set("Firmware/Path", str(tmp_path / "no-bios.bin"))      # no kernel: the firmware must exist
    with pytest.raises(MachineError, match="cannot read firmware image"):
        Machine(cfg)
    cfg.set("Firmware/Type", "EFI")
    with pytest.raises(MachineError, match="firmware type EFI is not available"):
        Machine(cfg)
    cfg.set("Boot/Kernel", str(tmp_path / "nope"))
    with pytest.raises(MachineError, match="does not exist"):
        Machine(cfg)


def test_guest_reset_resets_storage_controllers(tmp_path):
    """A guest reboot puts the disk controllers back to their power-on state too, and saved
    state lists each controller once."""
    from vmm.savedstate import state_units
    from vmm.storage import create_raw

    create_raw(str(tmp_path / "disk.img"), 1 << 20).close()
    image = tmp_path / "guest.bin"
    image.write_bytes(assemble(".code16\n" + RESET_ONCE, 0x7C00, bits=16))
    cfg = CfgNode()
    cfg.set("RamSize", 32 << 20)
    cfg.set("Boot/Kernel", str(image))
    cfg.set("Devices/serial/0/Enabled", True)
    cfg.set("Devices/storage/0/Name", "SATA")
    cfg.set("Devices/storage/0/Type", "IntelAhci")
    cfg.set("Devices/storage/0/Attachments/0/Port", 0)
    cfg.set("Devices/storage/0/Attachments/0/Path", str(tmp_path / "disk.img"))
    done = threading.Event()
    m = Machine(cfg, on_stop=lambda kind, detail: done.set(), serial_backends={0: Capture()})
    ahci = m.storage[0].device
    power_on_command = ahci.config_read(4, 2)
    assert power_on_command & 0x6            # memory decoding and bus mastering set up at build
    ahci.config_write(4, 2, 0)               # what a guest driver might leave behind
    assert [n for n, _ in state_units(m)].count("storage/SATA") == 1
    m.start()
    assert done.wait(30)
    assert m.resets == 1 and ahci.config_read(4, 2) == power_on_command
    m.close()
