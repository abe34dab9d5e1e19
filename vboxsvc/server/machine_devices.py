"""IMachine's USB controllers, audio settings and VRDE server (USBControllerImpl.cpp,
AudioSettingsImpl.cpp / AudioAdapterImpl.cpp, VRDEServerImpl.cpp): settings clients configure
and vboxpy keeps for VirtualBox, served as live views like the other machine parts.
"""

from __future__ import annotations

from ..api import errors as rc
from ..api.enums import AudioCodecType, AudioControllerType, AudioDriverType, AuthType, USBControllerType
from ..api.errors import VBoxError
from .fields import assign, enum_names, field, in_range
from .statedeps import MUTABLE, MUTABLE_OR_RUNNING

USB_STANDARD = {"OHCI": 0x0101, "EHCI": 0x0200, "XHCI": 0x0300}


class _Part:
    def __init__(self, view):
        self._mv = view
        self.__bus_tag__ = view.__bus_tag__


class USBController(_Part):
    __interface__ = "IUSBController"
    __component__ = "USBControllerWrap"

    def __init__(self, view, kind: str):
        super().__init__(view)
        self._kind = kind

    @property
    def name(self) -> str:
        return self._kind

    @property
    def type(self):
        return USBControllerType[self._kind]

    @property
    def usb_standard(self) -> int:
        return USB_STANDARD[self._kind]


def usb_controllers(view) -> list[USBController]:
    return [view._part(USBController, k) for k in view._d.hardware.usb_controllers]


def add_usb_controller(view, name: str, kind) -> USBController:
    view._check_mutable(MUTABLE)
    kind_name = USBControllerType(kind).name
    if kind_name == "Null":
        raise VBoxError(rc.E_INVALIDARG, "Invalid USB controller type", "IMachine", "MachineWrap")
    hw = view._d.hardware
    if name in hw.usb_controllers or kind_name in hw.usb_controllers:
        raise VBoxError(rc.VBOX_E_OBJECT_IN_USE, f"USB controller named '{name}' already exists",
                        "IMachine", "MachineWrap")
    assign(hw, "usb_controllers", hw.usb_controllers + [kind_name])
    return view._part(USBController, kind_name)


def remove_usb_controller(view, name: str) -> None:
    view._check_mutable(MUTABLE)
    hw = view._d.hardware
    if name not in hw.usb_controllers:
        raise VBoxError(rc.VBOX_E_OBJECT_NOT_FOUND, f"Could not find USB controller '{name}'", "IMachine",
                        "MachineWrap")
    assign(hw, "usb_controllers", [k for k in hw.usb_controllers if k != name])


class AudioAdapter(_Part):
    __interface__ = "IAudioAdapter"
    __component__ = "AudioAdapterWrap"

    enabled = field("hardware.audio.enabled", MUTABLE)
    enabled_in = field("hardware.audio.enabled_in", MUTABLE_OR_RUNNING)
    enabled_out = field("hardware.audio.enabled_out", MUTABLE_OR_RUNNING)
    audio_codec = field("hardware.audio.codec", MUTABLE, *enum_names(AudioCodecType))
    audio_driver = field("hardware.audio.driver", MUTABLE, *enum_names(AudioDriverType))

    @property
    def audio_controller(self):
        return AudioControllerType[self._mv._d.hardware.audio.controller]

    @audio_controller.setter
    def audio_controller(self, value) -> None:
        """Changing the controller also picks its default codec (AudioAdapter::setAudioController)."""
        from settings.models import DEFAULT_CODEC
        self._mv._check_mutable(MUTABLE)
        audio = self._mv._d.hardware.audio
        name = AudioControllerType(value).name
        if name != audio.controller:
            assign(audio, "controller", name)
            assign(audio, "codec", DEFAULT_CODEC[name])


class AudioSettings(_Part):
    __interface__ = "IAudioSettings"
    __component__ = "AudioSettingsWrap"

    @property
    def adapter(self):
        return self._mv._part(AudioAdapter)


class VRDEServer(_Part):
    __interface__ = "IVRDEServer"
    __component__ = "VRDEServerWrap"

    enabled = field("hardware.vrde.enabled", MUTABLE_OR_RUNNING)
    auth_type = field("hardware.vrde.auth_type", MUTABLE_OR_RUNNING, *enum_names(AuthType))
    auth_timeout = field("hardware.vrde.auth_timeout", MUTABLE_OR_RUNNING,
                         check=in_range("authentication timeout", 0, 0x7FFFFFFF))
    auth_library = field("hardware.vrde.auth_library", MUTABLE_OR_RUNNING)
    allow_multi_connection = field("hardware.vrde.allow_multi_connection", MUTABLE_OR_RUNNING)
    reuse_single_connection = field("hardware.vrde.reuse_single_connection", MUTABLE_OR_RUNNING)
    vrde_ext_pack = field("hardware.vrde.ext_pack", MUTABLE_OR_RUNNING)

    @property
    def vrde_properties(self) -> list[str]:
        return sorted(self._mv._d.hardware.vrde.properties)

    def get_vrde_property(self, key: str) -> str:
        return self._mv._d.hardware.vrde.properties.get(key, "")

    def set_vrde_property(self, key: str, value: str) -> None:
        self._mv._check_mutable(MUTABLE_OR_RUNNING)
        if not key:
            raise VBoxError(rc.E_INVALIDARG, "The VRDE property name must not be empty", "IVRDEServer",
                            "VRDEServerWrap")
        vrde = self._mv._d.hardware.vrde
        props = dict(vrde.properties)
        if value:
            props[key] = value
        else:
            props.pop(key, None)
        assign(vrde, "properties", props)
