"""Result codes of VirtualBox's Main API and the one exception type that carries them.

Every failure a client sees (from the service, from a VM process, or from the bus itself)
is a VBoxError with VirtualBox's HRESULT, the message text, the interface and the
component, so a front-end can print VirtualBox's error block unchanged.
"""

from __future__ import annotations

# VBOX_E_* (0x80BB00xx)
VBOX_E_OBJECT_NOT_FOUND = 0x80BB0001
VBOX_E_INVALID_VM_STATE = 0x80BB0002
VBOX_E_VM_ERROR = 0x80BB0003
VBOX_E_FILE_ERROR = 0x80BB0004
VBOX_E_IPRT_ERROR = 0x80BB0005
VBOX_E_PDM_ERROR = 0x80BB0006
VBOX_E_INVALID_OBJECT_STATE = 0x80BB0007
VBOX_E_HOST_ERROR = 0x80BB0008
VBOX_E_NOT_SUPPORTED = 0x80BB0009
VBOX_E_XML_ERROR = 0x80BB000A
VBOX_E_INVALID_SESSION_STATE = 0x80BB000B
VBOX_E_OBJECT_IN_USE = 0x80BB000C
VBOX_E_PASSWORD_INCORRECT = 0x80BB000D
VBOX_E_MAXIMUM_REACHED = 0x80BB000E
VBOX_E_GSTCTL_GUEST_ERROR = 0x80BB000F
VBOX_E_TIMEOUT = 0x80BB0010
VBOX_E_DND_ERROR = 0x80BB0011
VBOX_E_PLATFORM_ARCH_NOT_SUPPORTED = 0x80BB0012
VBOX_E_RECORDING_ERROR = 0x80BB0013

# generic COM codes
E_INVALIDARG = 0x80070057
E_FAIL = 0x80004005
E_NOTIMPL = 0x80004001
E_UNEXPECTED = 0x8000FFFF
E_OUTOFMEMORY = 0x8007000E
E_ACCESSDENIED = 0x80070005
E_ABORT = 0x80004004
NS_ERROR_CALL_FAILED = 0x800706BE
S_OK = 0

_NAMES = {v: k for k, v in dict(globals()).items() if k.startswith(("VBOX_E_", "E_", "NS_", "S_OK"))}
# How VBoxManage on Linux prints the generic codes (XPCOM names).
_XPCOM = {
    E_INVALIDARG: "NS_ERROR_INVALID_ARG",
    E_FAIL: "NS_ERROR_FAILURE",
    E_NOTIMPL: "NS_ERROR_NOT_IMPLEMENTED",
    E_UNEXPECTED: "NS_ERROR_UNEXPECTED",
    E_OUTOFMEMORY: "NS_ERROR_OUT_OF_MEMORY",
    E_ABORT: "NS_ERROR_ABORT",
}


def result_code_name(code: int) -> str:
    """The symbolic name VBoxManage prints for a result code (XPCOM spelling for generic ones)."""
    code &= 0xFFFFFFFF
    return _XPCOM.get(code) or _NAMES.get(code) or f"0x{code:08x}"


class VBoxError(Exception):
    """A failed API call: result code, message text, interface and component (VirtualBox's error info)."""

    def __init__(self, result_code: int, text: str, interface: str = "", component: str = ""):
        super().__init__(text)
        self.result_code = int(result_code) & 0xFFFFFFFF
        self.text = text
        self.interface = interface
        self.component = component

    @property
    def code_name(self) -> str:
        return result_code_name(self.result_code)

    def to_wire(self) -> list:
        return [self.result_code, self.text, self.interface, self.component]

    @classmethod
    def from_wire(cls, data) -> VBoxError:
        code, text, iface, comp = data
        return cls(code, text, iface, comp)

    def __repr__(self) -> str:
        return f"VBoxError({self.code_name}, {self.text!r}, {self.interface!r}, {self.component!r})"
