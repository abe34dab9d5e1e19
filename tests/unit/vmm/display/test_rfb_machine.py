"""The VNC server on a real machine (REM, in-process, SeaBIOS): a viewer's capture equals the
machine's screen, its keys reach the BIOS, and a static screen sends nothing."""

from __future__ import annotations

import struct
import time

import pytest

from tests.integration.vm.test_display import MESSAGE, echo_boot_sector
from tests.unit.vmm.display.test_rfb import _connect, _read_update, _request
from tests.unit.vmm.test_firmware_boot import Capture, _disk, _wait, _with_disk
from vmm import firmware
from vmm.display.rfb import RfbServer
from vmm.vm import Machine

pytestmark = pytest.mark.skipif(not any(p.is_file() for p in firmware.candidates()),
                                reason="no SeaBIOS image (Debian's seabios package)")


def test_viewer_capture_keys_and_static_screen(tmp_path):
    com1 = Capture()
    cfg = _with_disk(_disk(tmp_path, echo_boot_sector(MESSAGE)[:510]), Devices__serial__0__Enabled=True)
    m = Machine(cfg, serial_backends={0: com1}, on_stop=lambda *a: None)
    srv = RfbServer(m.screen, m.screen_version, m.put_scancodes, ports=[0], password="pw")
    try:
        m.start()
        srv.start()
        assert _wait(lambda: MESSAGE in "\n".join(m.vga.text_lines()), 120)
        s, f, init, _ = _connect(srv, "pw")
        frame = m.screen()
        assert init[:2] == (frame.width, frame.height) == (720, 400)
        _request(s, 0, 720, 400)
        data = _read_update(f)[-1][5]
        rgb = m.screen().rgb
        assert data[2::4] == rgb[0::3] and data[0::4] == rgb[2::3]
        for down, sym in ((1, ord("z")), (0, ord("z"))):
            s.sendall(struct.pack(">BBxxI", 4, down, sym))
        assert _wait(lambda: b"z" in bytes(com1.data), 60)
        _request(s, 1, 720, 400)                         # the echoed "z" changed the screen
        (_, y, _, h, _, _), = _read_update(f)
        assert h < 400
        version = m.screen_version()
        time.sleep(0.5)
        assert m.screen_version() == version             # a guest in its key wait leaves the screen alone
        s.close()
    finally:
        srv.close()
        m.power_off().result(10)
        m.wait(10)
        m.close()
