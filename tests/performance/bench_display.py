#!/usr/bin/env python3
"""Remote display speed: vboxpy's VNC server beside QEMU's `-vnc` on the same guest, in one run.

Measures, each side booting the same tiny BIOS guest (TCG/REM, SeaBIOS):
  full-screen updates per second   a scripted RFB client asks for non-incremental updates of the
                                   whole screen (Raw, then Zlib) as fast as they come back
                                   (the 80x25 text screen: 720x400 pixels on both sides)
  guest CPU speed                  a boot sector counts in a loop and prints a dot on COM1 every
                                   2^20 iterations: dots per second with no viewer, with a viewer
                                   idling on incremental updates (a static screen), and with a
                                   viewer pulling full updates without pause
Ours runs in-process (Machine + RfbServer, as the VM process does); the peer is
qemu-system-x86_64 -accel tcg with -vnc and COM1 on a TCP socket.  Numbers are noisy on a
shared machine: compare the two columns of one run, not runs.
Run: python3 tests/performance/bench_display.py [--seconds S]
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from tests.unit.vmm.display.test_rfb import _connect  # noqa: E402

SPIN = bytes([
    0xBA, 0xF8, 0x03,          # mov dx, 0x3f8
    0xBB, 0x10, 0x00,          # top: mov bx, 16
    0x41,                      # l1: inc cx
    0x75, 0xFD,                # jnz l1
    0x4B,                      # dec bx
    0x75, 0xFA,                # jnz l1
    0xB0, 0x2E,                # mov al, '.'
    0xEE,                      # out dx, al
    0xEB, 0xF2,                # jmp top
])


def disk_image(path: str, code: bytes) -> str:
    with open(path, "wb") as f:
        f.write((code.ljust(510, b"\0") + b"\x55\xaa").ljust(1 << 20, b"\0"))
    return path


class Counter:
    """Counts the bytes a COM1 sink receives."""

    def __init__(self):
        self.n = 0

    def add(self, data: bytes) -> None:
        self.n += len(data)


def read_update(f, zs) -> int:
    assert f.read(1) == b"\x00"
    f.read(1)
    n = struct.unpack(">H", f.read(2))[0]
    size = 0
    for _ in range(n):
        x, y, w, h, enc = struct.unpack(">HHHHi", f.read(12))
        if enc == 0:
            size += len(f.read(w * h * 4))
        elif enc == 6:
            size += len(zs.decompress(f.read(struct.unpack(">I", f.read(4))[0])))
        elif enc != -223:
            raise RuntimeError(f"unexpected encoding {enc}")
    return size


def fps(port: int, encodings: list[int], seconds: float) -> float:
    server = type("S", (), {"port": port})
    s, f, init, _ = _connect(server)
    w, h = init[:2]
    s.sendall(struct.pack(f">BxH{len(encodings)}i", 2, len(encodings), *encodings))
    zs = zlib.decompressobj()
    frames, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        s.sendall(struct.pack(">BBHHHH", 3, 0, 0, 0, w, h))
        read_update(f, zs)
        frames += 1
    s.close()
    return frames / (time.perf_counter() - t0)


def cpu_rate(counter: Counter, seconds: float) -> float:
    n0, t0 = counter.n, time.perf_counter()
    time.sleep(seconds)
    return (counter.n - n0) / (time.perf_counter() - t0)


def with_viewer(port: int, mode: str, fn):
    """Run fn() while a viewer idles on incremental updates ("idle") or pulls full ones ("busy")."""
    stop = threading.Event()
    server = type("S", (), {"port": port})

    def viewer():
        s, f, init, _ = _connect(server)
        w, h = init[:2]
        zs = zlib.decompressobj()
        s.sendall(struct.pack(">BBHHHH", 3, 0, 0, 0, w, h))
        while not stop.is_set():
            if not select.select([s], [], [], 0.2)[0]:
                continue
            read_update(f, zs)
            s.sendall(struct.pack(">BBHHHH", 3, 1 if mode == "idle" else 0, 0, 0, w, h))
        s.close()

    t = threading.Thread(target=viewer, daemon=True)
    t.start()
    time.sleep(0.5)
    try:
        return fn()
    finally:
        stop.set()
        t.join(5)


def measure(port: int, counter: Counter | None, seconds: float) -> dict:
    out = {"fps_raw": fps(port, [0], seconds), "fps_zlib": fps(port, [6], seconds)}
    if counter is not None:
        out["cpu_none"] = cpu_rate(counter, seconds)
        out["cpu_idle_viewer"] = with_viewer(port, "idle", lambda: cpu_rate(counter, seconds))
        out["cpu_busy_viewer"] = with_viewer(port, "busy", lambda: cpu_rate(counter, seconds))
        # before and after: load drifts
        out["cpu_none"] = (out["cpu_none"] + cpu_rate(counter, seconds)) / 2
    return out


def ours(disk: str, seconds: float) -> dict:
    from vmm.cfgm import CfgNode
    from vmm.display.rfb import RfbServer
    from vmm.serial.backends import SerialBackend
    from vmm.vm import Machine

    counter = Counter()

    class Sink(SerialBackend):
        def write(self, data: bytes) -> None:
            counter.add(data)

    cfg = CfgNode()
    cfg.set("RamSize", 64 << 20)
    cfg.set("Engine", "rem")
    cfg.set("BootOrder/1", "HardDisk")
    cfg.node("Devices/serial/0").set("Enabled", True)
    ctl = cfg.node("Devices/storage/0")
    ctl.set("Name", "SATA")
    ctl.set("Type", "IntelAhci")
    ctl.node("Attachments/0").set("Port", 0)
    ctl.node("Attachments/0").set("Path", disk)
    m = Machine(cfg, serial_backends={0: Sink()})
    srv = RfbServer(m.screen, m.screen_version, m.put_scancodes, ports=[0])
    try:
        m.start()
        srv.start()
        deadline = time.monotonic() + 120
        while counter.n < 3:
            if time.monotonic() > deadline:
                raise RuntimeError("the guest never counted")
            time.sleep(0.1)
        return measure(srv.port, counter, seconds)
    finally:
        srv.close()
        m.power_off().result(10)
        m.wait(10)
        m.close()


def peer(disk: str, seconds: float) -> dict | None:
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        serial_port = s.getsockname()[1]
    display = 50 + os.getpid() % 40
    proc = subprocess.Popen([qemu, "-accel", "tcg", "-m", "64", "-display", "none", "-vga", "std",
                             "-drive", f"file={disk},format=raw,if=ide", "-vnc", f"127.0.0.1:{display}",
                             "-serial", f"tcp:127.0.0.1:{serial_port},server=on,wait=off",
                             "-monitor", "none"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        counter = Counter()
        deadline = time.monotonic() + 30
        while True:
            try:
                com = socket.create_connection(("127.0.0.1", serial_port), timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

        def pump():
            while True:
                try:
                    data = com.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                counter.add(data)

        threading.Thread(target=pump, daemon=True).start()
        while counter.n < 3:
            if time.monotonic() > deadline + 90:
                raise RuntimeError("QEMU's guest never counted")
            time.sleep(0.1)
        return measure(5900 + display, counter, seconds)
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        disk = disk_image(os.path.join(tmp, "spin.img"), SPIN)
        a = ours(disk, args.seconds)
        b = peer(disk, args.seconds)
    print(f"{'':34}{'vboxpy (REM)':>16}{'QEMU TCG -vnc':>16}")
    rows = (("full updates/s, Raw (720x400)", "fps_raw", "{:.1f}"),
            ("full updates/s, Zlib", "fps_zlib", "{:.1f}"),
            ("guest dots/s, no viewer", "cpu_none", "{:.1f}"),
            ("guest dots/s, idle viewer", "cpu_idle_viewer", "{:.1f}"),
            ("guest dots/s, busy viewer", "cpu_busy_viewer", "{:.1f}"))
    for label, key, fmt in rows:
        print(f"{label:34}{fmt.format(a[key]):>16}{fmt.format(b[key]) if b else 'n/a':>16}")
    for side, r in (("vboxpy", a), ("QEMU", b)):
        if r and r["cpu_none"]:
            print(f"{side}: an idle viewer costs {100 * (1 - r['cpu_idle_viewer'] / r['cpu_none']):+.1f}% "
                  f"guest speed, "
                  f"a busy one {100 * (1 - r['cpu_busy_viewer'] / r['cpu_none']):+.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
