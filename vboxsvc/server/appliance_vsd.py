"""IVirtualSystemDescription: the editable description of one machine of an appliance, which
import interprets an OVF into and export builds from a machine (VirtualSystemDescriptionImpl.cpp's
role), with the storage-controller vocabulary both directions share."""

from __future__ import annotations

from ..api import errors as rc
from ..api.enums import VirtualSystemDescriptionType, VirtualSystemDescriptionValueType
from ..api.errors import VBoxError

T = VirtualSystemDescriptionType


class Entry:
    """One line of a virtual system description."""

    __slots__ = ("type", "ref", "ovf", "vbox", "extra", "enabled", "suggested", "suggested_extra")

    def __init__(self, type_: VirtualSystemDescriptionType, ref: str, ovf: str, vbox: str, extra: str = ""):
        self.type = type_
        self.ref = ref
        self.ovf = ovf
        self.vbox = vbox
        self.extra = extra
        self.enabled = True
        self.suggested = vbox
        self.suggested_extra = extra


class VirtualSystemDescription:
    __interface__ = "IVirtualSystemDescription"
    __component__ = "VirtualSystemDescriptionWrap"

    def __init__(self):
        self.entries: list[Entry] = []
        self.system = None          # the OvfSystem it was interpreted from (import)
        self.settings = None        # MachineSettings from the vbox:Machine section (import)
        self.core = None            # the machine it describes (export)

    def add(self, type_, ref: str, ovf: str, vbox: str, extra: str = "") -> Entry:
        e = Entry(type_, ref, ovf, vbox, extra)
        self.entries.append(e)
        return e

    def by_type(self, type_) -> list[Entry]:
        return [e for e in self.entries if e.type == type_]

    def value(self, type_, default: str = "") -> str:
        found = [e for e in self.by_type(type_) if e.enabled]
        return found[-1].vbox if found else default

    @property
    def count(self) -> int:
        return len(self.entries)

    @staticmethod
    def _columns(entries: list[Entry]) -> list:
        return [[int(e.type) for e in entries], [e.ref for e in entries], [e.ovf for e in entries],
                [e.vbox for e in entries], [e.extra for e in entries]]

    def get_description(self) -> list:
        return self._columns(self.entries)

    def get_description_by_type(self, type) -> list:  # noqa: A002 - the API's parameter name
        return self._columns(self.by_type(VirtualSystemDescriptionType(type)))

    def remove_description_by_type(self, type) -> None:  # noqa: A002
        t = VirtualSystemDescriptionType(type)
        self.entries = [e for e in self.entries if e.type != t]

    def get_values_by_type(self, type, which) -> list[str]:  # noqa: A002
        which = VirtualSystemDescriptionValueType(which)
        attr = {VirtualSystemDescriptionValueType.Reference: "ref",
                VirtualSystemDescriptionValueType.Original: "ovf",
                VirtualSystemDescriptionValueType.Auto: "vbox",
                VirtualSystemDescriptionValueType.ExtraConfig: "extra"}[which]
        return [getattr(e, attr) for e in self.by_type(VirtualSystemDescriptionType(type))]

    def set_final_values(self, enabled: list, vbox_values: list, extra_config_values: list) -> None:
        n = len(self.entries)
        if len(enabled) != n or len(vbox_values) != n or len(extra_config_values) != n:
            raise VBoxError(rc.E_INVALIDARG, f"The arrays must have {n} elements, one per description entry",
                            "IVirtualSystemDescription", "VirtualSystemDescriptionWrap")
        for e, on, v, x in zip(self.entries, enabled, vbox_values, extra_config_values, strict=True):
            e.enabled = bool(on)
            e.vbox = v if v is not None else ""
            e.extra = x if x is not None else ""

    def add_description(self, type, vbox_value: str, extra_config_value: str = "") -> None:  # noqa: A002
        t = VirtualSystemDescriptionType(type)
        # a later value of a single-valued type replaces the earlier one (VBoxManage export --vmname etc.)
        if t in (T.Name, T.Product, T.ProductUrl, T.Vendor, T.VendorUrl, T.Version, T.Description, T.License):
            self.entries = [e for e in self.entries if e.type != t]
        self.add(t, "", vbox_value, vbox_value, extra_config_value)


CONTROLLER_TYPES = {T.HardDiskControllerIDE: "IDE", T.HardDiskControllerSATA: "SATA",
                    T.HardDiskControllerSCSI: "SCSI", T.HardDiskControllerSAS: "SAS",
                    T.HardDiskControllerVirtioSCSI: "VirtioSCSI", T.HardDiskControllerNVMe: "PCIe"}
TYPE_OF_BUS = {v: k for k, v in CONTROLLER_TYPES.items()}
# settings controller type -> VSD value, where VirtualBox's name differs
VSD_CONTROLLER_VALUE = {"IntelAhci": "AHCI", "LsiLogicSas": "LsiLogicSas"}
