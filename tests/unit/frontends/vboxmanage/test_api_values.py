"""Enum values the CLI spells as plain ints (so that its common commands never build the enum classes)."""

from frontends.vboxmanage.api import LOCK_TYPES, lock_type
from frontends.vboxmanage.vminfo import Cpu, Hw
from vboxsvc.api.enums import CPUPropertyTypeX86, HWVirtExPropertyType, LockType


def test_values_match_the_api_enums():
    for name, value in LOCK_TYPES.items():
        assert value == LockType[name] and lock_type(name) == LockType[name]
    for cls, enum in ((Cpu, CPUPropertyTypeX86), (Hw, HWVirtExPropertyType)):
        names = [n for n in vars(cls) if not n.startswith("_")]
        assert names and all(getattr(cls, n) == enum[n] for n in names), cls
