"""Saved state: savestate and restore times and state-file size, our VMM (REM) vs QEMU TCG.

Both sides run the same guest with `--memory` MiB of RAM (default 512), one of:

- `--guest debian` (default): the project's Debian kernel and initramfs; after the ready marker
  the guest copies `--fill` MiB of /dev/urandom into its RAM-backed root file system (a busy
  guest's memory); after the restore a shell command must answer.
- `--guest fill`: a boot sector (our flat-binary contract enters it at 0000:7C00 in real mode;
  QEMU's BIOS loads it there from a raw disk) that fills `--fill` MiB of RAM with pseudo-random
  words and counts on COM1; after the restore the counter must continue.

ours:  vmm.savedstate.save_state (pause + write the whole VM into the .sav) and, into a new
       Machine, restore_state + start.
QEMU:  QMP `stop` + `migrate exec:cat > file` until completed (what `virsh save` does), and a new
       QEMU with `-incoming exec:cat file` until the migration completed, then `cont`.

Restore times include building the VM (our Machine / QEMU's process start). Best of `--runs`.

    python tests/performance/bench_savestate.py [--guest debian|fill] [--memory 512] [--fill 128]
                                                [--runs 2] [--only ours|qemu]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.unit.vmm.hm import guests  # noqa: E402

GUEST = """
.code16
    cli
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %ss
    mov $0x7000, %sp
    in $0x92, %al
    or $2, %al
    and $0xFE, %al
    out %al, $0x92
    lgdtl gdtr
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x08, $pm
.code32
pm:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $0x7000, %esp
    mov $0x100000, %edi
    mov $(FILL_MB * 262144), %ecx
    mov $0x12345678, %eax
1:  stosl
    imul $1103515245, %eax, %eax
    add $12345, %eax
    dec %ecx
    jnz 1b
    mov $ready, %esi
    call puts
    xor %ebx, %ebx
count:
    mov %ebx, %edx
    mov $8, %ecx
digit:
    rol $4, %edx
    mov %edx, %eax
    and $0xF, %eax
    mov hex(%eax), %al
    call putc
    dec %ecx
    jnz digit
    mov $0x0A, %al
    call putc
    inc %ebx
    mov $DELAY, %ecx
2:  dec %ecx
    jnz 2b
    jmp count
puts:
    lodsb
    test %al, %al
    jz 3f
    call putc
    jmp puts
3:  ret
putc:
    push %edx
    mov %al, %ah
    mov $0x3FD, %dx
4:  in %dx, %al
    test $0x20, %al
    jz 4b
    mov %ah, %al
    mov $0x3F8, %dx
    out %al, %dx
    pop %edx
    ret
.p2align 3
gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF
    .quad 0x00CF92000000FFFF
gdtr:
    .word 23
    .long gdt
hex: .ascii "0123456789ABCDEF"
ready: .asciz "READY\\n"
"""


def build_guest(fill_mb: int, delay: int, out: pathlib.Path) -> pathlib.Path:
    code = guests.assemble(GUEST.replace("FILL_MB", str(fill_mb)).replace("DELAY", str(delay)))
    if len(code) > 510:
        raise SystemExit(f"guest is {len(code)} bytes, more than a boot sector holds")
    out.write_bytes(code.ljust(510, b"\0") + b"\x55\xAA" + bytes(512 * 7))
    return out


class Serial:
    """Collects a guest's serial output and waits for text in it."""

    def __init__(self):
        self.data = bytearray()
        self.cond = threading.Condition()

    def feed(self, chunk: bytes) -> None:
        with self.cond:
            self.data += chunk
            self.cond.notify_all()

    def wait_for(self, text: bytes, timeout: float, start: int = 0) -> int:
        deadline = time.monotonic() + timeout
        with self.cond:
            while (i := self.data.find(text, start)) < 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {text!r} in guest output {bytes(self.data[-200:])!r}")
                self.cond.wait(left)
            return i + len(text)

    def counts(self) -> list[int]:
        with self.cond:
            text = bytes(self.data).decode(errors="replace")
        return [int(x, 16) for x in text.split("READY\n", 1)[-1].split("\n")[:-1] if len(x) == 8]


# ------------------------------------------------------------------ the guests

DEBIAN = ROOT / ".cache" / "guest"
READY_MARKER = "VBOXPY-GUEST-READY"


class Guest:
    """What both sides boot and how the benchmark knows the guest is busy, then alive again."""

    def __init__(self, kind: str, fill_mb: int, work: pathlib.Path):
        self.kind, self.fill_mb = kind, fill_mb
        if kind == "fill":
            self.image = build_guest(fill_mb, 2_000_000, work / "guest.img")

    def configure(self, cfg) -> None:
        if self.kind == "fill":
            cfg.set("Boot/Kernel", str(self.image))
        else:
            cfg.set("Boot/Kernel", str(DEBIAN / "vmlinux"))
            cfg.set("Boot/Initrd", str(DEBIAN / "initrd.img"))
            cfg.set("Boot/Cmdline", "console=ttyS0 quiet")

    def qemu_args(self) -> list[str]:
        if self.kind == "fill":
            return ["-drive", f"file={self.image},format=raw,if=ide"]
        return ["-kernel", str(DEBIAN / "vmlinux"), "-initrd", str(DEBIAN / "initrd.img"),
                "-append", "console=ttyS0 quiet"]

    def prepare(self, serial: Serial, send, timeout: float) -> None:
        if self.kind == "fill":
            serial.wait_for(b"\n", timeout, serial.wait_for(b"READY\n", timeout) + 9)
            return
        serial.wait_for(READY_MARKER.encode(), timeout)
        start = len(serial.data)
        send(f"dd if=/dev/urandom of=/fill bs=1M count={self.fill_mb} 2>/dev/null; echo FI''LLED\r")
        serial.wait_for(b"FILLED", timeout, start)

    def last_count(self, serial: Serial) -> int:
        return max(serial.counts()) if self.kind == "fill" else 0

    def check_alive(self, serial: Serial, send, timeout: float, last: int, who: str) -> None:
        if self.kind == "fill":
            serial.wait_for(b"\n", timeout, serial.wait_for(b"\n", timeout))
            after = [int(x, 16) for x in bytes(serial.data).decode(errors="replace").split("\n")[1:-1]
                     if len(x) == 8]
            if not after or after[0] not in (last + 1, last + 2):
                raise RuntimeError(f"{who}: counter did not continue ({last} then {after[:3]})")
            return
        send("echo AL''IVE $((6*7))\r")
        serial.wait_for(b"ALIVE 42", timeout)


# ------------------------------------------------------------------ ours

def run_ours(guest: Guest, memory: int, work: pathlib.Path, timeout: float) -> dict:
    from vmm.cfgm import CfgNode
    from vmm.savedstate import restore_state, save_state
    from vmm.serial.backends import SerialBackend
    from vmm.vm import Machine

    class Backend(SerialBackend):
        def __init__(self, serial: Serial):
            super().__init__()
            self.serial = serial
            self.pending = bytearray()

        def write(self, data: bytes) -> None:
            self.serial.feed(data)

        @property
        def has_input(self) -> bool:
            return bool(self.pending)

        def read(self, max_bytes: int) -> bytes:
            out = bytes(self.pending[:max_bytes])
            del self.pending[:max_bytes]
            return out

        def send(self, text: str) -> None:
            self.pending += text.encode()
            if self._notify is not None:
                self._notify()

    def config() -> CfgNode:
        cfg = CfgNode()
        cfg.set("Name", "bench")
        cfg.set("RamSize", memory << 20)
        cfg.set("Engine", "rem")
        cfg.set("Devices/serial/0/Enabled", True)
        guest.configure(cfg)
        return cfg

    state = work / "ours.sav"
    s1 = Serial()
    b1 = Backend(s1)
    m1 = Machine(config(), serial_backends={0: b1})
    m1.start()
    guest.prepare(s1, b1.send, timeout)
    t0 = time.perf_counter()
    save_state(m1, state)
    t_save = time.perf_counter() - t0
    last = guest.last_count(s1)
    m1.power_off()
    m1.wait(10)
    m1.close()
    s2 = Serial()
    b2 = Backend(s2)
    t0 = time.perf_counter()
    m2 = Machine(config(), serial_backends={0: b2}, restoring=True)
    t_build = time.perf_counter() - t0
    restore_state(m2, state)
    m2.start()
    t_restore = time.perf_counter() - t0
    try:
        guest.check_alive(s2, b2.send, timeout, last, "ours")
    finally:
        m2.power_off()
        m2.wait(10)
        m2.close()
    size = state.stat().st_size
    state.unlink()
    return {"save": t_save, "restore": t_restore, "size": size, "build": t_build}


# ------------------------------------------------------------------ QEMU

class Qmp:
    def __init__(self, path: str, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        self.f = self.sock.makefile("rwb")
        self._read()
        self.cmd("qmp_capabilities")

    def _read(self) -> dict:
        while True:
            msg = json.loads(self.f.readline())
            if "event" not in msg:
                return msg

    def cmd(self, name: str, **args) -> dict:
        self.f.write(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
        self.f.flush()
        reply = self._read()
        if "error" in reply:
            raise RuntimeError(f"QMP {name}: {reply['error']}")
        return reply["return"]

    def close(self) -> None:
        self.sock.close()


def qemu(guest: Guest, memory: int, sock: str, serial: Serial, extra: list[str]):
    argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", str(memory), "-display", "none", "-serial", "stdio",
            "-qmp", f"unix:{sock},server=on,wait=off", "-no-reboot"] + guest.qemu_args() + extra
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def pump():
        while chunk := os.read(p.stdout.fileno(), 65536):
            serial.feed(chunk)
    threading.Thread(target=pump, daemon=True).start()

    def send(text: str) -> None:
        p.stdin.write(text.encode())
        p.stdin.flush()
    return p, send


def wait_migration(q: Qmp, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        st = q.cmd("query-migrate").get("status")
        if st == "completed":
            return
        if st in ("failed", "cancelled"):
            raise RuntimeError(f"QEMU migration {st}")
        if time.monotonic() > deadline:
            raise TimeoutError("QEMU migration did not complete")
        time.sleep(0.005)


def run_qemu(guest: Guest, memory: int, work: pathlib.Path, timeout: float) -> dict:
    state = work / "qemu.state"
    sock = str(work / "qmp.sock")
    s1 = Serial()
    p1, send1 = qemu(guest, memory, sock, s1, [])
    try:
        q = Qmp(sock)
        guest.prepare(s1, send1, timeout)
        t0 = time.perf_counter()
        q.cmd("stop")
        q.cmd("migrate", uri=f"exec:cat > {state}")
        wait_migration(q, timeout)
        t_save = time.perf_counter() - t0
        last = guest.last_count(s1)
        q.cmd("quit")
        q.close()
    finally:
        p1.kill()
        p1.wait()
    if os.path.exists(sock):
        os.unlink(sock)
    s2 = Serial()
    t0 = time.perf_counter()
    p2, send2 = qemu(guest, memory, sock, s2, ["-incoming", f"exec:cat {state}"])
    try:
        q = Qmp(sock)
        deadline = time.monotonic() + timeout
        while q.cmd("query-status").get("status") in ("inmigrate",):
            if time.monotonic() > deadline:
                raise TimeoutError("QEMU incoming migration did not finish")
            time.sleep(0.005)
        q.cmd("cont")
        t_restore = time.perf_counter() - t0
        guest.check_alive(s2, send2, timeout, last, "QEMU")
        q.cmd("quit")
        q.close()
    finally:
        p2.kill()
        p2.wait()
    size = state.stat().st_size
    state.unlink()
    return {"save": t_save, "restore": t_restore, "size": size}


def attempt(run, guest, memory, work, timeout, who, tries: int = 3) -> dict:
    """A boot that never reaches the ready marker is retried (reported), the measurement is not."""
    for i in range(tries):
        try:
            return run(guest, memory, work, timeout)
        except TimeoutError as e:
            print(f"{who}: attempt {i + 1} timed out ({str(e)[:120]}); retrying", file=sys.stderr)
    raise SystemExit(f"{who}: no successful run in {tries} attempts")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--memory", type=int, default=512, help="guest RAM in MiB")
    ap.add_argument("--guest", choices=["debian", "fill"], default="debian")
    ap.add_argument("--fill", type=int, default=128, help="MiB of RAM the guest fills with data")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--only", choices=["ours", "qemu"])
    ap.add_argument("--timeout", type=float, default=300, help="seconds for a boot or a guest command")
    args = ap.parse_args()
    if args.fill + 2 > args.memory:
        raise SystemExit("--fill must leave room below --memory")
    if guests.toolchain_missing():
        raise SystemExit(f"missing: {guests.toolchain_missing()}")
    have_qemu = shutil.which("qemu-system-x86_64") is not None
    with tempfile.TemporaryDirectory(prefix="bench-ssm") as d:
        work = pathlib.Path(d)
        if args.guest == "debian" and not (DEBIAN / "vmlinux").exists():
            raise SystemExit("no Debian guest: run `python -m vmm.guest.builder` first (or use --guest fill)")
        guest = Guest(args.guest, args.fill, work)
        results: dict[str, list[dict]] = {"ours": [], "qemu": []}
        for _ in range(args.runs):
            if args.only != "qemu":
                results["ours"].append(attempt(run_ours, guest, args.memory, work, args.timeout, "vboxpy"))
            if args.only != "ours" and have_qemu:
                results["qemu"].append(attempt(run_qemu, guest, args.memory, work, args.timeout, "QEMU"))
    print(f"guest: {args.guest}, {args.memory} MiB RAM, {args.fill} MiB filled with data; best of "
          f"{args.runs}; "
          f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'':8} {'savestate':>10} {'restore':>10} {'file size':>12}")
    for name, label in (("ours", "vboxpy"), ("qemu", "QEMU TCG")):
        rs = results[name]
        if not rs:
            print(f"{label:8} {'(not run)':>10}" if name == "ours" or have_qemu
                  else f"{label:8} (not installed)")
            continue
        print(f"{label:8} {min(r['save'] for r in rs):9.3f}s {min(r['restore'] for r in rs):9.3f}s "
              f"{min(r['size'] for r in rs) / (1 << 20):9.1f} MiB")
    if results["ours"]:
        b = min(results["ours"], key=lambda r: r["restore"])
        print(f"(vboxpy restore = {b['build']:.3f}s building the Machine + {b['restore'] - b['build']:.3f}s "
              "loading the state)")
    if results["ours"] and results["qemu"]:
        o, q = results["ours"], results["qemu"]
        print(f"ratio (ours/QEMU): savestate {min(r['save'] for r in o) / min(r['save'] for r in q):.2f}, "
              f"restore {min(r['restore'] for r in o) / min(r['restore'] for r in q):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
