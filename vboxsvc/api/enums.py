"""VirtualBox's Main API enumerations (names and values of VirtualBox.xidl, 7.1)."""

from __future__ import annotations

from enum import IntEnum


class MachineState(IntEnum):
    Null = 0
    PoweredOff = 1
    Saved = 2
    Teleported = 3
    Aborted = 4
    AbortedSaved = 5
    Running = 6
    Paused = 7
    Stuck = 8
    Teleporting = 9
    LiveSnapshotting = 10
    Starting = 11
    Stopping = 12
    Saving = 13
    Restoring = 14
    TeleportingPausedVM = 15
    TeleportingIn = 16
    DeletingSnapshotOnline = 17
    DeletingSnapshotPaused = 18
    OnlineSnapshotting = 19
    RestoringSnapshot = 20
    DeletingSnapshot = 21
    SettingUp = 22
    Snapshotting = 23
    # pseudo values of the xidl
    FirstOnline = 6
    LastOnline = 19
    FirstTransient = 9
    LastTransient = 23


def state_name(state: int) -> str:
    """The CamelCase name VirtualBox's messages use (`Aborted-Saved` for AbortedSaved)."""
    state = MachineState(state)
    return "Aborted-Saved" if state == MachineState.AbortedSaved else state.name


def is_online(state: int) -> bool:
    return MachineState.FirstOnline <= state <= MachineState.LastOnline


def is_transient(state: int) -> bool:
    return MachineState.FirstTransient <= state <= MachineState.LastTransient


class SessionState(IntEnum):
    Null = 0
    Unlocked = 1
    Locked = 2
    Spawning = 3
    Unlocking = 4


class LockType(IntEnum):
    Null = 0
    Shared = 1
    Write = 2
    VM = 3


class SessionType(IntEnum):
    Null = 0
    WriteLock = 1
    Remote = 2
    Shared = 3


class DeviceType(IntEnum):
    Null = 0
    Floppy = 1
    DVD = 2
    HardDisk = 3
    Network = 4
    USB = 5
    SharedFolder = 6
    Graphics3D = 7


class StorageBus(IntEnum):
    Null = 0
    IDE = 1
    SATA = 2
    SCSI = 3
    Floppy = 4
    SAS = 5
    USB = 6
    PCIe = 7
    VirtioSCSI = 8


class StorageControllerType(IntEnum):
    Null = 0
    LsiLogic = 1
    BusLogic = 2
    IntelAhci = 3
    PIIX3 = 4
    PIIX4 = 5
    ICH6 = 6
    I82078 = 7
    LsiLogicSas = 8
    USB = 9
    NVMe = 10
    VirtioSCSI = 11


class MediumState(IntEnum):
    NotCreated = 0
    Created = 1
    LockedRead = 2
    LockedWrite = 3
    Inaccessible = 4
    Creating = 5
    Deleting = 6


class MediumType(IntEnum):
    Normal = 0
    Immutable = 1
    Writethrough = 2
    Shareable = 3
    Readonly = 4
    MultiAttach = 5


class MediumVariant(IntEnum):
    Standard = 0
    VmdkSplit2G = 0x01
    VmdkRawDisk = 0x02
    VmdkStreamOptimized = 0x04
    VmdkESX = 0x08
    VdiZeroExpand = 0x100
    Fixed = 0x10000
    Diff = 0x20000
    Formatted = 0x20000000
    NoCreateDir = 0x40000000


class AccessMode(IntEnum):
    ReadOnly = 1
    ReadWrite = 2


class CleanupMode(IntEnum):
    UnregisterOnly = 1
    DetachAllReturnNone = 2
    DetachAllReturnHardDisksOnly = 3
    Full = 4
    DetachAllReturnHardDisksAndVMRemovable = 5


class CloneMode(IntEnum):
    MachineState = 1
    MachineAndChildStates = 2
    AllStates = 3


class CloneOptions(IntEnum):
    Link = 1
    KeepAllMACs = 2
    KeepNATMACs = 3
    KeepDiskNames = 4
    KeepHwUUIDs = 5


# functional form: a member named None
ParavirtProvider = IntEnum("ParavirtProvider",
                           [("None", 0), ("Default", 1), ("Legacy", 2), ("Minimal", 3),
                            ("HyperV", 4), ("KVM", 5)])


class NetworkAttachmentType(IntEnum):
    Null = 0
    NAT = 1
    Bridged = 2
    Internal = 3
    HostOnly = 4
    Generic = 5
    NATNetwork = 6
    Cloud = 7
    HostOnlyNetwork = 8


class NATProtocol(IntEnum):
    UDP = 0
    TCP = 1


class NATAliasMode(IntEnum):
    AliasLog = 1
    AliasProxyOnly = 2
    AliasUseSamePorts = 4


class NetworkAdapterType(IntEnum):
    Null = 0
    Am79C970A = 1
    Am79C973 = 2
    I82540EM = 3
    I82543GC = 4
    I82545EM = 5
    Virtio = 6
    Am79C960 = 7
    NE2000 = 8
    NE1000 = 9
    WD8013 = 10
    WD8003 = 11
    ELNK2 = 12
    ELNK1 = 13


class NetworkAdapterPromiscModePolicy(IntEnum):
    Deny = 1
    AllowNetwork = 2
    AllowAll = 3


class PortMode(IntEnum):
    Disconnected = 0
    HostPipe = 1
    HostDevice = 2
    RawFile = 3
    TCP = 4


class UartType(IntEnum):
    U16450 = 0
    U16550A = 1
    U16750 = 2


class FirmwareType(IntEnum):
    BIOS = 1
    EFI = 2
    EFI32 = 3
    EFI64 = 4
    EFIDUAL = 5


class FirmwareBootMenuMode(IntEnum):
    Disabled = 0
    MenuOnly = 1
    MessageAndMenu = 2


class APICMode(IntEnum):
    Disabled = 0
    APIC = 1
    X2APIC = 2


class ChipsetType(IntEnum):
    Null = 0
    PIIX3 = 1
    ICH9 = 2
    ARMv8Virtual = 3


# functional form: a member named None
IommuType = IntEnum("IommuType", [("None", 0), ("Automatic", 1), ("AMD", 2), ("Intel", 3)])


class GraphicsControllerType(IntEnum):
    Null = 0
    VBoxVGA = 1
    VMSVGA = 2
    VBoxSVGA = 3
    QemuRamFB = 4


# functional form: a member named None
PlatformArchitecture = IntEnum("PlatformArchitecture", [("None", 0), ("x86", 1), ("ARM", 2)])


# functional form: a member named None
KeyboardHIDType = IntEnum("KeyboardHIDType",
                          [("None", 1), ("PS2Keyboard", 2), ("USBKeyboard", 3), ("ComboKeyboard", 4)])


# functional form: a member named None
PointingHIDType = IntEnum("PointingHIDType",
                          [("None", 1), ("PS2Mouse", 2), ("USBMouse", 3), ("USBTablet", 4), ("ComboMouse", 5),
                           ("USBMultiTouch", 6), ("USBMTScreenPlusPad", 7)])


class USBControllerType(IntEnum):
    Null = 0
    OHCI = 1
    EHCI = 2
    XHCI = 3


class AudioControllerType(IntEnum):
    AC97 = 0
    SB16 = 1
    HDA = 2
    VirtioSound = 3


class AudioCodecType(IntEnum):
    Null = 0
    SB16 = 1
    STAC9700 = 2
    AD1980 = 3
    STAC9221 = 4


class AudioDriverType(IntEnum):
    Default = 0
    Null = 1
    OSS = 2
    ALSA = 3
    Pulse = 4
    WinMM = 5
    DirectSound = 6
    WAS = 7
    CoreAudio = 8
    MMPM = 9
    SolAudio = 10


class ClipboardMode(IntEnum):
    Disabled = 0
    HostToGuest = 1
    GuestToHost = 2
    Bidirectional = 3


class DnDMode(IntEnum):
    Disabled = 0
    HostToGuest = 1
    GuestToHost = 2
    Bidirectional = 3


AuthType = IntEnum("AuthType", [("Null", 0), ("External", 1), ("Guest", 2)])


class VMExecutionEngine(IntEnum):
    Default = 0
    HwVirt = 1
    NativeApi = 2
    Interpreter = 3
    Recompiler = 4


class VMProcPriority(IntEnum):
    Invalid = 0
    Default = 1
    Flat = 2
    Low = 3
    Normal = 5
    High = 6


class ProcessorFeature(IntEnum):
    HWVirtEx = 0
    PAE = 1
    LongMode = 2
    NestedPaging = 3
    UnrestrictedGuest = 4
    NestedHWVirt = 5
    VirtVmsaveVmload = 6


class HWVirtExPropertyType(IntEnum):
    Null = 0
    Enabled = 1
    VPID = 2
    NestedPaging = 3
    UnrestrictedExecution = 4
    LargePages = 5
    Force = 6
    UseNativeApi = 7
    VirtVmsaveVmload = 8


class CPUPropertyTypeX86(IntEnum):
    Null = 0
    PAE = 1
    LongMode = 2
    TripleFaultReset = 3
    APIC = 4
    X2APIC = 5
    IBPBOnVMExit = 6
    IBPBOnVMEntry = 7
    HWVirt = 8
    SpecCtrl = 9
    SpecCtrlByHost = 10
    L1DFlushOnEMTScheduling = 11
    L1DFlushOnVMEntry = 12
    MDSClearOnEMTScheduling = 13
    MDSClearOnVMEntry = 14


class VBoxEventType(IntEnum):
    Invalid = 0
    Any = 1
    Vetoable = 2
    MachineEvent = 3
    SnapshotEvent = 4
    InputEvent = 5
    LastWildcard = 31
    OnMachineStateChanged = 32
    OnMachineDataChanged = 33
    OnExtraDataChanged = 34
    OnExtraDataCanChange = 35
    OnMediumRegistered = 36
    OnMachineRegistered = 37
    OnSessionStateChanged = 38
    OnSnapshotTaken = 39
    OnSnapshotDeleted = 40
    OnSnapshotChanged = 41
    OnGuestPropertyChanged = 42
    OnStateChanged = 46
    OnNetworkAdapterChanged = 48
    OnSerialPortChanged = 49
    OnStorageControllerChanged = 51
    OnMediumChanged = 52
    OnRuntimeError = 57
    OnCPUExecutionCapChanged = 63
    OnSnapshotRestored = 95
    OnMediumConfigChanged = 96
    OnProgressPercentageChanged = 98
    OnProgressTaskCompleted = 99
    OnProgressCreated = 110
    OnLanguageChanged = 111
    OnMachineGroupsChanged = 118
    End = 126


# ---- appliances (IAppliance, IVirtualSystemDescription) ---------------------------------------------

class VirtualSystemDescriptionType(IntEnum):
    Ignore = 1
    OS = 2
    Name = 3
    Product = 4
    Vendor = 5
    Version = 6
    ProductUrl = 7
    VendorUrl = 8
    Description = 9
    License = 10
    Miscellaneous = 11
    CPU = 12
    Memory = 13
    HardDiskControllerIDE = 14
    HardDiskControllerSATA = 15
    HardDiskControllerSCSI = 16
    HardDiskControllerSAS = 17
    HardDiskImage = 18
    Floppy = 19
    CDROM = 20
    NetworkAdapter = 21
    USBController = 22
    SoundCard = 23
    SettingsFile = 24
    BaseFolder = 25
    PrimaryGroup = 26
    BootingFirmware = 49
    HardDiskControllerVirtioSCSI = 60
    HardDiskControllerNVMe = 61


class VirtualSystemDescriptionValueType(IntEnum):
    Reference = 1
    Original = 2
    Auto = 3
    ExtraConfig = 4


class ImportOptions(IntEnum):
    KeepAllMACs = 1
    KeepNATMACs = 2
    ImportToVDI = 3


class ExportOptions(IntEnum):
    CreateManifest = 1
    ExportDVDImages = 2
    StripAllMACs = 3
    StripAllNonNATMACs = 4


class BitmapFormat(IntEnum):
    Opaque = 0
    BGR = 0x20524742
    BGR0 = 0x30524742
    BGRA = 0x41524742
    RGBA = 0x41424752
    PNG = 0x20474E50
    JPEG = 0x4745504A


class GuestMonitorStatus(IntEnum):
    Disabled = 0
    Enabled = 1
    Blank = 2
