"""Dev runner: boot a kernel (or through the BIOS) on the VMM without the service, COM1 on stdin/stdout.

    python -m vmm.run [--kernel K [--initrd I] [--append C]] [--memory MB] [--engine rem|hm|auto]
                      [--disk ctl:path ...] [--paravirt-provider none|default|legacy|minimal|hyperv|kvm]

Without --kernel the VM starts in SeaBIOS and boots from the first disk.

For developing devices and engines.  `--disk ahci:img.vdi` / `--disk virtio:img.raw` attach
disks to an IntelAhci / VirtioSCSI controller.  On a terminal, Ctrl-] ends the VM.  The exit
status is 0 when the guest powered off and 1 when the VM got stuck.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import termios
import threading
import time
import tty

from vmm.cfgm import CfgNode
from vmm.devices.serial_backends import SerialBackend
from vmm.gim import PROVIDERS
from vmm.vm import Machine, MachineError

QUIT_BYTE = 0x1D   # Ctrl-]
CONTROLLERS = {"ahci": ("IntelAhci", "AHCI"), "virtio": ("VirtioSCSI", "VirtioSCSI")}


class StdioBackend(SerialBackend):
    """Guest output to stdout; stdin read by a thread (raw mode when it is a terminal)."""

    def __init__(self, on_quit=None, stdin_fd: int = 0, stdout_fd: int = 1):
        super().__init__()
        self._in = bytearray()
        self._lock = threading.Lock()
        self._out_fd = stdout_fd
        self._in_fd = stdin_fd
        self._on_quit = on_quit
        threading.Thread(target=self._reader, name="stdio-serial", daemon=True).start()

    def _reader(self) -> None:
        while True:
            try:
                data = os.read(self._in_fd, 1024)
            except OSError:
                return
            if not data:
                return
            if QUIT_BYTE in data and os.isatty(self._in_fd) and self._on_quit is not None:
                self._on_quit()
                return
            with self._lock:
                self._in += data.replace(b"\n", b"\r") if not os.isatty(self._in_fd) else data
            if self._notify is not None:
                self._notify()

    @property
    def has_input(self) -> bool:
        return bool(self._in)

    def read(self, max_bytes: int) -> bytes:
        with self._lock:
            data = bytes(self._in[:max_bytes])
            del self._in[:max_bytes]
        return data

    def write(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(self._out_fd, data)


def build_config(args: argparse.Namespace) -> CfgNode:
    cfg = CfgNode()
    cfg.set("Name", "vmm.run")
    cfg.set("RamSize", args.memory << 20)
    cfg.set("Engine", args.engine)
    cfg.set("GIM/Provider", args.paravirt_provider)
    cfg.set("GIM/OsType", args.ostype)
    cfg.set("TripleFaultReset", False)
    cfg.set("APIC", args.apic == "on" or args.ioapic == "on")
    cfg.set("IOAPIC", args.ioapic == "on")
    if args.kernel:
        cfg.set("Boot/Kernel", os.path.abspath(args.kernel))
    else:
        cfg.set("BootOrder/1", "HardDisk")
        cfg.set("BootOrder/2", "DVD")
    if args.initrd:
        cfg.set("Boot/Initrd", os.path.abspath(args.initrd))
    if args.append is not None:
        cfg.set("Boot/Cmdline", args.append)
    cfg.set("Devices/serial/0/Enabled", True)
    for i, spec in enumerate(args.disk or []):
        kind, sep, path = spec.partition(":")
        if not sep or kind not in CONTROLLERS:
            raise MachineError(f"--disk {spec!r}: expected ahci:PATH or virtio:PATH")
        ctl = cfg.node(f"Devices/storage/{kind}")
        ctl.set("Type", CONTROLLERS[kind][0])
        ctl.set("Name", CONTROLLERS[kind][1])
        att = ctl.node(f"Attachments/{i}")
        att.set("Port", len(ctl.node("Attachments").children) - 1)
        att.set("Path", os.path.abspath(path))
        ctl.set("PortCount", len(ctl.node("Attachments").children))
    return cfg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vmm.run", description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", help="bzImage, vmlinux ELF or flat binary (default: boot through the BIOS)")
    ap.add_argument("--initrd")
    ap.add_argument("--append", help="kernel command line (default: console=ttyS0)")
    ap.add_argument("--memory", type=int, default=256, help="guest RAM in MiB (default 256)")
    ap.add_argument("--engine", default="rem", choices=["rem", "hm", "auto"])
    ap.add_argument("--paravirt-provider", default="default", choices=list(PROVIDERS),
                    help="GIM provider (default: by --ostype, as VirtualBox)")
    ap.add_argument("--ostype", default="Debian_64", help="guest OS type for --paravirt-provider default")
    ap.add_argument("--disk", action="append", help="ctl:path with ctl = ahci or virtio")
    ap.add_argument("--apic", default="off", choices=["on", "off"], help="local APIC (default off)")
    ap.add_argument("--ioapic", default="off", choices=["on", "off"],
                    help="IO-APIC and the MADT (implies --apic on; default off)")
    ap.add_argument("--verbose", action="store_true", help="log VMM events to stderr")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(relativeCreated)8.0f %(name)s: %(message)s")
    done = threading.Event()
    result: dict[str, str] = {}
    machine: Machine | None = None

    def quit_vm() -> None:
        if machine is not None:
            machine.power_off()

    def stopped(kind: str, detail: str) -> None:
        result["kind"], result["detail"] = kind, detail
        done.set()

    tty_state = termios.tcgetattr(0) if os.isatty(0) else None
    try:
        backend = StdioBackend(on_quit=quit_vm)
        machine = Machine(build_config(args), on_stop=stopped, serial_backends={0: backend})
        if args.verbose:
            for line in machine.describe():
                logging.getLogger("vboxpy.vm").info(line)
        if tty_state is not None:
            tty.setraw(0)
        t0 = time.monotonic()
        machine.start()
        done.wait()
        machine.wait(5)
    except MachineError as e:
        print(f"vmm.run: {e}", file=sys.stderr)
        return 2
    finally:
        if tty_state is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, tty_state)
        if machine is not None:
            machine.close()
    print(f"\r\nvmm.run: VM {result.get('kind')} after {time.monotonic() - t0:.1f} s: {result.get('detail')}",
          file=sys.stderr)
    return 0 if result.get("kind") == "poweroff" else 1


if __name__ == "__main__":
    sys.exit(main())
