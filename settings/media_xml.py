"""`<MediaRegistry>`: hard disks (diffs nested in their parents), DVD and floppy images.

The same element appears in VirtualBox.xml (media not owned by a machine; everything in pre-4.0
setups) and in each .vbox. Locations are stored relative to the owner's folder when inside it
(Settings.cpp, readMediaRegistry); the models hold absolute paths.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import get_args

from lxml import etree

from .models import MediaRegistry, Medium, MediumType
from .paths import relative_location, resolve_location
from .xmllists import sync_keyed
from .xmltree import (
    child,
    children,
    ensure_child,
    fmt_uuid,
    get_bool,
    get_uuid,
    is_empty,
    new_child,
    parse_uuid,
    problem,
    put,
    put_bool,
    remove,
    required,
    set_attr,
)

MAX_DEPTH = 300  # SETTINGS_MEDIUM_DEPTH_MAX
MEDIUM_ATTRS = ("uuid", "location", "format", "type", "autoReset")
MEDIUM_CHILDREN = ("Description", "Property", "HardDisk")
REGISTRY_CHILDREN = ("HardDisks", "DVDImages", "FloppyImages")
_TYPES: dict[str, MediumType] = {t.lower(): t for t in get_args(MediumType)}
# kind -> (container, element, default format, default type of a base medium)
KINDS: dict[str, tuple[str, str, str, MediumType]] = {
    "hd": ("HardDisks", "HardDisk", "VDI", "Normal"),
    "dvd": ("DVDImages", "Image", "RAW", "Readonly"),
    "floppy": ("FloppyImages", "Image", "RAW", "Writethrough"),
}


def _location_key(base: Path, text: str) -> str:
    return str(resolve_location(base, text))


def _read_medium(el: etree._Element, base: Path, kind: str, depth: int) -> Medium:
    if depth > MAX_DEPTH:
        raise problem(el, "Maximum medium tree depth exceeded")
    _, _, dflt_format, dflt_type = KINDS[kind]
    fmt = el.get("format")
    if fmt is None:
        if kind == "hd":
            raise problem(el, "Required HardDisk/@format attribute is missing")
        fmt = dflt_format
    mtype: MediumType = dflt_type if depth == 1 else "Normal"
    given = el.get("type") if depth == 1 else None
    if given is not None:
        found = _TYPES.get(given.lower())
        if found is None:
            raise problem(el, f"HardDisk/@type attribute has invalid value '{given}'")
        mtype = found
    desc = child(el, "Description")
    return Medium(
        uuid=get_uuid(el, "uuid"),
        location=_location_key(base, required(el, "location")),
        format=fmt,
        type=mtype,
        auto_reset=get_bool(el, "autoReset", False),
        description=(desc.text or "") if desc is not None else "",
        properties={required(p, "name"): p.get("value", "") for p in children(el, "Property")},
        children=[_read_medium(c, base, kind, depth + 1) for c in children(el, "HardDisk")]
        if kind == "hd" else [],
    )


def read_registry(el: etree._Element | None, base: Path) -> MediaRegistry:
    reg = MediaRegistry()
    if el is None:
        return reg
    for kind, field in (("hd", "hard_disks"), ("dvd", "dvd_images"), ("floppy", "floppy_images")):
        container, tag, _, _ = KINDS[kind]
        box = child(el, container)
        if box is not None:
            getattr(reg, field).extend(_read_medium(e, base, kind, 1) for e in children(box, tag))
    return reg


def _write_medium(el: etree._Element, m: Medium, base: Path, kind: str, depth: int) -> None:
    _, tag, dflt_format, dflt_type = KINDS[kind]
    put(el, "uuid", m.uuid, always=True, order=MEDIUM_ATTRS, fmt=fmt_uuid,
        read=lambda e, n, d: parse_uuid(e.get(n)) if e.get(n) else d)
    if el.get("location") is None or _location_key(base, el.get("location")) != m.location:
        set_attr(el, "location", relative_location(base, m.location), MEDIUM_ATTRS)
    if kind == "hd":
        put(el, "format", m.format, always=True, order=MEDIUM_ATTRS)
    else:
        put(el, "format", m.format, default="RAW", order=MEDIUM_ATTRS,
            read=lambda e, n, d: e.get(n, d))
    if depth == 1:
        base_type = dflt_type if kind != "hd" else None
        put(el, "type", m.type, default=base_type or "Normal", always=kind == "hd", order=MEDIUM_ATTRS,
            read=lambda e, n, d: _TYPES.get(e.get(n, "").lower(), d))
    put_bool(el, "autoReset", m.auto_reset, default=False, order=MEDIUM_ATTRS)
    desc = child(el, "Description")
    if m.description:
        desc = desc if desc is not None else new_child(el, "Description", MEDIUM_CHILDREN)
        if desc.text != m.description:
            desc.text = m.description
    elif desc is not None:
        remove(desc)

    def write_prop(e: etree._Element, kv: tuple[str, str]) -> None:
        if e.get("name") != kv[0]:
            set_attr(e, "name", kv[0])
        if e.get("value") != kv[1]:
            set_attr(e, "value", kv[1], ("name", "value"))

    sync_keyed(el, "Property", m.properties.items(), lambda e: e.get("name"), lambda kv: kv[0],
               write_prop, MEDIUM_CHILDREN)
    if kind == "hd":
        sync_keyed(el, tag, m.children, _uuid_key, lambda c: c.uuid,
                   lambda e, c: _write_medium(e, c, base, kind, depth + 1), MEDIUM_CHILDREN)


def _uuid_key(e: etree._Element):
    try:
        return parse_uuid(e.get("uuid", ""))
    except Exception:
        return id(e)


def write_registry(parent: etree._Element, reg: MediaRegistry, base: Path, order) -> None:
    """Bring `<MediaRegistry>` under `parent` in line with `reg`."""
    el = child(parent, "MediaRegistry")
    if el is None:
        if reg.is_empty():
            return
        el = ensure_child(parent, "MediaRegistry", order)
    for kind, field in (("hd", "hard_disks"), ("dvd", "dvd_images"), ("floppy", "floppy_images")):
        container, tag, _, _ = KINDS[kind]
        items = getattr(reg, field)
        box = child(el, container)
        if box is None:
            if not items:
                continue
            box = ensure_child(el, container, REGISTRY_CHILDREN)
        removed = sync_keyed(box, tag, items, _uuid_key, lambda m: m.uuid,
                             functools.partial(_write_medium, base=base, kind=kind, depth=1))
        if removed and not items and is_empty(box):
            remove(box)
    if reg.is_empty() and is_empty(el):
        remove(el)
