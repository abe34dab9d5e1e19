"""The `<Global>` element of VirtualBox.xml (Settings.cpp, MainConfigFile): extra data, machine registry,
global media registry, system properties. DHCP/NAT networks, USB filters and the rest are kept
untouched in the tree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lxml import etree

from . import media_xml
from .models import MachineRegistryEntry, MainSettings, SystemProperties
from .xmllists import read_extra_data, sync_keyed, write_extra_data
from .xmltree import (
    child,
    children,
    ensure_child,
    fmt_uuid,
    get_bool,
    get_int,
    new_child,
    parse_uuid,
    problem,
    put,
    put_bool,
    put_int,
    put_str,
)

GLOBAL_CHILDREN = ("ExtraData", "MachineRegistry", "MediaRegistry", "NetserviceRegistry",
                   "CloudNetworks", "Updates", "SystemProperties", "PlatformProperties",
                   "USBDeviceFilters", "USBDeviceSources")
# model field -> XML attribute, in VirtualBox's write order
SYSPROP_ATTRS = {
    "default_machine_folder": "defaultMachineFolder",
    "logging_level": "LoggingLevel",
    "default_hard_disk_format": "defaultHardDiskFormat",
    "vrde_auth_library": "VRDEAuthLibrary",
    "web_service_auth_library": "webServiceAuthLibrary",
    "default_vrde_ext_pack": "defaultVRDEExtPack",
    "default_crypto_ext_pack": "defaultCryptoExtPack",
    "log_history_count": "LogHistoryCount",
    "autostart_database_path": "autostartDatabasePath",
    "default_frontend": "defaultFrontend",
    "proxy_url": "proxyUrl",
    "proxy_mode": "proxyMode",
    "exclusive_hw_virt": "exclusiveHwVirt",
    "language_id": "LanguageId",
}
SYSPROP_ORDER = tuple(SYSPROP_ATTRS.values())


def _global(root: etree._Element) -> etree._Element:
    g = child(root, "Global")
    if g is None:
        raise problem(root, "Required Global element is missing")
    return g


def read_main(root: etree._Element, sv: int, folder: Path) -> MainSettings:
    g = _global(root)
    entries = []
    for e in (
        children(child(g, "MachineRegistry"), "MachineEntry")
        if child(g, "MachineRegistry") is not None
        else []
    ):
        if e.get("uuid") is None or e.get("src") is None:
            raise problem(e, "Required MachineEntry/@uuid or @src attribute is missing")
        entries.append(MachineRegistryEntry(uuid=parse_uuid(e.get("uuid"), e), src=e.get("src")))
    sp = child(g, "SystemProperties")
    plat = child(g, "PlatformProperties")
    props: dict[str, Any] = {}
    for field, attr in SYSPROP_ATTRS.items():
        dflt = SystemProperties.model_fields[field].default
        if field == "exclusive_hw_virt":
            props[field] = get_bool(plat if sv >= 20 and plat is not None else sp, attr, dflt)
        elif isinstance(dflt, int):
            props[field] = get_int(sp, attr, dflt)
        else:
            props[field] = sp.get(attr, dflt) if sp is not None else dflt
    try:
        return MainSettings(
            extra_data=read_extra_data(g),
            machine_registry=entries,
            system_properties=SystemProperties(**props),
            media_registry=media_xml.read_registry(child(g, "MediaRegistry"), folder),
        )
    except ValueError as e:
        raise problem(g, f"Invalid global settings: {e}")


def write_main(root: etree._Element, s: MainSettings, sv: int, folder: Path) -> None:
    g = child(root, "Global")
    if g is None:
        g = new_child(root, "Global")
    write_extra_data(g, s.extra_data, GLOBAL_CHILDREN)
    reg = ensure_child(g, "MachineRegistry", GLOBAL_CHILDREN)

    def write_entry(e: etree._Element, m: MachineRegistryEntry) -> None:
        put(e, "uuid", m.uuid, always=True, fmt=fmt_uuid, order=("uuid", "src"),
            read=lambda el, n, d: parse_uuid(el.get(n)) if el.get(n) else d)
        put_str(e, "src", m.src, always=True, order=("uuid", "src"))

    def key(e: etree._Element):
        try:
            return parse_uuid(e.get("uuid", ""))
        except Exception:
            return id(e)
    sync_keyed(reg, "MachineEntry", s.machine_registry, key, lambda m: m.uuid, write_entry)
    media_xml.write_registry(g, s.media_registry, folder, GLOBAL_CHILDREN)
    sp = ensure_child(g, "SystemProperties", GLOBAL_CHILDREN)
    p = s.system_properties
    for field, attr in SYSPROP_ATTRS.items():
        value = getattr(p, field)
        dflt = SystemProperties.model_fields[field].default
        if field == "log_history_count" or field == "proxy_mode":
            put_int(sp, attr, value, default=dflt, always=True, order=SYSPROP_ORDER)
        elif field == "exclusive_hw_virt":
            target = sp
            if sv >= 20:
                target = ensure_child(g, "PlatformProperties", GLOBAL_CHILDREN)
                sp.attrib.pop(attr, None)
            put_bool(target, attr, value, default=dflt, always=True, order=SYSPROP_ORDER)
        else:
            put_str(sp, attr, value, default="", order=SYSPROP_ORDER)


# The update agent's defaults as MainConfigFile::write puts them into a fresh file (Settings.cpp;
# VirtualBox-settings.xsd makes <Updates> with one <Host> a required child of <Global>):
# checking on, the stable channel (UpdateChannel_Stable = 1), once a day, never checked yet.
UPDATES_DEFAULT = {"enabled": "true"}
UPDATES_HOST_DEFAULT = {"enabled": "true", "channel": "1", "checkFreqSec": "86400", "checkCount": "0"}


def add_new_file_defaults(root: etree._Element) -> None:
    """What a fresh VirtualBox.xml holds besides the modelled parts: the default host-only DHCP
    server, the update agent's settings and an empty USB filter list."""
    g = child(root, "Global")
    updates = ensure_child(g, "Updates", GLOBAL_CHILDREN)
    for k, v in UPDATES_DEFAULT.items():
        updates.set(k, v)
    host = new_child(updates, "Host")
    for k, v in UPDATES_HOST_DEFAULT.items():
        host.set(k, v)
    ns = new_child(g, "NetserviceRegistry", GLOBAL_CHILDREN)
    dhcp = new_child(new_child(ns, "DHCPServers"), "DHCPServer")
    for k, v in (("networkName", "HostInterfaceNetworking-vboxnet0"), ("IPAddress", "192.168.56.100"),
                 ("networkMask", "255.255.255.0"), ("lowerIP", "192.168.56.101"),
                 ("upperIP", "192.168.56.254"), ("enabled", "1")):
        dhcp.set(k, v)
    ensure_child(g, "USBDeviceFilters", GLOBAL_CHILDREN)
