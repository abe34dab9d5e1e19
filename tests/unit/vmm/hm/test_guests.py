"""The same self-built guests on both engines (HM and REM) through the engine contract and EM."""

import random
import threading
import time

import pytest

from tests.unit.vmm.hm import guests
from tests.unit.vmm.hm.harness import ENGINES, pvm_host, require_engine, run_guest
from vmm.tm import VirtualClock

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=ENGINES)
def engine(request):
    require_engine(request.param)
    return request.param


def test_real_mode_port_io_and_string_io(engine):
    out = run_guest(engine, guests.assemble(guests.REAL_MODE_IO))
    assert out.stop is None and out.done
    # OUT; IN (first read); REP OUTSB x3; REP INSW x2 (reads 2 and 3)
    assert out.values == [0x1335, 0x1001, 0xA1, 0xB2, 0xC3, 0x1002, 0x1003]


def test_protected_mode_mmio(engine):
    out = run_guest(engine, guests.assemble(guests.PROTECTED_MMIO))
    assert out.stop is None and out.done
    assert out.values == [0xA500_0004, 0x11223344]
    assert out.mmio_writes == [(0, 4, 0xCAFEF00D), (8, 2, 0xBEEF)]


def test_protected_mode_paging(engine):
    if engine == "hm" and pvm_host():
        pytest.skip("PVM (kvm_pvm) cannot run 32-bit paging: setting CR0.PG without EFER.LME raises #GP "
                    "and the guest triple-faults (see test_pvm_rejects_32bit_paging)")
    out = run_guest(engine, guests.assemble(guests.PROTECTED_PAGING))
    assert out.stop is None and out.done
    assert out.values == [0x5EED1234, 0x77]


@pytest.mark.kvm
def test_pvm_rejects_32bit_paging():
    """Documents the PVM limitation the skip above relies on: HM reports it as a triple fault."""
    require_engine("hm")
    if not pvm_host():
        pytest.skip("not a PVM host")
    out = run_guest("hm", guests.assemble(guests.PROTECTED_PAGING))
    assert not out.done and out.stop is not None and out.stop[0] == "TRIPLE_FAULT"


def test_long_mode(engine):
    out = run_guest(engine, guests.assemble(guests.LONG_MODE))
    assert out.stop is None and out.done
    assert out.values == [0xABCDEF01, 0x23456789, 0xA500_000C, 0xA500_0028, 0xA500_002C, 0x500]
    assert out.mmio_writes == [(16, 4, 0x5555AAAA), (32, 4, 0x55667788), (36, 4, 0x11223344)]


def test_pit_interrupts_wake_hlt(engine):
    out = run_guest(engine, guests.assemble(guests.PIT_INTERRUPTS))
    assert out.stop is None and out.done
    assert out.values[0] >= 3 and out.values[1] == 1
    assert out.stats["interrupts"] >= 3 and out.stats["halts"] >= 3


class PreemptedClock(VirtualClock):
    """Host time plus 40 us more at every read: as if the device thread were preempted between any
    two reads, which a loaded host does now and then."""

    def __init__(self):
        super().__init__()
        self._skew = 0
        self._skew_lock = threading.Lock()
        self._last = 0

    def now_ns(self):
        with self._skew_lock:                 # EM's ticker reads it too: stay monotonic
            self._skew += 40_000
            self._last = max(self._last, super().now_ns() + self._skew)
            return self._last


def test_tickless_pit_oneshots_survive_a_preempted_device_thread(engine):
    # each one-shot count (20 ticks, ~17 us) elapses before the PIT has armed its timer; its edge
    # must come late rather than never, or the guest stays halted.  (A late edge may be taken
    # right after IRET, before the guest halts again: not every interrupt wakes an HLT.)
    out = run_guest(engine, guests.assemble(guests.PIT_ONESHOT), clock=PreemptedClock(), timeout=60)
    assert out.stop is None and out.done
    assert out.values[0] == 200 and out.values[1] > 0       # all 200 came; the guest waited in HLT
    assert out.stats["interrupts"] >= 200 and out.stats["halts"] > 0


class ForeignDevice:
    """Raises IRQ1 from its own thread as the serial, NIC and HGCM back ends do (a due-now timer armed
    on the clock, the edge given on the vCPU thread), at seeded random moments, one interrupt at a time."""

    def __init__(self, pic, clock, io, count, seed):
        self.acked = threading.Event()
        self.raised = 0
        self.lost = None
        self._stop = threading.Event()
        self._pic = pic
        self._timer = clock.new_timer(self._edge)
        self._clock = clock
        self._count = count
        self._rnd = random.Random(seed)
        io.register(guests.ACK_PORT, 1, self)
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._thread.start()

    def _edge(self):                      # vCPU thread
        self._pic.set_irq(1, True)
        self._pic.set_irq(1, False)

    def _work(self):
        if not self.acked.wait(20):       # the guest has set up its 8259A
            self.lost = -1
            return
        for i in range(self._count):
            if self._stop.is_set():           # the run ended (a failure): raise no more
                return
            pause = self._rnd.choice((0, 0.00005, 0.0005, 0.002))
            if pause:
                time.sleep(pause)
            self.acked.clear()
            self.raised += 1
            self._timer.arm(self._clock.now_ns())
            if not self.acked.wait(20):   # bounded: a lost interrupt is reported, not waited for
                self.lost = i
                return

    def read(self, offset, size):
        return 0xFF

    def write(self, offset, size, value):
        self.acked.set()

    def finish(self):
        self._stop.set()
        self._thread.join(30)


@pytest.mark.parametrize("seed", [7, 8])
def test_interrupts_raised_from_another_thread_are_never_lost_across_hlt(engine, seed):
    box = []

    def devices(pic, clock, io, em):
        box.append(ForeignDevice(pic, clock, io, 300, seed))
        return box[0].finish
    out = run_guest(engine, guests.assemble(guests.FOREIGN_IRQS), devices=devices, timeout=60)
    assert box[0].lost is None, f"interrupt {box[0].lost} was never taken"
    assert out.stop is None and out.done
    assert out.values == [300] and box[0].raised == 300


def test_triple_fault_stops_the_vm(engine):
    out = run_guest(engine, guests.assemble(guests.TRIPLE_FAULT))
    assert not out.done and out.values == [0x11]     # reached protected mode, then faulted
    assert out.stop is not None and out.stop[0] == "TRIPLE_FAULT"


@pytest.mark.parametrize("provider,signature,features", [
    ("kvm", (0x4000_0001, 0x4B4D564B, 0x564B4D56, 0x4D), None),
    ("hyperv", (0x4000_0006, 0x786F4256, 0x786F4256, 0x786F4256), 0x3123_7648),
    ("minimal", (0x4000_0010, 0, 0, 0), 0),
    ("none", (0, 0, 0, 0), 0),
])
def test_cpuid_paravirt_leaves(engine, provider, signature, features):
    out = run_guest(engine, guests.assemble(guests.CPUID), paravirt=provider)
    assert out.stop is None and out.done
    hvp, *regs, leaf1_eax = out.values
    assert hvp == (0 if provider == "none" else 1)
    assert tuple(regs) == signature
    if features is not None:
        assert leaf1_eax == features
    elif engine == "hm":
        assert leaf1_eax & 1     # KVM clocksource offered: KVM implements the MSRs


class RaiseIrq1:
    """Raises IRQ1 when the guest writes its port, on the vCPU thread inside the access (as a UART
    raises its THRE interrupt when the driver writes a byte)."""

    def __init__(self, pic):
        self._pic = pic

    def read(self, offset, size):
        return 0xFF

    def write(self, offset, size, value):
        self._pic.set_irq(1, True)
        self._pic.set_irq(1, False)


def _irq1_on_write(pic, clock, io, em):
    io.register(guests.ACK_PORT, 1, RaiseIrq1(pic))


def test_an_interrupt_behind_the_timer_is_not_starved(engine):
    out = run_guest(engine, guests.assemble(guests.STARVED_IRQ), devices=_irq1_on_write, timeout=60)
    assert out.stop is None and out.done
    raised, taken = out.values
    assert raised == 3 and raised <= taken <= raised + 1, (raised, taken)


def test_an_interrupt_waiting_for_if_is_taken_right_after_sti(engine):
    out = run_guest(engine, guests.assemble(guests.IRQ_AFTER_STI), devices=_irq1_on_write, timeout=60)
    assert out.stop is None and out.done
    # REM stops at the instruction after STI's shadow (its interrupt window); under KVM the exit
    # is the host's (on PVM it comes some rounds later): there the interrupt must just be taken
    limit = 1 if engine == "rem" else 1_000_000
    assert out.values[0] <= limit, f"{out.values[0]} loop rounds ran with the interrupt pending and IF set"
