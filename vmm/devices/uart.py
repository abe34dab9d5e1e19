"""A 16450/16550A/16750 UART (VirtualBox's UartType), the guest's serial console.

Register space: 8 bytes (PC COM1-4: 0x3F8, 0x2F8, 0x3E8, 0x2E8), byte access only.
    0 RBR (read) / THR (write); DLL when LCR.DLAB=1     4 MCR (bit 4 loopback)
    1 IER; DLM when LCR.DLAB=1                          5 LSR
    2 IIR (read) / FCR (write)                          6 MSR
    3 LCR (bit 7 DLAB)                                  7 SCR

Transmission is instantaneous: a THR write goes straight to the backend, so THRE/TEMT stay set
and the THRE interrupt is re-armed after every write, which is what Linux's 8250 driver expects
(it re-checks THRE after enabling IER.THRI and refills 16 bytes per interrupt).  Reception pulls
bytes from the backend only while the RX FIFO has room (flow control instead of overruns);
the backend's thread merely arms a timer, so all UART work happens on the device thread.
The FIFO's character timeout (4 character times at the programmed baud rate) and the RX
trigger levels are modelled.  Like VirtualBox, the IRQ is not gated by MCR.OUT2.  The 16750's
64-byte FIFO is enabled by FCR bit 5 written while DLAB=1 (how Linux tells it from a 16550A).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

from vmm.devices.base import IrqLine
from vmm.serial.backends import DisconnectedBackend, SerialBackend
from vmm.tm import Clock


class UartType(IntEnum):
    U16450 = 0
    U16550A = 1
    U16750 = 2


# IIR interrupt identifications, in priority order
_IIR_NONE, _IIR_RLS, _IIR_RDA, _IIR_CTI, _IIR_THRE, _IIR_MSR = 0x01, 0x06, 0x04, 0x0C, 0x02, 0x00
_LSR_DR, _LSR_OE, _LSR_THRE, _LSR_TEMT, _LSR_ERRS = 0x01, 0x02, 0x20, 0x40, 0x1E
_UART_CLOCK = 115200          # 1.8432 MHz / 16


@dataclass
class UartState:
    rx: list[int] = field(default_factory=list)
    dll: int = 0x0C
    dlm: int = 0
    ier: int = 0
    lcr: int = 0
    mcr: int = 0
    lsr_errors: int = 0        # OE/PE/FE/BI, cleared by reading LSR
    msr_delta: int = 0         # MSR bits 0-3
    lines: int = 0xB0          # MSR bits 4-7 as last seen
    scr: int = 0
    fcr: int = 0               # bit 0 FIFO enable, bits 6-7 trigger, bit 5 64-byte (16750)
    thre_pending: bool = False
    timeout_pending: bool = False
    timeout_deadline: int | None = None


class Uart16550:
    """`uart_type` selects 16450 (no FIFO), 16550A (16-byte FIFO) or 16750 (16/64-byte FIFO)."""

    def __init__(self, irq: IrqLine, clock: Clock, backend: SerialBackend | None = None,
                 uart_type: UartType = UartType.U16550A,
                 on_input: Callable[[], None] | None = None):
        self.irq = irq
        self.clock = clock
        self.uart_type = UartType(uart_type)
        self.backend = backend if backend is not None else DisconnectedBackend()
        self.on_input = on_input        # runs on the backend thread: kick the vCPU
        self.s = UartState()
        self._rx: deque[int] = deque()
        self._timeout_timer = clock.new_timer(self._on_timeout)
        self._input_timer = clock.new_timer(self.pump)
        self.backend.set_input_notify(self._backend_has_input)
        if self.backend.has_input:                    # bytes that arrived before the UART existed
            self._input_timer.arm(clock.now_ns())
        self._update()

    # -- host side --------------------------------------------------------------------------------
    def _backend_has_input(self) -> None:
        """Backend thread: hand the work to the device thread through a due-now timer."""
        self._input_timer.arm(self.clock.now_ns())
        if self.on_input is not None:
            self.on_input()

    def pump(self) -> None:
        """Device thread: move waiting host input into the RX FIFO as far as it has room."""
        if self._pull():
            self._update()

    def _pull(self) -> bool:
        if self.s.mcr & 0x10 or not self.backend.has_input:
            return False
        room = self._capacity() - len(self._rx)
        if room <= 0:
            return False
        data = self.backend.read(room)
        if not data:
            return False
        self._rx.extend(data)
        self._restart_timeout()
        return True

    # -- FIFO parameters --------------------------------------------------------------------------
    def _fifo_on(self) -> bool:
        return self.uart_type != UartType.U16450 and bool(self.s.fcr & 0x01)

    def _fifo64(self) -> bool:
        return self.uart_type == UartType.U16750 and self._fifo_on() and bool(self.s.fcr & 0x20)

    def _capacity(self) -> int:
        if not self._fifo_on():
            return 1
        return 64 if self._fifo64() else 16

    def _trigger(self) -> int:
        if not self._fifo_on():
            return 1
        levels = (1, 16, 32, 56) if self._fifo64() else (1, 4, 8, 14)
        return levels[self.s.fcr >> 6]

    def _char_ns(self) -> int:
        lcr = self.s.lcr
        bits = 1 + 5 + (lcr & 3) + (1 if lcr & 0x08 else 0) + (2 if lcr & 0x04 else 1)
        divisor = (self.s.dlm << 8 | self.s.dll) or 0x10000
        return bits * divisor * 1_000_000_000 // _UART_CLOCK

    def _restart_timeout(self) -> None:
        s = self.s
        s.timeout_pending = False
        if self._fifo_on() and self._rx:
            s.timeout_deadline = self.clock.now_ns() + 4 * self._char_ns()
            self._timeout_timer.arm(s.timeout_deadline)
        else:
            s.timeout_deadline = None
            self._timeout_timer.cancel()

    def _on_timeout(self) -> None:
        self.s.timeout_deadline = None
        if self._rx and self._fifo_on():
            self.s.timeout_pending = True
            self._update()

    # -- interrupt logic --------------------------------------------------------------------------
    def _iir_id(self) -> int:
        s = self.s
        ier = s.ier
        if ier & 0x04 and s.lsr_errors:
            return _IIR_RLS
        if ier & 0x01:
            if self._rx and len(self._rx) >= self._trigger():
                return _IIR_RDA
            if s.timeout_pending and self._rx:
                return _IIR_CTI
        if ier & 0x02 and s.thre_pending:
            return _IIR_THRE
        if ier & 0x08 and s.msr_delta:
            return _IIR_MSR
        return _IIR_NONE

    def _update(self) -> None:
        self.irq.set_level(self._iir_id() != _IIR_NONE)

    def _modem_lines(self) -> int:
        mcr = self.s.mcr
        if mcr & 0x10:      # loopback: RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD
            return (((mcr & 0x02) << 3) | ((mcr & 0x01) << 5) | ((mcr & 0x04) << 4) | ((mcr & 0x08) << 4))
        return 0xB0         # the host side is always "ready": CTS, DSR, DCD

    def _refresh_lines(self) -> None:
        s = self.s
        new = self._modem_lines()
        changed = new ^ s.lines
        if changed & 0x10:
            s.msr_delta |= 0x01
        if changed & 0x20:
            s.msr_delta |= 0x02
        if changed & 0x40 and not new & 0x40:
            s.msr_delta |= 0x04      # trailing edge of RI
        if changed & 0x80:
            s.msr_delta |= 0x08
        s.lines = new

    # -- registers --------------------------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        if size != 1 or not 0 <= offset <= 7:
            return (1 << (8 * size)) - 1 if size in (1, 2, 4) else 0xFF
        s = self.s
        dlab = s.lcr & 0x80
        if offset == 0:
            if dlab:
                return s.dll
            v = self._rx.popleft() if self._rx else 0
            self._pull()
            self._restart_timeout()
            self._update()
            return v
        if offset == 1:
            return s.dlm if dlab else s.ier
        if offset == 2:
            iid = self._iir_id()
            if iid == _IIR_THRE:
                s.thre_pending = False
                self._update()
            v = iid
            if self._fifo_on():
                v |= 0xC0 | (0x20 if self._fifo64() else 0)
            return v
        if offset == 3:
            return s.lcr
        if offset == 4:
            return s.mcr
        if offset == 5:
            if not self._rx:
                self._pull()
            v = _LSR_THRE | _LSR_TEMT | s.lsr_errors | (_LSR_DR if self._rx else 0)
            if s.lsr_errors:
                s.lsr_errors = 0
                self._update()
            return v
        if offset == 6:
            v = s.lines | s.msr_delta
            if s.msr_delta:
                s.msr_delta = 0
                self._update()
            return v
        return s.scr

    def write(self, offset: int, size: int, value: int) -> None:
        if size != 1 or not 0 <= offset <= 7:
            return
        value &= 0xFF
        s = self.s
        dlab = s.lcr & 0x80
        if offset == 0:
            if dlab:
                s.dll = value
                return
            self._transmit(value)
        elif offset == 1:
            if dlab:
                s.dlm = value
                return
            if value & 0x02 and not s.ier & 0x02:
                s.thre_pending = True     # enabling THRI with an empty THR interrupts at once
            s.ier = value & 0x0F
        elif offset == 2:
            self._write_fcr(value)
        elif offset == 3:
            s.lcr = value
        elif offset == 4:
            was_loop = s.mcr & 0x10
            s.mcr = value & (0x3F if self.uart_type == UartType.U16750 else 0x1F)
            self._refresh_lines()
            if was_loop and not s.mcr & 0x10:
                self._pull()
        elif offset == 7:
            s.scr = value
        else:
            return                       # LSR and MSR are read-only here
        self._update()

    def _transmit(self, value: int) -> None:
        s = self.s
        if s.mcr & 0x10:
            if len(self._rx) >= self._capacity():
                s.lsr_errors |= _LSR_OE
            else:
                self._rx.append(value)
                self._restart_timeout()
        else:
            self.backend.write(bytes((value,)))
        s.thre_pending = True            # the (instant) transmitter is empty again

    def _write_fcr(self, value: int) -> None:
        if self.uart_type == UartType.U16450:
            return
        s = self.s
        old_on = self._fifo_on()
        keep64 = s.fcr & 0x20
        if self.uart_type == UartType.U16750 and s.lcr & 0x80:
            keep64 = value & 0x20
        s.fcr = (value & 0xC1) | keep64 if value & 0x01 else 0
        if old_on != self._fifo_on() or value & 0x02:
            self._rx.clear()
            s.timeout_pending = False
        self._pull()
        self._restart_timeout()

    # -- saved state ------------------------------------------------------------------------------
    def get_state(self) -> UartState:
        st = UartState(**{k: v for k, v in vars(self.s).items() if k != "rx"})
        st.rx = list(self._rx)
        return st

    def set_state(self, state: UartState) -> None:
        self.s = UartState(**{k: v for k, v in vars(state).items() if k != "rx"})
        self._rx = deque(b & 0xFF for b in state.rx[:self._capacity()])
        self._timeout_timer.cancel()
        if self.s.timeout_deadline is not None:
            self._timeout_timer.arm(self.s.timeout_deadline)
        self._update()
