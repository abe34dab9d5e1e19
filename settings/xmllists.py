"""Keyed-list and extra-data synchronisation between models and a parsed settings tree.

Lists in the files (media by UUID, adapters by slot, controllers by name, ...) are matched to
model items by key: matched elements are updated in place (keeping what we do not model), new
items get new elements next to their siblings, and elements whose item is gone are removed.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

from lxml import etree

from .xmltree import child, children, ensure_child, is_empty, new_child, remove, required, set_attr


def sync_keyed(parent: etree._Element, tag: str, items: Iterable[Any],
               key_of_el: Callable[[etree._Element], Hashable], key_of_item: Callable[[Any], Hashable],
               write: Callable[[etree._Element, Any], None], order: Sequence[str] = (),
               keep: Callable[[Any], bool] | None = None) -> bool:
    """Make the `tag` children of `parent` match `items`; returns True if any were removed.

    With `keep`, an item without an element is only created when keep(item) is true (VirtualBox
    skips default adapters and ports); an existing element is always kept up to date."""
    existing: dict[Hashable, etree._Element] = {}
    for e in children(parent, tag):
        existing.setdefault(key_of_el(e), e)
    prev: etree._Element | None = None
    removed = False
    for item in items:
        e = existing.pop(key_of_item(item), None)
        if e is None:
            if keep is not None and not keep(item):
                continue
            if prev is not None:
                e = new_child(parent, tag, after=prev)
            else:
                first = next(iter(children(parent, tag)), None)
                if first is not None:
                    e = parent.makeelement(first.tag)
                    first.addprevious(e)
                else:
                    e = new_child(parent, tag, order)
        write(e, item)
        prev = e
    for e in existing.values():
        remove(e)
        removed = True
    return removed


def read_extra_data(parent: etree._Element | None) -> dict[str, str]:
    out: dict[str, str] = {}
    items = child(parent, "ExtraData")
    if items is not None:
        for e in children(items, "ExtraDataItem"):
            out[required(e, "name")] = required(e, "value")
    return out


def write_extra_data(parent: etree._Element, data: dict[str, str], order: Sequence[str]) -> None:
    """`<ExtraData><ExtraDataItem name value/>`; omitted when empty (unless the file had it)."""
    el = child(parent, "ExtraData")
    if el is None:
        if not data:
            return
        el = ensure_child(parent, "ExtraData", order)

    def write(e: etree._Element, kv: tuple[str, str]) -> None:
        if e.get("name") != kv[0]:
            set_attr(e, "name", kv[0])
        if e.get("value") != kv[1]:
            set_attr(e, "value", kv[1], ("name", "value"))

    removed = sync_keyed(el, "ExtraDataItem", data.items(), lambda e: e.get("name"), lambda kv: kv[0],
                         write)
    if removed and not data and is_empty(el):
        remove(el)
