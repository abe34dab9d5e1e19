"""Turn a machine's storage controllers into PCI devices on the host bridge (for the VM builder).

The VM builder resolves each attachment's medium to a file (for an immutable medium: the
differencing image it reset at VM start) and hands the controllers here; this module opens
the images, builds the IntelAhci HBA, the VirtioSCSI controller or the PIIX IDE controller,
gives each a PCI slot and an ISA IRQ (written into the function's interrupt line as a BIOS
would), and returns what it placed so the VM can close the images at power-off.  The IDE
controller sits where VirtualBox puts it, function 00:01.1 beside the PIIX3 ISA bridge, with
its channels on the legacy ports and IRQs 14/15; its DVD drives get read-only media (ISO
images) or none (an empty drive).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from vmm.devices.ahci import MAX_PORTS as AHCI_MAX_PORTS
from vmm.devices.ahci import Ahci
from vmm.devices.ata_disk import AtaDisk
from vmm.devices.atapi import AtapiDrive
from vmm.devices.base import IrqLine
from vmm.devices.pci import PciFunction, PciHostBridge
from vmm.devices.piix_ide import DEVICE_IDS as IDE_MODELS
from vmm.devices.piix_ide import PiixIde
from vmm.devices.virtio.pci import VirtioPciTransport
from vmm.devices.virtio.scsi import VirtioScsi
from vmm.devices.virtio.scsi_disk import DiskOptions, ScsiDisk
from vmm.memory import GuestMemory
from vmm.storage.image import DiskImage, DiskImageError

# VirtualBox's PCI slots for these controllers (AHCI at 00:0d.0), and the IRQs a PIIX3 BIOS
# hands to PCI devices.
DEFAULT_SLOTS = {"IntelAhci": 13, "VirtioSCSI": 15}
PCI_IRQS = (11, 10, 9, 5)
SUPPORTED = ("IntelAhci", "VirtioSCSI") + tuple(IDE_MODELS)
IDE_SLOT, IDE_FUNCTION = 1, 1
IDE_IRQS = (14, 15)


@dataclass
class DiskAttachmentSpec:
    port: int
    path: str
    read_only: bool = False          # Readonly media (and DVDs); immutable media arrive as a diff
    nonrotational: bool = False
    discard: bool = False
    device: int = 0
    parents: dict[str, str] = field(default_factory=dict)   # parent UUID -> location (diff chains)
    kind: str = "HardDisk"           # or "DVD" (path "" for an empty drive)


@dataclass
class StorageControllerSpec:
    name: str
    controller_type: str             # VirtualBox's StorageControllerType name
    port_count: int = 1
    use_host_io_cache: bool = False
    attachments: list[DiskAttachmentSpec] = field(default_factory=list)


@dataclass
class PlacedController:
    name: str
    controller_type: str
    device: PciFunction
    slot: int
    irq: int
    images: list[DiskImage]
    function: int = 0
    legacy: list = field(default_factory=list)     # (name, port, span, device, IRQ) it occupies

    @property
    def address(self) -> str:
        return f"00:{self.slot:02x}.{self.function}"
    # (port, device, is optical) of every attached medium, for the firmware's boot order
    attached: list[tuple[int, int, bool]] = field(default_factory=list)

    def boot_devices(self) -> list[tuple[int, int, bool]]:
        return sorted(self.attached)

    def close(self) -> None:
        for img in self.images:
            img.flush()
            img.close()
        self.images = []


def _open(path: str, read_only: bool, parents: dict[str, str] | None = None) -> DiskImage:
    from vmm.storage.opener import default_parent_resolver, open_image
    resolver = None
    if parents:
        fallback = default_parent_resolver(path)

        def resolver(uuid: str) -> str:
            return parents[uuid] if uuid in parents else fallback(uuid)
    return open_image(path, read_only=read_only, parent_resolver=resolver)


def open_dvd(path: str) -> DiskImage:
    """A disc image for a DVD drive: read-only, any size (ISO 9660 images are raw sectors)."""
    try:
        return _open(path, True)
    except DiskImageError as e:
        raise ValueError(str(e)) from e


def _options(spec: StorageControllerSpec, att: DiskAttachmentSpec, index: int) -> DiskOptions:
    return DiskOptions(non_rotational=att.nonrotational, discard=att.discard,
                       write_through=not spec.use_host_io_cache,
                       serial=f"VB{index:02d}{att.port:02d}-{zlib.crc32(att.path.encode()):08x}")


def place_storage_controllers(
        controllers: Iterable[StorageControllerSpec], memory: GuestMemory, bridge: PciHostBridge,
        irq_line: Callable[[int], IrqLine], free_irqs: Iterable[int] = PCI_IRQS,
        opener: Callable[[str, bool, dict[str, str]], DiskImage] = _open, slots: dict[str, int] | None = None,
        pci_line: Callable[[int], tuple[IrqLine, int]] | None = None) -> list[PlacedController]:
    """Open the media, build and register each controller; on any error close what was opened.

    `slots`: the preferred PCI slot per controller type (the VM's slot table); `pci_line(slot)`:
    the INTA line of a slot and the IRQ it is routed to (the chipset's PCI interrupt router),
    instead of one ISA IRQ per controller from `free_irqs`."""
    slots = dict(DEFAULT_SLOTS, **(slots or {}))
    placed: list[PlacedController] = []
    irqs = list(free_irqs)
    try:
        for index, spec in enumerate(controllers):
            if spec.controller_type not in SUPPORTED:
                raise ValueError(f"storage controller '{spec.name}': type {spec.controller_type} "
                                 f"is not provided (only {', '.join(SUPPORTED)})")
            if spec.controller_type in IDE_MODELS:
                placed.append(_place_ide(spec, index, memory, bridge, irq_line, opener))
                continue
            for att in spec.attachments:
                if att.kind != "HardDisk" and not (att.kind == "DVD" and spec.controller_type == "IntelAhci"):
                    raise ValueError(f"storage controller '{spec.name}': {att.kind} drives are provided on "
                                     "IDE and SATA (IntelAhci) controllers only")
                if att.device != 0:
                    raise ValueError(f"storage controller '{spec.name}': device {att.device} on port "
                                     f"{att.port}; {spec.controller_type} has one device per port")
            slot = _free_slot(bridge, slots[spec.controller_type]) if spec.controller_type in slots else 0
            if pci_line is not None:
                line, irq_no = pci_line(slot)
            else:
                if not irqs:
                    raise ValueError("no free PCI interrupt left for the storage controllers")
                irq_no = irqs.pop(0)
                line = irq_line(irq_no)
            images: list[DiskImage] = []
            pc = PlacedController(spec.name, spec.controller_type, None, 0, irq_no, images)  # type: ignore[arg-type]
            placed.append(pc)
            opened = {}
            drives: dict[int, AtapiDrive] = {}
            for att in spec.attachments:
                img = None
                if att.path or att.kind == "HardDisk":
                    try:
                        img = opener(att.path, att.read_only or att.kind == "DVD", att.parents)
                    except (DiskImageError, OSError) as e:
                        raise ValueError(f"storage controller '{spec.name}' port {att.port}: {e}") from e
                    images.append(img)
                pc.attached.append((att.port, att.device, att.kind == "DVD"))
                if att.kind == "DVD":
                    drives[att.port] = AtapiDrive(img, serial=_options(spec, att, index).serial)
                else:
                    opened[att.port] = (img, _options(spec, att, index))
            if spec.controller_type == "IntelAhci":
                ports = max([spec.port_count, 1] + [p + 1 for p in list(opened) + list(drives)])
                if ports > AHCI_MAX_PORTS:
                    raise ValueError(f"storage controller '{spec.name}': port {ports - 1} beyond "
                                     f"the {AHCI_MAX_PORTS} ports of an IntelAhci controller")
                devices: dict[int, AtaDisk | AtapiDrive] = {p: AtaDisk(i, o) for p, (i, o) in opened.items()}
                devices.update(drives)
                dev: PciFunction = Ahci(memory, devices, ports=ports, irq=line)
            else:
                ports = max([spec.port_count, 1] + [p + 1 for p in opened])
                scsi = VirtioScsi({p: ScsiDisk(i, o) for p, (i, o) in opened.items()}, ports=ports)
                dev = VirtioPciTransport(scsi, memory, irq=line)
            dev.interrupt_line = irq_no
            bridge.add_function(dev, slot)
            pc.device, pc.slot = dev, slot
    except BaseException:
        for pc in placed:
            pc.close()
        raise
    return placed


def _place_ide(spec: StorageControllerSpec, index: int, memory: GuestMemory, bridge: PciHostBridge,
               irq_line: Callable[[int], IrqLine], opener) -> PlacedController:
    if bridge.function_at(IDE_SLOT, IDE_FUNCTION) is not None:
        raise ValueError(f"storage controller '{spec.name}': only one IDE controller fits at "
                         f"00:{IDE_SLOT:02x}.{IDE_FUNCTION}")
    images: list[DiskImage] = []
    pc = PlacedController(spec.name, spec.controller_type, None, IDE_SLOT, IDE_IRQS[0], images,  # type: ignore[arg-type]
                          function=IDE_FUNCTION)
    try:
        devices: dict[tuple[int, int], AtaDisk | AtapiDrive] = {}
        serials = {}
        for att in spec.attachments:
            where = (att.port, att.device)
            if att.port not in (0, 1) or att.device not in (0, 1):
                raise ValueError(f"storage controller '{spec.name}': port {att.port} device {att.device} "
                                 "(an IDE controller has ports 0-1 with devices 0-1)")
            if where in devices:
                raise ValueError(f"storage controller '{spec.name}': two devices at port {att.port} "
                                 f"device {att.device}")
            image = None
            if att.path:
                try:
                    image = opener(att.path, att.read_only or att.kind == "DVD", att.parents)
                except (DiskImageError, OSError) as e:
                    raise ValueError(f"storage controller '{spec.name}' port {att.port} device "
                                     f"{att.device}: {e}") from e
                images.append(image)
            opts = _options(spec, att, index)
            serials[where] = opts.serial
            pc.attached.append((att.port, att.device, att.kind == "DVD"))
            if att.kind == "DVD":
                devices[where] = AtapiDrive(image, serial=opts.serial)
            elif image is None:
                raise ValueError(f"storage controller '{spec.name}': the hard disk at port {att.port} "
                                 f"device {att.device} has no image")
            else:
                devices[where] = AtaDisk(image, opts)
        dev = PiixIde(memory, devices, spec.controller_type,
                      irqs=(irq_line(IDE_IRQS[0]), irq_line(IDE_IRQS[1])),
                      serials=serials)
        bridge.add_function(dev, IDE_SLOT, IDE_FUNCTION)
    except BaseException:
        pc.close()
        raise
    pc.device = dev
    pc.legacy = dev.legacy_windows()
    return pc


def _free_slot(bridge: PciHostBridge, preferred: int) -> int:
    for slot in [preferred] + list(range(preferred + 1, 32)) + list(range(1, preferred)):
        if bridge.function_at(slot) is None:
            return slot
    raise ValueError("no free PCI slot for a storage controller")
