"""The i8042 keyboard controller: what Linux probes at boot, the reset line and the A20 gate.

A PC reboots through this controller (command 0xFE pulses the CPU reset line; Linux's
`reboot=kbd`), and Linux's i8042/atkbd drivers probe it at boot; a controller that answers
wrongly costs seconds of timeouts.  The keyboard answers its protocol (reset, identify, LEDs,
scan enable, scan-code set...) and types what the host gives it (`put_scancodes`, set 1 as
VirtualBox's IKeyboard takes them): the keys wait in the keyboard's own queue, converted to
the keyboard's scan-code set, and reach the output buffer one byte at a time, only when it is
empty and no sooner than KEY_INTERVAL_NS after the previous key byte, so a BIOS whose type-ahead
buffer holds 15 keys, or a boot loader polling it, loses none.  No PS/2 mouse is attached, so
bytes sent to the aux port time out (status TIMEOUT + 0xFE), as on a real board without one.

Register spaces (the two ports are not adjacent on a PC, 0x61 sits between them):
    kbc.data     1 byte (PC: 0x60)  read output buffer / write data (keyboard or parameter)
    kbc.command  1 byte (PC: 0x64)  read status / write controller command
IRQs: keyboard data on `irq1` when CTR bit 0, aux data on `irq12` when CTR bit 1 (the line is
high while such a byte waits in the output buffer).  Callbacks: `on_reset()` for a reset
pulse, `on_a20(enabled)` when the A20 gate changes.  With CTR bit 6 (XLAT) set, key bytes are
translated from set 2 to set 1 as an 8042 does; command replies are not (Linux accepts an
untranslated identify reply).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from vmm.devices.base import IrqLine
from vmm.devices.scancodes import Translator, set1_to_set2

_ST_OBF, _ST_SYS, _ST_CMD, _ST_UNLOCKED, _ST_AUX, _ST_TIMEOUT = 0x01, 0x04, 0x08, 0x10, 0x20, 0x40
_CTR_KBDINT, _CTR_AUXINT, _CTR_SYS, _CTR_KBDDIS, _CTR_AUXDIS, _CTR_XLAT = 0x01, 0x02, 0x04, 0x10, 0x20, 0x40
_QUEUE_MAX = 16
KEY_QUEUE_MAX = 256                     # key bytes the keyboard holds before refusing more
KEY_INTERVAL_NS = 5_000_000             # at most one key byte per 5 ms of guest time
_ACK, _RESEND = 0xFA, 0xFE


@dataclass
class I8042State:
    ram: list[int] = field(default_factory=lambda: [0x65] + [0] * 31)   # ram[0] is the CTR
    queue: list[tuple[int, int]] = field(default_factory=list)          # (byte, status bits)
    pending_cmd: int | None = None
    last_was_cmd: bool = False
    a20: bool = True
    kbd_pending: int | None = None      # keyboard command waiting for its parameter
    kbd_scanning: bool = True
    kbd_leds: int = 0
    kbd_typematic: int = 0x2B
    kbd_set: int = 2
    keys: list[int] = field(default_factory=list)                       # key bytes not yet sent


class _Port:
    def __init__(self, kbc: I8042, is_command: bool):
        self._kbc = kbc
        self._cmd = is_command

    def read(self, offset: int, size: int) -> int:
        if size != 1 or offset != 0:
            return (1 << (8 * size)) - 1 if size in (1, 2, 4) else 0xFF
        return self._kbc._read_status() if self._cmd else self._kbc._read_data()

    def write(self, offset: int, size: int, value: int) -> None:
        if size != 1 or offset != 0:
            return
        if self._cmd:
            self._kbc._write_command(value & 0xFF)
        else:
            self._kbc._write_data(value & 0xFF)


class I8042:
    def __init__(self, irq1: IrqLine, irq12: IrqLine, on_reset: Callable[[], None] | None = None,
                 on_a20: Callable[[bool], None] | None = None, clock=None):
        self.irq1 = irq1
        self.irq12 = irq12
        self.on_reset = on_reset
        self.on_a20 = on_a20
        self.s = I8042State()
        self._q: deque[tuple[int, int]] = deque()
        self._keys: deque[int] = deque()
        self._xlat = Translator()
        self._key_timer = clock.new_timer(self._feed_key) if clock is not None else None
        self.data = _Port(self, False)
        self.command = _Port(self, True)

    @property
    def a20(self) -> bool:
        return self.s.a20

    @property
    def ctr(self) -> int:
        return self.s.ram[0]

    # -- output buffer ----------------------------------------------------------------------------
    def _push(self, byte: int, flags: int = 0) -> None:
        if len(self._q) < _QUEUE_MAX:
            self._q.append((byte & 0xFF, flags))
            self._update_irq()

    def _update_irq(self) -> None:
        kbd = aux = False
        if self._q:
            flags = self._q[0][1]
            if flags & _ST_AUX:
                aux = bool(self.ctr & _CTR_AUXINT)
            else:
                kbd = bool(self.ctr & _CTR_KBDINT)
        self.irq1.set_level(kbd)
        self.irq12.set_level(aux)

    def _read_status(self) -> int:
        st = _ST_UNLOCKED | (self.ctr & _CTR_SYS)
        if self.s.last_was_cmd:
            st |= _ST_CMD
        if self._q:
            st |= _ST_OBF | self._q[0][1]
        return st

    def _read_data(self) -> int:
        if not self._q:
            return 0x00
        byte, _ = self._q.popleft()
        self.irq1.lower()
        self.irq12.lower()            # a following byte makes a fresh edge
        self._update_irq()
        self._feed_key()
        return byte

    # -- key input ----------------------------------------------------------------------------------
    def put_scancodes(self, codes: list[int]) -> int:
        """Queue set-1 scan codes typed by the host; returns how many were taken (the rest: queue full)."""
        taken = 0
        for code in codes:
            code &= 0xFF
            out = [code] if self.s.kbd_set == 1 else set1_to_set2([code])
            if len(self._keys) + len(out) > KEY_QUEUE_MAX:
                break
            self._keys.extend(out)
            taken += 1
        self._feed_key()
        return taken

    @property
    def keys_pending(self) -> int:
        return len(self._keys)

    def _feed_key(self) -> None:
        """Move the next key byte into an empty output buffer, paced by the key timer."""
        if self._q or not self._keys or self.ctr & _CTR_KBDDIS or not self.s.kbd_scanning:
            return
        if self._key_timer is not None and self._key_timer.armed:
            return
        while self._keys:
            byte = self._keys.popleft()
            if self.ctr & _CTR_XLAT and self.s.kbd_set != 1:
                byte = self._xlat.feed(byte)
                if byte is None:
                    continue
            self._push(byte)
            break
        if self._key_timer is not None:
            self._key_timer.arm_in(KEY_INTERVAL_NS)

    # -- controller -------------------------------------------------------------------------------
    def _write_command(self, cmd: int) -> None:
        s = self.s
        s.last_was_cmd = True
        s.pending_cmd = None
        if 0x20 <= cmd <= 0x3F:
            self._push(s.ram[cmd & 0x1F])
        elif 0x60 <= cmd <= 0x7F or cmd in (0xD1, 0xD2, 0xD3, 0xD4):
            s.pending_cmd = cmd
        elif cmd == 0xA4:
            self._push(0xF1)                      # no password installed
        elif cmd == 0xA7:
            s.ram[0] |= _CTR_AUXDIS
        elif cmd == 0xA8:
            s.ram[0] &= ~_CTR_AUXDIS
        elif cmd in (0xA9, 0xAB):
            self._push(0x00)                      # interface test passed
        elif cmd == 0xAA:
            self._push(0x55)                      # self test passed
        elif cmd == 0xAD:
            s.ram[0] |= _CTR_KBDDIS
        elif cmd == 0xAE:
            s.ram[0] &= ~_CTR_KBDDIS
        elif cmd == 0xC0:
            self._push(0x80)                      # input port: keyboard not inhibited
        elif cmd == 0xD0:
            self._push(self._output_port())
        elif cmd == 0xDD:
            self._set_a20(False)
        elif cmd == 0xDF:
            self._set_a20(True)
        elif cmd == 0xE0:
            self._push(0x00)
        elif cmd >= 0xF0 and not cmd & 0x01:      # pulse output lines; bit 0 low = CPU reset
            self._reset()
        self._update_irq()
        self._feed_key()

    def _output_port(self) -> int:
        v = 0x01 | (0x02 if self.s.a20 else 0)
        if self._q:
            v |= 0x20 if self._q[0][1] & _ST_AUX else 0x10
        return v

    def _write_output_port(self, value: int) -> None:
        self._set_a20(bool(value & 0x02))
        if not value & 0x01:
            self._reset()

    def _set_a20(self, enabled: bool) -> None:
        if enabled != self.s.a20:
            self.s.a20 = enabled
            if self.on_a20 is not None:
                self.on_a20(enabled)

    def _reset(self) -> None:
        if self.on_reset is not None:
            self.on_reset()

    def _write_data(self, value: int) -> None:
        s = self.s
        s.last_was_cmd = False
        cmd, s.pending_cmd = s.pending_cmd, None
        if cmd is None:
            self._keyboard(value)
        elif 0x60 <= cmd <= 0x7F:
            s.ram[cmd & 0x1F] = value
            self._update_irq()
            self._feed_key()
        elif cmd == 0xD1:
            self._write_output_port(value)
        elif cmd == 0xD2:
            self._push(value)
        elif cmd == 0xD3:
            self._push(value, _ST_AUX)
        elif cmd == 0xD4:
            self._push(_RESEND, _ST_AUX | _ST_TIMEOUT)    # no mouse on the aux port

    # -- the keyboard's command protocol -----------------------------------------------------------
    def _keyboard(self, value: int) -> None:
        s = self.s
        s.ram[0] &= ~_CTR_KBDDIS                       # sending to the keyboard enables its clock
        pending, s.kbd_pending = s.kbd_pending, None
        if pending is not None and value < 0xED:       # the parameter of a previous command
            if pending == 0xED:
                s.kbd_leds = value & 0x07
                self._push(_ACK)
            elif pending == 0xF3:
                s.kbd_typematic = value & 0x7F
                self._push(_ACK)
            elif value == 0:                           # F0 00: report the scan-code set
                self._push(_ACK)
                self._push(s.kbd_set)
            elif value in (1, 2, 3):
                s.kbd_set = value
                self._push(_ACK)
            else:
                self._push(_RESEND)
            return
        if value == 0xFF:
            self._kbd_defaults()
            self._keys.clear()
            self._push(_ACK)
            self._push(0xAA)                           # basic assurance test passed
        elif value == 0xF2:
            self._push(_ACK)
            self._push(0xAB)
            self._push(0x83)
        elif value == 0xEE:
            self._push(0xEE)
        elif value in (0xED, 0xF0, 0xF3):
            s.kbd_pending = value
            self._push(_ACK)
        elif value == 0xF4:
            s.kbd_scanning = True
            self._push(_ACK)
            self._feed_key()
        elif value == 0xF5:
            self._kbd_defaults()
            s.kbd_scanning = False
            self._push(_ACK)
        elif value == 0xF6:
            self._kbd_defaults()
            self._push(_ACK)
        elif 0xF7 <= value <= 0xFE:
            self._push(_ACK)
        else:
            self._push(_RESEND)

    def _kbd_defaults(self) -> None:
        s = self.s
        s.kbd_scanning = True
        s.kbd_leds = 0
        s.kbd_typematic = 0x2B
        s.kbd_set = 2

    # -- saved state ------------------------------------------------------------------------------
    def get_state(self) -> I8042State:
        st = I8042State(**vars(self.s))
        st.ram = list(self.s.ram)
        st.queue = list(self._q)
        st.keys = list(self._keys)
        return st

    def set_state(self, state: I8042State) -> None:
        if len(state.ram) != 32:
            raise ValueError("i8042 state needs 32 RAM bytes")
        self.s = I8042State(**vars(state))
        self.s.ram = [b & 0xFF for b in state.ram]
        self._q = deque((b & 0xFF, f & (_ST_AUX | _ST_TIMEOUT)) for b, f in state.queue[:_QUEUE_MAX])
        self._keys = deque(b & 0xFF for b in state.keys[:KEY_QUEUE_MAX])
        self.s.queue = []
        self.s.keys = []
        self._update_irq()
