"""Small helpers to read and edit a VirtualBox settings tree in place.

The files are never regenerated: models are written back into the parsed lxml tree so that
elements and attributes we do not model survive. New elements and attributes are inserted
where VirtualBox's writer would put them (`order` lists), existing ones keep their place, and
a value is only rewritten when the model differs from what the file says.
Value codecs follow VirtualBox's formatting (Settings.cpp): booleans `true`/`false`, UUIDs `{lower}`,
timestamps `YYYY-MM-DDTHH:MM:SSZ`, hex `0x` + lowercase.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from lxml import etree

from .errors import SettingsError

NS = "http://www.virtualbox.org/"
# Marks elements created during this save: "always written" attributes are only added to those, so
# an existing element keeps its exact content unless a value really changes. Stripped on output.
NEW_MARK = "__vboxpy_new"


def is_element(node: Any) -> bool:
    return isinstance(node.tag, str)


def local(el: etree._Element) -> str:
    tag = el.tag
    return tag[tag.rfind("}") + 1:]


def _qname(parent: etree._Element, name: str) -> str:
    """`name` in the parent's namespace (the files use VirtualBox's default namespace)."""
    tag = parent.tag
    return tag[: tag.rfind("}") + 1] + name if tag.startswith("{") else name


def children(parent: etree._Element | None, name: str) -> list[etree._Element]:
    if parent is None:
        return []
    return parent.findall(_qname(parent, name))


def child(parent: etree._Element | None, name: str) -> etree._Element | None:
    if parent is None:
        return None
    return parent.find(_qname(parent, name))


def child_index(parent: etree._Element | None) -> dict[str, etree._Element]:
    """Name -> the first child element of that name, for many child() lookups on one parent in a
    single pass over its children (same namespace rule as child())."""
    out: dict[str, etree._Element] = {}
    if parent is None:
        return out
    ns = _qname(parent, "")
    for c in parent:
        tag = c.tag
        if isinstance(tag, str) and tag.startswith(ns) and "}" not in tag[len(ns):]:
            out.setdefault(tag[len(ns):], c)
    return out


def _rank(name: str, order: Sequence[str]) -> int | None:
    try:
        return order.index(name)
    except ValueError:
        return None


def new_child(parent: etree._Element, name: str, order: Sequence[str] = (),
              after: etree._Element | None = None) -> etree._Element:
    """Create `name` under `parent`: right after `after` if given, else before the first sibling
    that VirtualBox writes later than `name`, else at the end."""
    el = parent.makeelement(_qname(parent, name))
    el.set(NEW_MARK, "")
    if after is not None:
        after.addnext(el)
        return el
    rank = _rank(name, order)
    if rank is not None:
        for i, c in enumerate(parent):
            if is_element(c):
                r = _rank(local(c), order)
                if r is not None and r > rank:
                    parent.insert(i, el)
                    return el
    parent.append(el)
    return el


def ensure_child(parent: etree._Element, name: str, order: Sequence[str] = ()) -> etree._Element:
    el = child(parent, name)
    return el if el is not None else new_child(parent, name, order)


def remove(el: etree._Element | None) -> None:
    if el is not None and el.getparent() is not None:
        el.getparent().remove(el)


def is_bare(el: etree._Element, *allowed_attrs: str) -> bool:
    """True when the element holds nothing but `allowed_attrs` (safe to drop without loss)."""
    return (not any(is_element(c) for c in el) and not (el.text or "").strip()
            and all(k in allowed_attrs or k == NEW_MARK for k in el.attrib))


def is_empty(el: etree._Element) -> bool:
    """No children, text or attributes (other than our mark): dropping it loses nothing."""
    return len(el) == 0 and not (el.text or "").strip() and all(k == NEW_MARK for k in el.attrib)


def strip_marks(root: etree._Element) -> None:
    for el in root.iter():
        if is_element(el):
            el.attrib.pop(NEW_MARK, None)


def set_attr(el: etree._Element, name: str, value: str | None, order: Sequence[str] = ()) -> None:
    """Set (or with None remove) an attribute; a new one goes to VirtualBox's position."""
    if value is None:
        el.attrib.pop(name, None)
        return
    if name in el.attrib:
        el.set(name, value)
        return
    rank = _rank(name, order)
    items = list(el.attrib.items())
    pos = len(items)
    if rank is not None:
        for i, (k, _) in enumerate(items):
            r = _rank(k, order)
            if r is not None and r > rank:
                pos = i
                break
    if pos == len(items):
        el.set(name, value)
        return
    items.insert(pos, (name, value))
    el.attrib.clear()
    for k, v in items:
        el.set(k, v)


# ---------------------------------------------------------------- value codecs

def problem(el: etree._Element | None, text: str) -> SettingsError:
    """An error tied to a line of the file being read (the file name is added by the loader)."""
    return SettingsError(text, None, el.sourceline if el is not None else None)


def required(el: etree._Element, name: str, where: str | None = None) -> str:
    """The attribute's value; VirtualBox's "Required X/@name attribute is missing" otherwise
    (`where` is the element path VirtualBox names, e.g. "UART/Port")."""
    value = el.get(name)
    if value is None:
        raise problem(el, f"Required {where or local(el)}/@{name} attribute is missing")
    return value


def get_enum(el: etree._Element | None, name: str, default: str, values: dict[str, str], where: str,
             suffix: str = " attribute") -> str:
    """Map an enumerated attribute (file spelling -> model name); unknown values are errors
    with VirtualBox's "Invalid value '%s' in X/@name" wording."""
    if el is None or el.get(name) is None:
        return default
    text = el.get(name)
    if text not in values:
        label = where if "@" in where else f"{where}/@{name}"
        raise problem(el, f"Invalid value '{text}' in {label}{suffix}")
    return values[text]


def parse_bool(text: str) -> bool | None:
    t = text.strip().lower()
    if t in ("true", "yes", "on", "1"):
        return True
    if t in ("false", "no", "off", "0"):
        return False
    return None


def fmt_bool(value: bool) -> str:
    return "true" if value else "false"


def get_bool(el: etree._Element | None, name: str, default: bool) -> bool:
    """VirtualBox ignores an unparsable boolean (the default stays)."""
    if el is None or el.get(name) is None:
        return default
    value = parse_bool(el.get(name))
    return default if value is None else value


def parse_int(text: str) -> int | None:
    t = text.strip()
    try:
        if t.lower().startswith(("0x", "-0x")):
            return int(t, 16)
        return int(t, 10)
    except ValueError:
        return None


def get_int(el: etree._Element | None, name: str, default: int) -> int:
    if el is None or el.get(name) is None:
        return default
    value = parse_int(el.get(name))
    if value is None:
        raise problem(el, f"Attribute '{name}' of element '{local(el)}' has invalid value "
                          f"'{el.get(name)}' (not a number)")
    return value


def fmt_hex(value: int) -> str:
    return f"0x{value:x}"


def parse_uuid(text: str, el: etree._Element | None = None) -> uuidlib.UUID:
    """Braces optional; the all-zero UUID is refused (`ConfigFileBase::parseUUID`)."""
    t = text.strip()
    if t.startswith("{") and t.endswith("}"):
        t = t[1:-1]
    try:
        if len(t) != 36:
            raise ValueError
        value = uuidlib.UUID(t)
    except ValueError:
        raise problem(el, f'UUID "{text}" has invalid format')
    if value.int == 0:
        raise problem(el, f'UUID "{text}" has zero format')
    return value


def fmt_uuid(value: uuidlib.UUID) -> str:
    return "{" + str(value).lower() + "}"


def get_uuid(el: etree._Element, name: str) -> uuidlib.UUID:
    return parse_uuid(required(el, name), el)


def opt_uuid(el: etree._Element | None, name: str) -> uuidlib.UUID | None:
    if el is None or el.get(name) is None:
        return None
    return parse_uuid(el.get(name), el)


def parse_time(text: str, el: etree._Element | None = None) -> datetime:
    """`YYYY-MM-DDTHH:MM:SS[.fff]Z` only; other time zones are refused like VirtualBox does."""
    t = text.strip()
    if not t.endswith("Z"):
        raise problem(el, f"Cannot parse ISO timestamp '{text}': no UTC time zone")
    try:
        value = datetime.fromisoformat(t[:-1])
    except ValueError:
        raise problem(el, f"Cannot parse ISO timestamp '{text}': invalid format")
    if value.tzinfo is not None:
        raise problem(el, f"Cannot parse ISO timestamp '{text}': invalid format")
    return value.replace(tzinfo=UTC)


def fmt_time(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- compare-then-write

def put(el: etree._Element, name: str, value: Any, *, default: Any = None, always: bool = False,
        read: Callable[[etree._Element, str, Any], Any] | None = None,
        fmt: Callable[[Any], str] = str, order: Sequence[str] = ()) -> None:
    """Write `value` unless the file already says it.

    `read(el, name, default)` decodes the current attribute (missing -> default). When the value
    changes it is written, or removed if it equals `default` and `always` is false.
    """
    present = name in el.attrib
    if present:
        current = read(el, name, default) if read else el.get(name)
        if current == value:
            return  # the file already says it; keep its spelling
    elif value == default and (not always or NEW_MARK not in el.attrib):
        return  # absent means default
    if value == default and not always:
        el.attrib.pop(name, None)
    else:
        set_attr(el, name, fmt(value), order)


def put_bool(el, name, value: bool, default: bool | None = None, always=False, order=()):
    put(el, name, value, default=default, always=always, order=order,
        read=get_bool, fmt=fmt_bool)


def put_int(el, name, value: int, default: int | None = None, always=False, order=(), hexa=False):
    put(el, name, value, default=default, always=always, order=order,
        read=get_int, fmt=fmt_hex if hexa else str)


def put_str(el, name, value: str, default: str | None = "", always=False, order=()):
    put(el, name, value, default=default, always=always, order=order)


def put_flag_child(parent: etree._Element, name: str, value: Any, default: Any,
                   order: Sequence[str] = (), always: bool = False, attr: str = "enabled") -> None:
    """An `<X enabled="..."/>`-style child written only when not default (or always)."""
    el = child(parent, name)
    current: Any
    fmt: Callable[[Any], str]
    if isinstance(default, bool):
        current, fmt = get_bool(el, attr, default), fmt_bool
    elif isinstance(default, int):
        current, fmt = get_int(el, attr, default), str
    else:
        current, fmt = (el.get(attr, default) if el is not None else default), str
    if el is not None and current == value:
        return
    if el is None and value == default and not always:
        return
    if el is None and value == default and NEW_MARK not in parent.attrib:
        return  # "always" children are only added to new parents
    if value == default and not always and el is not None and is_bare(el, attr):
        remove(el)
        return
    if el is None:
        el = new_child(parent, name, order)
    el.set(attr, fmt(value))
