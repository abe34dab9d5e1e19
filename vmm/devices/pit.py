"""The 8254 programmable interval timer and the PC's system control port B (port 0x61).

Linux calibrates the TSC against channel 2 and may tick from channel 0, so the counters must
follow the virtual clock exactly.  Counters are not stepped: each value is computed from the
clock when read, and channel 0 arms one `Timer` per OUT edge it must signal on IRQ0 (one
timer per period in the periodic modes, nothing while idle).

Register spaces (place them like a PC):
    Pit8254   4 bytes (PC: 0x40)  offsets 0-2 channel 0-2 counter, offset 3 control word
                                  (write-only; counter latch and read-back commands included)
    Port61    1 byte  (PC: 0x61)  bit 0 channel-2 gate, bit 1 speaker data enable, bits 2-3
                                  stored, bit 4 refresh toggle (read-only), bit 5 channel-2 OUT

Modes 0-5, LSB/MSB/LSB-then-MSB access, BCD counting, counter latch, read-back (count and
status).  Channels 0 and 1 have their gate tied high, channel 2's comes from port 0x61.
IRQ0 signalling: mode 0/1 drive the line with OUT (rising at terminal count); modes 2-5 send
a pulse at each rising edge of OUT.  Ticks that elapse while EM is not running timers are
coalesced into one edge (as a PIC would latch them).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from vmm.devices.base import IrqLine
from vmm.tm import Clock

PIT_HZ = 1_193_182
_NS = 1_000_000_000
_RW_LATCH, _RW_LSB, _RW_MSB, _RW_WORD = 0, 1, 2, 3


def _ticks(ns: int) -> int:
    return ns * PIT_HZ // _NS


def _ns(ticks: int) -> int:
    return -(-ticks * _NS // PIT_HZ)        # ceiling: the event is never early


def _from_bcd(v: int) -> int:
    return ((v >> 12) & 0xF) * 1000 + ((v >> 8) & 0xF) * 100 + ((v >> 4) & 0xF) * 10 + (v & 0xF)


def _to_bcd(v: int) -> int:
    return ((v // 1000 % 10) << 12) | ((v // 100 % 10) << 8) | ((v // 10 % 10) << 4) | (v % 10)


@dataclass
class PitChannelState:
    mode: int = 0
    rw: int = _RW_WORD
    bcd: bool = False
    reload: int = 0             # last count written (raw register value)
    count: int = 0              # the count in use (binary, 1..65536 / 1..10000)
    gate: bool = False
    started: bool = False       # a count is loaded and the counter is counting (or triggered)
    base_ticks: int = 0         # ticks counted before `since_ns`
    since_ns: int | None = None  # counting since (None: stopped by the gate)
    null_count: bool = True
    out_latched_high: bool = False   # mode 0/1: line already raised for this count
    write_lsb_next: bool = True
    write_lsb: int = 0
    read_lsb_next: bool = True
    latched: list[int] = field(default_factory=list)    # bytes still to read from a latch
    status_latch: int | None = None
    next_edge_ns: int | None = None  # channel with an IRQ: the armed edge


@dataclass
class PitState:
    channels: list[PitChannelState]


class _Channel:
    def __init__(self, pit: Pit8254, index: int, irq: IrqLine | None):
        self.pit = pit
        self.index = index
        self.irq = irq
        self.s = PitChannelState(gate=index != 2)
        self.timer = pit.clock.new_timer(self._on_timer) if irq is not None else None
        self.recent: deque = deque(maxlen=16)      # (event, ns, count): diagnostics (VBox.log on request)

    # -- time ---------------------------------------------------------------------------------
    def elapsed(self, now: int) -> int:
        s = self.s
        if s.since_ns is None:
            return s.base_ticks
        return s.base_ticks + _ticks(now - s.since_ns)

    def _modulus(self) -> int:
        return 10000 if self.s.bcd else 65536

    def value(self, now: int) -> int:
        """The counting element as the guest reads it (binary, before BCD encoding)."""
        s = self.s
        if not s.started:
            return s.count % self._modulus()
        d = self.elapsed(now)
        n = s.count
        if s.mode in (2, 3):
            d %= n
            if s.mode == 2:
                return n - d
            return n - (2 * d) % n
        return (n - d) % self._modulus()

    def out(self, now: int) -> bool:
        s = self.s
        if not s.started:
            return s.mode != 0
        d = self.elapsed(now)
        n = s.count
        if s.mode in (0, 1):
            return d >= n
        if s.mode == 2:
            return not s.gate or d % n != n - 1
        if s.mode == 3:
            return not s.gate or d % n < (n + 1) >> 1
        return d != n       # 4, 5: low for one clock at terminal count

    def next_edge_tick(self, now: int) -> int | None:
        """Tick count (in elapsed ticks) of the next rising OUT edge strictly after now, or None."""
        s = self.s
        if not s.started or s.since_ns is None:
            return None
        d = self.elapsed(now)
        n = s.count
        if s.mode in (0, 1):
            return n if d < n else None
        if s.mode in (2, 3):
            return (d // n + 1) * n
        return n + 1 if d <= n else None

    # -- IRQ ----------------------------------------------------------------------------------
    def schedule(self) -> None:
        if self.timer is None:
            return
        now = self.pit.clock.now_ns()
        t = self.next_edge_tick(now)
        s = self.s
        if t is None:
            self.timer.cancel()
            s.next_edge_ns = None
            return
        s.next_edge_ns = s.since_ns + _ns(t - s.base_ticks)
        self.timer.arm(s.next_edge_ns)

    def _on_timer(self) -> None:
        s = self.s
        self.recent.append(("edge", self.pit.clock.now_ns(), s.count))
        s.next_edge_ns = None
        if s.mode in (0, 1):
            if not s.out_latched_high:
                s.out_latched_high = True
                self.irq.set_level(True)
        else:
            self.irq.pulse()
        self.schedule()

    # -- gate ---------------------------------------------------------------------------------
    def set_gate(self, gate: bool) -> None:
        s = self.s
        if gate == s.gate:
            return
        now = self.pit.clock.now_ns()
        s.gate = gate
        if s.mode in (1, 5) or (s.mode in (2, 3) and gate):
            if gate and s.count:                  # rising edge (re)triggers and reloads
                s.started = True
                s.base_ticks = 0
                s.since_ns = now
                s.out_latched_high = False
                if s.mode == 1 and self.irq is not None:
                    self.irq.set_level(False)
        if s.mode in (0, 2, 3, 4) and s.started:
            if gate and s.since_ns is None:
                s.since_ns = now
            elif not gate and s.since_ns is not None:
                s.base_ticks = self.elapsed(now)
                s.since_ns = None
        self.schedule()

    # -- registers ----------------------------------------------------------------------------
    def control(self, value: int) -> None:
        s = self.s
        rw = (value >> 4) & 3
        if rw == _RW_LATCH:
            self.latch_count()
            return
        mode = (value >> 1) & 7
        s.mode = mode - 4 if mode >= 6 else mode
        s.rw = rw
        s.bcd = bool(value & 1)
        s.started = False
        s.since_ns = None
        s.base_ticks = 0
        s.null_count = True
        s.write_lsb_next = True
        s.read_lsb_next = True
        s.latched = []
        s.status_latch = None
        s.out_latched_high = False
        if self.irq is not None:
            self.irq.set_level(False)
        self.schedule()

    def latch_count(self) -> None:
        s = self.s
        if s.latched:
            return                               # a latch not yet read is kept
        v = self.value(self.pit.clock.now_ns())
        if s.bcd:
            v = _to_bcd(v % 10000)
        v &= 0xFFFF
        if s.rw == _RW_LSB:
            s.latched = [v & 0xFF]
        elif s.rw == _RW_MSB:
            s.latched = [v >> 8]
        else:
            s.latched = [v & 0xFF, v >> 8]

    def latch_status(self) -> None:
        s = self.s
        if s.status_latch is not None:
            return
        out = self.out(self.pit.clock.now_ns())
        s.status_latch = ((0x80 if out else 0) | (0x40 if s.null_count else 0) | (s.rw << 4)
                          | (s.mode << 1) | (1 if s.bcd else 0))

    def read(self) -> int:
        s = self.s
        if s.status_latch is not None:
            v = s.status_latch
            s.status_latch = None
            return v
        if s.latched:
            return s.latched.pop(0)
        v = self.value(self.pit.clock.now_ns())
        if s.bcd:
            v = _to_bcd(v % 10000)
        v &= 0xFFFF
        if s.rw == _RW_LSB:
            return v & 0xFF
        if s.rw == _RW_MSB:
            return v >> 8
        lsb = s.read_lsb_next
        s.read_lsb_next = not lsb
        return v & 0xFF if lsb else v >> 8

    def write(self, value: int) -> None:
        s = self.s
        if s.rw == _RW_LSB:
            self._load(value)
        elif s.rw == _RW_MSB:
            self._load(value << 8)
        elif s.write_lsb_next:
            s.write_lsb = value
            s.write_lsb_next = False
            if s.mode == 0 and s.started:        # mode 0: the first byte stops the count
                s.base_ticks = self.elapsed(self.pit.clock.now_ns())
                s.since_ns = None
        else:
            s.write_lsb_next = True
            self._load(s.write_lsb | (value << 8))

    def _load(self, raw: int) -> None:
        s = self.s
        now = self.pit.clock.now_ns()
        self.recent.append((f"load mode {s.mode}", now, raw))
        s.reload = raw
        n = _from_bcd(raw) if s.bcd else raw
        if n == 0:
            n = self._modulus()
        if s.mode in (2, 3) and n == 1:
            n = 2                                # a periodic count of 1 is illegal on the 8254
        s.null_count = False
        if s.mode in (2, 3) and s.started and s.since_ns is not None:
            # the new count takes effect at the end of the current period
            d = self.elapsed(now)
            boundary = (d // s.count + 1) * s.count
            s.since_ns = s.since_ns + _ns(boundary - s.base_ticks)
            s.base_ticks = 0
            s.count = n
            self.schedule()
            return
        s.count = n
        s.out_latched_high = False
        if s.mode in (0, 1) and self.irq is not None:
            self.irq.set_level(False)
        if s.mode in (1, 5):
            s.started = False                    # waits for a gate trigger
        else:
            s.started = True
            s.base_ticks = 0
            s.since_ns = now if s.gate else None
        self.schedule()


class Pit8254:
    """Three counters; channel 0's OUT goes to `irq0`."""

    def __init__(self, irq0: IrqLine, clock: Clock):
        self.clock = clock
        self._ch = [_Channel(self, 0, irq0), _Channel(self, 1, None), _Channel(self, 2, None)]
        self.speaker = False   # port 0x61 bit 1 (speaker data enable)

    def channel_out(self, index: int) -> bool:
        return self._ch[index].out(self.clock.now_ns())

    def set_gate(self, index: int, gate: bool) -> None:
        self._ch[index].set_gate(gate)

    def read(self, offset: int, size: int) -> int:
        if size != 1 or not 0 <= offset <= 2:
            return (1 << (8 * size)) - 1 if size in (1, 2, 4) else 0xFF
        return self._ch[offset].read()

    def recent(self, channel: int = 0) -> list[tuple[str, int, int]]:
        """The channel's last loads and OUT edges (event, ns, count), for diagnostics."""
        return list(self._ch[channel].recent)

    def write(self, offset: int, size: int, value: int) -> None:
        if size != 1 or not 0 <= offset <= 3:
            return
        value &= 0xFF
        if offset < 3:
            self._ch[offset].write(value)
            return
        sel = value >> 6
        if sel == 3:                             # read-back: bit5 = !count, bit4 = !status
            for i in range(3):
                if value & (2 << i):
                    if not value & 0x10:
                        self._ch[i].latch_status()
                    if not value & 0x20:
                        self._ch[i].latch_count()
            return
        self._ch[sel].control(value)

    def get_state(self) -> PitState:
        chans = []
        for c in self._ch:
            st = PitChannelState(**vars(c.s))
            st.latched = list(c.s.latched)
            chans.append(st)
        return PitState(channels=chans)

    def set_state(self, state: PitState) -> None:
        if len(state.channels) != 3:
            raise ValueError("PIT state needs 3 channels")
        for c, st in zip(self._ch, state.channels, strict=True):
            c.s = PitChannelState(**vars(st))
            c.s.latched = list(st.latched)
            if c.timer is not None:
                c.irq.set_level(c.s.mode in (0, 1) and c.s.out_latched_high)   # the line as it was
                c.timer.cancel()
                if c.s.next_edge_ns is not None:
                    c.timer.arm(c.s.next_edge_ns)     # an edge that was due still fires
                else:
                    c.schedule()


@dataclass
class Port61State:
    value: int = 0


class Port61:
    """System control port B: channel-2 gate and speaker enable in, channel-2 OUT and refresh out."""

    REFRESH_NS = 15_085          # the DRAM refresh request toggles about every 15 us

    def __init__(self, pit: Pit8254):
        self._pit = pit
        self._value = 0          # bits 0-3 as written

    def read(self, offset: int, size: int) -> int:
        if size != 1 or offset != 0:
            return (1 << (8 * size)) - 1 if size in (1, 2, 4) else 0xFF
        now = self._pit.clock.now_ns()
        v = self._value & 0x0F
        if (now // self.REFRESH_NS) & 1:
            v |= 0x10
        if self._pit.channel_out(2):
            v |= 0x20
        return v

    def write(self, offset: int, size: int, value: int) -> None:
        if size != 1 or offset != 0:
            return
        self._value = value & 0x0F
        self._pit.speaker = bool(value & 0x02)
        self._pit.set_gate(2, bool(value & 0x01))

    def get_state(self) -> Port61State:
        return Port61State(value=self._value)

    def set_state(self, state: Port61State) -> None:
        self._value = state.value & 0x0F
        self._pit.speaker = bool(self._value & 0x02)
