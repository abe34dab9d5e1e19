"""Guest property flags and name patterns, as the Main API spells them.

The service (the store of a powered-off machine), the VM process (the store of a running one)
and the CLI all parse and print the same flag strings (VirtualBox's GuestPropertySvc.h:
GuestPropValidateFlags / GuestPropWriteFlags) and match names with the same simple patterns
(IPRT's RTStrSimplePatternMultiMatch: `*` and `?`, alternatives separated by `|`; VBoxManage
joins several patterns with `,`, which is accepted as a separator too).
"""

from __future__ import annotations

import re

from . import errors as rc
from .errors import VBoxError

NONE = 0
RDONLYGUEST = 1
RDONLYHOST = 2
READONLY = RDONLYGUEST | RDONLYHOST
TRANSIENT = 4
TRANSRESET = 8
# printing order of GuestPropWriteFlags; READONLY before its two halves so it wins when both are set
_WRITE_ORDER = (("TRANSIENT", TRANSIENT), ("READONLY", READONLY), ("RDONLYGUEST", RDONLYGUEST),
                ("RDONLYHOST", RDONLYHOST), ("TRANSRESET", TRANSRESET))
_BY_NAME = {name: bit for name, bit in _WRITE_ORDER}
MAX_NAME_LEN = 64 * 1024 - 1    # GUEST_PROP_MAX_NAME_LEN
MAX_VALUE_LEN = 1024 * 1024 - 1  # GUEST_PROP_MAX_VALUE_LEN


def parse_flags(text: str) -> int:
    """`"TRANSIENT, RDONLYGUEST"` -> bits; E_INVALIDARG for a word that is no flag."""
    bits = 0
    for word in re.split(r"[,\s]+", text.strip()):
        if not word:
            continue
        bit = _BY_NAME.get(word.upper())
        if bit is None:
            raise VBoxError(rc.E_INVALIDARG, f"Invalid guest property flag '{word}'", "IMachine",
                            "MachineWrap")
        bits |= bit
    if bits & TRANSRESET:   # TRANSRESET implies TRANSIENT
        bits |= TRANSIENT
    return bits


def format_flags(bits: int) -> str:
    out = []
    for name, bit in _WRITE_ORDER:
        if bits & bit == bit:
            out.append(name)
            bits &= ~bit
    return ", ".join(out)


def normalise_flags(text: str) -> str:
    return format_flags(parse_flags(text))


def check_name(name: str) -> None:
    if not name or len(name) > MAX_NAME_LEN:
        raise VBoxError(rc.E_INVALIDARG, f"Invalid guest property name '{name[:64]}'", "IMachine",
                        "MachineWrap")


def check_value(value: str) -> None:
    if len(value) > MAX_VALUE_LEN:
        raise VBoxError(rc.E_INVALIDARG, "The guest property value is too long", "IMachine", "MachineWrap")


def matches(patterns: str, name: str) -> bool:
    """Empty patterns match everything; otherwise any of the `|`/`,` separated glob patterns."""
    if not patterns:
        return True
    return any(_pattern_re(p).fullmatch(name) for p in re.split(r"[|,]", patterns) if p)


def _pattern_re(pattern: str) -> re.Pattern:
    """Only `*` (any run) and `?` (one character) are special, as in IPRT's simple patterns."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), re.S)
