"""modifyvm's options for the devices clients configure that vboxpy keeps in the settings:
USB controllers, audio, HID, chipset, CPU hot-plug, BIOS boot menu and logo, clipboard,
drag and drop, 3D acceleration, NIC speed / boot priority / promiscuous policy and the VRDE
server (VBoxManageModifyVM.cpp). Each option id maps to a setter on the session machine.
"""

from __future__ import annotations

from .cli import choice, onoff, uint
from .output import SyntaxFailure

_CMD = "modifyvm"

# id -> spellings (dashed first, then the old ones)
PLAIN = {
    "usb": ("--usb",), "usbohci": ("--usb-ohci", "--usbohci"), "usbehci": ("--usb-ehci", "--usbehci"),
    "usbxhci": ("--usb-xhci", "--usbxhci"),
    "audio": ("--audio",), "audioenabled": ("--audio-enabled",),
    "audiodriver": ("--audio-driver", "--audiodriver"),
    "audiocontroller": ("--audio-controller", "--audiocontroller"),
    "audiocodec": ("--audio-codec", "--audiocodec"), "audioin": ("--audio-in", "--audioin"),
    "audioout": ("--audio-out", "--audioout"),
    "mouse": ("--mouse",), "keyboard": ("--keyboard",), "chipset": ("--chipset",),
    "cpuhotplug": ("--cpu-hotplug", "--cpuhotplug"),
    "biosbootmenu": ("--bios-boot-menu", "--biosbootmenu"),
    "bioslogofadein": ("--bios-logo-fade-in", "--bioslogofadein"),
    "bioslogofadeout": ("--bios-logo-fade-out", "--bioslogofadeout"),
    "bioslogodisplaytime": ("--bios-logo-display-time", "--bioslogodisplaytime"),
    "bioslogoimagepath": ("--bios-logo-image-path", "--bioslogoimagepath"),
    "clipboard": ("--clipboard-mode", "--clipboard"),
    "clipboardfiletransfers": ("--clipboard-file-transfers", "--clipboardfiletransfers"),
    "draganddrop": ("--drag-and-drop", "--draganddrop"),
    "accelerate3d": ("--accelerate-3d", "--accelerate3d"),
    "vrde": ("--vrde",), "vrdeport": ("--vrde-port", "--vrdeport"),
    "vrdeaddress": ("--vrde-address", "--vrdeaddress"),
    "vrdeauthtype": ("--vrde-auth-type", "--vrdeauthtype"),
    "vrdeauthlibrary": ("--vrde-auth-library", "--vrdeauthlibrary"),
    "vrdemulticon": ("--vrde-multi-con", "--vrdemulticon"),
    "vrdereusecon": ("--vrde-reuse-con", "--vrdereusecon"),
    "vrdevideochannel": ("--vrde-video-channel", "--vrdevideochannel"),
    "vrdevideochannelquality": ("--vrde-video-channel-quality", "--vrdevideochannelquality"),
    "vrdeproperty": ("--vrde-property", "--vrdeproperty"),
    "vrdeextpack": ("--vrde-extpack", "--vrdeextpack"),
}
INDEXED = {
    "nicspeed": ("--nic-speed", "--nicspeed"), "nicbootprio": ("--nic-boot-prio", "--nicbootprio"),
    "nicpromisc": ("--nic-promisc", "--nicpromisc"),
}

USB_KIND = {"usb": "OHCI", "usbohci": "OHCI", "usbehci": "EHCI", "usbxhci": "XHCI"}
AUDIO_DRIVER_BY_ARG = {"none": 1, "null": 1, "default": 0, "oss": 2, "alsa": 3, "pulse": 4, "winmm": 5,
                       "dsound": 6, "was": 7, "coreaudio": 8, "mmpm": 9, "solaudio": 10}
AUDIO_CONTROLLER_BY_ARG = {"ac97": 0, "sb16": 1, "hda": 2, "virtio-sound": 3}
AUDIO_CODEC_BY_ARG = {"sb16": 1, "stac9700": 2, "ad1980": 3, "stac9221": 4}
MOUSE_BY_ARG = {"none": 1, "ps2": 2, "usb": 3, "usbtablet": 4, "usbmultitouch": 6, "usbmtscreenpluspad": 7}
KEYBOARD_BY_ARG = {"none": 1, "ps2": 2, "usb": 3}
CHIPSET_BY_ARG = {"piix3": 1, "ich9": 2}
BOOT_MENU_BY_ARG = {"disabled": 0, "menuonly": 1, "messageandmenu": 2}
SHARE_MODE_BY_ARG = {"disabled": 0, "hosttoguest": 1, "guesttohost": 2, "bidirectional": 3}
AUTH_BY_ARG = {"null": 0, "external": 1, "guest": 2}
PROMISC_BY_ARG = {"deny": 1, "allow-vms": 2, "allow-all": 3}


def applies(oid: str) -> bool:
    return oid in PLAIN or oid in INDEXED


def apply(m, oid: str, index: int, value: str) -> None:
    """Apply one option to the session machine `m`."""
    from vboxsvc.api import enums as e

    opt = f"--{oid}{index or ''}"
    if oid in USB_KIND:
        _usb(m, USB_KIND[oid], onoff(opt, value, _CMD), e)
    elif oid.startswith("audio"):
        _audio(m.audio_settings.adapter, oid, opt, value, e)
    elif oid == "mouse":
        m.pointing_hid_type = e.PointingHIDType(choice(opt, value, MOUSE_BY_ARG, _CMD))
    elif oid == "keyboard":
        m.keyboard_hid_type = e.KeyboardHIDType(choice(opt, value, KEYBOARD_BY_ARG, _CMD))
    elif oid == "chipset":
        m.platform.chipset_type = e.ChipsetType(choice(opt, value, CHIPSET_BY_ARG, _CMD))
    elif oid == "cpuhotplug":
        m.cpu_hot_plug_enabled = onoff(opt, value, _CMD)
    elif oid.startswith("bios"):
        _bios(m.firmware_settings, oid, opt, value, e)
    elif oid == "clipboard":
        m.clipboard_mode = e.ClipboardMode(choice(opt, value, SHARE_MODE_BY_ARG, _CMD))
    elif oid == "clipboardfiletransfers":
        m.clipboard_file_transfers_enabled = onoff(opt, value, _CMD)
    elif oid == "draganddrop":
        m.dn_d_mode = e.DnDMode(choice(opt, value, SHARE_MODE_BY_ARG, _CMD))
    elif oid == "accelerate3d":
        m.graphics_adapter.accelerate3d_enabled = onoff(opt, value, _CMD)
    elif oid.startswith("vrde"):
        _vrde(m.vrde_server, oid, opt, value, e)
    else:
        _nic(m.get_network_adapter(index - 1), oid, opt, value, e)


def _usb(m, kind: str, on: bool, e) -> None:
    present = m.get_usb_controller_count_by_type(e.USBControllerType[kind]) > 0
    if on and not present:
        m.add_usb_controller(kind, e.USBControllerType[kind])
    elif not on and present:
        m.remove_usb_controller(kind)


def _audio(adapter, oid: str, opt: str, value: str, e) -> None:
    if oid == "audio":  # the old combined option: a driver name enables, "none" disables
        if value.lower() == "none":
            adapter.enabled = False
            return
        adapter.audio_driver = e.AudioDriverType(choice(opt, value, AUDIO_DRIVER_BY_ARG, _CMD))
        adapter.enabled = True
    elif oid == "audioenabled":
        adapter.enabled = onoff(opt, value, _CMD)
    elif oid == "audiodriver":
        adapter.audio_driver = e.AudioDriverType(choice(opt, value, AUDIO_DRIVER_BY_ARG, _CMD))
    elif oid == "audiocontroller":
        adapter.audio_controller = e.AudioControllerType(choice(opt, value, AUDIO_CONTROLLER_BY_ARG, _CMD))
    elif oid == "audiocodec":
        adapter.audio_codec = e.AudioCodecType(choice(opt, value, AUDIO_CODEC_BY_ARG, _CMD))
    elif oid == "audioin":
        adapter.enabled_in = onoff(opt, value, _CMD)
    else:
        adapter.enabled_out = onoff(opt, value, _CMD)


def _bios(fw, oid: str, opt: str, value: str, e) -> None:
    if oid == "biosbootmenu":
        fw.boot_menu_mode = e.FirmwareBootMenuMode(choice(opt, value, BOOT_MENU_BY_ARG, _CMD))
    elif oid == "bioslogofadein":
        fw.logo_fade_in = onoff(opt, value, _CMD)
    elif oid == "bioslogofadeout":
        fw.logo_fade_out = onoff(opt, value, _CMD)
    elif oid == "bioslogodisplaytime":
        fw.logo_display_time = uint(opt, value, _CMD, hi=65535)
    else:
        fw.logo_image_path = value


def _vrde(server, oid: str, opt: str, value: str, e) -> None:
    if oid == "vrde":
        server.enabled = onoff(opt, value, _CMD)
    elif oid == "vrdeport":
        server.set_vrde_property("TCP/Ports", "0" if value == "default" else value)
    elif oid == "vrdeaddress":
        server.set_vrde_property("TCP/Address", value)
    elif oid == "vrdeauthtype":
        server.auth_type = e.AuthType(choice(opt, value, AUTH_BY_ARG, _CMD))
    elif oid == "vrdeauthlibrary":
        server.auth_library = "" if value == "default" else value
    elif oid == "vrdemulticon":
        server.allow_multi_connection = onoff(opt, value, _CMD)
    elif oid == "vrdereusecon":
        server.reuse_single_connection = onoff(opt, value, _CMD)
    elif oid == "vrdevideochannel":
        server.set_vrde_property("VideoChannel/Enabled", "true" if onoff(opt, value, _CMD) else "false")
    elif oid == "vrdevideochannelquality":
        server.set_vrde_property("VideoChannel/Quality", value)
    elif oid == "vrdeproperty":
        key, eq, val = value.partition("=")
        if not eq or not key:
            raise SyntaxFailure(f"Invalid --vrdeproperty argument '{value}'", _CMD)
        server.set_vrde_property(key, val)
    else:
        server.vrde_ext_pack = "" if value == "default" else value


def _nic(adapter, oid: str, opt: str, value: str, e) -> None:
    if oid == "nicspeed":
        adapter.line_speed = uint(opt, value, _CMD)
    elif oid == "nicbootprio":
        adapter.boot_priority = uint(opt, value, _CMD, hi=4)
    else:
        adapter.promisc_mode_policy = e.NetworkAdapterPromiscModePolicy(
            choice(opt, value, PROMISC_BY_ARG, _CMD))

