"""i8042: Linux's probe sequence, keyboard protocol, no-mouse aux timeouts, reset and A20."""

from vmm.devices.base import IrqLine
from vmm.devices.i8042 import I8042


def _make():
    events = []
    irq1, irq12 = IrqLine(), IrqLine()
    kbc = I8042(irq1, irq12, on_reset=lambda: events.append("reset"),
                on_a20=lambda on: events.append(("a20", on)))
    return kbc, irq1, irq12, events


def cmd(kbc, c):
    kbc.command.write(0, 1, c)


def data(kbc, v):
    kbc.data.write(0, 1, v)


def status(kbc):
    return kbc.command.read(0, 1)


def read_all(kbc):
    out = []
    while status(kbc) & 0x01:
        out.append(kbc.data.read(0, 1))
    return out


def test_linux_probe_selftest_and_ctr():
    kbc, irq1, irq12, _ = _make()
    assert status(kbc) & 0x01 == 0
    cmd(kbc, 0xAA)
    assert status(kbc) & 0x01 and kbc.data.read(0, 1) == 0x55
    cmd(kbc, 0x20)
    ctr = kbc.data.read(0, 1)
    assert ctr == 0x65
    cmd(kbc, 0x60)
    data(kbc, 0x47)                       # KBDINT | AUXINT | SYS | XLATE
    cmd(kbc, 0x20)
    assert read_all(kbc) == [0x47]
    assert status(kbc) & 0x04             # SYS flag follows the CTR
    cmd(kbc, 0xAB)
    assert read_all(kbc) == [0x00]


def test_aux_loop_raises_irq12_and_aux_without_mouse_times_out():
    kbc, irq1, irq12, _ = _make()
    cmd(kbc, 0x60)
    data(kbc, 0x47)
    cmd(kbc, 0xD3)
    data(kbc, 0x5A)                       # AUX_LOOP: the byte comes back as aux data
    assert irq12.level and not irq1.level
    assert status(kbc) & 0x21 == 0x21
    assert kbc.data.read(0, 1) == 0x5A and not irq12.level
    cmd(kbc, 0xD4)
    data(kbc, 0xF2)                       # to the (absent) mouse
    st = status(kbc)
    assert st & 0x61 == 0x61 and kbc.data.read(0, 1) == 0xFE


def test_keyboard_protocol_and_irq1_edges():
    kbc, irq1, irq12, _ = _make()
    cmd(kbc, 0x60)
    data(kbc, 0x01)                       # KBDINT only
    rises = []
    irq1._sink = lambda level: rises.append(level)
    data(kbc, 0xFF)
    assert kbc.data.read(0, 1) == 0xFA
    assert kbc.data.read(0, 1) == 0xAA
    assert rises == [True, False, True, False]   # each byte is its own edge
    data(kbc, 0xF2)
    assert read_all(kbc) == [0xFA, 0xAB, 0x83]
    data(kbc, 0xED)
    data(kbc, 0x07)
    assert read_all(kbc) == [0xFA, 0xFA] and kbc.s.kbd_leds == 7
    data(kbc, 0xF0)
    data(kbc, 0x00)
    assert read_all(kbc) == [0xFA, 0xFA, 0x02]
    data(kbc, 0xEE)
    assert read_all(kbc) == [0xEE]
    data(kbc, 0xF5)
    data(kbc, 0x12)                       # not a command
    assert read_all(kbc) == [0xFA, 0xFE] and not kbc.s.kbd_scanning
    assert not irq12.level


def test_reset_line_and_a20():
    kbc, irq1, irq12, events = _make()
    assert kbc.a20
    cmd(kbc, 0xD0)
    assert kbc.data.read(0, 1) & 0x03 == 0x03
    cmd(kbc, 0xD1)
    data(kbc, 0x01)                       # A20 off, no reset
    assert events == [("a20", False)] and not kbc.a20
    cmd(kbc, 0xDF)
    assert kbc.a20
    cmd(kbc, 0xFE)                        # pulse reset
    assert events[-1] == "reset"
    cmd(kbc, 0xF1)                        # bit 0 high: no reset pulse
    assert events[-1] == "reset" and events.count("reset") == 1
    cmd(kbc, 0xD1)
    data(kbc, 0x02)                       # output port bit 0 low: reset
    assert events.count("reset") == 2


def test_ram_commands_queue_bound_and_hostile():
    kbc, irq1, irq12, events = _make()
    cmd(kbc, 0x65)
    data(kbc, 0x99)
    cmd(kbc, 0x25)
    assert read_all(kbc) == [0x99]
    for _ in range(100):
        cmd(kbc, 0xAA)
    assert len(read_all(kbc)) == 16       # bounded output queue
    kbc.data.write(1, 1, 0xFF)
    kbc.command.write(0, 2, 0xFE)
    assert kbc.data.read(0, 2) == 0xFFFF and kbc.command.read(3, 1) == 0xFF
    assert kbc.data.read(0, 1) == 0x00    # empty buffer
    assert events == []                   # the 2-byte 0xFE write was ignored, no reset
    assert status(kbc) & 0x08             # the last real write was a command
    data(kbc, 0xF4)
    assert read_all(kbc) == [0xFA] and status(kbc) & 0x08 == 0


def test_state_round_trip():
    kbc, irq1, irq12, _ = _make()
    cmd(kbc, 0xD3)
    data(kbc, 0x11)
    cmd(kbc, 0xD1)
    data(kbc, 0x01)
    st = kbc.get_state()
    kbc2, a, b, _ = _make()
    kbc2.set_state(st)
    assert kbc2.get_state() == st and not kbc2.a20
    assert read_all(kbc2) == [0x11]


def _linux_command(kbc, command, params=b"", nreply=0):
    """Linux's __i8042_command: wait IBF clear, command, params, then replies with OBF set."""
    assert not status(kbc) & 0x02
    cmd(kbc, command)
    for p in params:
        assert not status(kbc) & 0x02
        data(kbc, p)
    out = []
    for _ in range(nreply):
        st = status(kbc)
        assert st & 0x01, f"timeout waiting for the reply to {command:#x}"
        out.append((kbc.data.read(0, 1), st))
    return out


def test_linux_i8042_probe_sequence_with_aux_irq_test():
    kbc, irq1, irq12, events = _make()
    assert read_all(kbc) == []                                         # i8042_flush
    assert _linux_command(kbc, 0xAA, nreply=1)[0][0] == 0x55         # controller self test
    ctr = [_linux_command(kbc, 0x20, nreply=1)[0][0] for _ in range(2)]
    assert ctr[0] == ctr[1]                                            # "stable CTR read"
    assert status(kbc) & 0x10                                          # keylock not active
    new = (ctr[0] | 0x10) & ~0x01                                      # KBD disabled, no KBD IRQ
    _linux_command(kbc, 0x60, bytes((new,)))
    # i8042_check_aux: loopback through the controller
    (byte, st), = _linux_command(kbc, 0xD3, b"\x5a", nreply=1)
    assert byte == 0x5A and st & 0x20
    _linux_command(kbc, 0xA7)
    assert _linux_command(kbc, 0x20, nreply=1)[0][0] & 0x20            # AUX disabled bit set
    _linux_command(kbc, 0xA8)
    assert not _linux_command(kbc, 0x20, nreply=1)[0][0] & 0x20
    # AUX IRQ delivery test: AUXINT on, loop a byte, IRQ12 must fire with it
    ctr_now = _linux_command(kbc, 0x20, nreply=1)[0][0]
    _linux_command(kbc, 0x60, bytes((ctr_now | 0x02,)))
    _linux_command(kbc, 0xD3, b"\xa5")
    assert irq12.level and status(kbc) & 0x21 == 0x21 and kbc.data.read(0, 1) == 0xA5
    assert not irq12.level and not irq1.level and events == []


def _typing_kbc():
    from vmm.tm import FakeClock
    clock = FakeClock()
    kbc = I8042(IrqLine(), IrqLine(), clock=clock)
    return kbc, clock


def _drain_keys(kbc, clock, steps=200):
    out = []
    for _ in range(steps):
        clock.advance(5_000_000)
        clock.run_due()
        out += read_all(kbc)
    return out


def test_host_keys_are_translated_to_set_1_and_paced_one_byte_at_a_time():
    kbc, clock = _typing_kbc()
    assert kbc.ctr & 0x40                                 # XLAT on, as a BIOS leaves it
    assert kbc.put_scancodes([0x1E, 0x9E, 0xE0, 0x48, 0xE0, 0xC8]) == 6      # a, up arrow
    assert read_all(kbc) == [0x1E]                        # one byte now, the rest after the interval
    assert read_all(kbc) == []
    assert _drain_keys(kbc, clock) == [0x9E, 0xE0, 0x48, 0xE0, 0xC8]


def test_untranslated_keyboard_sends_set_2_with_break_prefixes():
    kbc, clock = _typing_kbc()
    cmd(kbc, 0x60)
    data(kbc, 0x05)                                       # CTR without XLAT
    kbc.put_scancodes([0x1E, 0x9E])
    assert read_all(kbc) + _drain_keys(kbc, clock) == [0x1C, 0xF0, 0x1C]


def test_keys_wait_while_the_keyboard_is_disabled_and_the_queue_is_bounded():
    kbc, clock = _typing_kbc()
    cmd(kbc, 0xAD)                                        # disable the keyboard interface
    kbc.put_scancodes([0x1C, 0x9C])
    assert _drain_keys(kbc, clock, 3) == []
    cmd(kbc, 0xAE)
    assert _drain_keys(kbc, clock) == [0x1C, 0x9C]
    assert kbc.put_scancodes([0x10] * 1000) < 1000        # the rest is refused, not lost silently
