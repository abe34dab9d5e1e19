"""16550A/16450/16750 UART: register scripts as Linux's 8250 driver issues them, FakeClock."""

import pytest

from vmm.devices.base import IrqLine
from vmm.devices.uart import Uart16550, UartType
from vmm.serial.backends import SerialBackend
from vmm.tm import FakeClock

RBR, IER, IIR, LCR, MCR, LSR, MSR, SCR = range(8)
FCR = IIR


class MemBackend(SerialBackend):
    """In-memory host side: records output, serves queued input."""

    def __init__(self):
        super().__init__()
        self.out = bytearray()
        self.inq = bytearray()

    @property
    def has_input(self):
        return bool(self.inq)

    def read(self, n):
        d = bytes(self.inq[:n])
        del self.inq[:n]
        return d

    def write(self, data):
        self.out += data

    def feed(self, data):
        self.inq += data
        self._notify()


def _make(uart_type=UartType.U16550A):
    clock = FakeClock()
    irq = IrqLine()
    be = MemBackend()
    kicks = []
    u = Uart16550(irq, clock, be, uart_type, on_input=lambda: kicks.append(1))
    return clock, irq, be, u, kicks


def _w(u, off, v):
    u.write(off, 1, v)


def _r(u, off):
    return u.read(off, 1)


def test_thre_interrupt_after_ier_write_and_linux_bug_thre_probe():
    clock, irq, be, u, _ = _make()
    assert _r(u, LSR) & 0x60 == 0x60
    assert _r(u, IIR) & 0x0F == 0x01 and not irq.level
    _w(u, IER, 0x02)                      # THRI
    assert irq.level
    assert _r(u, IIR) & 0x0F == 0x02      # reading IIR with THRE as source clears it
    assert not irq.level and _r(u, IIR) & 0x0F == 0x01
    _w(u, IER, 0x00)
    _w(u, IER, 0x02)                      # re-enabling re-asserts (a real 16550, no UART_BUG_THRE)
    assert _r(u, IIR) & 0x0F == 0x02
    _w(u, RBR, ord("A"))                  # the write drains at once: THRE again
    assert irq.level and bytes(be.out) == b"A"


def test_transmit_with_fifo_and_divisor_latch():
    clock, irq, be, u, _ = _make()
    _w(u, LCR, 0x83)
    _w(u, RBR, 0x01)                      # DLL
    _w(u, IER, 0x00)                      # DLM
    assert (_r(u, RBR), _r(u, IER)) == (0x01, 0x00)
    _w(u, LCR, 0x03)
    for ch in b"hello\n":
        _w(u, RBR, ch)
    assert bytes(be.out) == b"hello\n"
    _w(u, SCR, 0x5A)
    assert _r(u, SCR) == 0x5A


def test_receive_trigger_level_and_character_timeout():
    clock, irq, be, u, kicks = _make()
    _w(u, LCR, 0x83)
    _w(u, RBR, 1)                          # 115200 baud
    _w(u, LCR, 0x03)                       # 8N1: 10 bits per character
    _w(u, FCR, 0x81)                       # FIFO on, trigger 8
    _w(u, IER, 0x01)
    be.feed(b"abc")
    assert kicks == [1]
    clock.advance(0)                       # EM runs the due timer on the device thread
    assert _r(u, LSR) & 0x01 and not irq.level     # 3 < trigger level
    char_ns = 10 * 1_000_000_000 // 115200
    clock.advance(4 * char_ns - 1)
    assert not irq.level
    clock.advance(1)
    assert irq.level and _r(u, IIR) & 0x0F == 0x0C  # character timeout
    assert bytes(_r(u, RBR) for _ in range(3)) == b"abc"
    assert not irq.level and not _r(u, LSR) & 0x01
    be.feed(b"0123456789")
    clock.advance(0)
    assert irq.level and _r(u, IIR) & 0x0F == 0x04  # received data available (10 >= 8)


def test_input_flow_control_never_overruns():
    clock, irq, be, u, _ = _make()
    _w(u, FCR, 0x07)
    data = bytes(range(40))
    be.feed(data)
    clock.advance(0)
    assert len(be.inq) == 40 - 16          # the FIFO took what it had room for
    got = bytearray()
    while _r(u, LSR) & 0x01:
        got.append(_r(u, RBR))
    assert bytes(got) == data and not _r(u, LSR) & 0x02


def test_fifo_detection_16550a_16450_16750():
    for kind, status in ((UartType.U16550A, (6, 6)), (UartType.U16750, (6, 7)), (UartType.U16450, (0, 0))):
        clock, irq, be, u, _ = _make(kind)
        # Linux autoconfig: 64-byte bit without DLAB, then with DLAB
        _w(u, LCR, 0)
        _w(u, FCR, 0x21)
        s1 = _r(u, IIR) >> 5
        _w(u, FCR, 0x01)
        _w(u, LCR, 0x80)
        _w(u, FCR, 0x21)
        s2 = _r(u, IIR) >> 5
        assert (s1, s2) == status, kind


def test_16750_64_byte_fifo_and_16450_single_byte():
    clock, irq, be, u, _ = _make(UartType.U16750)
    _w(u, LCR, 0x80)
    _w(u, FCR, 0x21)
    _w(u, LCR, 0x03)
    be.feed(bytes(100))
    clock.advance(0)
    assert len(be.inq) == 36
    clock, irq, be, u, _ = _make(UartType.U16450)
    _w(u, FCR, 0x07)                       # ignored: no FIFO
    be.feed(b"xy")
    clock.advance(0)
    assert len(be.inq) == 1 and _r(u, IIR) == 0x01


def test_loopback_msr_and_overrun():
    clock, irq, be, u, _ = _make()
    _w(u, MCR, 0x10 | 0x0A)                # Linux's loopback probe: RTS + OUT2
    assert _r(u, MSR) & 0xF0 == 0x90
    _w(u, MCR, 0x10 | 0x05)                # DTR + OUT1 -> DSR + RI
    assert _r(u, MSR) & 0xF0 == 0x60
    _w(u, IER, 0x04)                       # RLS interrupts
    _w(u, RBR, 0x11)
    _w(u, RBR, 0x22)                       # FIFO off: 1-byte buffer overruns
    assert irq.level and _r(u, IIR) & 0x0F == 0x06
    assert _r(u, LSR) & 0x03 == 0x03
    assert not _r(u, LSR) & 0x02 and not irq.level     # OE cleared by the read
    assert _r(u, RBR) == 0x11 and be.out == b""
    _w(u, IER, 0x08)                       # modem status interrupt
    _w(u, MCR, 0x10)                       # drop DTR/OUT1: delta DSR and trailing-edge RI
    assert irq.level and _r(u, IIR) & 0x0F == 0x00
    assert _r(u, MSR) & 0x0F == 0x06
    assert not irq.level


def test_hostile_accesses():
    clock, irq, be, u, _ = _make()
    u.write(8, 1, 0x41)
    u.write(0, 2, 0x4141)
    assert be.out == b""
    assert u.read(0, 4) == 0xFFFFFFFF and u.read(9, 1) == 0xFF
    _w(u, LSR, 0xFF)
    assert _r(u, LSR) == 0x60


def test_state_round_trip():
    clock, irq, be, u, _ = _make()
    _w(u, FCR, 0xC1)
    _w(u, IER, 0x01)
    _w(u, SCR, 7)
    be.feed(b"hi")
    clock.advance(0)
    st = u.get_state()
    assert st.rx == [ord("h"), ord("i")] and st.timeout_deadline is not None
    irq2 = IrqLine()
    u2 = Uart16550(irq2, clock, MemBackend())
    u2.set_state(st)
    assert u2.get_state() == st
    clock.advance(10**9)
    assert irq2.level and _r(u2, IIR) == 0xCC
    assert _r(u2, RBR) == ord("h") and _r(u2, SCR) == 7


@pytest.mark.parametrize("bad", [-1, 3])
def test_uart_type_must_be_known(bad):
    with pytest.raises(ValueError):
        Uart16550(IrqLine(), FakeClock(), None, bad)


def _linux_autoconfig(u):
    """Linux 6.1 serial8250 autoconfig() + startup checks, step by step; returns what it concludes."""
    r = {}
    scratch = _r(u, IER)
    _w(u, IER, 0)
    scratch2 = _r(u, IER) & 0x0F
    _w(u, IER, 0x0F)
    scratch3 = _r(u, IER) & 0x0F
    _w(u, IER, scratch)
    r["present"] = scratch2 == 0 and scratch3 == 0x0F
    save_mcr = _r(u, MCR)
    _w(u, MCR, 0x10 | 0x0A)
    r["loopback_ok"] = _r(u, MSR) & 0xF0 == 0x90
    _w(u, MCR, save_mcr)
    _w(u, LCR, 0xBF)
    _w(u, 2, 0)                        # EFR := 0
    _w(u, LCR, 0)
    _w(u, FCR, 0x01)
    r["iir_fifo"] = _r(u, IIR) >> 6
    if r["iir_fifo"] == 3:
        _w(u, LCR, 0x80)
        r["efr_dlab"] = _r(u, 2)        # 0 would mean an ST16C650V1
        _w(u, LCR, 0xBF)
        r["efr_bf"] = _r(u, 2)
        _w(u, LCR, 0)
        _w(u, FCR, 0x21)
        s1 = _r(u, IIR) >> 5
        _w(u, FCR, 0x01)
        _w(u, LCR, 0x80)
        _w(u, FCR, 0x21)
        s2 = _r(u, IIR) >> 5
        _w(u, FCR, 0x01)
        _w(u, LCR, 0)
        r["is_16750"] = (s1, s2) == (6, 7)
        ier = _r(u, IER)
        _w(u, IER, ier | 0x40)
        r["xscale"] = bool(_r(u, IER) & 0x40)
        _w(u, IER, ier)
    _w(u, MCR, save_mcr)
    _w(u, FCR, 0x07)
    _w(u, FCR, 0x00)
    _r(u, RBR)
    _w(u, IER, 0)
    # serial8250_do_startup: THRE re-assertion test, then the TXEN test
    _r(u, LSR), _r(u, RBR), _r(u, IIR), _r(u, MSR)
    _w(u, IER, 0x02)
    iir1 = _r(u, IIR)
    _w(u, IER, 0)
    _w(u, IER, 0x02)
    iir = _r(u, IIR)
    _w(u, IER, 0)
    r["bug_thre"] = bool(not iir1 & 0x01 and iir & 0x01)
    _w(u, LCR, 0x03)
    _w(u, MCR, 0x08)                   # OUT2
    _w(u, IER, 0x02)
    lsr, iir = _r(u, LSR), _r(u, IIR)
    _w(u, IER, 0)
    r["bug_txen"] = bool(lsr & 0x40 and iir & 0x01)
    return r


def test_linux_8250_autoconfig_sees_a_clean_16550a():
    clock, irq, be, u, _ = _make()
    r = _linux_autoconfig(u)
    assert r == {"present": True, "loopback_ok": True, "iir_fifo": 3, "efr_dlab": 0xC1, "efr_bf": 0xC1,
                 "is_16750": False, "xscale": False, "bug_thre": False, "bug_txen": False}
    assert be.out == b""               # probing sent nothing to the host
    r750 = _linux_autoconfig(_make(UartType.U16750)[3])
    assert r750["is_16750"] and not r750["bug_thre"]
    r450 = _linux_autoconfig(_make(UartType.U16450)[3])
    assert r450["iir_fifo"] == 0 and r450["present"] and not r450["bug_txen"]


def test_input_waiting_before_the_uart_exists_is_picked_up():
    clock = FakeClock()
    be = MemBackend()
    be.inq += b"early"
    irq = IrqLine()
    u = Uart16550(irq, clock, be)
    _w(u, IER, 0x01)
    assert not irq.level
    clock.advance(0)                        # the device thread's due timer moves it in
    assert irq.level and u.get_state().rx == [ord("e")]
