"""The `<Hardware>` parts clients configure but vboxpy does not emulate yet: USB controllers,
the audio adapter, clipboard and drag-and-drop modes, the remote display (VRDE) server and the
BIOS logo. They are kept exactly as VirtualBox writes them (Settings.cpp, buildHardwareXML), so a
machine configured through vboxpy opens unchanged in VirtualBox and back:

    <USB><Controllers><Controller name="OHCI" type="OHCI"/></Controllers></USB>
    <AudioAdapter controller="HDA" codec="AD1980" driver="Pulse" enabled="true" enabledIn="false"/>
    <Clipboard mode="Bidirectional" fileTransfersEnabled="true"/>   <DragAndDrop mode="HostToGuest"/>
    <RemoteDisplay enabled="true" authType="Null" authTimeout="5000" allowMultiConnection="true">
      <VRDEProperties><Property name="TCP/Ports" value="5900"/></VRDEProperties></RemoteDisplay>
    <BIOS><Logo fadeIn="false" fadeOut="false" displayTime="0" imagePath=""/></BIOS>

Each element is written only when it differs from VirtualBox's defaults and is otherwise left
as found (unknown attributes and children survive).
"""

from __future__ import annotations

from lxml import etree

from .models import DEFAULT_CODEC, AudioAdapter, BiosLogo, RemoteDisplay
from .xmltree import (
    child,
    children,
    fmt_bool,
    get_bool,
    get_enum,
    get_int,
    is_empty,
    new_child,
    put_bool,
    put_int,
    put_str,
    remove,
)

USB_TYPES = {"OHCI": "OHCI", "EHCI": "EHCI", "XHCI": "XHCI"}
AUDIO_CONTROLLERS = {"AC97": "AC97", "SB16": "SB16", "HDA": "HDA", "Virtio-Sound": "VirtioSound"}
AUDIO_CONTROLLER_XML = {v: k for k, v in AUDIO_CONTROLLERS.items()}
AUDIO_CODECS = {c: c for c in ("Null", "STAC9700", "AD1980", "STAC9221", "SB16")}
AUDIO_DRIVERS = {d: d for d in ("Null", "WinMM", "OSS", "ALSA", "DirectSound", "CoreAudio", "MMPM", "Pulse",
                                "SolAudio", "WAS", "Default")}
MODES = {m: m for m in ("Disabled", "HostToGuest", "GuestToHost", "Bidirectional")}
AUTH_TYPES = {"Null": "Null", "External": "External", "Guest": "Guest"}
AUDIO_ATTRS = ("controller", "codec", "driver", "enabled", "enabledIn", "enabledOut")
VRDE_ATTRS = ("enabled", "authType", "authTimeout", "authLibrary", "allowMultiConnection",
              "reuseSingleConnection", "VRDEExtPack")
LOGO_ATTRS = ("fadeIn", "fadeOut", "displayTime", "imagePath")


# ------------------------------------------------------------------ reading

def read_usb(hw: etree._Element) -> list[str]:
    out = []
    for c in children(child(child(hw, "USB"), "Controllers"), "Controller"):
        kind = get_enum(c, "type", "OHCI", USB_TYPES, "USB/Controllers/Controller")
        if kind not in out:
            out.append(kind)
    return out


def read_audio(hw: etree._Element) -> AudioAdapter:
    a = child(hw, "AudioAdapter")
    if a is None:
        return AudioAdapter()
    controller = get_enum(a, "controller", "AC97", AUDIO_CONTROLLERS, "AudioAdapter")
    return AudioAdapter(enabled=get_bool(a, "enabled", False), controller=controller,
                        codec=get_enum(a, "codec", DEFAULT_CODEC[controller], AUDIO_CODECS, "AudioAdapter"),
                        driver=get_enum(a, "driver", "Default", AUDIO_DRIVERS, "AudioAdapter"),
                        enabled_in=get_bool(a, "enabledIn", True),
                        enabled_out=get_bool(a, "enabledOut", True))


def read_clipboard(hw: etree._Element) -> tuple[str, bool]:
    c = child(hw, "Clipboard")
    return (get_enum(c, "mode", "Disabled", MODES, "Clipboard"), get_bool(c, "fileTransfersEnabled", False))


def read_dnd(hw: etree._Element) -> str:
    return get_enum(child(hw, "DragAndDrop"), "mode", "Disabled", MODES, "DragAndDrop")


def read_vrde(hw: etree._Element) -> RemoteDisplay:
    r = child(hw, "RemoteDisplay")
    if r is None:
        return RemoteDisplay()
    props = {p.get("name", ""): p.get("value", "") for p in children(child(r, "VRDEProperties"), "Property")
             if p.get("name")}
    # files before 1.16 kept the port and address as attributes
    if r.get("port") and "TCP/Ports" not in props:
        props["TCP/Ports"] = r.get("port")
    if r.get("netAddress") and "TCP/Address" not in props:
        props["TCP/Address"] = r.get("netAddress")
    return RemoteDisplay(enabled=get_bool(r, "enabled", False),
                         auth_type=get_enum(r, "authType", "Null", AUTH_TYPES, "RemoteDisplay"),
                         auth_timeout=get_int(r, "authTimeout", 5000), auth_library=r.get("authLibrary", ""),
                         allow_multi_connection=get_bool(r, "allowMultiConnection", False),
                         reuse_single_connection=get_bool(r, "reuseSingleConnection", False),
                         ext_pack=r.get("VRDEExtPack", ""), properties=props)


def read_logo(bios: etree._Element | None) -> BiosLogo:
    lg = child(bios, "Logo")
    if lg is None:
        return BiosLogo()
    return BiosLogo(fade_in=get_bool(lg, "fadeIn", True), fade_out=get_bool(lg, "fadeOut", True),
                    display_time=get_int(lg, "displayTime", 0), image_path=lg.get("imagePath", ""))


# ------------------------------------------------------------------ writing

def write_usb(hw: etree._Element, controllers: list[str], order) -> None:
    if read_usb(hw) == controllers:
        return
    usb = child(hw, "USB")
    if usb is None:
        usb = new_child(hw, "USB", order)
    remove(child(usb, "Controllers"))
    if controllers:
        parent = new_child(usb, "Controllers", ("Controllers", "DeviceFilters"))
        for kind in controllers:
            c = new_child(parent, "Controller")
            c.set("name", kind)
            c.set("type", kind)
    if is_empty(usb):
        remove(usb)


def write_audio(hw: etree._Element, a: AudioAdapter, order) -> None:
    if read_audio(hw) == a:
        return
    el = child(hw, "AudioAdapter")
    if a == AudioAdapter():
        remove(el)
        return
    if el is None:
        el = new_child(hw, "AudioAdapter", order)
    put_str(el, "controller", AUDIO_CONTROLLER_XML[a.controller], default="AC97", order=AUDIO_ATTRS)
    put_str(el, "codec", a.codec, default=DEFAULT_CODEC[a.controller], order=AUDIO_ATTRS)
    put_str(el, "driver", a.driver, always=True, order=AUDIO_ATTRS)
    put_bool(el, "enabled", a.enabled, always=True, order=AUDIO_ATTRS)
    put_bool(el, "enabledIn", a.enabled_in, default=True, order=AUDIO_ATTRS)
    put_bool(el, "enabledOut", a.enabled_out, default=True, order=AUDIO_ATTRS)


def write_clipboard(hw: etree._Element, mode: str, file_transfers: bool, order) -> None:
    if read_clipboard(hw) == (mode, file_transfers):
        return
    el = child(hw, "Clipboard")
    if mode == "Disabled" and not file_transfers:
        remove(el)
        return
    if el is None:
        el = new_child(hw, "Clipboard", order)
    put_str(el, "mode", mode, always=True, order=("mode", "fileTransfersEnabled"))
    put_bool(el, "fileTransfersEnabled", file_transfers, default=False,
             order=("mode", "fileTransfersEnabled"))


def write_dnd(hw: etree._Element, mode: str, order) -> None:
    if read_dnd(hw) == mode:
        return
    el = child(hw, "DragAndDrop")
    if mode == "Disabled":
        remove(el)
        return
    if el is None:
        el = new_child(hw, "DragAndDrop", order)
    el.set("mode", mode)


def write_vrde(hw: etree._Element, r: RemoteDisplay, order) -> None:
    if read_vrde(hw) == r:
        return
    el = child(hw, "RemoteDisplay")
    if r == RemoteDisplay():
        remove(el)
        return
    if el is None:
        el = new_child(hw, "RemoteDisplay", order)
    for old in ("port", "netAddress"):  # moved into VRDEProperties
        el.attrib.pop(old, None)
    put_bool(el, "enabled", r.enabled, always=True, order=VRDE_ATTRS)
    put_str(el, "authType", r.auth_type, default="Null", order=VRDE_ATTRS)
    put_int(el, "authTimeout", r.auth_timeout, default=5000, order=VRDE_ATTRS)
    put_str(el, "authLibrary", r.auth_library, default="", order=VRDE_ATTRS)
    put_bool(el, "allowMultiConnection", r.allow_multi_connection, default=False, order=VRDE_ATTRS)
    put_bool(el, "reuseSingleConnection", r.reuse_single_connection, default=False, order=VRDE_ATTRS)
    put_str(el, "VRDEExtPack", r.ext_pack, default="", order=VRDE_ATTRS)
    remove(child(el, "VRDEProperties"))
    if r.properties:
        props = new_child(el, "VRDEProperties", ("VideoChannel", "VRDEProperties"))
        for name in sorted(r.properties):
            p = new_child(props, "Property")
            p.set("name", name)
            p.set("value", r.properties[name])


def write_logo(bios: etree._Element, logo: BiosLogo, order) -> None:
    if read_logo(bios) == logo:
        return
    el = child(bios, "Logo")
    if logo == BiosLogo():
        remove(el)
        return
    if el is None:
        el = new_child(bios, "Logo", order)
    el.set("fadeIn", fmt_bool(logo.fade_in))
    el.set("fadeOut", fmt_bool(logo.fade_out))
    el.set("displayTime", str(logo.display_time))
    el.set("imagePath", logo.image_path)


def logo_needed(logo: BiosLogo) -> bool:
    return logo != BiosLogo()
