"""The VM builder: turns a CFGM tree into a running PC — RAM, buses, devices, engine, boot.

One placement table (`PLACEMENT`) says where every legacy device lives (ports, IRQ); devices
themselves never know.  `Machine` owns the pieces, runs the vCPU through EM and reports the
machine's fate through `on_stop(reason, detail)`:
  "poweroff" (guest ACPI S5 or the console), "stuck" (engine error, or a triple fault when
  the machine does not reset on it).  Guest reboots (i8042 pulse, PCI reset control, ACPI
  reset register, triple fault with TripleFaultReset) reset the machine and keep running.
Interrupts (vmm.devices.irq_routing): CFGM `APIC` gives the vCPU a local APIC at 0xFEE00000, which
EM then asks for vectors (the 8259A passes through its LINT0); CFGM `IOAPIC` adds the IO-APIC at
0xFEC00000 and the MADT, and ISA IRQs reach both the 8259A and the IO-APIC.
"""

from __future__ import annotations

import logging
import mmap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vmm.boot import loader
from vmm.bus import Bus
from vmm.cfgm import CfgmError, CfgNode
from vmm.devices.acpi import AcpiConfig, AcpiPm, build_acpi_tables
from vmm.devices.apic import APIC_BASE_DEFAULT, APIC_PAGE, LocalApicWindow
from vmm.devices.i8042 import I8042
from vmm.devices.ioapic import IOAPIC_BASE_DEFAULT, IOAPIC_SPAN
from vmm.devices.irq_routing import InterruptRouting
from vmm.devices.pci import PciHostBridge
from vmm.devices.pic import PicPair
from vmm.devices.pit import Pit8254, Port61
from vmm.devices.port80 import BOOT_MARKER_PORT, BootMarkerPort, PostCodePort
from vmm.devices.rtc import Rtc
from vmm.devices.serial_backends import SerialBackend, create_backend
from vmm.devices.uart import Uart16550, UartType
from vmm.em import Em, EmState, StopReason
from vmm.memory import LOW_RAM_LIMIT, GuestMemory
from vmm.tm import VirtualClock

log = logging.getLogger("vboxpy.vm")

ACPI_TABLES_BASE = 0xE0000
ACPI_PM_BASE = 0x4000
ACPI_SCI_IRQ = 9
PCI_FREE_IRQS = (11, 10, 5)
# The PC's legacy ports and IRQs: (device, port base, span, IRQ or None)
PLACEMENT = [
    ("pic.master", 0x20, 2, None), ("pic.slave", 0xA0, 2, None), ("pic.elcr", 0x4D0, 2, None),
    ("pit", 0x40, 4, 0), ("port61", 0x61, 1, None), ("kbc.data", 0x60, 1, 1), ("kbc.command", 0x64, 1, 12),
    ("rtc", 0x70, 4, 8), ("post", 0x80, 1, None), ("bootmarker", BOOT_MARKER_PORT, 4, None),
    ("pci", 0xCF8, 8, None), ("acpi.pm", ACPI_PM_BASE, 0x20, ACPI_SCI_IRQ),
]
COM_PORTS = [(0x3F8, 4), (0x2F8, 3), (0x3E8, 4), (0x2E8, 3)]
DEFAULT_CMDLINE = "console=ttyS0"


class MachineError(Exception):
    """The configuration cannot be turned into a VM (bad values, missing kernel, engine)."""


@dataclass
class BootConfig:
    kernel: Path
    initrd: Path | None
    cmdline: str


def _create_engine(kind: str, memory: GuestMemory, io: Bus, mmio: Bus, paravirt: str, os_type: str,
                   local_apic: bool = False):
    """EM's engine (auto: HM when the host has usable VT-x/AMD-V, else REM) with the GIM provider."""
    from vmm.engine_select import EngineSelectError, choose_engine, create_engine
    from vmm.gim import GimError
    if kind == "auto":
        try:
            choice = choose_engine(True)
        except EngineSelectError as e:
            raise MachineError(str(e))
        log.info("EM: %s", choice.reason)
        kind = choice.kind
    if kind not in ("rem", "hm"):
        raise MachineError(f"unknown execution engine {kind!r} (rem, hm, auto)")
    try:
        return create_engine(kind, memory, io, mmio, paravirt=paravirt, os_type_id=os_type, local_apic=local_apic)
    except GimError as e:
        raise MachineError(f"GIM: {e}")
    except ImportError as e:
        raise MachineError(f"the {kind.upper()} engine is not available: {e}")


class Machine:
    def __init__(self, cfg: CfgNode, on_stop: Callable[[str, str], None] | None = None,
                 serial_backends: dict[int, SerialBackend] | None = None,
                 on_marker: Callable[[int, int], None] | None = None, restoring: bool = False):
        self.cfg = cfg
        self.on_stop = on_stop
        self.stopped: tuple[str, str] | None = None
        self.resets = 0
        try:
            ram = cfg.get_int("RamSize")
            self.boot = BootConfig(Path(cfg.get_str("Boot/Kernel", "")), None,
                                   cfg.get_str("Boot/Cmdline", "") or DEFAULT_CMDLINE)
            initrd = cfg.get_str("Boot/Initrd", "")
            self.triple_fault_reset = cfg.get_bool("TripleFaultReset", False)
            engine_kind = cfg.get_str("Engine", "rem")
            # GIM: the effective paravirt provider (the API resolved Default/Legacy) and the OS type
            self.paravirt = cfg.get_str("GIM/Provider", "none")
            os_type = cfg.get_str("GIM/OsType", "")
            # VirtualBox's APIC (CPU property / BIOS APIC mode) and IOAPIC settings
            self.local_apic = cfg.get_bool("APIC", False)
            self.ioapic_enabled = cfg.get_bool("IOAPIC", False)
        except CfgmError as e:
            raise MachineError(str(e))
        if not str(self.boot.kernel) or str(self.boot.kernel) == ".":
            raise MachineError("no boot kernel configured (modifyvm --boot-kernel / vboxpy/BootKernel): "
                               "vboxpy has no BIOS and boots Linux kernels or flat binaries directly")
        if initrd:
            self.boot.initrd = Path(initrd)
        for p in (self.boot.kernel, self.boot.initrd):
            if p is not None and not p.is_file():
                raise MachineError(f"boot file {p} does not exist")
        if self.ioapic_enabled and not self.local_apic:
            raise MachineError("Cannot disable the APIC when the I/O APIC is present.")
        if ram < 16 << 20 or ram % 4096:
            raise MachineError(f"RAM size {ram} bytes is too small or not page aligned")
        self.memory = GuestMemory(ram)
        self.io = Bus("io")
        self.mmio = Bus("mmio")
        self.clock = VirtualClock()
        self.placed: list[str] = []
        self._build_devices(cfg, serial_backends or {}, on_marker)
        self.vm = _create_engine(engine_kind, self.memory, self.io, self.mmio, self.paravirt, os_type,
                                 self.local_apic)
        self.engine_name = self.vm.name
        self.vcpu = self.vm.create_vcpu(0)
        gim = getattr(self.vm, "gim", None)     # HM builds its Gim with the first vCPU
        self.gim_description = gim.describe() if gim is not None else f"GIM: provider {self.paravirt!r}"
        log.info("%s", self.gim_description)
        self._initial_states = {name: dev.get_state() for name, dev in self._stateful.items()}
        # issue 9 hook: a machine about to load a saved state (vmm.savedstate) skips the boot files
        self.boot_image = None if restoring else self._load_boot()
        self.em = Em(self.vcpu, self.irqs.controller(0), self.clock, self.io, self.mmio, on_reset=self._reset,
                     on_stop=self._em_stopped)
        self.irqs.set_notify(self.em.interrupt_raised)

    # -- building --------------------------------------------------------------------------------
    def _place(self, name: str, base: int, length: int, dev, irq: int | None = None) -> None:
        self.io.register(base, length, dev)
        self.placed.append(f"{name:<12} I/O {base:#06x}-{base + length - 1:#06x}"
                           + (f" IRQ {irq}" if irq is not None else ""))

    def _build_devices(self, cfg: CfgNode, backends: dict[int, SerialBackend], on_marker) -> None:
        self.pic = PicPair()
        irqs = self.irqs = InterruptRouting(self.pic, self.clock, self.local_apic, self.ioapic_enabled)
        self._place_apics()
        clock = self.clock
        ram = self.memory.size
        below = min(ram, LOW_RAM_LIMIT)
        self.pit = Pit8254(irqs.line(0), clock)
        self.kbc = I8042(irqs.line(1), irqs.line(12), on_reset=self._guest_reset)
        self.rtc = Rtc(irqs.line(8), clock, ram_below_4g=below, ram_above_4g=ram - below)
        self.acpi = AcpiPm(irqs.line(ACPI_SCI_IRQ), clock, on_power_off=self._guest_power_off,
                           on_reset=self._guest_reset)
        self.pci = PciHostBridge(self.io, self.mmio, reset=self._guest_reset)
        self.bootmarker = BootMarkerPort(clock, on_marker)
        devs = {"pic.master": self.pic.master, "pic.slave": self.pic.slave, "pic.elcr": self.pic.elcr,
                "pit": self.pit, "port61": Port61(self.pit), "kbc.data": self.kbc.data,
                "kbc.command": self.kbc.command, "rtc": self.rtc, "post": PostCodePort(),
                "bootmarker": self.bootmarker, "pci": self.pci, "acpi.pm": self.acpi}
        for name, base, span, irq in PLACEMENT:
            self._place(name, base, span, devs[name], irq)
        self.uarts: list[Uart16550] = []
        self.backends: list[SerialBackend] = []
        serial = cfg.child("Devices/serial")
        for node in (serial or []):
            slot = int(node.name)
            if not node.get_bool("Enabled", True):
                continue
            default_base, default_irq = COM_PORTS[slot] if slot < 4 else (None, None)
            base = node.get_int("IOBase", default_base)
            irq = node.get_int("IRQ", default_irq)
            if base is None or irq is None or not 0 <= irq <= 15:
                raise MachineError(f"serial port {slot}: I/O base and IRQ (0-15) are required")
            backend = backends.get(slot) or create_backend(node.get_int("Mode", 0), node.get_str("Path", ""),
                                                           node.get_bool("Server", False))
            uart = Uart16550(irqs.line(irq), clock, backend, UartType(node.get_int("UartType", 1)),
                             on_input=lambda: self.em.interrupt_raised(True))
            self._place(f"uart{slot}", base, 8, uart, irq)
            self.uarts.append(uart)
            self.backends.append(backend)
        self.storage = []
        self._storage_specs = cfg.child("Devices/storage")
        self._stateful = {"pic": self.pic, "pit": self.pit, "kbc": self.kbc, "rtc": self.rtc,
                          "acpi": self.acpi, "pci": self.pci, **irqs.stateful()}
        for i, u in enumerate(self.uarts):
            self._stateful[f"uart{i}"] = u
        self._place_storage()
        if self.storage:
            self.pci.assign_resources()
        for pc in self.storage:               # reset to power-on state on a guest reboot, saved with the VM
            self._stateful[f"storage/{pc.name}"] = pc.device
        acfg = AcpiConfig(pm_base=ACPI_PM_BASE, sci_irq=ACPI_SCI_IRQ, pci=True, apic=self.ioapic_enabled,
                          pci_irqs=[(pc.slot, pin, pc.irq) for pc in self.storage for pin in range(4)])
        self.acpi_tables = build_acpi_tables(acfg, ACPI_TABLES_BASE)

    def _place_apics(self) -> None:
        """The boot vCPU's local APIC and the IO-APIC in the MMIO space, where the MADT says."""
        irqs = self.irqs
        if irqs.lapics:
            self.mmio.register(APIC_BASE_DEFAULT, APIC_PAGE, LocalApicWindow(irqs.lapics))
            self.placed.append(f"{'lapic':<12} MMIO {APIC_BASE_DEFAULT:#010x}")
        if irqs.ioapic is not None:
            self.mmio.register(IOAPIC_BASE_DEFAULT, IOAPIC_SPAN, irqs.ioapic)
            self.placed.append(f"{'ioapic':<12} MMIO {IOAPIC_BASE_DEFAULT:#010x} (24 pins)")

    def _place_storage(self) -> None:
        if self._storage_specs is None:
            return
        from vmm.devices.storage_placement import (
            DiskAttachmentSpec,
            StorageControllerSpec,
            place_storage_controllers,
        )
        specs = []
        for node in self._storage_specs:
            atts = [DiskAttachmentSpec(port=a.get_int("Port"), path=a.get_str("Path"),
                                       read_only=a.get_bool("ReadOnly", False),
                                       nonrotational=a.get_bool("NonRotational", False),
                                       discard=a.get_bool("Discard", False), device=a.get_int("Device", 0),
                                       parents=dict((a.child("Chain") or CfgNode()).values))
                    for a in node.children.get("Attachments", CfgNode())]
            specs.append(StorageControllerSpec(node.get_str("Name"), node.get_str("Type"),
                                               node.get_int("PortCount", 1),
                                               node.get_bool("UseHostIOCache", False), atts))
        try:
            self.storage = place_storage_controllers(specs, self.memory, self.pci, self.irqs.line,
                                                     free_irqs=PCI_FREE_IRQS)
        except (ValueError, OSError) as e:
            raise MachineError(f"storage: {e}")
        for pc in self.storage:
            self.placed.append(f"{pc.controller_type:<12} PCI 00:{pc.slot:02x}.0 IRQ {pc.irq} ({pc.name})")

    def _load_boot(self) -> loader.BootImage:
        self.acpi_tables.write_to(self.memory)
        image = self.boot.kernel.read_bytes()
        initrd = self.boot.initrd.read_bytes() if self.boot.initrd else None
        try:
            bi = loader.load(self.memory, image, initrd, self.boot.cmdline, rsdp=self.acpi_tables.rsdp_address)
        except loader.BootError as e:
            raise MachineError(f"cannot boot {self.boot.kernel}: {e}")
        self.vcpu.set_state(bi.state)
        self.irqs.firmware_setup()            # no BIOS runs: leave the APIC as one would
        return bi

    # -- guest events (vCPU thread) --------------------------------------------------------------
    def _guest_power_off(self) -> None:
        self.em.request_stop(StopReason.POWER_OFF, "guest powered off (ACPI S5)")

    def _guest_reset(self) -> None:
        self.em.request_reset()

    def _reset(self) -> None:
        """Machine reset on the vCPU thread: devices to power-on state, RAM cleared, kernel reloaded."""
        self.resets += 1
        log.info("VM reset #%d", self.resets)
        for name, dev in self._stateful.items():
            if name != "rtc":                 # CMOS RAM and the clock survive a reset, as on a PC
                dev.set_state(self._initial_states[name])
        self.memory.mmap.madvise(mmap.MADV_DONTNEED)
        self._load_boot()

    def _em_stopped(self, reason: StopReason, detail: str) -> None:
        kind = "poweroff" if reason is StopReason.POWER_OFF else "stuck"
        self.stopped = (kind, detail)
        log.info("VM stopped: %s (%s)", kind, detail)
        if self.on_stop is not None:
            self.on_stop(kind, detail)

    # -- console ---------------------------------------------------------------------------------
    def start(self, paused: bool = False) -> None:
        self.em.reset_on_triple_fault = self.triple_fault_reset
        self.em.start(paused)

    @property
    def running(self) -> bool:
        return self.em.state in (EmState.RUNNING, EmState.PAUSED)

    def pause(self):
        return self.em.pause()

    def resume(self):
        return self.em.resume()

    def reset(self):
        return self.em.reset()

    def power_off(self):
        return self.em.power_off()

    def power_button(self) -> None:
        self.acpi.press_power_button()

    def wait(self, timeout: float | None = None) -> bool:
        return self.em.join(timeout)

    def close(self) -> None:
        for b in self.backends:
            b.close()
        for pc in self.storage:
            pc.close()
        self.vm.close()

    def describe(self) -> list[str]:
        return [f"Engine: {self.engine_name}", self.gim_description, f"RAM: {self.memory.size // (1 << 20)} MiB",
                (f"Boot: {self.boot_image.kind} {self.boot.kernel} entry {self.boot_image.entry:#x}"
                 if self.boot_image is not None else "Boot: restored from a saved state"),
                f"Initrd: {self.boot.initrd}", f"Cmdline: {self.boot.cmdline}", "Devices:"] + \
               [f"  {p}" for p in self.placed]
