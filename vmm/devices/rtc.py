"""The MC146818 real-time clock and the PC's CMOS memory (with the memory-size bytes).

The guest reads its wall-clock time here at boot (Linux: mc146818_get_time) and firmware-style
configuration (memory size) from the CMOS bytes.  Time is host wall time at construction plus
the virtual clock's progress, so it stops while the VM is paused, like VirtualBox's RTC.

Register space: 4 bytes (PC: 0x70).  Offset 0 index (bit 7: NMI mask, kept in `nmi_masked`),
offset 1 data of bank 0 (CMOS 0x00-0x7F); offset 2/3 index/data of bank 1 (CMOS 0x80-0xFF).
Clock registers: 0x00 sec, 0x01 sec alarm, 0x02 min, 0x03 min alarm, 0x04 hour, 0x05 hour
alarm, 0x06 weekday (1 = Sunday), 0x07 day, 0x08 month, 0x09 year, 0x0A-0x0D registers A-D,
0x32 century.  BCD or binary (B.DM), 12/24 hour (B.24/12, PM = bit 7 of the hour).

Interrupts on IRQ8 (the line follows C.IRQF): periodic (A.RS), alarm, update-ended; flags in
register C are set whether or not enabled, and reading C clears them.  No timer is armed
unless an interrupt is enabled; flags are caught up lazily when register C is read.  Register
A's UIP is set during the last 244 us before each update.  B.SET and a divider in reset (A.DV
= 11x) freeze the time; leaving SET resumes from the written registers, leaving the divider
reset starts the second 500 ms later (as the data sheet says).  Daylight saving (B.DSE) is not
applied.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

from vmm.devices.base import IrqLine
from vmm.tm import Clock

_NS = 1_000_000_000
_UIP_NS = 244_000
_A, _B, _C, _D = 0x0A, 0x0B, 0x0C, 0x0D
_B_SET, _B_PIE, _B_AIE, _B_UIE, _B_DM, _B_24H = 0x80, 0x40, 0x20, 0x10, 0x04, 0x02
_C_IRQF, _C_PF, _C_AF, _C_UF = 0x80, 0x40, 0x20, 0x10
CENTURY_INDEX = 0x32


@dataclass
class RtcState:
    cmos: list[int] = field(default_factory=lambda: [0] * 256)
    index: tuple[int, int] = (0, 0x80)
    nmi_masked: bool = False
    offset_ns: int = 0               # guest epoch ns = clock.now_ns() + offset_ns
    frozen: bool = False             # SET or divider reset: the time lives in cmos[0..9]
    period_base_ns: int = 0          # phase origin of the periodic interrupt
    eval_ns: int = 0                 # flags are accounted up to this clock time
    irq_deadline: int | None = None


def _to_bcd(v: int) -> int:
    return ((v // 10) << 4) | (v % 10)


def _from_bcd(v: int) -> int:
    return (v >> 4) * 10 + (v & 0x0F)


class Rtc:
    """MC146818A RTC + 256 bytes of CMOS."""

    def __init__(self, irq: IrqLine, clock: Clock, *, ram_below_4g: int = 0, ram_above_4g: int = 0,
                 start_time: float | None = None, utc_offset_s: int = 0):
        self.irq = irq
        self.clock = clock
        self.s = RtcState()
        cm = self.s.cmos
        cm[_A] = 0x26                   # 32.768 kHz time base, 1024 Hz periodic rate
        cm[_B] = _B_24H
        cm[_D] = 0x80                   # valid RAM and time
        wall = time.time() if start_time is None else start_time
        now = clock.now_ns()
        self.s.offset_ns = int((wall + utc_offset_s) * _NS) - now
        self.s.period_base_ns = now
        self.s.eval_ns = now
        self._timer = clock.new_timer(self._on_timer)
        self._shown_second: int | None = None     # the second cmos[0..9] currently encode
        self.set_memory_size(ram_below_4g, ram_above_4g)

    def reset(self) -> None:
        """The chip's RESET pin (a machine reset): interrupt enables and flags clear; the time
        and the CMOS RAM are battery-backed and stay, so prefer this to restoring a saved state."""
        self._catch_up()
        cm = self.s.cmos
        cm[_B] &= ~(_B_PIE | _B_AIE | _B_UIE | 0x08)
        cm[_C] = 0
        self._update_irq()
        self._schedule()

    # -- CMOS contents for the VM builder ---------------------------------------------------------
    def set_cmos(self, index: int, value: int) -> None:
        if not 0x0E <= index <= 0xFF:
            raise ValueError(f"CMOS index {index:#x} is not RAM")
        self.s.cmos[index] = value & 0xFF

    def get_cmos(self, index: int) -> int:
        return self.s.cmos[index & 0xFF]

    def set_memory_size(self, ram_below_4g: int, ram_above_4g: int = 0) -> None:
        """The AT/VirtualBox BIOS memory-size bytes and the standard checksum."""
        if ram_below_4g < 0 or ram_above_4g < 0:
            raise ValueError("memory sizes must not be negative")
        base_kb = min(640, ram_below_4g // 1024)
        ext_kb = min(0xFFFF, max(0, ram_below_4g - 0x100000) // 1024)
        above16m = min(0xFFFF, max(0, ram_below_4g - 0x1000000) // 0x10000)
        above4g = min(0xFFFFFF, ram_above_4g // 0x10000)
        cm = self.s.cmos
        cm[0x15], cm[0x16] = base_kb & 0xFF, base_kb >> 8
        cm[0x17], cm[0x18] = ext_kb & 0xFF, ext_kb >> 8
        cm[0x30], cm[0x31] = ext_kb & 0xFF, ext_kb >> 8
        cm[0x34], cm[0x35] = above16m & 0xFF, above16m >> 8
        cm[0x5B], cm[0x5C], cm[0x5D] = above4g & 0xFF, (above4g >> 8) & 0xFF, above4g >> 16
        self._checksum()

    def _checksum(self) -> None:
        total = sum(self.s.cmos[0x10:0x2E]) & 0xFFFF
        self.s.cmos[0x2E], self.s.cmos[0x2F] = total >> 8, total & 0xFF

    # -- time -------------------------------------------------------------------------------------
    def _running(self) -> bool:
        return (self.s.cmos[_A] >> 4) & 7 not in (6, 7)

    def _guest_ns(self, now: int) -> int:
        return now + self.s.offset_ns

    def _enc(self, v: int) -> int:
        return v if self.s.cmos[_B] & _B_DM else _to_bcd(v)

    def _dec(self, v: int) -> int:
        return v if self.s.cmos[_B] & _B_DM else _from_bcd(v)

    def _enc_hour(self, h: int) -> int:
        if self.s.cmos[_B] & _B_24H:
            return self._enc(h)
        return self._enc(h % 12 or 12) | (0x80 if h >= 12 else 0)

    def _dec_hour(self, v: int) -> int:
        if self.s.cmos[_B] & _B_24H:
            return self._dec(v)
        h = self._dec(v & 0x7F) % 12
        return h + 12 if v & 0x80 else h

    def _store_time(self, t: dt.datetime) -> None:
        cm = self.s.cmos
        cm[0x00] = self._enc(t.second)
        cm[0x02] = self._enc(t.minute)
        cm[0x04] = self._enc_hour(t.hour)
        cm[0x06] = self._enc(t.isoweekday() % 7 + 1)
        cm[0x07] = self._enc(t.day)
        cm[0x08] = self._enc(t.month)
        cm[0x09] = self._enc(t.year % 100)
        cm[CENTURY_INDEX] = self._enc(t.year // 100)

    def _load_time(self) -> dt.datetime | None:
        cm = self.s.cmos
        try:
            year = self._dec(cm[CENTURY_INDEX]) * 100 + self._dec(cm[0x09])
            return dt.datetime(year, self._dec(cm[0x08]), self._dec(cm[0x07]), self._dec_hour(cm[0x04]),
                               self._dec(cm[0x02]), self._dec(cm[0x00]))
        except ValueError:
            return None         # nonsense from the guest: keep the old time

    def _datetime(self, guest_ns: int) -> dt.datetime:
        secs = guest_ns // _NS
        return dt.datetime(1970, 1, 1) + dt.timedelta(seconds=secs)

    def _set_from_registers(self, subsecond_ns: int) -> None:
        t = self._load_time()
        if t is None:
            return
        epoch = int((t - dt.datetime(1970, 1, 1)).total_seconds())
        self.s.offset_ns = epoch * _NS + subsecond_ns - self.clock.now_ns()

    def _refresh(self) -> None:
        if not self.s.frozen:
            sec = self._guest_ns(self.clock.now_ns()) // _NS
            if sec != self._shown_second:
                self._store_time(self._datetime(sec * _NS))
                self._shown_second = sec

    # -- events -----------------------------------------------------------------------------------
    def _period_ns(self) -> int | None:
        rs = self.s.cmos[_A] & 0x0F
        if not rs or not self._running():
            return None
        ticks = 1 << (rs + 6) if rs <= 2 else 1 << (rs - 1)
        return ticks * _NS // 32768

    def _next_period(self, after: int) -> int | None:
        p = self._period_ns()
        if p is None:
            return None
        base = self.s.period_base_ns
        return base + ((after - base) // p + 1) * p

    def _next_update(self, after: int) -> int | None:
        if self.s.frozen:
            return None
        g = self._guest_ns(after)
        return (g // _NS + 1) * _NS - self.s.offset_ns

    def _alarm_fields(self) -> list[list[int]] | None:
        """Per (hour, minute, second): the allowed values; None if the alarm can never match."""
        cm = self.s.cmos
        out = []
        for reg, limit in ((0x05, 24), (0x03, 60), (0x01, 60)):
            v = cm[reg]
            if v >= 0xC0:
                out.append(list(range(limit)))
                continue
            n = self._dec_hour(v) if reg == 0x05 else self._dec(v)
            if not 0 <= n < limit:
                return None
            out.append([n])
        return out

    def _next_alarm(self, after: int) -> int | None:
        if self.s.frozen:
            return None
        fields = self._alarm_fields()
        if fields is None:
            return None
        g = self._guest_ns(after)
        day0 = g // _NS // 86400 * 86400
        cur = g // _NS - day0
        for day in (0, 86400):
            for h in fields[0]:
                if day == 0 and (h + 1) * 3600 <= cur:
                    continue
                for m in fields[1]:
                    if day == 0 and h * 3600 + (m + 1) * 60 <= cur:
                        continue
                    for sec in fields[2]:
                        t = day + h * 3600 + m * 60 + sec
                        if t > cur:
                            return (day0 + t) * _NS - self.s.offset_ns
        return None

    def _catch_up(self) -> None:
        """Set PF/UF/AF for every event in (eval_ns, now]."""
        s = self.s
        now = self.clock.now_ns()
        if now <= s.eval_ns:
            return
        for fn, flag in ((self._next_period, _C_PF), (self._next_update, _C_UF), (self._next_alarm, _C_AF)):
            t = fn(s.eval_ns)
            if t is not None and t <= now:
                s.cmos[_C] |= flag
        s.eval_ns = now
        self._update_irq()

    def _update_irq(self) -> None:
        cm = self.s.cmos
        enabled = cm[_B] & (_B_PIE | _B_AIE | _B_UIE)
        if cm[_C] & enabled & (_C_PF | _C_AF | _C_UF):
            cm[_C] |= _C_IRQF
        self.irq.set_level(bool(cm[_C] & _C_IRQF))

    def _schedule(self) -> None:
        s = self.s
        cm = s.cmos
        deadline = None
        if not cm[_C] & _C_IRQF:
            b = cm[_B]
            now = self.clock.now_ns()
            for bit, fn in ((_B_PIE, self._next_period), (_B_UIE, self._next_update),
                            (_B_AIE, self._next_alarm)):
                if b & bit:
                    t = fn(now)
                    if t is not None and (deadline is None or t < deadline):
                        deadline = t
        s.irq_deadline = deadline
        if deadline is None:
            self._timer.cancel()
        else:
            self._timer.arm(deadline)

    def _on_timer(self) -> None:
        self.s.irq_deadline = None
        self._catch_up()
        self._schedule()

    # -- registers --------------------------------------------------------------------------------
    @property
    def nmi_masked(self) -> bool:
        return self.s.nmi_masked

    def read(self, offset: int, size: int) -> int:
        if size != 1 or offset not in (0, 1, 2, 3):
            return (1 << (8 * size)) - 1 if size in (1, 2, 4) else 0xFF
        if offset in (0, 2):
            return 0xFF                      # the index registers are write-only
        idx = self.s.index[0] if offset == 1 else self.s.index[1]
        return self._read_cmos(idx)

    def _read_cmos(self, idx: int) -> int:
        cm = self.s.cmos
        if idx <= 0x09 or idx == CENTURY_INDEX:
            if idx not in (0x01, 0x03, 0x05):
                self._refresh()
            return cm[idx]
        if idx == _A:
            v = cm[_A] & 0x7F
            if not self.s.frozen and self._running():
                g = self._guest_ns(self.clock.now_ns())
                if g % _NS >= _NS - _UIP_NS:
                    v |= 0x80
            return v
        if idx == _C:
            self._catch_up()
            v = cm[_C]
            cm[_C] = 0
            self._update_irq()
            self._schedule()
            return v
        if idx == _D:
            return 0x80
        return cm[idx]

    def write(self, offset: int, size: int, value: int) -> None:
        if size != 1 or offset not in (0, 1, 2, 3):
            return
        value &= 0xFF
        if offset == 0:
            self.s.nmi_masked = bool(value & 0x80)
            self.s.index = (value & 0x7F, self.s.index[1])
        elif offset == 2:
            self.s.index = (self.s.index[0], 0x80 | (value & 0x7F))
        else:
            self._write_cmos(self.s.index[0] if offset == 1 else self.s.index[1], value)

    def _write_cmos(self, idx: int, value: int) -> None:
        s = self.s
        self._shown_second = None       # the time registers may be rewritten below
        cm = s.cmos
        if idx <= 0x09 or idx == CENTURY_INDEX:
            if idx in (0x01, 0x03, 0x05):
                cm[idx] = value
                self._catch_up()
                self._schedule()
                return
            self._catch_up()
            self._refresh()
            cm[idx] = value
            if not s.frozen:
                self._set_from_registers(0)
                self._shown_second = None
            self._schedule()
            return
        if idx == _A:
            self._catch_up()
            was_running = self._running()
            cm[_A] = value & 0x7F
            restarted = not was_running and self._running()
            if restarted:
                s.period_base_ns = self.clock.now_ns()
            self._freeze_state_changed(divider_restarted=restarted)
            self._schedule()
            return
        if idx == _B:
            self._catch_up()
            old = cm[_B]
            cm[_B] = value
            if (old ^ value) & (_B_DM | _B_24H) and not s.frozen:
                self._refresh()                      # re-encode the time in the new format
            if value & _B_SET:
                cm[_B] &= ~_B_UIE                    # setting SET clears UIE (data sheet)
            self._freeze_state_changed(divider_restarted=False)
            self._update_irq()
            self._schedule()
            return
        if idx in (_C, _D):
            return                                   # read-only
        cm[idx] = value

    def _freeze_state_changed(self, divider_restarted: bool) -> None:
        s = self.s
        want_frozen = bool(s.cmos[_B] & _B_SET) or not self._running()
        if want_frozen and not s.frozen:
            self._refresh()
            s.frozen = True
        elif not want_frozen and s.frozen:
            s.frozen = False
            self._shown_second = None
            self._set_from_registers(_NS // 2 if divider_restarted else 0)
            s.eval_ns = self.clock.now_ns()

    # -- saved state ------------------------------------------------------------------------------
    def get_state(self) -> RtcState:
        self._catch_up()
        st = RtcState(**vars(self.s))
        st.cmos = list(self.s.cmos)
        return st

    def set_state(self, state: RtcState) -> None:
        if len(state.cmos) != 256:
            raise ValueError("RTC state needs 256 CMOS bytes")
        self.s = RtcState(**vars(state))
        self.s.cmos = [b & 0xFF for b in state.cmos]
        self._shown_second = None
        self._timer.cancel()
        if self.s.irq_deadline is not None:
            self._timer.arm(self.s.irq_deadline)
        self.irq.set_level(bool(self.s.cmos[_C] & _C_IRQF))
