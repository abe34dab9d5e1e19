"""Runs a test guest on either engine through the engine contract and EM, with tiny test devices.

Both engines get the same machine: guest RAM, F's 8259A pair and 8254 PIT on their usual
ports (userspace interrupt model, EM injecting), the result/input/done ports of guests.py
and a scratch MMIO page.  A run ends when the guest writes DONE_PORT, or EM stops (triple
fault, engine error), or the timeout passes.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field

import pytest

from tests.unit.vmm.hm.guests import LOAD, MMIO_BASE, RESULT_PORT, toolchain_missing
from vmm.bus import Bus
from vmm.engine import CpuState, Segment
from vmm.memory import GuestMemory

ENGINES = (pytest.param("hm", marks=pytest.mark.kvm), "rem")   # parametrisation of engine tests
# descriptor attribute words (contract layout) used by the tests' initial states
REAL_CODE, REAL_DATA, TSS_BUSY, LDT = 0x9B, 0x93, 0x8B, 0x82
CODE64, DATA32 = 0xA09B, 0xC093


def real_mode(cs: int, ip: int, sp: int) -> CpuState:
    """The flat-binary boot contract's entry state: real mode at cs:ip, interrupts off."""
    s = CpuState()
    s.gpr = {r: 0 for r in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11",
                            "r12", "r13", "r14", "r15")}
    s.gpr.update(rip=ip, rsp=sp, rflags=0x2)
    s.seg = {n: Segment(0, 0, 0xFFFF, REAL_DATA) for n in ("ds", "es", "fs", "gs", "ss")}
    s.seg["cs"] = Segment(cs, cs << 4, 0xFFFF, REAL_CODE)
    s.seg["tr"] = Segment(0, 0, 0xFFFF, TSS_BUSY)
    s.seg["ldtr"] = Segment(0, 0, 0xFFFF, LDT)
    s.gdt, s.idt = (0, 0xFFFF), (0, 0x3FF)
    s.cr0 = 0x10
    return s


@functools.cache
def hm_unusable() -> str:
    """'' when HM can run here, else why not."""
    from vmm.engine_select import detect_host
    host = detect_host()
    if not host.kvm_usable:
        return f"/dev/kvm unusable: {host.kvm_problem}"
    try:
        from vmm.hm.vm import HmVm
        vm = HmVm(GuestMemory(1 << 20))
        vm.close()
    except Exception as exc:   # the reason is the skip message
        return f"HM cannot create a VM: {exc}"
    return ""


@functools.cache
def rem_unavailable() -> str:
    try:
        import vmm.rem.engine  # noqa: F401
    except Exception as exc:
        return f"REM (vmm.rem) is not importable: {exc}"
    return ""


def require_engine(kind: str) -> None:
    missing = toolchain_missing()
    if missing:
        pytest.skip(f"test guests need GNU binutils ({missing} missing)")
    reason = hm_unusable() if kind == "hm" else rem_unavailable()
    if reason:
        pytest.skip(reason)


def pvm_host() -> bool:
    from vmm.engine_select import detect_host
    return detect_host().pvm


class TestPorts:
    """RESULT_PORT: OUT records a value; INPUT_PORT: IN returns 0x1000 + n-th read; DONE_PORT: finished."""

    def __init__(self, on_done=None):
        self.values: list[int] = []
        self.reads = 0
        self.done = False
        self.on_done = on_done

    def read(self, offset: int, size: int) -> int:
        mask = (1 << (8 * size)) - 1
        if offset == 1:
            self.reads += 1
            return (0x1000 + self.reads) & mask
        return mask

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == 0:
            self.values.append(value)
        elif offset == 2:
            self.done = True
            if self.on_done is not None:
                self.on_done()


class ScratchMmio:
    """Records writes; a read returns 0xA5000000 | offset."""

    def __init__(self):
        self.writes: list[tuple[int, int, int]] = []

    def read(self, offset: int, size: int) -> int:
        return (0xA500_0000 | offset) & ((1 << (8 * size)) - 1)

    def write(self, offset: int, size: int, value: int) -> None:
        self.writes.append((offset, size, value))


@dataclass
class Outcome:
    values: list[int]
    mmio_writes: list[tuple[int, int, int]]
    stop: tuple[str, str] | None = None          # EM's (reason, detail) if it stopped by itself
    done: bool = False
    stats: dict = field(default_factory=dict)


def make_engine(kind: str, memory: GuestMemory, io: Bus, mmio: Bus, paravirt: str = "none",
                os_type: str = ""):
    from vmm.engine_select import create_engine
    return create_engine(kind, memory, io, mmio, paravirt=paravirt, os_type_id=os_type)


def run_guest(kind: str, image: bytes, *, paravirt: str = "none", os_type: str = "",
              timeout: float = 30.0, ram: int = 4 << 20, clock=None, devices=None) -> Outcome:
    """clock: the machine's vmm.tm clock (default: a VirtualClock).  devices(pic, clock, io, em): adds
    test devices before the vCPU starts and returns a callable run once the guest is done."""
    from vmm.devices.base import IrqLine
    from vmm.devices.pic import PicPair
    from vmm.devices.pit import Pit8254
    from vmm.em import Em, StopReason
    from vmm.tm import VirtualClock

    memory = GuestMemory(ram)
    io, mmio = Bus("io"), Bus("mmio")
    clock = VirtualClock() if clock is None else clock
    pic = PicPair()
    pit = Pit8254(IrqLine(lambda level: pic.set_irq(0, level)), clock)
    io.register(0x20, 2, pic.master)
    io.register(0xA0, 2, pic.slave)
    io.register(0x40, 4, pit)
    finished = threading.Event()
    em_box: list = []
    ports = TestPorts(on_done=lambda: em_box[0].request_stop(StopReason.POWER_OFF, "guest done"))
    io.register(RESULT_PORT, 3, ports)
    scratch = ScratchMmio()
    mmio.register(MMIO_BASE, 0x1000, scratch)
    memory.write(LOAD, image)
    vm = make_engine(kind, memory, io, mmio, paravirt, os_type)
    stop: list[tuple[str, str]] = []
    try:
        vcpu = vm.create_vcpu(0)
        vcpu.set_state(real_mode(0, LOAD, 0x7000))

        def on_stop(reason, detail):
            stop.append((reason.name, detail))
            finished.set()

        em = Em(vcpu, pic, clock, io, mmio, on_reset=lambda: None, on_stop=on_stop)
        em_box.append(em)
        pic.on_change = em.interrupt_raised
        finish_devices = devices(pic, clock, io, em) if devices is not None else None
        em.start()
        timed_out = not finished.wait(timeout)
        if timed_out:
            em.power_off()
        if finish_devices is not None:
            finish_devices()
        if not em.join(10):
            raise RuntimeError("EM did not stop")
        outcome = Outcome(list(ports.values), list(scratch.writes), done=ports.done, stats=dict(em.stats))
        if stop and stop[0][0] != "POWER_OFF":
            outcome.stop = stop[0]
        if timed_out:
            outcome.stop = ("TIMEOUT", f"no DONE within {timeout} s")
        return outcome
    finally:
        vm.close()
        memory.close()
