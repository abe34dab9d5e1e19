"""The screen and the keyboard of a BIOS-booted VM, on REM, through the real CLI, service and VM process.

A tiny boot sector (built here) prints a line through the VGA BIOS (INT 10h) and on COM1, then
echoes every key it reads through the BIOS keyboard services (INT 16h) to the screen and COM1.
`controlvm screenshotpng` must show that line drawn with the font the VGA BIOS loaded (read
back from the PNG and compared with a rendering made here from the font inside Debian's VGA
BIOS image); keys typed with `keyboardputscancode` / `keyboardputstring` / `keyboardputfile`
must come back on COM1 complete and in order (the keyboard's pacing keeps the BIOS's 15-key
type-ahead buffer from overflowing); IDisplay.takeScreenShotToArray gives the same pixels.
"""

from __future__ import annotations

import time

import pytest

from tests.integration.vm.serial_tcp import TcpSerial
from tests.integration.vm.test_headless import Cli, _free_port
from tests.integration.world import World, WorldUnavailable
from vmm import firmware, firmware_config
from vmm.display.png import decode_rgb

VM = "disp"
MESSAGE = "VBOXPY SCREEN TEST"

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(not any(p.is_file() for p in firmware.candidates())
                       or firmware_config.vga_bios() is None,
                       reason="no SeaBIOS / VGA BIOS image (Debian's seabios package)"),
]


def echo_boot_sector(message: str) -> bytes:
    """Real-mode code at 0000:7C00: print `message` (INT 10h + COM1), then echo keys (INT 16h) forever."""
    code = bytearray([
        0x31, 0xC0,                # xor ax, ax
        0x8E, 0xD8,                # mov ds, ax
        0xBE, 0x00, 0x00,          # mov si, message          (patched below)
        0xBA, 0xF8, 0x03,          # mov dx, 0x3f8
        0xFC,                      # cld
        0xAC,                      # print: lodsb
        0x84, 0xC0,                # test al, al
        0x74, 0x0A,                # jz keys
        0xEE,                      # out dx, al
        0xB4, 0x0E,                # mov ah, 0x0e
        0xBB, 0x07, 0x00,          # mov bx, 7
        0xCD, 0x10,                # int 0x10
        0xEB, 0xF1,                # jmp print
        0xB4, 0x00,                # keys: mov ah, 0
        0xCD, 0x16,                # int 0x16                 (AL: the character)
        0xEE,                      # out dx, al
        0xB4, 0x0E,                # mov ah, 0x0e
        0xBB, 0x07, 0x00,          # mov bx, 7
        0xCD, 0x10,                # int 0x10
        0xEB, 0xF2,                # jmp keys
    ])
    code[5:7] = (0x7C00 + len(code)).to_bytes(2, "little")
    body = bytes(code) + message.encode() + b"\r\n\0"
    return body.ljust(510, b"\0") + b"\x55\xaa"


def rom_font() -> bytes:
    """The 8x16 font inside the VGA BIOS image (256 glyphs of 16 bytes), found by its shape."""
    rom = firmware_config.vga_bios()
    for off in range(0, len(rom) - 4096):
        if (rom[off + 0xDB * 16:off + 0xDC * 16] == b"\xff" * 16 and not any(rom[off:off + 16])
                and not any(rom[off + 0x20 * 16:off + 0x21 * 16])
            and any(rom[off + 0x41 * 16:off + 0x42 * 16])
                and any(rom[off + 0x01 * 16:off + 0x02 * 16])):
            return rom[off:off + 4096]
    raise AssertionError("no 8x16 font in the VGA BIOS image")


def text_mask(font: bytes, text: str, cell: int = 9) -> list[bytes]:
    """16 rows of 8- or 9-dot cells, 1 where a glyph dot is set."""
    rows = []
    for y in range(16):
        row = bytearray()
        for ch in text.encode("cp437"):
            bits = font[ch * 16 + y]
            row += bytes((bits >> (7 - i)) & 1 for i in range(8)) + b"\0" * (cell - 8)
        rows.append(bytes(row))
    return rows


def find_text(png: bytes, text: str, cell: int = 9) -> int | None:
    """The text row whose first cells show `text` in the screenshot, None if none does."""
    width, height, rgb = decode_rgb(png)
    want = text_mask(rom_font(), text, cell)
    n = len(want[0])
    for r in range(height // 16):
        ok = True
        for y in range(16):
            start = ((r * 16 + y) * width) * 3
            line = rgb[start:start + n * 3]
            got = bytes(1 if line[i * 3:i * 3 + 3] != b"\0\0\0" else 0 for i in range(n))
            if got != want[y]:
                ok = False
                break
        if ok:
            return r
    return None


def wait_com1(serial: TcpSerial, text: str, start: int, timeout: float = 300) -> str:
    try:
        serial.wait_for(text, timeout, start=start)
    except TimeoutError:
        raise AssertionError(f"no {text!r} on COM1 (got {serial.text(start)[-200:]!r})") from None
    return serial.text(start)


def wait_screen(cli: Cli, text: str, timeout: float = 300) -> bytes:
    """Screenshots until one shows `text` at the start of a line; returns that PNG."""
    shot = cli.home / "wait.png"
    deadline = time.monotonic() + timeout
    while True:
        cli("controlvm", VM, "screenshotpng", str(shot))
        png = shot.read_bytes()
        if find_text(png, text) is not None:
            return png
        assert time.monotonic() < deadline, f"no {text!r} on the screen\n{cli.log_tail(40)}"
        time.sleep(1.0)


@pytest.fixture(scope="module")
def vm(tmp_path_factory):
    try:
        world = World.current(home=tmp_path_factory.mktemp("display"))
    except WorldUnavailable as e:
        pytest.skip(f"cannot make the test's world: {e}")
    c = Cli(world)
    c("setproperty", "machinefolder", str(c.home / "VMs"))
    c("createvm", "--name", VM, "--ostype", "Debian_64", "--register")
    port = _free_port()
    disk = c.home / "echo.vdi"
    from vmm.storage.create import create_vdi
    img = create_vdi(str(disk), 4 << 20)
    img.write_at(0, echo_boot_sector(MESSAGE))
    img.flush()
    img.close()
    c("modifyvm", VM, "--memory", "64", "--ioapic", "off", "--boot1", "disk", "--boot2", "none",
      "--boot3", "none",
      "--boot4", "none", "--uart1", "0x3f8", "4", "--uart-mode1", "tcpserver", str(port))
    c("storagectl", VM, "--name", "SATA", "--add", "sata", "--controller", "IntelAhci")
    c("storageattach", VM, "--storagectl", "SATA", "--port", "0", "--device", "0", "--type", "hdd",
      "--medium", str(disk))
    assert c("startvm", VM, "--type", "headless")[0] == 0
    com1 = TcpSerial(port)
    try:
        wait_screen(c, MESSAGE)
        yield c, com1
    finally:
        com1.close()
        if c.state(VM) in ("running", "paused", "stuck"):
            c("controlvm", VM, "poweroff", check=None)
        world.cleanup()


def test_screenshot_shows_the_bios_text_in_the_vga_bios_font(vm):
    cli, _ = vm
    shot = cli.home / "boot.png"
    assert cli("controlvm", VM, "screenshotpng", str(shot)) == (0, "", "")
    png = shot.read_bytes()
    width, height, _ = decode_rgb(png)
    assert (width, height) == (720, 400)                 # mode 3: 80x25 cells of 9x16 dots
    assert find_text(png, MESSAGE) is not None
    assert find_text(png, "VBOXPY SCREEN TEXT") is None  # the comparison can fail
    assert cli("controlvm", VM, "screenshotpng", str(shot), "0")[0] == 0


def test_scancodes_and_strings_reach_the_bios_in_order(vm):
    cli, com1 = vm
    mark = com1.size
    cli("controlvm", VM, "keyboardputscancode", "1e", "9e", "2a", "30", "b0", "aa")       # a, shift+b
    wait_com1(com1, "aB", mark)
    text = "Hello, World! 0123456789 ~!@#$%^&*()_+{}|:\"<>? the quick brown fox jumps over the lazy dog"
    head, tail = text.split(" the ", 1)
    cli("controlvm", VM, "keyboardputstring", head, "the " + tail)      # arguments are joined by a space
    out = wait_com1(com1, "lazy dog", mark)
    assert out == "aB" + text
    typed = cli.home / "typed.txt"
    typed.write_text("file\n")
    cli("controlvm", VM, "keyboardputfile", str(typed))
    assert wait_com1(com1, "dogfile\r", mark) == "aB" + text + "file\r"
    png = wait_screen(cli, "aBHello, World!", 60)
    assert find_text(png, "aBHello, World!") > find_text(png, MESSAGE)


def test_display_api_matches_the_png(vm):
    cli, _ = vm
    shot = cli.home / "api.png"
    cli("controlvm", VM, "screenshotpng", str(shot))
    code = (f"from vboxsvc.ipc.client import connect\nc = connect()\nm = c.virtualbox.find_machine({VM!r})\n"
            "s = c.session()\nm.lock_machine(s, 1)\nd = s.console.display\n"
            "print(d.get_screen_resolution(0))\n"
            "data = d.take_screen_shot_to_array(0, 720, 400, 0x30524742)\n"
            f"open({str(cli.home / 'api.bgr0')!r}, 'wb').write(data)\n"
            "try:\n    d.take_screen_shot_to_array(1, 720, 400, 0x30524742)\nexcept Exception as e:\n"
            "    print('ERR', e)\ns.unlock_machine()\nc.close()\n")
    out = cli.world.py(code, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "[720, 400, 32, 0, 0, 1]"
    assert "Invalid screen 1" in out.stdout
    bgr0 = (cli.home / "api.bgr0").read_bytes()
    _, _, rgb = decode_rgb(shot.read_bytes())
    assert bgr0[2::4] == rgb[0::3] and bgr0[1::4] == rgb[1::3] and bgr0[0::4] == rgb[2::3]


def test_bad_arguments_get_vboxmanage_errors(vm):
    cli, _ = vm
    code, _, err = cli("controlvm", VM, "screenshotpng", check=None)
    assert code == 1 and "error: Incorrect number of parameters" in err
    code, _, err = cli("controlvm", VM, "keyboardputscancode", "1e", "zz", check=None)
    assert code == 1 and "error: Error: 'zz' is not a hex byte!" in err
    code, _, err = cli("controlvm", VM, "keyboardputscancode", check=None)
    assert code == 1 and "Missing argument to 'keyboardputscancode'" in err
    code, _, err = cli("controlvm", VM, "screenshotpng",
                       str(cli.home / "no" / "such" / "dir.png"), check=None)
    assert code == 1 and "Failed to create file" in err
    assert cli.state(VM) == "running"


def vbe_boot_sector(message: str) -> bytes:
    """Set VBE mode 0x111 (640x480, 16 bpp, banked) through the VGA BIOS, print `message` with the
    BIOS teletype (drawn into the frame buffer), fill lines 32-47 with red through bank 0, say "!" on COM1."""
    code = bytearray([
        0xB8, 0x02, 0x4F,          # mov ax, 0x4f02           (VBE: set mode)
        0xBB, 0x11, 0x01,          # mov bx, 0x0111
        0xCD, 0x10,                # int 0x10
        0x31, 0xC0,                # xor ax, ax
        0x8E, 0xD8,                # mov ds, ax
        0xBE, 0x00, 0x00,          # mov si, message          (patched below)
        0xFC,                      # cld
        0xAC,                      # print: lodsb
        0x84, 0xC0,                # test al, al
        0x74, 0x09,                # jz fill
        0xB4, 0x0E,                # mov ah, 0x0e
        0xBB, 0x0F, 0x00,          # mov bx, 0x000f
        0xCD, 0x10,                # int 0x10
        0xEB, 0xF2,                # jmp print
        0xB8, 0x00, 0xA0,          # fill: mov ax, 0xa000
        0x8E, 0xC0,                # mov es, ax
        0xBF, 0x00, 0xA0,          # mov di, 32 * 1280
        0xB8, 0x00, 0xF8,          # mov ax, 0xf800           (red in 5:6:5)
        0xB9, 0x00, 0x28,          # mov cx, 16 * 640
        0xF3, 0xAB,                # rep stosw
        0xBA, 0xF8, 0x03,          # mov dx, 0x3f8
        0xB0, 0x21,                # mov al, '!'
        0xEE,                      # out dx, al
        0xF4,                      # halt: hlt
        0xEB, 0xFD,                # jmp halt
    ])
    code[13:15] = (0x7C00 + len(code)).to_bytes(2, "little")
    body = bytes(code) + message.encode() + b"\0"
    return body.ljust(510, b"\0") + b"\x55\xaa"


@pytest.fixture(scope="module")
def gfx(vm):
    cli, _ = vm
    name = "gfx"
    cli("createvm", "--name", name, "--ostype", "Debian_64", "--register")
    disk = cli.home / "vbe.vdi"
    from vmm.storage.create import create_vdi
    img = create_vdi(str(disk), 4 << 20)
    img.write_at(0, vbe_boot_sector(MESSAGE))
    img.flush()
    img.close()
    port = _free_port()
    cli("modifyvm", name, "--memory", "64", "--ioapic", "off", "--graphicscontroller", "vboxvga",
        "--vram", "8",
        "--boot1", "disk", "--boot2", "none", "--boot3", "none", "--boot4", "none", "--uart1", "0x3f8", "4",
        "--uart-mode1", "tcpserver", str(port))
    cli("storagectl", name, "--name", "SATA", "--add", "sata", "--controller", "IntelAhci")
    cli("storageattach", name, "--storagectl", "SATA", "--port", "0", "--device", "0", "--type", "hdd",
        "--medium", str(disk))
    assert cli("startvm", name, "--type", "headless")[0] == 0
    com1 = TcpSerial(port)
    try:
        yield cli, name, com1
    finally:
        com1.close()
        if cli.state(name) in ("running", "paused", "stuck"):
            cli("controlvm", name, "poweroff", check=None)


def test_a_vbe_mode_set_by_the_bios_shows_in_the_screenshot(gfx):
    cli, name, com1 = gfx
    deadline = time.monotonic() + 300
    shot = cli.home / "vbe.png"
    while True:                    # "!" may have gone by before the test connected: the screen decides
        cli("controlvm", name, "screenshotpng", str(shot))
        width, height, rgb = decode_rgb(shot.read_bytes())
        if (width, height) == (640, 480) and rgb[40 * 640 * 3:40 * 640 * 3 + 3] == b"\xff\0\0":
            break
        assert time.monotonic() < deadline, f"screen {width}x{height}\n{cli.log_tail(40)}"
        time.sleep(1.0)
    red = b"\xff\0\0" * 640
    assert all(rgb[y * 640 * 3:(y + 1) * 640 * 3] == red for y in range(32, 48))
    assert rgb[48 * 640 * 3:48 * 640 * 3 + 3] != b"\xff\0\0"
    # the BIOS drew its font into the frame buffer
    assert find_text(shot.read_bytes(), MESSAGE, cell=8) == 0


@pytest.fixture(scope="module")
def vnc(vm):
    cli, _ = vm
    name = "vnc"
    cli("createvm", "--name", name, "--ostype", "Debian_64", "--register")
    vport = _free_port()
    code, _, err = cli("modifyvm", name, "--vrde", "on", "--vrde-port", str(vport), "--vrde-address",
                       "127.0.0.1",
                       "--vrde-property", "VNCPassword=vb0x", check=None)
    if code != 0:
        pytest.skip(f"this build stores no VRDE settings (modifyvm --vrde: {err.strip().splitlines()[0]})")
    disk = cli.home / "vnc.vdi"
    from vmm.storage.create import create_vdi
    img = create_vdi(str(disk), 4 << 20)
    img.write_at(0, echo_boot_sector(MESSAGE))
    img.flush()
    img.close()
    port = _free_port()
    cli("modifyvm", name, "--memory", "64", "--ioapic", "off", "--boot1", "disk", "--boot2",
        "none", "--boot3",
        "none", "--boot4", "none", "--uart1", "0x3f8", "4", "--uart-mode1", "tcpserver", str(port))
    cli("storagectl", name, "--name", "SATA", "--add", "sata", "--controller", "IntelAhci")
    cli("storageattach", name, "--storagectl", "SATA", "--port", "0", "--device", "0", "--type", "hdd",
        "--medium", str(disk))
    assert cli("startvm", name, "--type", "headless")[0] == 0
    com1 = TcpSerial(port)
    try:
        yield cli, name, com1, vport
    finally:
        com1.close()
        if cli.state(name) in ("running", "paused", "stuck"):
            cli("controlvm", name, "poweroff", check=None)


def test_a_vnc_viewer_sees_the_screen_and_types(vnc):
    import socket
    import struct

    from tests.unit.vmm.display.test_rfb import _connect, _read_update, _request
    cli, name, com1, vport = vnc
    server = type("S", (), {"port": vport})
    deadline = time.monotonic() + 120
    while True:
        try:
            _, _, init, reason = _connect(server, "wrong")
            break
        except OSError:
            assert time.monotonic() < deadline, cli.log_tail(40)
            time.sleep(0.5)
    assert init is None and reason == b"Authentication failed"
    s, f, init, _ = _connect(server, "vb0x")
    mr = cli("showvminfo", name, "--machinereadable")[1]
    assert 'VRDEActiveConnection="on"' in mr
    png = wait_screen_of(cli, name, MESSAGE)
    width, height, rgb = decode_rgb(png)
    _request(s, 0, init[0], init[1])
    rects = _read_update(f)
    if (init[0], init[1]) != (width, height):
        _request(s, 0, width, height)
        rects = _read_update(f)
    data = rects[-1][5]
    assert data[2::4] == rgb[0::3] and data[1::4] == rgb[1::3] and data[0::4] == rgb[2::3]
    mark = com1.size
    for down in (1, 0):
        s.sendall(struct.pack(">BBxxI", 4, down, ord("q")))
    com1.wait_for("q", 60, start=mark)
    s.close()
    s2 = socket.create_connection(("127.0.0.1", vport), timeout=10)
    s2.sendall(b"garbage that is not RFB")
    s2.close()
    assert cli.state(name) == "running"
    cli("controlvm", name, "vrde", "off")                # the VM process stops serving
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", vport), timeout=2).close()
        except OSError:
            break
        assert time.monotonic() < deadline, "the VNC server still listens after 'controlvm vrde off'"
        time.sleep(0.5)
    code, _, err = cli("controlvm", name, "vrde", "maybe", check=None)
    assert code == 1 and "Invalid remote desktop server state 'maybe'" in err


def wait_screen_of(cli: Cli, name: str, text: str, timeout: float = 300) -> bytes:
    shot = cli.home / f"{name}.png"
    deadline = time.monotonic() + timeout
    while True:
        cli("controlvm", name, "screenshotpng", str(shot))
        png = shot.read_bytes()
        if find_text(png, text) is not None:
            return png
        assert time.monotonic() < deadline, cli.log_tail(40)
        time.sleep(1.0)
