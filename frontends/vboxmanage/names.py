"""Display names VBoxManage prints for Main API enum values.

The API hands us enum members (IntEnums) or plain ints over the bus; the CLI prints
VirtualBox's own spellings for them, which differ per output mode (machine-readable,
human).  Keyed by the numeric values of VirtualBox.xidl so renderers work on plain data.
"""

# MachineState -> (machine-readable short name, human long name)
MACHINE_STATES = {
    0: ("null", "null"),
    1: ("poweroff", "powered off"),
    2: ("saved", "saved"),
    3: ("teleported", "teleported"),
    4: ("aborted", "aborted"),
    5: ("aborted-saved", "aborted-saved"),
    6: ("running", "running"),
    7: ("paused", "paused"),
    8: ("gurumeditation", "guru meditation"),
    9: ("teleporting", "teleporting"),
    10: ("livesnapshotting", "live snapshotting"),
    11: ("starting", "starting"),
    12: ("stopping", "stopping"),
    13: ("saving", "saving"),
    14: ("restoring", "restoring"),
    15: ("teleportingpausedvm", "teleporting paused vm"),
    16: ("teleportingin", "teleporting (incoming)"),
    17: ("deletingsnapshotlive", "deleting snapshot live"),
    18: ("deletingsnapshotlivepaused", "deleting snapshot live paused"),
    19: ("onlinesnapshotting", "online snapshotting"),
    20: ("restoringsnapshot", "restoring snapshot"),
    21: ("deletingsnapshot", "deleting snapshot"),
    22: ("settingup", "setting up"),
    23: ("snapshotting", "offline snapshotting"),
}

# list runningvms: Running, Paused, Teleporting, LiveSnapshotting, TPVM
RUNNING_LIST_STATES = {6, 7, 9, 10, 15}

FIRMWARE = {1: "BIOS", 2: "EFI", 3: "EFI32", 4: "EFI64", 5: "EFIDUAL"}
FIRMWARE_BY_ARG = {"bios": 1, "efi": 2, "efi32": 3, "efi64": 4, "efidual": 5}
CHIPSET = {0: "invalid", 1: "piix3", 2: "ich9", 3: "armv8virtual"}

# DeviceType -> boot order name (machine-readable, human)
BOOT_DEVICES = {
    0: ("none", "Not Assigned"),
    1: ("floppy", "Floppy"),
    2: ("dvd", "DVD"),
    3: ("disk", "HardDisk"),
    4: ("net", "Network"),
    5: ("usb", "USB"),
    6: ("sharedfolder", "Shared Folder"),
}
BOOT_BY_ARG = {"none": 0, "floppy": 1, "dvd": 2, "disk": 3, "net": 4}

PARAVIRT = {0: ("none", "None"), 1: ("default", "Default"), 2: ("legacy", "Legacy"),
            3: ("minimal", "Minimal"), 4: ("hyperv", "HyperV"), 5: ("kvm", "KVM")}
PARAVIRT_BY_ARG = {"none": 0, "disabled": 0, "default": 1, "legacy": 2, "minimal": 3, "hyperv": 4, "kvm": 5}

STORAGE_BUS = {0: "Null", 1: "IDE", 2: "SATA", 3: "SCSI", 4: "Floppy", 5: "SAS", 6: "USB", 7: "PCIe",
               8: "VirtioSCSI"}
STORAGE_BUS_BY_ARG = {"ide": 1, "sata": 2, "scsi": 3, "floppy": 4, "sas": 5, "usb": 6, "pcie": 7,
                      "virtio-scsi": 8, "virtio": 8}
CONTROLLER_TYPES = {0: "Null", 1: "LsiLogic", 2: "BusLogic", 3: "IntelAhci", 4: "PIIX3", 5: "PIIX4",
                    6: "ICH6", 7: "I82078", 8: "LsiLogicSas", 9: "USB", 10: "NVMe", 11: "VirtioSCSI"}
CONTROLLER_TYPE_BY_ARG = {"lsilogic": 1, "buslogic": 2, "intelahci": 3, "piix3": 4, "piix4": 5, "ich6": 6,
                          "i82078": 7, "lsilogicsas": 8, "usb": 9, "nvme": 10, "virtio-scsi": 11,
                          "virtio": 11}

# DeviceType values used by storageattach / media
DEVICE_TYPE_BY_ARG = {"fdd": 1, "dvddrive": 2, "hdd": 3}
MEDIUM_KIND_BY_ARG = {"disk": 3, "dvd": 2, "floppy": 1}

MEDIUM_STATES = {0: "not created", 1: "created", 2: "locked read", 3: "locked write", 4: "inaccessible",
                 5: "creating", 6: "deleting"}
MEDIUM_TYPES = {0: "normal", 1: "immutable", 2: "writethrough", 3: "shareable", 4: "readonly",
                5: "multiattach"}
MEDIUM_TYPE_BY_ARG = {v: k for k, v in MEDIUM_TYPES.items()}

# MediumVariant bits
VARIANT_BITS = {"standard": 0, "split2g": 0x1, "rawdisk": 0x2, "stream": 0x4, "esx": 0x8,
                "fixed": 0x10000, "diff": 0x20000, "formatted": 0x20000000}

# NetworkAttachmentType -> (machine-readable, human)
NIC_ATTACHMENTS = {0: ("null", "Null"), 1: ("nat", "NAT"), 2: ("bridged", "Bridged Interface"),
                   3: ("intnet", "Internal Network"), 4: ("hostonly", "Host-only Interface"),
                   5: ("Generic", "Generic"), 6: ("natnetwork", "NAT Network"), 7: ("cloudnetwork", "Cloud"),
                   8: ("hostonlynetwork", "Host-only Network")}
NIC_ATTACHMENT_BY_ARG = {"null": 0, "nat": 1, "bridged": 2, "intnet": 3, "hostonly": 4, "generic": 5,
                         "natnetwork": 6, "cloud": 7, "hostonlynet": 8}
NIC_TYPES = {0: "Null", 1: "Am79C970A", 2: "Am79C973", 3: "82540EM", 4: "82543GC", 5: "82545EM",
             6: "virtio", 7: "Am79C960", 8: "NE2000", 9: "NE1000", 10: "WD8013", 11: "WD8003", 12: "3C503",
             13: "3C501"}
NIC_TYPE_BY_ARG = {v.lower(): k for k, v in NIC_TYPES.items() if k}

# PortMode
PORT_MODE = {0: "disconnected", 1: "pipe", 2: "device", 3: "file", 4: "tcp"}
UART_TYPES = {0: "16450", 1: "16550A", 2: "16750"}
UART_TYPE_BY_ARG = {"16450": 0, "16550a": 1, "16750": 2}

GRAPHICS = {0: "null", 1: "vboxvga", 2: "vmsvga", 3: "vboxsvga", 4: "qemuramfb"}
GRAPHICS_HUMAN = {0: "Null", 1: "VBoxVGA", 2: "VMSVGA", 3: "VBoxSVGA", 4: "QemuRamFB"}

# ProcessorFeature (IHost.getProcessorFeature) in list hostinfo order
PROCESSOR_FEATURES = [(0, "HW virtualization"), (1, "PAE"), (2, "long mode"), (3, "nested paging"),
                      (4, "unrestricted guest"), (5, "nested HW virtualization"),
                      (6, "virt. vmsave/vmload")]

# Result codes -> XPCOM define names printed by %Rhrc
RESULT_NAMES = {
    0x80BB0001: "VBOX_E_OBJECT_NOT_FOUND", 0x80BB0002: "VBOX_E_INVALID_VM_STATE",
    0x80BB0003: "VBOX_E_VM_ERROR", 0x80BB0004: "VBOX_E_FILE_ERROR", 0x80BB0005: "VBOX_E_IPRT_ERROR",
    0x80BB0006: "VBOX_E_PDM_ERROR", 0x80BB0007: "VBOX_E_INVALID_OBJECT_STATE",
    0x80BB0008: "VBOX_E_HOST_ERROR", 0x80BB0009: "VBOX_E_NOT_SUPPORTED", 0x80BB000A: "VBOX_E_XML_ERROR",
    0x80BB000B: "VBOX_E_INVALID_SESSION_STATE", 0x80BB000C: "VBOX_E_OBJECT_IN_USE",
    0x80BB000D: "VBOX_E_PASSWORD_INCORRECT", 0x80BB000E: "VBOX_E_MAXIMUM_REACHED",
    0x80BB000F: "VBOX_E_GSTCTL_GUEST_ERROR", 0x80BB0010: "VBOX_E_TIMEOUT", 0x80BB0011: "VBOX_E_DND_ERROR",
    0x80BB0012: "VBOX_E_PLATFORM_ARCH_NOT_SUPPORTED", 0x80BB0013: "VBOX_E_RECORDING_ERROR",
    0x80070057: "NS_ERROR_INVALID_ARG", 0x80004005: "NS_ERROR_FAILURE",
    0x80004001: "NS_ERROR_NOT_IMPLEMENTED",
    0x8000FFFF: "NS_ERROR_UNEXPECTED", 0x8007000E: "NS_ERROR_OUT_OF_MEMORY", 0x80070005: "E_ACCESSDENIED",
    0x800706BE: "NS_ERROR_CALL_FAILED", 0x80004004: "NS_ERROR_ABORT",
}


def result_name(code: int) -> str:
    """%Rhrc: the symbolic name, or `Unknown Status 0x<X>`."""
    code &= 0xFFFFFFFF
    return RESULT_NAMES.get(code, f"Unknown Status 0x{code:X}")


def enum_int(value) -> int:
    """An enum member or int from the bus as a plain int (None -> 0)."""
    return int(value) if value is not None else 0
