"""pydantic models of VirtualBox's settings: the contents of VirtualBox.xml and of a .vbox file.

Enumerated values use the Main API's member names (VirtualBox.xidl), e.g. controller_type
"IntelAhci", adapter type "I82540EM", attachment_type "NAT", port_mode "TCP", uart_type "U16550A",
boot devices "Floppy"/"DVD"/"HardDisk"/"Network"/"Null"; the XML spellings are the file modules'
business. Defaults are those of a new machine (Machine::init in MachineImpl.cpp). Paths of media, saved states
and snapshot states are absolute in the models; the files store them relative to the owner's folder
when they lie inside it. Timestamps are timezone-aware UTC datetimes.
"""

from __future__ import annotations

import os
import uuid as uuidlib
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(validate_assignment=True, extra="forbid")


def _utc(value: datetime) -> datetime:
    """UTC, whole seconds: what the files can hold (`YYYY-MM-DDTHH:MM:SSZ`)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0)


def generate_mac() -> str:
    """A MAC as VirtualBox generates them: Oracle's 08:00:27 prefix + 3 random bytes."""
    return "080027" + os.urandom(3).hex().upper()


def now_utc() -> datetime:
    """Second resolution, as the files store it."""
    return datetime.now(UTC).replace(microsecond=0)


# ------------------------------------------------------------------ media

MediumType = Literal["Normal", "Immutable", "Writethrough", "Shareable", "Readonly", "MultiAttach"]


class Medium(_Model):
    """A registered hard disk / DVD / floppy image; hard disk diffs nest in `children`."""

    uuid: uuidlib.UUID
    location: str
    format: str = "VDI"
    type: MediumType = "Normal"
    auto_reset: bool = False
    description: str = ""
    properties: dict[str, str] = Field(default_factory=dict)
    children: list[Medium] = Field(default_factory=list)


class MediaRegistry(_Model):
    hard_disks: list[Medium] = Field(default_factory=list)
    dvd_images: list[Medium] = Field(default_factory=list)
    floppy_images: list[Medium] = Field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.hard_disks or self.dvd_images or self.floppy_images)

    def all_media(self) -> list[Medium]:
        """Every medium, diffs included (depth first)."""
        out: list[Medium] = []

        def walk(ms: list[Medium]) -> None:
            for m in ms:
                out.append(m)
                walk(m.children)
        walk(self.hard_disks)
        out += self.dvd_images + self.floppy_images
        return out

    def find(self, medium_uuid: uuidlib.UUID) -> Medium | None:
        return next((m for m in self.all_media() if m.uuid == medium_uuid), None)


# ------------------------------------------------------------------ VirtualBox.xml

class MachineRegistryEntry(_Model):
    uuid: uuidlib.UUID
    src: str


class SystemProperties(_Model):
    default_machine_folder: str = ""
    logging_level: str = ""
    default_hard_disk_format: str = "VDI"
    vrde_auth_library: str = ""
    web_service_auth_library: str = ""
    default_vrde_ext_pack: str = ""
    default_crypto_ext_pack: str = ""
    log_history_count: int = Field(default=3, ge=0)
    autostart_database_path: str = ""
    default_frontend: str = ""
    proxy_url: str = ""
    proxy_mode: int = 0
    language_id: str = ""
    exclusive_hw_virt: bool = True


class MainSettings(_Model):
    extra_data: dict[str, str] = Field(default_factory=dict)
    machine_registry: list[MachineRegistryEntry] = Field(default_factory=list)
    system_properties: SystemProperties = Field(default_factory=SystemProperties)
    media_registry: MediaRegistry = Field(default_factory=MediaRegistry)


# ------------------------------------------------------------------ hardware

AttachmentType = Literal["Null", "NAT", "Bridged", "Internal", "HostOnly", "Generic", "NATNetwork",
                         "Cloud", "HostOnlyNetwork"]
AdapterType = Literal["Am79C970A", "Am79C973", "I82540EM", "I82543GC", "I82545EM", "Virtio",
                      "Am79C960", "NE2000", "NE1000", "WD8013", "WD8003", "ELNK2", "ELNK1"]


class NatRule(_Model):
    """A NAT port-forwarding rule (`<Forwarding>`)."""

    name: str
    proto: Literal["TCP", "UDP"] = "TCP"
    host_ip: str = ""
    host_port: int = Field(ge=0, le=65535)
    guest_ip: str = ""
    guest_port: int = Field(ge=0, le=65535)


class NatSettings(_Model):
    """A NAT attachment's engine settings (`<NAT>` attributes and its DNS/Alias/TFTP children).
    `localhost_reachable` defaults to off, as for files of 1.19 (VirtualBox 7.0) on."""

    network: str = ""
    bind_ip: str = ""
    mtu: int = 0
    sock_snd: int = 0
    sock_rcv: int = 0
    tcp_snd: int = 0
    tcp_rcv: int = 0
    localhost_reachable: bool = False
    dns_pass_domain: bool = True
    dns_proxy: bool = False
    dns_use_host_resolver: bool = False
    alias_log: bool = False
    alias_proxy_only: bool = False
    alias_use_same_ports: bool = False
    tftp_prefix: str = ""
    tftp_boot_file: str = ""
    tftp_next_server: str = ""


class NetworkAdapter(_Model):
    slot: int = Field(ge=0, le=35)
    enabled: bool = False
    type: AdapterType = "Am79C973"
    mac: str = ""
    cable_connected: bool = True
    line_speed: int = 0
    boot_priority: int = 0
    promisc_mode_policy: Literal["Deny", "AllowNetwork", "AllowAll"] = "Deny"
    attachment_type: AttachmentType = "Null"
    bridged_interface: str = ""
    internal_network: str = ""
    host_only_interface: str = ""
    generic_driver: str = ""
    nat_network: str = ""
    cloud_network: str = ""
    host_only_network: str = ""
    nat_rules: list[NatRule] = Field(default_factory=list)
    nat: NatSettings = Field(default_factory=NatSettings)
    trace_enabled: bool = False
    trace_file: str = ""

    @field_validator("mac")
    @classmethod
    def _mac(cls, v: str) -> str:
        v = v.replace(":", "").replace("-", "").upper()
        if v and (len(v) != 12 or any(c not in "0123456789ABCDEF" for c in v)):
            raise ValueError(f"invalid MAC address '{v}'")
        return v


PortMode = Literal["Disconnected", "HostPipe", "HostDevice", "RawFile", "TCP"]
UartType = Literal["U16450", "U16550A", "U16750"]

# (io_base, irq) VirtualBox gives COM1..COM4 by default (SerialPortImpl.cpp)
UART_DEFAULTS = [(0x3F8, 4), (0x2F8, 3), (0x3E8, 4), (0x2E8, 3)]


class SerialPort(_Model):
    slot: int = Field(ge=0, le=3)
    enabled: bool = False
    io_base: int = -1
    irq: int = -1
    uart_type: UartType = "U16550A"
    port_mode: PortMode = "Disconnected"
    path: str = ""
    server: bool = False

    @model_validator(mode="after")
    def _slot_defaults(self) -> SerialPort:
        io, irq = UART_DEFAULTS[self.slot]
        if self.io_base < 0:
            object.__setattr__(self, "io_base", io)
        if self.irq < 0:
            object.__setattr__(self, "irq", irq)
        return self


BUS_OF_CONTROLLER = {
    "PIIX3": "IDE", "PIIX4": "IDE", "ICH6": "IDE", "IntelAhci": "SATA", "LsiLogic": "SCSI",
    "BusLogic": "SCSI", "I82078": "Floppy", "LsiLogicSas": "SAS", "USB": "USB", "NVMe": "PCIe",
    "VirtioSCSI": "VirtioSCSI",
}
DEFAULT_CONTROLLER = {"IDE": "PIIX4", "SATA": "IntelAhci", "SCSI": "LsiLogic", "Floppy": "I82078",
                      "SAS": "LsiLogicSas", "USB": "USB", "PCIe": "NVMe", "VirtioSCSI": "VirtioSCSI"}
DEFAULT_PORT_COUNT = {"IDE": 2, "SATA": 30, "SCSI": 16, "Floppy": 1, "SAS": 8, "USB": 8, "PCIe": 1,
                      "VirtioSCSI": 1}

StorageBus = Literal["IDE", "SATA", "SCSI", "Floppy", "SAS", "USB", "PCIe", "VirtioSCSI"]
ControllerType = Literal["LsiLogic", "BusLogic", "IntelAhci", "PIIX3", "PIIX4", "ICH6", "I82078",
                         "LsiLogicSas", "USB", "NVMe", "VirtioSCSI"]


class AttachedDevice(_Model):
    type: Literal["HardDisk", "DVD", "Floppy"]
    port: int = Field(ge=0)
    device: int = Field(ge=0)
    medium: uuidlib.UUID | None = None
    host_drive: str = ""
    nonrotational: bool = False
    discard: bool = False
    hotpluggable: bool = False
    passthrough: bool = False
    temp_eject: bool = False
    bandwidth_group: str = ""


class StorageController(_Model):
    """`bus` and `controller_type` fill each other in: give either (or both, consistent)."""

    name: str
    bus: StorageBus
    controller_type: ControllerType
    port_count: int = Field(default=0, ge=0)
    instance: int = 0
    use_host_io_cache: bool = False
    bootable: bool = True
    ide_emulation_ports: tuple[int, int, int, int] = (0, 1, 2, 3)
    devices: list[AttachedDevice] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _fill(cls, data):
        if not isinstance(data, dict):
            return data
        data = dict(data)
        bus, ctype = data.get("bus"), data.get("controller_type")
        if ctype is None and bus in DEFAULT_CONTROLLER:
            data["controller_type"] = ctype = DEFAULT_CONTROLLER[bus]
        if bus is None and ctype in BUS_OF_CONTROLLER:
            data["bus"] = bus = BUS_OF_CONTROLLER[ctype]
        if bus in DEFAULT_PORT_COUNT and BUS_OF_CONTROLLER.get(ctype, bus) != bus:
            raise ValueError(f"controller type {ctype} does not belong to bus {bus}")
        if not data.get("port_count") and bus in DEFAULT_PORT_COUNT:
            data["port_count"] = DEFAULT_PORT_COUNT[bus]
        if "use_host_io_cache" not in data and bus in ("IDE", "Floppy"):
            data["use_host_io_cache"] = True
        return data


class GuestProperty(_Model):
    """A guest property: timestamp in nanoseconds since the epoch, flags as GuestPropWriteFlags prints
    them."""

    name: str = Field(min_length=1)
    value: str = ""
    timestamp: int = 0
    flags: str = ""


class SharedFolder(_Model):
    """A host folder offered to the guest (`<SharedFolder>`)."""

    name: str = Field(min_length=1)
    host_path: str
    writable: bool = True
    auto_mount: bool = False
    auto_mount_point: str = ""


ClipboardMode = Literal["Disabled", "HostToGuest", "GuestToHost", "Bidirectional"]
AudioController = Literal["AC97", "SB16", "HDA", "VirtioSound"]
AudioCodec = Literal["Null", "STAC9700", "AD1980", "STAC9221", "SB16"]
AudioDriver = Literal["Null", "WinMM", "OSS", "ALSA", "DirectSound", "CoreAudio", "MMPM", "Pulse", "SolAudio",
                      "WAS", "Default"]
DEFAULT_CODEC = {"AC97": "STAC9700", "SB16": "SB16", "HDA": "STAC9221", "VirtioSound": "Null"}


class AudioAdapter(_Model):
    """`<AudioAdapter>`: the adapter, its host driver and the direction switches (which the file
    format takes as on unless written off)."""

    enabled: bool = False
    controller: AudioController = "AC97"
    codec: AudioCodec = "STAC9700"
    driver: AudioDriver = "Default"
    enabled_in: bool = True
    enabled_out: bool = True


class RemoteDisplay(_Model):
    """`<RemoteDisplay>` (VRDE) settings; stored, served by the display work."""

    enabled: bool = False
    auth_type: Literal["Null", "External", "Guest"] = "Null"
    auth_timeout: int = 5000
    auth_library: str = ""
    allow_multi_connection: bool = False
    reuse_single_connection: bool = False
    ext_pack: str = ""
    properties: dict[str, str] = Field(default_factory=dict)


class BiosLogo(_Model):
    fade_in: bool = True
    fade_out: bool = True
    display_time: int = Field(default=0, ge=0, le=65535)
    image_path: str = ""


BootDevice = Literal["Null", "Floppy", "DVD", "HardDisk", "Network", "USB", "SharedFolder"]
DEFAULT_BOOT_ORDER: list[BootDevice] = ["Floppy", "DVD", "HardDisk", "Null"]


def _default_adapters() -> list[NetworkAdapter]:
    return [NetworkAdapter(slot=i) for i in range(8)]


def _default_uarts() -> list[SerialPort]:
    return [SerialPort(slot=i) for i in range(4)]


class Hardware(_Model):
    """The virtual hardware of the current state or of a snapshot."""

    version: str = "2"
    hardware_uuid: uuidlib.UUID | None = None
    memory_mb: int = Field(default=128, ge=4, le=2097152)
    page_fusion: bool = False
    cpu_count: int = Field(default=1, ge=1, le=64)
    cpu_execution_cap: int = Field(default=100, ge=1, le=100)
    cpu_hotplug: bool = False
    cpu_profile: str = "host"
    hw_virt_ex: bool = True
    nested_paging: bool = True
    vpid: bool = True
    large_pages: bool = False
    unrestricted_execution: bool = True
    nested_hw_virt: bool = False
    pae: bool = True
    long_mode: bool | None = True   # None: "legacy", follows the OS type's bitness
    triple_fault_reset: bool = False
    apic: bool = True
    x2apic: bool = False
    hpet: bool = False
    paravirt_provider: Literal["None", "Default", "Legacy", "Minimal", "HyperV", "KVM"] = "Default"
    chipset: Literal["PIIX3", "ICH9", "ARMv8Virtual"] = "PIIX3"
    rtc_use_utc: bool = False
    boot_order: list[BootDevice] = Field(default_factory=lambda: list(DEFAULT_BOOT_ORDER))
    firmware: Literal["BIOS", "EFI", "EFI32", "EFI64", "EFIDUAL"] = "BIOS"
    acpi: bool = True
    ioapic: bool = False
    bios_apic_mode: Literal["Disabled", "APIC", "X2APIC"] = "APIC"
    boot_menu_mode: Literal["Disabled", "MenuOnly", "MessageAndMenu"] = "MessageAndMenu"
    time_offset_ms: int = 0
    pointing_hid: str = "PS2Mouse"
    keyboard_hid: str = "PS2Keyboard"
    vram_mb: int = Field(default=8, ge=0, le=256)
    graphics_controller: Literal["Null", "VBoxVGA", "VMSVGA", "VBoxSVGA", "QemuRamFB"] = "VBoxVGA"
    monitor_count: int = Field(default=1, ge=1, le=64)
    accelerate_3d: bool = False
    network_adapters: list[NetworkAdapter] = Field(default_factory=_default_adapters)
    uarts: list[SerialPort] = Field(default_factory=_default_uarts)
    storage_controllers: list[StorageController] = Field(default_factory=list)
    guest_properties: list[GuestProperty] = Field(default_factory=list)
    shared_folders: list[SharedFolder] = Field(default_factory=list)
    usb_controllers: list[Literal["OHCI", "EHCI", "XHCI"]] = Field(default_factory=list)
    audio: AudioAdapter = Field(default_factory=AudioAdapter)
    clipboard_mode: ClipboardMode = "Disabled"
    clipboard_file_transfers: bool = False
    dnd_mode: ClipboardMode = "Disabled"
    vrde: RemoteDisplay = Field(default_factory=RemoteDisplay)
    bios_logo: BiosLogo = Field(default_factory=BiosLogo)

    @field_validator("boot_order")
    @classmethod
    def _boot(cls, v: list[str]) -> list[str]:
        if len(v) > 4:
            raise ValueError("at most 4 boot positions")
        return v + ["Null"] * (4 - len(v))

    def controller(self, name: str) -> StorageController | None:
        return next((c for c in self.storage_controllers if c.name == name), None)


# ------------------------------------------------------------------ machine

class Snapshot(_Model):
    uuid: uuidlib.UUID
    name: str
    description: str = ""
    time_stamp: datetime = Field(default_factory=now_utc)
    state_file: str = ""
    hardware: Hardware = Field(default_factory=Hardware)
    children: list[Snapshot] = Field(default_factory=list)

    @field_validator("time_stamp")
    @classmethod
    def _tz(cls, v: datetime) -> datetime:
        return _utc(v)

    def walk(self):
        yield self
        for c in self.children:
            yield from c.walk()


class MachineSettings(_Model):
    uuid: uuidlib.UUID = Field(default_factory=uuidlib.uuid4)
    name: str
    name_sync: bool = True
    directory_includes_uuid: bool = False
    os_type: str = "Other"
    description: str = ""
    groups: list[str] = Field(default_factory=lambda: ["/"])
    state_file: str = ""
    current_snapshot: uuidlib.UUID | None = None
    snapshot_folder: str = "Snapshots"
    current_state_modified: bool = True
    last_state_change: datetime = Field(default_factory=now_utc)
    aborted: bool = False
    extra_data: dict[str, str] = Field(default_factory=dict)
    media_registry: MediaRegistry = Field(default_factory=MediaRegistry)
    hardware: Hardware = Field(default_factory=Hardware)
    snapshot: Snapshot | None = None   # root of the snapshot tree

    @field_validator("last_state_change")
    @classmethod
    def _tz(cls, v: datetime) -> datetime:
        return _utc(v)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("Machine name is invalid, must not be empty")
        return v

    @field_validator("groups")
    @classmethod
    def _groups(cls, v: list[str]) -> list[str]:
        for g in v:
            if not g.startswith("/") or (len(g) > 1 and g.endswith("/")) or "//" in g:
                raise ValueError(f"Invalid machine group '{g}'")
        return v or ["/"]

    @property
    def persisted_state(self) -> str:
        """The MachineState a file can hold: PoweredOff, Saved, Aborted or AbortedSaved."""
        if self.state_file:
            return "AbortedSaved" if self.aborted else "Saved"
        return "Aborted" if self.aborted else "PoweredOff"

    def snapshots(self) -> list[Snapshot]:
        return list(self.snapshot.walk()) if self.snapshot else []

    def find_snapshot(self, snapshot_uuid: uuidlib.UUID) -> Snapshot | None:
        return next((s for s in self.snapshots() if s.uuid == snapshot_uuid), None)
