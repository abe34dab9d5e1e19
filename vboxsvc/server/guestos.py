"""IGuestOSType: the guest OS table (ids and recommended settings as VirtualBox 7.1 uses them)."""

from __future__ import annotations

from ..api import errors as rc
from ..api.enums import (
    ChipsetType,
    FirmwareType,
    GraphicsControllerType,
    NetworkAdapterType,
    PlatformArchitecture,
    StorageBus,
    StorageControllerType,
)
from ..api.errors import VBoxError

GB = 1024 ** 3
FAMILIES = {
    "Other": "Other", "Windows": "Microsoft Windows", "Linux": "Linux", "BSD": "BSD",
    "Solaris": "Solaris", "OS2": "IBM OS/2",
}

# id, description, family, subtype, 64-bit, RAM MB, HDD GB, VRAM MB, profile
_TABLE = [
    ("Other", "Other/Unknown", "Other", "", False, 64, 2, 4, "legacy"),
    ("Other_64", "Other/Unknown (64-bit)", "Other", "", True, 512, 2, 4, "legacy"),
    ("DOS", "DOS", "Other", "", False, 32, 1, 4, "legacy"),
    ("OS2Warp45", "OS/2 Warp 4.5", "OS2", "", False, 128, 2, 4, "legacy"),
    ("WindowsXP", "Windows XP (32-bit)", "Windows", "", False, 192, 10, 16, "winold"),
    ("WindowsXP_64", "Windows XP (64-bit)", "Windows", "", True, 512, 10, 16, "winold"),
    ("Windows7", "Windows 7 (32-bit)", "Windows", "", False, 1024, 25, 27, "win"),
    ("Windows7_64", "Windows 7 (64-bit)", "Windows", "", True, 2048, 32, 27, "win"),
    ("Windows10", "Windows 10 (32-bit)", "Windows", "", False, 1024, 32, 128, "win"),
    ("Windows10_64", "Windows 10 (64-bit)", "Windows", "", True, 2048, 50, 128, "win"),
    ("Windows11_64", "Windows 11 (64-bit)", "Windows", "", True, 4096, 80, 128, "win11"),
    ("Windows2019_64", "Windows 2019 (64-bit)", "Windows", "", True, 2048, 50, 128, "win"),
    ("Windows2022_64", "Windows 2022 (64-bit)", "Windows", "", True, 2048, 50, 128, "win"),
    ("Linux", "Other Linux (32-bit)", "Linux", "", False, 256, 8, 16, "linux"),
    ("Linux_64", "Other Linux (64-bit)", "Linux", "", True, 512, 8, 16, "linux"),
    ("Linux26", "Linux 2.6 / 3.x / 4.x / 5.x (32-bit)", "Linux", "", False, 256, 8, 16, "linux"),
    ("Linux26_64", "Linux 2.6 / 3.x / 4.x / 5.x (64-bit)", "Linux", "", True, 512, 8, 16, "linux"),
    ("ArchLinux", "Arch Linux (32-bit)", "Linux", "Arch", False, 1024, 8, 16, "linux"),
    ("ArchLinux_64", "Arch Linux (64-bit)", "Linux", "Arch", True, 1024, 8, 16, "linux"),
    ("Debian", "Debian (32-bit)", "Linux", "Debian", False, 1024, 20, 16, "linux"),
    ("Debian_64", "Debian (64-bit)", "Linux", "Debian", True, 1024, 20, 16, "linux"),
    ("Debian11_64", "Debian 11 Bullseye (64-bit)", "Linux", "Debian", True, 2048, 20, 16, "linux"),
    ("Debian12_64", "Debian 12 Bookworm (64-bit)", "Linux", "Debian", True, 2048, 20, 16, "linux"),
    ("Fedora", "Fedora (32-bit)", "Linux", "Fedora", False, 2048, 25, 16, "linux"),
    ("Fedora_64", "Fedora (64-bit)", "Linux", "Fedora", True, 2048, 25, 16, "linux"),
    ("Gentoo_64", "Gentoo (64-bit)", "Linux", "Gentoo", True, 1024, 8, 16, "linux"),
    ("OpenSUSE_64", "openSUSE (64-bit)", "Linux", "openSUSE", True, 2048, 8, 16, "linux"),
    ("Oracle_64", "Oracle Linux (64-bit)", "Linux", "Oracle", True, 2048, 20, 16, "linux"),
    ("RedHat", "Red Hat (32-bit)", "Linux", "Red Hat", False, 2048, 20, 16, "linux"),
    ("RedHat_64", "Red Hat (64-bit)", "Linux", "Red Hat", True, 2048, 20, 16, "linux"),
    ("Ubuntu", "Ubuntu (32-bit)", "Linux", "Ubuntu", False, 2048, 25, 16, "linux"),
    ("Ubuntu_64", "Ubuntu (64-bit)", "Linux", "Ubuntu", True, 2048, 25, 16, "linux"),
    ("Ubuntu22_LTS_64", "Ubuntu 22.04 LTS (Jammy Jellyfish) (64-bit)", "Linux", "Ubuntu", True, 2048, 25, 16,
     "linux"),
    ("Ubuntu24_LTS_64", "Ubuntu 24.04 LTS (Noble Numbat) (64-bit)", "Linux", "Ubuntu", True, 2048, 25, 16,
     "linux"),
    ("FreeBSD", "FreeBSD (32-bit)", "BSD", "FreeBSD", False, 1024, 16, 16, "bsd"),
    ("FreeBSD_64", "FreeBSD (64-bit)", "BSD", "FreeBSD", True, 1024, 16, 16, "bsd"),
    ("OpenBSD_64", "OpenBSD (64-bit)", "BSD", "OpenBSD", True, 1024, 16, 16, "bsd"),
    ("NetBSD_64", "NetBSD (64-bit)", "BSD", "NetBSD", True, 1024, 16, 16, "bsd"),
    ("Solaris11_64", "Oracle Solaris 11 (64-bit)", "Solaris", "", True, 2048, 16, 16, "bsd"),
]


class GuestOSType:
    __interface__ = "IGuestOSType"
    __component__ = "GuestOSTypeWrap"

    def __init__(self, id, description, family, subtype, is64, ram, hdd_gb, vram, profile):
        self.id = id
        self.description = description
        self.family_id = family
        self.family_description = FAMILIES[family]
        self.os_subtype = subtype
        self.platform_architecture = PlatformArchitecture.x86
        self.is64_bit = is64
        self.recommended_ram = ram
        self.recommended_hdd = hdd_gb * GB
        self.recommended_vram = vram
        win = profile.startswith("win")
        self.recommended_ioapic = is64 or profile in ("linux", "win", "win11", "bsd")
        self.recommended_virt_ex = profile != "legacy" or is64
        self.recommended_graphics_controller = (GraphicsControllerType.VBoxSVGA if profile in ("win", "win11")
                                                else GraphicsControllerType.VMSVGA if profile == "linux"
                                                else GraphicsControllerType.VBoxVGA)
        self.adapter_type = (NetworkAdapterType.Am79C973 if profile in ("legacy", "winold")
                             else NetworkAdapterType.I82540EM)
        self.recommended_pae = is64 or profile in ("linux", "win", "bsd")
        self.recommended_dvd_storage_controller = (StorageControllerType.PIIX4
                                                   if not win else StorageControllerType.IntelAhci)
        self.recommended_dvd_storage_bus = StorageBus.IDE if not win else StorageBus.SATA
        self.recommended_hd_storage_controller = (StorageControllerType.PIIX4
                                                  if profile in ("legacy", "winold")
                                                  else StorageControllerType.IntelAhci)
        self.recommended_hd_storage_bus = (StorageBus.IDE
                                           if profile in ("legacy", "winold") else StorageBus.SATA)
        self.recommended_firmware = FirmwareType.EFI if profile == "win11" else FirmwareType.BIOS
        self.recommended_usbhid = win and profile != "winold"
        self.recommended_rtc_use_utc = profile in ("linux", "bsd")
        self.recommended_chipset = ChipsetType.PIIX3
        self.recommended_cpu_count = 2 if profile == "win11" else 1


OS_TYPES: dict[str, GuestOSType] = {row[0]: GuestOSType(*row) for row in _TABLE}


def lookup(os_type_id: str) -> GuestOSType | None:
    """Case-insensitive, as VirtualBox's GetGuestOSType."""
    t = OS_TYPES.get(os_type_id)
    if t is not None:
        return t
    low = os_type_id.lower()
    return next((t for k, t in OS_TYPES.items() if k.lower() == low), None)


def get(os_type_id: str) -> GuestOSType:
    t = lookup(os_type_id)
    if t is None:
        raise VBoxError(rc.E_INVALIDARG, f"'{os_type_id}' is not a valid Guest OS type")
    return t


def families() -> list[str]:
    seen = []
    for t in OS_TYPES.values():
        if t.family_id not in seen:
            seen.append(t.family_id)
    return seen
