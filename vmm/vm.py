"""The VM builder: turns a CFGM tree into a running PC — RAM, buses, devices, engine, boot.

One placement table (`PLACEMENT`) says where every legacy device lives (ports, IRQ), one
(`PCI_SLOTS`) where every PCI function sits, following VirtualBox's PIIX3 layout; devices
themselves never know.  The machine starts like a PC, at the reset vector in the firmware
(SeaBIOS, fed through fw_cfg by vmm.firmware_config), unless a kernel is handed over
(`Boot/Kernel`, the fast path: the VMM loads it and plays the firmware's part).  `Machine` owns the pieces,
runs the vCPU through EM and reports the machine's fate through `on_stop(reason, detail)`:
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

from vmm import firmware_config
from vmm.boot import loader
from vmm.boot.cpu_setup import power_on
from vmm.bus import Bus
from vmm.cfgm import CfgmError, CfgNode
from vmm.devices.acpi import AcpiConfig, AcpiPm, build_acpi_tables
from vmm.devices.apic import APIC_BASE_DEFAULT, APIC_PAGE, LocalApicWindow
from vmm.devices.base import IrqLine
from vmm.devices.debugcon import DebugPort
from vmm.devices.fw_cfg import FwCfg
from vmm.devices.i440fx import QEMU_SUBSYSTEM, I440fxHost
from vmm.devices.i8042 import I8042
from vmm.devices.ioapic import IOAPIC_BASE_DEFAULT, IOAPIC_SPAN
from vmm.devices.irq_routing import InterruptRouting
from vmm.devices.pci import BAR_MEM32, PciFunction, PciHostBridge
from vmm.devices.pic import PicPair
from vmm.devices.piix3 import PciIrqRouter, Piix3Isa
from vmm.devices.piix4_pm import Piix4Pm
from vmm.devices.pit import Pit8254, Port61
from vmm.devices.port80 import BOOT_MARKER_PORT, BootMarkerPort, PostCodePort
from vmm.devices.rtc import Rtc
from vmm.devices.uart import Uart16550, UartType
from vmm.devices.vbe import PCI_CLASS as VBE_PCI_CLASS
from vmm.devices.vbe import PCI_DEVICE as VBE_PCI_DEVICE
from vmm.devices.vbe import PCI_VENDOR as VBE_PCI_VENDOR
from vmm.devices.vbe import PORT_BASE as VBE_PORT_BASE
from vmm.devices.vbe import PORT_SPAN as VBE_PORT_SPAN
from vmm.devices.vbe import VBE_CONTROLLERS, BochsVbe, vram_bytes
from vmm.devices.vga import PORT_BASE as VGA_PORT_BASE
from vmm.devices.vga import WINDOW_SIZE as VGA_WINDOW_SIZE
from vmm.devices.vga import Vga
from vmm.devices.vga_render import render as render_screen
from vmm.devices.vmmdev import VmmDev
from vmm.em import Em, EmState, StopReason
from vmm.firmware import FirmwareError, FirmwareImage
from vmm.hgcm.core import Hgcm
from vmm.hgcm.shfl_service import SharedFolderSpec, SharedFoldersService
from vmm.hgcm.shfl_types import SERVICE_NAME as SHFL_SERVICE_NAME
from vmm.memory import LOW_RAM_LIMIT, GuestMemory
from vmm.physmap import LEGACY_END, LEGACY_START, PAM_RW, VGA_HOLE_START, LegacyMemoryMap
from vmm.serial.backends import SerialBackend, create_backend
from vmm.tm import VirtualClock

log = logging.getLogger("vboxpy.vm")

ACPI_TABLES_BASE = 0xE0000
ACPI_PM_BASE = 0x4000
ACPI_SCI_IRQ = 9
# PIRQA-D routing the VMM leaves when it plays the firmware (--boot-kernel): AHCI (00:0d.0, INTA ->
# PIRQB) on IRQ 11, virtio-scsi (00:0f.0 -> PIRQD) on IRQ 10.  SeaBIOS programs its own (10, 10, 11, 11).
KERNEL_PIRQ_ROUTES = (11, 11, 10, 10)
# The PC's legacy ports and IRQs: (device, port base, span, IRQ or None)
PLACEMENT = [
    ("pic.master", 0x20, 2, None), ("pic.slave", 0xA0, 2, None), ("pic.elcr", 0x4D0, 2, None),
    ("pit", 0x40, 4, 0), ("port61", 0x61, 1, None), ("kbc.data", 0x60, 1, 1), ("kbc.command", 0x64, 1, 12),
    ("rtc", 0x70, 4, 8), ("post", 0x80, 1, None), ("bootmarker", BOOT_MARKER_PORT, 4, None),
    ("pci", 0xCF8, 8, None),
    ("debugcon", 0x402, 1, None), ("fw_cfg", 0x510, 12, None),
]
# VirtualBox's PCI layout of a PIIX3 machine (bus 0): function -> (slot, function).  Guests made
# on VirtualBox name their NIC after its slot (enp0s3), so these stay where VirtualBox puts them.
PCI_SLOTS = {
    "host": (0x00, 0), "isa": (0x01, 0), "ide": (0x01, 1), "vga": (0x02, 0), "nic0": (0x03, 0),
    "vmmdev": (0x04, 0), "audio": (0x05, 0), "ohci": (0x06, 0), "acpi": (0x07, 0), "nic1": (0x08, 0),
    "nic2": (0x09, 0), "nic3": (0x0A, 0), "ehci": (0x0B, 0), "ahci": (0x0D, 0), "virtio-scsi": (0x0F, 0),
    "nic4": (0x10, 0), "nic5": (0x11, 0), "nic6": (0x12, 0), "nic7": (0x13, 0),
}
COM_PORTS = [(0x3F8, 4), (0x2F8, 3), (0x3E8, 4), (0x2E8, 3)]


def placement_irq(name: str) -> int:
    """The ISA IRQ `PLACEMENT` gives the entry `name`: the builder wires the device's line from it,
    so the table and the wiring cannot disagree."""
    for entry, _base, _span, irq in PLACEMENT:
        if entry == name and irq is not None:
            return irq
    raise KeyError(f"no IRQ for {name!r} in the placement table")
DEFAULT_CMDLINE = "console=ttyS0"
CLOSE_STOP_TIMEOUT_S = 10.0     # close() of a running machine: how long its guest may take to stop


class MachineError(Exception):
    """The configuration cannot be turned into a VM (bad values, missing kernel, engine)."""


@dataclass
class BootConfig:
    kernel: Path | None       # None: boot through the firmware
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
        return create_engine(kind, memory, io, mmio, paravirt=paravirt, os_type_id=os_type,
                             local_apic=local_apic)
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
            kernel = cfg.get_str("Boot/Kernel", "")
            self.boot = BootConfig(Path(kernel) if kernel else None, None,
                                   cfg.get_str("Boot/Cmdline", "") or DEFAULT_CMDLINE)
            initrd = cfg.get_str("Boot/Initrd", "")
            self.triple_fault_reset = cfg.get_bool("TripleFaultReset", False)
            engine_kind = cfg.get_str("Engine", "rem")
            # GIM: the effective paravirt provider (the API resolved Default/Legacy) and the OS type
            self.paravirt = cfg.get_str("GIM/Provider", "none")
            os_type = cfg.get_str("GIM/OsType", "")
            firmware_type = cfg.get_str("Firmware/Type", "BIOS")
            firmware_path = cfg.get_str("Firmware/Path", "")
            # VirtualBox's APIC (CPU property / BIOS APIC mode) and IOAPIC settings
            self.local_apic = cfg.get_bool("APIC", False)
            self.ioapic_enabled = cfg.get_bool("IOAPIC", False)
        except CfgmError as e:
            raise MachineError(str(e))
        if initrd:
            self.boot.initrd = Path(initrd)
        for p in (self.boot.kernel, self.boot.initrd):
            if p is not None and not p.is_file():
                raise MachineError(f"boot file {p} does not exist")
        if self.ioapic_enabled and not self.local_apic:
            raise MachineError("Cannot disable the APIC when the I/O APIC is present.")
        if ram < 16 << 20 or ram % 4096:
            raise MachineError(f"RAM size {ram} bytes is too small or not page aligned")
        self.firmware: FirmwareImage | None = None
        if self.boot.kernel is None:
            if firmware_type != "BIOS":
                raise MachineError(f"firmware type {firmware_type} is not available: vboxpy boots through "
                                   "SeaBIOS only (modifyvm --firmware bios), or a kernel handed over with "
                                   "--boot-kernel")
            try:
                self.firmware = FirmwareImage.load(firmware_path or firmware_config.find_bios())
            except FirmwareError as e:
                raise MachineError(str(e))
        self.memory = GuestMemory(ram)
        self.io = Bus("io")
        self.mmio = Bus("mmio")
        self.clock = VirtualClock()
        self.placed: list[str] = []
        self._build_devices(cfg, serial_backends or {}, on_marker)
        self.vm = _create_engine(engine_kind, self.memory, self.io, self.mmio, self.paravirt, os_type,
                                 self.local_apic)
        self.engine_name = self.vm.name
        try:
            self.vm.firmware = self.firmware
            self.vm.legacy_windows = self.legacy.windows
            self.vcpu = self.vm.create_vcpu(0)
        except Exception as e:
            self.vm.close()
            raise MachineError(f"{self.engine_name}: cannot map the firmware: {e}")
        self.legacy.on_change = self.vm.set_legacy_windows
        gim = getattr(self.vm, "gim", None)     # HM builds its Gim with the first vCPU
        self.gim_description = gim.describe() if gim is not None else f"GIM: provider {self.paravirt!r}"
        log.info("%s", self.gim_description)
        self._initial_states = {name: dev.get_state() for name, dev in self._stateful.items()}
        # a machine about to load a saved state (vmm.savedstate) skips the boot files
        self.boot_image = None if restoring else self._load_boot()
        self.em = Em(self.vcpu, self.irqs.controller(0), self.clock, self.io, self.mmio, on_reset=self._reset,
                     on_stop=self._em_stopped)
        self.irqs.set_notify(self.em.interrupt_raised)

    # -- building --------------------------------------------------------------------------------
    def _build_vbe(self, cfg: CfgNode) -> BochsVbe | None:
        """The graphics controller: every VirtualBox choice but "none" is the Bochs VBE VGA on PCI."""
        controller = cfg.get_str("Display/Controller", "VBoxVGA")
        if controller in ("Null", "None", ""):
            return None
        if controller not in VBE_CONTROLLERS:
            raise MachineError(f"graphics controller {controller} is not available (vboxvga, vmsvga "
                               f"or vboxsvga "
                               "run as the Bochs VBE-compatible VGA)")
        vram = vram_bytes(cfg.get_int("Display/VRAMSize", 16 << 20))
        vbe = BochsVbe(vram)
        self.vga.vbe = vbe
        self._place("vga/vbe", VBE_PORT_BASE, VBE_PORT_SPAN, vbe.ports)
        fn = PciFunction(VBE_PCI_VENDOR, VBE_PCI_DEVICE, VBE_PCI_CLASS)
        fn.add_bar(0, vram, BAR_MEM32, vbe.lfb)
        self.pci.add_function(fn, *PCI_SLOTS["vga"])
        self.vga_function = fn
        self.placed.append(f"{'vga/vbe':<12} PCI {VBE_PCI_VENDOR:04x}:{VBE_PCI_DEVICE:04x} ({controller}), "
                           f"{vram >> 20} MiB VRAM at BAR0")
        return vbe

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
        self.pit = Pit8254(irqs.line(placement_irq("pit")), clock)
        self.kbc = I8042(irqs.line(placement_irq("kbc.data")), irqs.line(placement_irq("kbc.command")),
                         on_reset=self._guest_reset, clock=clock)
        self.rtc = Rtc(irqs.line(placement_irq("rtc")), clock, ram_below_4g=below, ram_above_4g=ram - below)
        self.acpi = AcpiPm(irqs.line(ACPI_SCI_IRQ), clock, on_power_off=self._guest_power_off,
                           on_reset=self._guest_reset)
        fw = self.firmware
        self.legacy = LegacyMemoryMap(self.memory, fw.alias_offset if fw is not None else None)
        self.mmio.register(LEGACY_START, LEGACY_END - LEGACY_START, self.legacy)
        self.host_bridge = I440fxHost(on_pam_change=self.legacy.set_pam,
                                      subsystem=QEMU_SUBSYSTEM if fw is not None else (0, 0))
        self.pci = PciHostBridge(self.io, self.mmio, reset=self._guest_reset, host=self.host_bridge)
        self.pci_irqs = PciIrqRouter(irqs.line)
        self.isa_bridge = Piix3Isa(self.pci_irqs)
        self.pci.add_function(self.isa_bridge, *PCI_SLOTS["isa"])
        self.pm_function = Piix4Pm(self.acpi, self.io)
        self.pm_function.interrupt_line = ACPI_SCI_IRQ
        self.pci.add_function(self.pm_function, *PCI_SLOTS["acpi"])
        self.bootmarker = BootMarkerPort(clock, on_marker)
        self.debugcon = DebugPort(lambda line: log.info("BIOS: %s", line))
        self.fw_cfg = FwCfg(self.memory)
        self.vga = Vga()
        self.mmio.register(VGA_HOLE_START, VGA_WINDOW_SIZE, self.vga.memory)
        self._place("vga", VGA_PORT_BASE, 0x30, self.vga.ports)
        self.placed.append(f"{'vga':<12} MMIO {VGA_HOLE_START:#x}-{VGA_HOLE_START + VGA_WINDOW_SIZE - 1:#x}")
        self.vbe = self._build_vbe(cfg)
        devs = {"pic.master": self.pic.master, "pic.slave": self.pic.slave, "pic.elcr": self.pic.elcr,
                "pit": self.pit, "port61": Port61(self.pit), "kbc.data": self.kbc.data,
                "kbc.command": self.kbc.command, "rtc": self.rtc, "post": PostCodePort(),
                "bootmarker": self.bootmarker, "pci": self.pci,
                "debugcon": self.debugcon, "fw_cfg": self.fw_cfg}
        for name, base, span, irq in PLACEMENT:
            if fw is None and name == "fw_cfg":
                continue
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
        self._place_vmmdev(cfg)
        self.storage = []
        self._storage_specs = cfg.child("Devices/storage")
        self._stateful = {"pic": self.pic, "pit": self.pit, "kbc": self.kbc, "rtc": self.rtc,
                          "acpi": self.acpi, "pci": self.pci, "pci/isa": self.isa_bridge, "vga": self.vga,
                          "pci/acpi": self.pm_function, "pci/vmmdev": self.vmmdev,
                          **irqs.stateful()}
        if self.vbe is not None:
            self._stateful.update({"vga/vbe": self.vbe, "pci/vga": self.vga_function})
        if fw is not None:
            self._stateful.update({"fw_cfg": self.fw_cfg, "debugcon": self.debugcon})
        for i, u in enumerate(self.uarts):
            self._stateful[f"uart{i}"] = u
        self._place_storage()
        self._place_nics(cfg.child("Devices/net"))
        for pc in self.storage:               # the IDE channels' legacy ports
            for name, port, span, dev, irq in pc.legacy:
                self._place(name, port, span, dev, irq)
        for pc in self.storage:               # reset to power-on state on a guest reboot, saved with the VM
            self._stateful[f"storage/{pc.name}"] = pc.device
        for nic in self.nics:
            self._stateful[f"net/{nic.spec.adapter}"] = nic.device
        if fw is None:
            # the VMM plays the firmware: BARs placed, PIRQs routed, the BIOS area shadowed in RAM
            self.pci.assign_resources()
            self.isa_bridge.set_routes(list(KERNEL_PIRQ_ROUTES))
            self.pm_function.enable(ACPI_PM_BASE)
            self.placed.append(f"{'acpi.pm':<12} I/O {ACPI_PM_BASE:#06x}-{ACPI_PM_BASE + 0x1f:#06x} IRQ "
                               f"{ACPI_SCI_IRQ}")
            self.host_bridge.set_pam(bytes([PAM_RW << 4] + [PAM_RW << 4 | PAM_RW] * 6))
            acfg = AcpiConfig(pm_base=ACPI_PM_BASE, sci_irq=ACPI_SCI_IRQ, pci=True, apic=self.ioapic_enabled,
                              pci_irqs=self._pci_irq_routes())
            self.acpi_tables = build_acpi_tables(acfg, ACPI_TABLES_BASE)
        else:
            acpi_on = cfg.get_bool("ACPI", True)
            firmware_config.populate(self.fw_cfg, cfg, self.memory, self.storage,
                                     self._firmware_acpi_config if acpi_on else None,
                                     (VBE_PCI_VENDOR, VBE_PCI_DEVICE) if self.vbe is not None else None)

    def _place_apics(self) -> None:
        """The boot vCPU's local APIC and the IO-APIC in the MMIO space, where the MADT says."""
        irqs = self.irqs
        if irqs.lapics:
            self.mmio.register(APIC_BASE_DEFAULT, APIC_PAGE, LocalApicWindow(irqs.lapics))
            self.placed.append(f"{'lapic':<12} MMIO {APIC_BASE_DEFAULT:#010x}")
        if irqs.ioapic is not None:
            self.mmio.register(IOAPIC_BASE_DEFAULT, IOAPIC_SPAN, irqs.ioapic)
            self.placed.append(f"{'ioapic':<12} MMIO {IOAPIC_BASE_DEFAULT:#010x} (24 pins)")

    def _place_vmmdev(self, cfg: CfgNode) -> None:
        """VirtualBox's guest device at 00:04.0, with HGCM and its services behind it."""
        self.hgcm = Hgcm()
        self.shared_folders = SharedFoldersService(self._folder_specs(cfg))
        self.hgcm.register(SHFL_SERVICE_NAME, self.shared_folders)
        slot = PCI_SLOTS["vmmdev"][0]
        line, irq_no = self._pci_line(slot)
        self.vmmdev = VmmDev(self.memory, self.hgcm, self.clock, irq=line, on_guest_info=self._guest_info)
        self.vmmdev.interrupt_line = irq_no
        self.pci.add_function(self.vmmdev, slot)
        self.guest_additions: dict = {}
        self.placed.append(f"{'vmmdev':<12} PCI 00:{slot:02x}.0 INTA")

    def _guest_info(self, info: dict) -> None:
        self.guest_additions = info

    @staticmethod
    def _folder_specs(cfg: CfgNode) -> list[SharedFolderSpec]:
        """CFGM SharedFolders/<name>: the machine's shared folders (permanent and transient)."""
        out = []
        for node in cfg.child("SharedFolders") or []:
            try:
                out.append(SharedFolderSpec(node.name, node.get_str("HostPath"),
                                            node.get_bool("Writable", True),
                                            node.get_bool("AutoMount", False),
                                            node.get_str("AutoMountPoint", ""),
                                            node.get_bool("SymlinksCreate", False)))
            except CfgmError as e:
                raise MachineError(f"shared folder {node.name}: {e}")
        return out

    def set_shared_folders(self, folders: list[SharedFolderSpec]) -> None:
        """The console changed the shared folders of the running VM: the guest sees them at once."""
        self.shared_folders.set_folders(folders)

    def _place_storage(self) -> None:
        if self._storage_specs is None:
            return
        from vmm.devices.storage_placement import (
            DiskAttachmentSpec,
            StorageControllerSpec,
            place_storage_controllers,
        )
        specs = []
        if self.pci.function_at(1, 0) is None:
            # function 0 of the PIIX3 (its ISA bridge): without it no guest looks at the IDE function 00:01.1
            self.pci.add_function(PciFunction(0x8086, 0x7000, 0x060100), 1, 0)
        for node in self._storage_specs:
            atts = [DiskAttachmentSpec(port=a.get_int("Port"), path=a.get_str("Path", ""),
                                       kind=a.get_str("Kind", "HardDisk"),
                                       read_only=a.get_bool("ReadOnly", False),
                                       nonrotational=a.get_bool("NonRotational", False),
                                       discard=a.get_bool("Discard", False), device=a.get_int("Device", 0),
                                       parents=dict((a.child("Chain") or CfgNode()).values))
                    for a in node.children.get("Attachments", CfgNode())]
            specs.append(StorageControllerSpec(node.get_str("Name"), node.get_str("Type"),
                                               node.get_int("PortCount", 1),
                                               node.get_bool("UseHostIOCache", False), atts))
        slots = {"IntelAhci": PCI_SLOTS["ahci"][0], "VirtioSCSI": PCI_SLOTS["virtio-scsi"][0]}
        try:
            self.storage = place_storage_controllers(specs, self.memory, self.pci, self.irqs.line,
                                                     slots=slots, pci_line=self._pci_line)
        except (ValueError, OSError) as e:
            raise MachineError(f"storage: {e}")
        for pc in self.storage:
            irq = "IRQ 14/15" if pc.legacy else f"IRQ {pc.irq}"
            self.placed.append(f"{pc.controller_type:<12} PCI {pc.address} {irq} ({pc.name})")

    def _place_nics(self, nodes: CfgNode | None) -> None:
        """Network adapters: the backend of each attachment (host side), then the PCI NIC."""
        from vmm.devices.net_placement import SUPPORTED as NIC_MODELS
        from vmm.devices.net_placement import NicSpec, place_nics
        from vmm.net.attach import AttachError, create_backend
        from vmm.net.pcap import PcapWriter
        self.nics = []
        self.traces: list[PcapWriter] = []
        if nodes is None:
            return
        specs, backends, taps = [], [], []
        slots = {n: PCI_SLOTS[f"nic{n}"][0] for n in range(8)}
        try:
            for node in nodes:
                adapter = int(node.name)
                spec = NicSpec(adapter, node.get_str("AdapterType"), bytes.fromhex(node.get_str("MAC")),
                               node.get_bool("CableConnected", True))
                if spec.adapter_type not in NIC_MODELS:
                    # the PCnet family (VirtualBox's default for some OS types) has no model here: the
                    # VM runs without that adapter rather than not at all, and the log says so
                    log.warning("NIC#%d: adapter type %s is not emulated; the adapter is left out (use "
                                "82540EM, 82543GC, 82545EM or virtio: modifyvm --nic-type%d)", adapter,
                                spec.adapter_type, adapter + 1)
                    continue
                backends.append(create_backend(node, adapter, node.get_str("RuntimeDir", "")))
                specs.append(spec)
                tap = None
                if node.get_bool("Trace", False):
                    path = node.get_str("TraceFile", "") or f"nic{adapter + 1}.pcap"
                    writer = PcapWriter(path)
                    self.traces.append(writer)
                    tap = writer.write
                taps.append(tap)
            self.nics = place_nics(specs, backends, self.memory, self.pci, self.clock, self._pci_line, slots,
                                   wake=lambda: self.em.interrupt_raised(True), taps=taps)
        except (AttachError, CfgmError, ValueError, OSError) as e:
            for b in backends:
                b.close()
            for t in self.traces:
                t.close()
            raise MachineError(str(e)) from None
        for nic in self.nics:
            adapter = nic.spec.adapter

            def broken(why: str, adapter=adapter) -> None:
                log.error("NIC#%d: the guest broke the adapter's rings (%s); the adapter is stopped until "
                          "the guest resets it", adapter, why)
            nic.device.on_broken = broken
            self.placed.append(f"{nic.spec.adapter_type:<12} PCI 00:{nic.slot:02x}.0 INTA "
                               f"(NIC {adapter + 1}: MAC {nic.spec.mac.hex(':')}, "
                               f"{getattr(nic.backend, 'description', type(nic.backend).__name__)})")

    # -- network adapters at run time (any thread) ---------------------------------------------------------
    def _nic(self, adapter: int):
        for nic in self.nics:
            if nic.spec.adapter == adapter:
                return nic
        raise MachineError(f"network adapter {adapter + 1} is not present in the running VM")

    def set_link_state(self, adapter: int, up: bool):
        nic = self._nic(adapter)
        return self.em.call(lambda: nic.model.set_link(up))

    def nat_redirect(self, adapter: int, remove: bool, rule=None, name: str = "") -> None:
        """Add (rule: vmm.net.nat.NatRule) or remove (by name) a port forward of a NAT adapter."""
        from vmm.net.nat import NatBackend, NatError
        nic = self._nic(adapter)
        if not isinstance(nic.backend, NatBackend):
            raise MachineError(f"network adapter {adapter + 1} is not attached to NAT")
        try:
            if remove:
                nic.backend.remove_rule(name)
            else:
                nic.backend.add_rule(rule)
        except NatError as e:
            raise MachineError(str(e)) from None

    def _firmware_acpi_config(self) -> AcpiConfig:
        """The ACPI description of the machine as the firmware has set it up (PMBASE, PIRQs)."""
        pm_base = self.pm_function.pm_base or ACPI_PM_BASE
        return AcpiConfig(pm_base=pm_base, sci_irq=ACPI_SCI_IRQ, pci=True, vga=True, apic=self.ioapic_enabled,
                          pci_irqs=self._pci_irq_routes())

    def _pci_line(self, slot: int) -> tuple[IrqLine, int]:
        """INTA of a PCI function in `slot`, through the PIIX3's PIRQ router; and the IRQ the
        VMM routes it to when it plays the firmware."""
        from vmm.devices.piix3 import pirq_of
        return self.pci_irqs.line(slot, 1), KERNEL_PIRQ_ROUTES[pirq_of(slot, 1)]

    def _pci_irq_routes(self) -> list[tuple[int, int, int]]:
        """(slot, pin 0-3, IRQ) for the ACPI _PRT of every device slot, as the router routes them."""
        from vmm.devices.piix3 import pirq_of
        out = []
        for slot in sorted({PCI_SLOTS["vmmdev"][0]} | {pc.slot for pc in self.storage if not pc.legacy}
                           | {nic.slot for nic in self.nics}):
            for pin in range(4):
                irq = self.pci_irqs.target(pirq_of(slot, pin + 1))
                if irq is not None:
                    out.append((slot, pin, irq))
        return out

    def _load_boot(self) -> loader.BootImage | None:
        if self.boot.kernel is None:
            self.vcpu.set_state(power_on())
            return None
        self.acpi_tables.write_to(self.memory)
        image = self.boot.kernel.read_bytes()
        initrd = self.boot.initrd.read_bytes() if self.boot.initrd else None
        try:
            bi = loader.load(self.memory, image, initrd, self.boot.cmdline,
                             rsdp=self.acpi_tables.rsdp_address)
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
        flush = getattr(self.vm, "flush_code", None)     # REM: code translated from the old RAM
        if flush is not None:
            flush()
        self._load_boot()

    def _em_stopped(self, reason: StopReason, detail: str) -> None:
        kind = "poweroff" if reason is StopReason.POWER_OFF else "stuck"
        self.stopped = (kind, detail)
        log.info("VM stopped: %s (%s)", kind, detail)
        if kind == "stuck":
            lines = self.vga.last_lines(10)
            if lines:
                log.info("VGA text screen (last %d lines):\n%s", len(lines),
                         "\n".join(f"  | {ln}" for ln in lines))
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

    def change_medium(self, controller: str, port: int, device: int, path: str) -> None:
        """Put the image at `path` ("" = none) into a DVD drive; the guest sees a medium change."""
        from vmm.devices.atapi import AtapiDrive
        from vmm.devices.storage_placement import open_dvd
        pc = next((p for p in self.storage if p.name == controller), None)
        drive = None
        if pc is not None and hasattr(pc.device, "device_at"):
            drive = pc.device.device_at(port, device)
        if not isinstance(drive, AtapiDrive):
            raise MachineError(f"no DVD drive at port {port} device {device} of controller '{controller}'")
        try:
            image = open_dvd(path) if path else None
        except (OSError, ValueError) as e:
            raise MachineError(f"cannot open '{path}': {e}")

        def swap() -> None:
            old = drive.image
            drive.insert(image)
            if old is not None:
                pc.images.remove(old)
                old.close()
            if image is not None:
                pc.images.append(image)
        self.em.call(swap).result(30)

    def put_scancodes(self, codes: list[int]) -> int:
        """Any thread: type set-1 scan codes on the PS/2 keyboard; returns how many it took."""
        if not self.running:
            return self.kbc.put_scancodes(codes)
        return self.em.call(lambda: self.kbc.put_scancodes(codes)).result(10)

    def keys_pending(self) -> int:
        return self.kbc.keys_pending

    def screen_version(self) -> tuple:
        """Changes whenever what the screen shows may have changed (cheap: no rendering; a checksum
        of the shown frame buffer where the engine maps it into the guest)."""
        return self.vga.generation, self.vbe.version() if self.vbe is not None else (0, 0)

    def screen(self):
        """Any thread: the picture on the VGA now (a vmm.devices.vga_render.Frame)."""
        return render_screen(self.vga)

    def wait(self, timeout: float | None = None) -> bool:
        return self.em.join(timeout)

    def close(self) -> None:
        """Free the machine; a guest still running is powered off first (its vCPU thread must not
        run on in closed devices, or in an engine freed when the process exits)."""
        if self.em.state in (EmState.RUNNING, EmState.PAUSED) and not self.em.on_vcpu_thread():
            self.em.power_off()
            if not self.em.join(CLOSE_STOP_TIMEOUT_S):
                log.warning("the vCPU did not stop within %.0f s; closing anyway", CLOSE_STOP_TIMEOUT_S)
        for b in self.backends:
            b.close()
        for pc in self.storage:
            pc.close()
        for nic in self.nics:
            stats = dict(getattr(nic.model, "stats", {}), rx_queue_dropped=nic.model.rx.dropped)
            log.info("NIC#%d: %s", nic.spec.adapter, ", ".join(f"{k} {v}" for k, v in stats.items()))
            nic.backend.close()
        for t in self.traces:
            t.close()
        self.hgcm.close()
        self.vm.close()

    def debug_info(self) -> list[str]:
        """The machine's live state for VBox.log (what `debugvm info` shows on VirtualBox): EM,
        the armed timers, the vCPU's interrupt flags and every device's saved-state fields.
        Read without stopping the guest: a snapshot for diagnosis, not a consistent one."""
        em, clock = self.em, self.clock
        lines = [f"EM: state={em.state.name} stats={dict(em.stats)}",
                 f"TM: now={clock.now_ns()} next={clock.next_deadline()}"]
        lines += [f"TM: timer {name} at {deadline}" for deadline, name in clock.armed()]
        lines.append(f"EM: recent interrupts (ns, vector) {list(em.recent_interrupts)}")
        lines.append(f"PIT: channel 0 recent (event, ns, count) {self.pit.recent(0)}")
        try:
            lines.append(f"CPU: interrupts_enabled={self.vcpu.interrupts_enabled()} "
                         f"exits={getattr(self.vcpu, 'exits', {})}")
        except Exception as e:              # a diagnostic never fails the VM
            lines.append(f"CPU: {e!r}")
        for name, dev in self._stateful.items():
            try:
                lines.append(f"{name}: {dev.get_state()!r}"[:2000])
            except Exception as e:
                lines.append(f"{name}: {e!r}")
        return lines

    def describe(self) -> list[str]:
        return [f"Engine: {self.engine_name}", self.gim_description,
                f"RAM: {self.memory.size // (1 << 20)} MiB",
                (f"Boot: {self.boot_image.kind} {self.boot.kernel} entry {self.boot_image.entry:#x}"
                 if self.boot_image is not None else
                 f"Boot: firmware {self.firmware.name} ({self.firmware.size // 1024} KiB)"
                 if self.firmware is not None else "Boot: restored from a saved state"),
                ] + ([f"Initrd: {self.boot.initrd}", f"Cmdline: {self.boot.cmdline}"]
                     if self.boot.kernel else []) + \
               ["Devices:"] + \
               [f"  {p}" for p in self.placed]
