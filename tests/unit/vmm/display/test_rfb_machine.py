"""The VNC server on a real machine (REM, in-process, SeaBIOS): a viewer's capture equals the
machine's screen, its keys reach the BIOS, and a static screen sends nothing."""

from __future__ import annotations

import shutil
import struct
import subprocess
import time

import pytest

from tests.integration.vm.test_display import MESSAGE, echo_boot_sector
from tests.unit.vmm.display.test_rfb import _connect, _read_update, _request
from tests.unit.vmm.test_firmware_boot import Capture, _disk, _wait, _with_disk
from vmm import firmware
from vmm.display.des import vnc_passwd_file
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


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's start-of-frame marker."""
    i = 2
    while i + 9 < len(data):
        marker, length = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        i += 2 + length
    raise AssertionError("no JPEG frame header")


@pytest.mark.skipif(shutil.which("vncsnapshot") is None,
                    reason="no vncsnapshot (Debian's vncsnapshot package)")
@pytest.mark.parametrize("password", ["", "hunter2"])
def test_vncsnapshot_captures_the_screen(tmp_path, password):
    """A real VNC client (TightVNC's vncsnapshot, RFB 3.3, Zlib) with and without a password."""
    m = Machine(_with_disk(_disk(tmp_path, echo_boot_sector(MESSAGE)[:510])), on_stop=lambda *a: None)
    srv = RfbServer(m.screen, m.screen_version, m.put_scancodes, ports=[0], password=password)
    try:
        m.start()
        srv.start()
        assert _wait(lambda: MESSAGE in "\n".join(m.vga.text_lines()), 120)
        args = ["vncsnapshot", "-quiet", "-allowblank"]
        if password:
            (tmp_path / "passwd").write_bytes(vnc_passwd_file(password))
            args += ["-passwd", str(tmp_path / "passwd")]
        shot = tmp_path / "shot.jpg"
        run = subprocess.run(args + [f"127.0.0.1::{srv.port}", str(shot)], capture_output=True, timeout=60)
        assert run.returncode == 0, run.stderr
        assert _jpeg_size(shot.read_bytes()) == (720, 400)
        if password:
            (tmp_path / "passwd").write_bytes(vnc_passwd_file("wrong"))
            bad = subprocess.run(args + [f"127.0.0.1::{srv.port}", str(tmp_path / "bad.jpg")],
                                 capture_output=True,
                                 timeout=60)
            assert bad.returncode != 0 and not (tmp_path / "bad.jpg").exists()
        assert m.running
    finally:
        srv.close()
        m.power_off().result(10)
        m.wait(10)
        m.close()
