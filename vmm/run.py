"""Dev runner: boot a kernel (or through the BIOS) on the VMM without the service, COM1 on stdin/stdout.

    python -m vmm.run [--kernel K [--initrd I] [--append C]] [--memory MB] [--engine rem|hm|auto]
                      [--disk ctl:path ...] [--dvd x.iso] [--paravirt-provider none|default|...]
                      [--nic type:attachment[:hostport=guestport,...] ...]

Without --kernel the VM starts in SeaBIOS and boots from the first disk.

For developing devices and engines.  `--disk ahci:img.vdi` / `--disk virtio:img.raw` /
`--disk ide:img.vdi` attach disks to an IntelAhci / VirtioSCSI / PIIX4 IDE controller (IDE
disks take port 0 master, then slave); `--dvd x.iso` puts a DVD drive with that disc on the
IDE controller's port 1 master (`--dvd ""`: an empty drive), `--dvd sata:x.iso` on the next
IntelAhci port.  `--nic e1000:nat:2222=22` adds an 82540EM (or `virtio`) on NAT with a TCP port
forward from 127.0.0.1:2222; `--nic virtio:intnet=name`, `:null`.  On a terminal, Ctrl-] ends
the VM.  The exit status is 0 when the guest powered off and 1 when the VM got stuck.
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
from vmm.gim import PROVIDERS
from vmm.serial.backends import SerialBackend
from vmm.vm import Machine, MachineError

QUIT_BYTE = 0x1D   # Ctrl-]
CONTROLLERS = {"ahci": ("IntelAhci", "AHCI"), "virtio": ("VirtioSCSI", "VirtioSCSI"), "ide": ("PIIX4", "IDE")}
NIC_TYPES = {"e1000": "I82540EM", "82540em": "I82540EM", "82543gc": "I82543GC", "82545em": "I82545EM",
             "virtio": "Virtio"}


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
            raise MachineError(f"--disk {spec!r}: expected ahci:PATH, virtio:PATH or ide:PATH")
        ctl = cfg.node(f"Devices/storage/{kind}")
        ctl.set("Type", CONTROLLERS[kind][0])
        ctl.set("Name", CONTROLLERS[kind][1])
        att = ctl.node(f"Attachments/{i}")
        n = len(ctl.node("Attachments").children) - 1
        if kind == "ide":
            if n > 1:
                raise MachineError("--disk ide: an IDE port 0 takes two disks (master, slave)")
            att.set("Port", 0)
            att.set("Device", n)
        else:
            att.set("Port", n)
        att.set("Path", os.path.abspath(path))
        ctl.set("PortCount", len(ctl.node("Attachments").children))
    for slot, spec in enumerate(args.nic or []):
        _nic_config(cfg, slot, spec)
        if args.nic_trace:
            cfg.set(f"Devices/net/{slot}/Trace", True)
            cfg.set(f"Devices/net/{slot}/TraceFile", f"{args.nic_trace}.{slot + 1}.pcap")
    if args.dvd is not None:
        sata = args.dvd.startswith("sata:")
        path = args.dvd[5:] if sata else args.dvd
        kind = "ahci" if sata else "ide"
        ctl = cfg.node(f"Devices/storage/{kind}")
        ctl.set("Type", CONTROLLERS[kind][0])
        ctl.set("Name", CONTROLLERS[kind][1])
        att = ctl.node("Attachments/dvd")
        if sata:                                   # the next free SATA port
            att.set("Port", len(ctl.node("Attachments").children) - 1)
            ctl.set("PortCount", len(ctl.node("Attachments").children))
        else:
            ctl.set("PortCount", 2)
            att.set("Port", 1)
        att.set("Device", 0)
        att.set("Kind", "DVD")
        att.set("Path", os.path.abspath(path) if path else "")
    for spec in args.share or []:
        name, sep, rest = spec.partition("=")
        path, _, opts = rest.partition(",")
        opts = {o for o in opts.split(",") if o}
        if not sep or not name or not os.path.isabs(path) or opts - {"ro", "symlinks"}:
            raise MachineError(f"--share {spec!r}: expected NAME=/ABSOLUTE/PATH[,ro][,symlinks]")
        node = cfg.node(f"SharedFolders/{name}")
        node.set("HostPath", path)
        node.set("Writable", "ro" not in opts)
        node.set("SymlinksCreate", "symlinks" in opts)
    return cfg


def _nic_config(cfg: CfgNode, slot: int, spec: str) -> None:
    kind, _, rest = spec.partition(":")
    attach, _, fwds = rest.partition(":")
    if kind not in NIC_TYPES:
        raise MachineError(f"--nic {spec!r}: type must be one of {', '.join(NIC_TYPES)}")
    node = cfg.node(f"Devices/net/{slot}")
    node.set("AdapterType", NIC_TYPES[kind])
    node.set("MAC", f"08002712{0x34 + slot:02x}56")
    name, _, value = attach.partition("=")
    node.set("Attachment", {"nat": "NAT", "intnet": "Internal", "null": "Null"}.get(name or "nat", name))
    if value:
        node.set("Network", value)
    for i, fwd in enumerate(f for f in fwds.split(",") if f):
        host, _, guest = fwd.partition("=")
        r = node.node(f"NAT/Rules/{i}")
        r.set("Name", f"r{i}")
        r.set("HostIP", "127.0.0.1")
        r.set("HostPort", int(host))
        r.set("GuestPort", int(guest or host))
    node.set("NAT/LocalhostReachable", True)


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
    ap.add_argument("--disk", action="append", help="ctl:path with ctl = ahci, virtio or ide")
    ap.add_argument("--dvd",
                    help="ISO image in a DVD drive on the IDE controller (sata:x.iso: on AHCI; \"\": "
                    "empty drive)")
    ap.add_argument("--nic", action="append", help="type:attachment[:hostport=guestport,...] (e1000|virtio, "
                    "nat|intnet=NAME|null)")
    ap.add_argument("--nic-trace", metavar="PREFIX", help="write PREFIX.<n>.pcap for each NIC")
    ap.add_argument("--apic", default="off", choices=["on", "off"], help="local APIC (default off)")
    ap.add_argument("--ioapic", default="off", choices=["on", "off"],
                    help="IO-APIC and the MADT (implies --apic on; default off)")
    ap.add_argument("--share", action="append",
                    help="shared folder NAME=/HOST/PATH[,ro][,symlinks] for the guest's vboxsf")
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
        import signal

        def dump(_sig, _frame) -> None:     # kill -USR1: the vCPU, PIC and NIC state, for debugging
            def collect():
                cpu = machine.vcpu.get_state()
                lines = [f"rip {cpu.gpr.get('rip', 0):#x} rflags {cpu.gpr.get('rflags', 0):#x} "
                         f"now {machine.clock.now_ns()} next timer {machine.clock.next_deadline()}",
                         f"pit {machine.pit.get_state()}",
                         f"pic master {machine.pic._m.s} slave {machine.pic._s.s}",
                         f"uarts {[u.s for u in machine.uarts]}"]
                for nic in machine.nics:
                    m = nic.model
                    lines.append(f"nic{nic.spec.adapter}: rxq {len(m.rx)} stats {m.stats} broken "
                                 f"{getattr(m, 'broken', None)} intx {nic.device._intx_request}")
                return lines
            try:
                lines = machine.em.call(collect).result(5)
            except Exception as e:
                lines = [f"dump failed: {e!r}"]
            print("\r\n".join(["", *lines, ""]), file=sys.stderr, flush=True)
        signal.signal(signal.SIGUSR1, dump)
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
