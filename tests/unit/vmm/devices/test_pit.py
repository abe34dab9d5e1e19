"""8254 PIT: counters follow a FakeClock; channel 0 edges on IRQ0 at the right virtual times."""

from vmm.devices.base import IrqLine
from vmm.devices.pit import PIT_HZ, Pit8254, Port61
from vmm.tm import FakeClock

NS = 1_000_000_000


def _ns(ticks):
    return -(-ticks * NS // PIT_HZ)


class Recorder:
    def __init__(self, clock):
        self.clock = clock
        self.rises = []
        self.line = IrqLine(self._sink)

    def _sink(self, level):
        if level:
            self.rises.append(self.clock.now_ns())


def _make():
    clock = FakeClock()
    rec = Recorder(clock)
    return clock, rec, Pit8254(rec.line, clock)


def test_mode2_periodic_irq0_edges():
    clock, rec, pit = _make()
    pit.write(3, 1, 0x34)                 # ch0, lo/hi, mode 2
    pit.write(0, 1, 1000 & 0xFF)
    pit.write(0, 1, 1000 >> 8)
    clock.advance(_ns(3500))
    assert rec.rises == [_ns(1000), _ns(2000), _ns(3000)]
    # the counter reads back through a latch: 3500 ticks in -> 500 left of the 4th period
    pit.write(3, 1, 0x00)
    lo, hi = pit.read(0, 1), pit.read(0, 1)
    assert lo | hi << 8 == 500


def test_mode2_new_count_takes_effect_at_reload():
    clock, rec, pit = _make()
    pit.write(3, 1, 0x34)
    pit.write(0, 1, 0x00)
    pit.write(0, 1, 0x01)                 # 256
    clock.advance(_ns(100))
    pit.write(0, 1, 0x00)
    pit.write(0, 1, 0x02)                 # 512, from tick 256 on
    clock.advance(_ns(256 + 512 + 512) + 10 - clock.now_ns())
    assert rec.rises[:2] == [_ns(256), _ns(768)] and len(rec.rises) == 3
    assert abs(rec.rises[2] - _ns(1280)) <= 1       # period rebased at the reload point


def test_mode0_one_shot_level_and_rearm():
    clock, rec, pit = _make()
    pit.write(3, 1, 0x30)                 # mode 0
    pit.write(0, 1, 100)
    pit.write(0, 1, 0)
    clock.advance(_ns(99))
    assert rec.rises == [] and not rec.line.level
    clock.advance(_ns(100) - clock.now_ns())
    assert rec.rises == [_ns(100)] and rec.line.level
    clock.advance(_ns(100000))
    assert len(rec.rises) == 1            # no further edges: OUT stays high
    pit.write(3, 1, 0x30)                 # new control word drops OUT
    assert not rec.line.level


def test_mode4_linux_oneshot_pulse():
    clock, rec, pit = _make()
    pit.write(3, 1, 0x38)                 # what Linux's pit_set_oneshot writes
    pit.write(0, 1, 0x10)
    pit.write(0, 1, 0x00)                 # 16 ticks
    clock.advance(_ns(200))
    assert rec.rises == [_ns(17)]         # OUT low at terminal count, rises a clock later
    assert not rec.line.level


def test_mode3_square_wave_readback_status_and_out():
    clock, rec, pit = _make()
    pit.write(3, 1, 0x36)                 # mode 3
    pit.write(0, 1, 100)
    pit.write(0, 1, 0)
    clock.advance(_ns(10))
    pit.write(3, 1, 0xE2)                 # read-back status of ch0 (count not latched)
    st = pit.read(0, 1)
    assert st == 0x80 | 0x30 | (3 << 1)   # OUT high, lo/hi, mode 3, count loaded
    clock.advance(_ns(60) - clock.now_ns())
    pit.write(3, 1, 0xE2)
    assert pit.read(0, 1) & 0x80 == 0     # second half: OUT low
    pit.write(3, 1, 0xD2)                 # read-back count only
    lo, hi = pit.read(0, 1), pit.read(0, 1)
    assert lo | hi << 8 == 100 - (2 * 60) % 100
    clock.advance(_ns(250) - clock.now_ns())
    assert rec.rises == [_ns(100), _ns(200)]


def test_latch_holds_value_and_lsb_msb_modes():
    clock, rec, pit = _make()
    pit.write(3, 1, 0x70)                 # ch1, lo/hi, mode 0
    pit.write(1, 1, 0x34)
    pit.write(1, 1, 0x12)
    clock.advance(_ns(0x34))
    pit.write(3, 1, 0x40)                 # latch ch1
    clock.advance(_ns(0x100))
    assert (pit.read(1, 1), pit.read(1, 1)) == (0x00, 0x12)
    pit.write(3, 1, 0x60)                 # ch1 MSB only, mode 0
    pit.write(1, 1, 0x02)                 # count 0x200
    t0 = clock.now_ns()
    clock.advance(_ns(0xFF))
    assert pit.read(1, 1) == 0x01         # 0x101 left
    clock.advance(t0 + _ns(0x101) - clock.now_ns())
    assert pit.read(1, 1) == 0x00         # 0xFF left
    pit.write(3, 1, 0x50)                 # LSB only
    pit.write(1, 1, 0x80)
    assert pit.read(1, 1) == 0x80


def test_bcd_counting():
    clock, rec, pit = _make()
    pit.write(3, 1, 0x71)                 # ch1 lo/hi mode 0 BCD
    pit.write(1, 1, 0x00)
    pit.write(1, 1, 0x10)                 # 1000 decimal
    clock.advance(_ns(1))
    pit.write(3, 1, 0x40)
    assert (pit.read(1, 1), pit.read(1, 1)) == (0x99, 0x09)   # 999 in BCD
    clock.advance(_ns(1000))
    pit.write(3, 1, 0x40)
    assert (pit.read(1, 1), pit.read(1, 1)) == (0x99, 0x99)   # wrapped to 9999


def test_channel2_gate_and_out_via_port61_like_tsc_calibration():
    clock, rec, pit = _make()
    p61 = Port61(pit)
    p61.write(0, 1, (p61.read(0, 1) & ~0x02) | 0x01)
    pit.write(3, 1, 0xB0)                 # ch2 lo/hi mode 0
    pit.write(2, 1, 0xFF)
    pit.write(2, 1, 0xFF)
    assert p61.read(0, 1) & 0x21 == 0x01
    clock.advance(_ns(0x100))
    # MSB decrements with time
    assert pit.read(2, 1) == 0xFF and pit.read(2, 1) == 0xFE
    clock.advance(_ns(0xFFFF))
    assert p61.read(0, 1) & 0x20
    # gate low stops counting in mode 0
    pit.write(3, 1, 0xB0)
    pit.write(2, 1, 0x00)
    pit.write(2, 1, 0x10)
    p61.write(0, 1, 0x00)
    clock.advance(_ns(0x5000))
    pit.write(3, 1, 0x80)
    assert (pit.read(2, 1), pit.read(2, 1)) == (0x00, 0x10)
    p61.write(0, 1, 0x01)
    clock.advance(_ns(0x800) + 1)
    pit.write(3, 1, 0x80)
    assert (pit.read(2, 1), pit.read(2, 1)) == (0x00, 0x08)
    assert rec.rises == []                # channel 2 has no IRQ


def test_refresh_bit_toggles():
    clock, rec, pit = _make()
    p61 = Port61(pit)
    a = p61.read(0, 1) & 0x10
    clock.advance(Port61.REFRESH_NS)
    assert p61.read(0, 1) & 0x10 != a


def test_hostile_sizes_and_offsets():
    clock, rec, pit = _make()
    pit.write(3, 2, 0x34)
    pit.write(7, 1, 0x34)
    assert pit.read(3, 1) == 0xFF
    assert pit.read(0, 4) == 0xFFFFFFFF
    assert clock.next_deadline() is None


def test_state_round_trip_keeps_ticking():
    clock, rec, pit = _make()
    p61 = Port61(pit)
    p61.write(0, 1, 0x03)
    pit.write(3, 1, 0x34)
    pit.write(0, 1, 0xE8)
    pit.write(0, 1, 0x03)                 # 1000
    clock.advance(_ns(1500))
    st, st61 = pit.get_state(), p61.get_state()
    rec2 = Recorder(clock)
    pit2 = Pit8254(rec2.line, clock)
    p61b = Port61(pit2)
    pit2.set_state(st)
    p61b.set_state(st61)
    assert pit2.get_state() == st and p61b.get_state() == st61 and pit2.speaker
    pit.write(3, 1, 0x30)                 # silence the original
    clock.advance(_ns(2500) - clock.now_ns())
    assert rec2.rises == [_ns(2000)]


def test_restored_mode0_line_keeps_edges_working():
    clock, rec, pit = _make()
    pit.write(3, 1, 0x30)
    pit.write(0, 1, 10)
    pit.write(0, 1, 0)
    clock.advance(_ns(20))
    assert rec.line.level
    rec2 = Recorder(clock)
    pit2 = Pit8254(rec2.line, clock)
    pit2.set_state(pit.get_state())
    assert rec2.line.level                 # OUT was high after terminal count
    pit2.write(0, 1, 10)
    pit2.write(0, 1, 0)                    # a new count drops OUT...
    assert not rec2.line.level
    clock.advance(_ns(10))
    assert rec2.line.level and len(rec2.rises) == 2   # ...and the next terminal count is a new edge


class SlowThreadClock(FakeClock):
    """Time moves on by `step_ns` at every read: the device thread is preempted between reads,
    as on a loaded host."""

    def __init__(self, step_ns):
        super().__init__()
        self.step_ns = step_ns

    def now_ns(self):
        self._now += self.step_ns
        return self._now


def test_short_oneshot_count_is_not_lost_when_the_loading_thread_is_preempted():
    # A tickless Linux programs counts of a few dozen ticks; if the edge passes before the PIT has
    # armed its timer, the edge must still come (late), or the guest waits for it for ever.
    for mode_word, expect_level in ((0x38, False), (0x30, True)):       # mode 4, mode 0
        clock = SlowThreadClock(step_ns=_ns(100))                        # 100 ticks per read
        rec = Recorder(clock)
        pit = Pit8254(rec.line, clock)
        pit.write(3, 1, mode_word)
        pit.write(0, 1, 44)
        pit.write(0, 1, 0)                                               # 44 ticks: ~37 us
        assert clock.run_due() == 1
        assert len(rec.rises) == 1 and rec.line.level is expect_level
        clock.step_ns = 0
        clock.advance(_ns(100_000))
        assert len(rec.rises) == 1                                       # one count, one edge


def test_periodic_reload_edge_survives_preemption():
    # mode 2: a new count takes effect at the end of the current period; that reload edge is
    # signalled even if the period ends while the write is being handled
    clock = SlowThreadClock(step_ns=0)
    rec = Recorder(clock)
    pit = Pit8254(rec.line, clock)
    pit.write(3, 1, 0x34)
    pit.write(0, 1, 0x00)
    pit.write(0, 1, 0x01)                  # 256
    clock.advance(_ns(240))
    clock.step_ns = _ns(10)                # the reload point (tick 256) passes during the write
    pit.write(0, 1, 0x00)
    pit.write(0, 1, 0x02)                  # 512, from tick 256 on
    assert clock.run_due() == 1 and len(rec.rises) == 1     # the period that ended during the write
    clock.step_ns = 0
    clock.advance(_ns(256 + 512) + 10 - clock.now_ns())
    assert len(rec.rises) == 2


def test_mode0_first_byte_stops_the_count_and_its_edge():
    clock, rec, pit = _make()
    pit.write(3, 1, 0x30)
    pit.write(0, 1, 100)
    pit.write(0, 1, 0)
    clock.advance(_ns(50))
    pit.write(0, 1, 100)                   # first byte of a new count: counting stops
    clock.advance(_ns(1000))
    assert rec.rises == [] and not rec.line.level
    pit.write(0, 1, 0)                     # second byte: 100 ticks from now
    start = clock.now_ns()
    clock.advance(_ns(200))
    assert len(rec.rises) == 1 and rec.rises[0] - start in (_ns(100), _ns(100) + 1)
