"""`list` layouts (VBoxManageList.cpp) and showmediuminfo (VBoxManageDisk.cpp), from plain data.

Media are dicts {uuid, parent, state, type, location, format, variant, logical_size,
size, description, auto_reset, in_use: [(name, uuid)], children: [...], ...}.
"""

from .names import MEDIUM_STATES, MEDIUM_TYPES, PROCESSOR_FEATURES
from .output import current_identity, rt_time_spec


def vms(entries: list[tuple[str, str]]) -> str:
    return "".join(f'"{name}" {{{uuid}}}\n' for name, uuid in entries)


def _medium_type(medium: dict) -> str:
    kind = MEDIUM_TYPES.get(medium["type"], "normal")
    if kind == "normal":
        return "normal (differencing)" if medium.get("parent") else "normal (base)"
    return kind


def media(items: list[dict], parents: bool = True) -> str:
    """list hdds/dvds/floppies: depth-first over children, 16-column values.  DVD and floppy
    images have no `Parent UUID:` line (VBoxManageList.cpp passes no parent for them)."""
    out: list[str] = []

    def walk(m: dict) -> None:
        out.append(f"{'UUID:':<16}{m['uuid']}\n")
        if parents:
            out.append(f"{'Parent UUID:':<16}{m.get('parent') or 'base'}\n")
        out.append(f"{'State:':<16}{MEDIUM_STATES.get(m['state'], 'unknown')}\n")
        out.append(f"{'Type:':<16}{_medium_type(m)}\n")
        out.append(f"{'Location:':<16}{m['location']}\n")
        out.append(f"{'Storage format:':<16}{m['format']}\n")
        out.append(f"{'Capacity:':<16}{m['logical_size'] >> 20} MBytes\n")
        out.append(f"{'Encryption:':<16}disabled\n\n")
        for child in m.get("children", []):
            walk(child)

    for item in items:
        walk(item)
    return "".join(out)


def variant_text(bits: int) -> str:
    """`Format variant:` from the MediumVariant bits (Fixed/Diff give the kind, the rest the subformat)."""
    kind = "fixed" if bits & 0x10000 else ("differencing" if bits & 0x20000 else "dynamic")
    sub = {0: "default", 0x1: "split2G", 0x4: "streamOptimized", 0x8: "ESX"}.get(bits & ~0x30000, "unknown")
    return f"{kind} {sub}"


def medium_info(m: dict) -> str:
    out = [f"{'UUID:':<16}{m['uuid']}\n", f"{'Parent UUID:':<16}{m.get('parent') or 'base'}\n",
           f"{'State:':<16}{MEDIUM_STATES.get(m['state'], 'unknown')}\n"]
    if m["state"] == 4 and m.get("access_error"):
        out.append(f"{'Access Error:':<16}{m['access_error']}\n")
    if m.get("description"):
        out.append(f"{'Description:':<16}{m['description']}\n")
    out.append(f"{'Type:':<16}{_medium_type(m)}\n")
    if m.get("parent"):
        out.append(f"{'Auto-Reset:':<16}{'on' if m.get('auto_reset') else 'off'}\n")
    out += [f"{'Location:':<16}{m['location']}\n", f"{'Storage format:':<16}{m['format']}\n",
            f"{'Format variant:':<16}{variant_text(m.get('variant', 0))}\n",
            f"{'Capacity:':<16}{m['logical_size'] >> 20} MBytes\n",
            f"{'Size on disk:':<16}{m['size'] >> 20} MBytes\n", f"{'Encryption:':<16}disabled\n"]
    for i, (key, value) in enumerate(sorted(m.get("properties", {}).items())):
        out.append(f"{'Property:' if i == 0 else '':<16}{key}={value}\n")
    for i, (name, uuid, snaps) in enumerate(m.get("in_use", [])):
        tail = "".join(f" [{snap} (UUID: {sid})]" for snap, sid in snaps)
        out.append(f"{'In use by VMs:' if i == 0 else '':<16}{name} (UUID: {uuid}){tail}\n")
    for i, child in enumerate(m.get("child_ids", [])):
        out.append(f"{'Child UUIDs:' if i == 0 else '':<16}{child}\n")
    return "".join(out)


def ostypes(types: list[dict], v71: bool | None = None) -> str:
    """7.1 layout (showGuestOSType): header, then a block per guest OS type; 7.0's had no header
    and one `Label: value` line per field."""
    if not (current_identity().is_7_1 if v71 is None else v71):
        return ostypes_70(types)
    out = ["Supported guest OS types:\n\n"]
    for t in types:
        arch = "ARMv8" if t.get("arch") == 2 else "x86"
        family = f"{t['family_id']} / {t['subtype']}" if t.get("subtype") else t["family_id"]
        out += [f"ID / Description: {t['id']} -- {t['description']}\n",
                f"Family:           {family} ({t['family_desc']})\n",
                f"Architecture:     {arch}{' (64-bit)' if t['is64'] else ''}\n\n"]
    return "".join(out)


def ostypes_70(types: list[dict]) -> str:
    out = []
    for t in types:
        out += [f"ID:          {t['id']}\n", f"Description: {t['description']}\n",
                f"Family ID:   {t['family_id']}\n", f"Family Desc: {t['family_desc']}\n",
                f"64 bit:      {'true' if t['is64'] else 'false'}\n\n"]
    return "".join(out)


def ostypes_long(types: list[dict], v71: bool | None = None) -> str:
    if not (current_identity().is_7_1 if v71 is None else v71):
        return ostypes_70(types)
    out = ["Supported guest OS types:\n\n"]
    for t in types:
        out += [f"ID:               {t['id']}\n", f"Description:      {t['description']}\n",
                f"Family ID:        {t['family_id']}\n", f"Family Desc:      {t['family_desc']}\n"]
        if t.get("subtype"):
            out.append(f"OS Subtype:       {t['subtype']}\n")
        out += [f"Architecture:     {'ARMv8' if t.get('arch') == 2 else 'x86'}\n",
                f"64 bit:           {'true' if t['is64'] else 'false'}\n\n"]
    return "".join(out)


def hostinfo(h: dict) -> str:
    out = ["Host Information:\n\n", f"Host time: {h['time']}\n",
           f"Processor online count: {h['online_count']}\n", f"Processor count: {h['count']}\n",
           f"Processor online core count: {h['online_cores']}\n", f"Processor core count: {h['cores']}\n"]
    for feature, label in PROCESSOR_FEATURES:
        out.append(f"Processor supports {label}: {'yes' if h['features'].get(feature) else 'no'}\n")
    for i, (speed, desc) in enumerate(h["cpus"]):
        out.append(f"Processor#{i} speed: {f'{speed} MHz' if speed else 'unknown'}\n")
        out.append(f"Processor#{i} description: {desc}\n")
    out += [f"Memory size: {h['memory']} MByte\n", f"Memory available: {h['memory_available']} MByte\n",
            f"Operating system: {h['os']}\n", f"Operating system version: {h['os_version']}\n"]
    return "".join(out)


def host_time(ms: int) -> str:
    """RTTimeSpecToString with room for the `Z`: 9 fraction digits."""
    return rt_time_spec(ms) + "Z"


def systemproperties(rows: list[tuple[str, object]]) -> str:
    """Rows carry their own padding (listing._systemproperties); headings and blanks have no value."""
    return "".join(f"{label}{value}\n" for label, value in rows)
