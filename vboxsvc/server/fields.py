"""Building blocks for IMachine-style attributes over the settings models.

`field("hardware.memory_mb", ...)` makes a property that reads the machine's settings
(the session copy on a session machine) and, on write, checks the machine-state rule,
validates, converts API enums to the settings' names, and marks the data modified.
"""

from __future__ import annotations

from ..api import errors as rc
from ..api.errors import VBoxError
from .statedeps import MUTABLE


def enum_names(enum):
    """(to_api, from_api) converters between settings names ('IntelAhci') and API IntEnums."""
    def to_api(name):
        try:
            return enum[name]
        except KeyError:
            return enum(0) if 0 in enum._value2member_map_ else name

    def from_api(value):
        return enum(value).name
    return to_api, from_api


def validation_text(e: Exception) -> str:
    errs = getattr(e, "errors", None)
    if callable(errs):
        try:
            return "; ".join(str(x.get("msg", "")).removeprefix("Value error, ") for x in errs())
        except Exception:
            pass
    return str(e)


def assign(obj, name: str, value) -> None:
    try:
        setattr(obj, name, value)
    except ValueError as e:  # pydantic ValidationError is a ValueError
        raise VBoxError(rc.E_INVALIDARG, validation_text(e)) from None


def field(path: str, dep: str = MUTABLE, to_api=None, from_api=None, check=None, doc: str = ""):
    parts = path.split(".")

    def get(self):
        obj = self._mv._d
        for p in parts:
            obj = getattr(obj, p)
        return to_api(obj) if to_api else obj

    def set_(self, value):
        mv = self._mv
        mv._check_mutable(dep)
        if check is not None:
            check(value)
        v = from_api(value) if from_api else value
        obj = mv._d
        for p in parts[:-1]:
            obj = getattr(obj, p)
        assign(obj, parts[-1], v)
    return property(get, set_, doc=doc)


def in_range(what: str, lo: int, hi: int, unit: str = ""):
    def check(value):
        if not lo <= value <= hi:
            u = f" {unit}" if unit else ""
            raise VBoxError(rc.E_INVALIDARG,
                            f"Invalid {what}: {value}{u} (must be in range [{lo}, {hi}]{u})")
    return check
