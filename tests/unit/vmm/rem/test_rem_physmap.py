"""REM's guest-physical map: code loaded by device DMA over code that already ran is the code
that runs next, PAM windows switch between ROM and RAM, no memory hook covers guest RAM, and the
HM slot plan."""

import unicorn
from unicorn import UC_HOOK_MEM_INVALID, UC_HOOK_MEM_VALID

from vmm.boot import cpu_setup
from vmm.bus import Bus
from vmm.engine import HaltExit
from vmm.firmware import FirmwareImage
from vmm.hm.physmap import KVM_MEM_READONLY, SLOT_ROM, SLOT_WINDOWS, base_slots, window_slots
from vmm.memory import GuestMemory, note_dma
from vmm.physmap import LEGACY_END, LEGACY_START, windows_for
from vmm.rem.engine import RemVm

CODE = 0x8000


def _run_to_halt(vcpu):
    for _ in range(100):
        if isinstance(vcpu.run(), HaltExit):
            return
    raise AssertionError("no HLT")


def test_dma_over_executed_code_runs_the_new_code():
    mem = GuestMemory(16 << 20)
    vcpu = RemVm(mem, Bus("io"), Bus("mmio")).create_vcpu(0)
    mem.write(CODE, b"\xb8\x01\x00\x00\x00\xf4")           # mov eax, 1; hlt
    vcpu.set_state(cpu_setup.protected_mode_32(mem, CODE))
    _run_to_halt(vcpu)
    assert vcpu.get_state().gpr["rax"] == 1
    view = mem.view(CODE, 6)                                # a disk read lands new code there
    view[:] = b"\xb8\x02\x00\x00\x00\xf4"
    note_dma(view)
    vcpu.set_state(cpu_setup.protected_mode_32(mem, CODE))
    _run_to_halt(vcpu)
    assert vcpu.get_state().gpr["rax"] == 2


def test_pam_windows_switch_between_rom_and_ram():
    rom = bytearray(b"\xee" * 0x20000)
    rom[0x1FFF0:0x1FFF6] = b"\xb8\x34\x12\x00\x00\xf4"       # at 0xFFFF0: mov eax, 0x1234; hlt
    fw = FirmwareImage(bytes(rom))
    mem = GuestMemory(16 << 20)
    mem.write(0xFFFF0, b"\xb8\x78\x56\x00\x00\xf4")          # the shadow RAM holds other code
    vm = RemVm(mem, Bus("io"), Bus("mmio"))
    vm.firmware = fw
    vm.legacy_windows = windows_for(bytes(7), fw.alias_offset)
    vcpu = vm.create_vcpu(0)
    vcpu.set_state(cpu_setup.protected_mode_32(mem, 0xFFFF0))
    _run_to_halt(vcpu)
    assert vcpu.get_state().gpr["rax"] == 0x1234            # PAM off: the BIOS alias
    vm.set_legacy_windows(windows_for(bytes([0x30] + [0x33] * 6), fw.alias_offset))
    vcpu.set_state(cpu_setup.protected_mode_32(mem, 0xFFFF0))
    _run_to_halt(vcpu)
    assert vcpu.get_state().gpr["rax"] == 0x5678            # PAM read/write: shadow RAM
    vcpu.set_state(cpu_setup.protected_mode_32(mem, 0xFFFFFFF0))
    _run_to_halt(vcpu)
    assert vcpu.get_state().gpr["rax"] == 0x1234            # the image at 4 GiB - 128 KiB, always


def test_no_memory_hook_covers_guest_ram(monkeypatch):
    """A memory hook over a page keeps every store there on the library's slow path (a helper
    call per store): the hooks for stores into ROM cover the PAM windows and the ROM only."""
    added = []
    hook_add = unicorn.Uc.hook_add

    def recording(self, htype, callback, user_data=None, begin=1, end=0, *args):
        added.append((htype, begin, end))
        return hook_add(self, htype, callback, user_data, begin, end, *args)
    monkeypatch.setattr(unicorn.Uc, "hook_add", recording)
    fw = FirmwareImage(bytes(0x20000))
    mem = GuestMemory(64 << 20)
    vm = RemVm(mem, Bus("io"), Bus("mmio"))
    vm.firmware = fw
    vm.legacy_windows = windows_for(bytes(7), fw.alias_offset)
    vm.create_vcpu(0)
    mem_hooks = [(begin, end) for htype, begin, end in added
                 if htype & (UC_HOOK_MEM_VALID | UC_HOOK_MEM_INVALID)]
    assert mem_hooks                                          # stores into ROM are hooked
    ram = [(base, base + length - 1) for base, length, _ in mem.regions]
    for begin, end in mem_hooks:
        assert begin <= end, "a hook over the whole address space"
        for first, last in ram:
            overlap = (max(begin, first), min(end, last))
            if overlap[0] <= overlap[1]:
                assert LEGACY_START <= overlap[0] and overlap[1] < LEGACY_END, (hex(begin), hex(end))


def test_hm_slot_plan():
    mem = GuestMemory(64 << 20)
    fw = FirmwareImage(bytes(0x20000))
    base = base_slots(mem, fw)
    assert [(s, f, gpa, size) for s, f, gpa, size, _ in base] == [
        (0, 0, 0, 0xA0000), (1, 0, 0x100000, (64 << 20) - 0x100000),
        (SLOT_ROM, KVM_MEM_READONLY, 0xFFFE0000, 0x20000)]
    ws = window_slots(mem, fw, windows_for(bytes([0x10, 0x31, 0, 0, 0, 0, 0]), fw.alias_offset))
    plan = {gpa: (slot, flags,
                  host - (fw.address if flags and gpa >= 0xE0000 and host >= fw.address else mem.address))
            for slot, flags, gpa, _size, host in ws}
    assert plan[0xC0000] == (SLOT_WINDOWS, KVM_MEM_READONLY, 0xC0000)       # RAM read-only
    assert plan[0xC4000] == (SLOT_WINDOWS + 1, 0, 0xC4000)                    # RAM read/write
    assert 0xC8000 not in plan                                                # off, no ROM: MMIO (all-ones)
    assert plan[0xE0000] == (SLOT_WINDOWS + 8, KVM_MEM_READONLY, 0)           # the image's low alias
    assert plan[0xF0000] == (SLOT_WINDOWS + 12, KVM_MEM_READONLY, 0xF0000)    # F segment: RAM read-only


class FrameBuffer:
    """A device range that is plain memory and offers it for direct mapping; counts the accesses
    that still come through the bus."""

    def __init__(self, size):
        self.buf = bytearray(size)
        self.calls = 0

    def read(self, offset, size):
        self.calls += 1
        return int.from_bytes(self.buf[offset:offset + size], "little")

    def write(self, offset, size, value):
        self.calls += 1
        self.buf[offset:offset + size] = value.to_bytes(size, "little")

    def direct_ram(self):
        return self.buf


class Registers:
    def __init__(self):
        self.writes = []

    def read(self, offset, size):
        return 0xAB00 + offset

    def write(self, offset, size, value):
        self.writes.append((offset, value))


def _store_and_load(vcpu, mem, addr, value):
    # mov dword [addr], value; mov eax, [addr + 4]; hlt
    code = (b"\xc7\x05" + addr.to_bytes(4, "little") + value.to_bytes(4, "little")
            + b"\xa1" + (addr + 4).to_bytes(4, "little") + b"\xf4")
    mem.write(CODE, code)
    vcpu.set_state(cpu_setup.protected_mode_32(mem, CODE))
    _run_to_halt(vcpu)
    return vcpu.get_state().gpr["rax"] & 0xFFFF_FFFF


def test_a_direct_device_range_is_guest_memory_while_registered_and_mmio_around_it():
    mem = GuestMemory(16 << 20)
    mmio = Bus("mmio")
    fb, regs = FrameBuffer(1 << 20), Registers()
    a, b, above = 0xE000_0000, 0xE100_0000, 0xFEB0_0000
    mmio.register(above, 0x1000, regs)                      # an MMIO device above the frame buffer
    vcpu = RemVm(mem, Bus("io"), mmio).create_vcpu(0)
    mmio.register(a, len(fb.buf), fb)                       # the BAR is programmed while the vCPU exists
    fb.buf[0x104:0x108] = (0x1234).to_bytes(4, "little")
    assert _store_and_load(vcpu, mem, a + 0x100, 0xCAFE) == 0x1234
    assert fb.buf[0x100:0x104] == (0xCAFE).to_bytes(4, "little") and fb.calls == 0     # no bus calls
    assert _store_and_load(vcpu, mem, above + 0x10, 7) == 0xAB14 and regs.writes == [(0x10, 7)]
    mmio.unregister(fb)                                     # the BAR moves
    mmio.register(b, len(fb.buf), fb)
    assert _store_and_load(vcpu, mem, b + 0x200, 0xBEEF) == 0
    assert fb.buf[0x200:0x204] == (0xBEEF).to_bytes(4, "little") and fb.calls == 0
    assert _store_and_load(vcpu, mem, a + 0x300, 5) == 0xFFFF_FFFF   # its old place: nobody there
    assert _store_and_load(vcpu, mem, above + 0x20, 9) == 0xAB24 and regs.writes[-1] == (0x20, 9)
    mmio.unregister(fb)                                     # memory decode off
    assert _store_and_load(vcpu, mem, b + 0x200, 1) == 0xFFFF_FFFF and fb.buf[0x200] == 0xEF
    vcpu.close()
    mmio.register(a, len(fb.buf), fb)                       # a closed vCPU no longer follows the bus


def test_a_bar_moved_inside_the_guests_port_access_is_followed():
    # the guest moves the frame buffer with an OUT (as a BAR write through 0xCFC does) and stores
    # at its new place in the same run (through MMIO until the next run maps it); a later run finds
    # the buffer mapped at the new place only
    mem = GuestMemory(16 << 20)
    io, mmio = Bus("io"), Bus("mmio")
    fb = FrameBuffer(1 << 20)
    a, b = 0xE000_0000, 0xE200_0000

    class BarPort:
        def read(self, offset, size):
            return 0

        def write(self, offset, size, value):
            mmio.unregister(fb)
            mmio.register(b if value else a, len(fb.buf), fb)
    io.register(0x80, 1, BarPort())
    mmio.register(a, len(fb.buf), fb)
    vcpu = RemVm(mem, io, mmio).create_vcpu(0)
    # mov al, 1; out 0x80, al; mov dword [b+0x40], 0x5A5A; mov ebx, [b+0x40]; hlt
    code = (b"\xb0\x01\xe6\x80"
            + b"\xc7\x05" + (b + 0x40).to_bytes(4, "little") + (0x5A5A).to_bytes(4, "little")
            + b"\x8b\x1d" + (b + 0x40).to_bytes(4, "little") + b"\xf4")
    mem.write(CODE, code)
    vcpu.set_state(cpu_setup.protected_mode_32(mem, CODE))
    _run_to_halt(vcpu)
    assert vcpu.get_state().gpr["rbx"] & 0xFFFF_FFFF == 0x5A5A
    assert fb.buf[0x40:0x44] == (0x5A5A).to_bytes(4, "little") and fb.calls == 2      # through MMIO
    assert _store_and_load(vcpu, mem, b + 0x80, 0x77) == 0 and fb.buf[0x80] == 0x77
    assert fb.calls == 2                                                              # mapped now
    assert _store_and_load(vcpu, mem, a + 0x80, 0x66) == 0xFFFF_FFFF                   # old place: none
    # sized and put back (all-ones, then the old address) within one run: nothing to remap
    assert vcpu.physmap.direct_ranges == [(b, len(fb.buf))]
    mmio.unregister(fb)
    mmio.register(0xFF00_0000, len(fb.buf), fb)
    mmio.unregister(fb)
    mmio.register(b, len(fb.buf), fb)
    assert _store_and_load(vcpu, mem, b + 0x90, 0x55) == 0 and fb.buf[0x90] == 0x55 and fb.calls == 2
    assert vcpu.physmap.direct_ranges == [(b, len(fb.buf))]
