"""What `VBoxManage getextradata` does (VBoxManageMisc.cpp handleGetExtraData), without the option parser.

cmd_extradata parses with click and calls `get`; main calls `fast` first for the plain
forms (`getextradata <vm>|global [<key>|enumerate]`), which then run without loading click.
"""

import sys

from .api import Api, call
from .fetch import find_machine_and

_FILE = "VBoxManageMisc.cpp"


def fast(rest: list[str]) -> int | None:
    if not 1 <= len(rest) <= 2 or any(a.startswith("-") for a in rest):
        return None
    return get(rest[0], rest[1] if len(rest) > 1 else None)


def get(target: str, key: str | None) -> int:
    vbox = Api.vbox()
    listing = key is None or key == "enumerate"
    first = ("get_extra_data_keys", ()) if listing else ("get_extra_data", (key,))
    if target == "global":
        obj, read = vbox, None
    else:  # the machine and the first read of it in one round trip
        obj, read = find_machine_and(target, first, 1470, _FILE)
    if listing:
        with call("GetExtraDataKeys(ComSafeArrayAsOutParam(aKeys))", 1480, _FILE):
            keys = _read(obj, first, read)
            values = _values(obj, keys)
            for k, (ok, value) in zip(keys, values, strict=True):
                if not ok:
                    raise value
                sys.stdout.write(f"Key: {k}, Value: {value}\n")
        return 0
    with call("GetExtraData(Bstr(a->argv[1]).raw(), value.asOutParam())", 1500, _FILE):
        value = _read(obj, first, read)
    sys.stdout.write(f"Value: {value}\n" if value else "No value set!\n")
    return 0


def _read(obj, first: tuple, read):
    """What `first` read of `obj`: from the round trip that found it, else by the lone call."""
    if read is None:
        method, args = first
        return getattr(obj, method)(*args)
    ok, value = read
    if not ok:
        raise value
    return value


def _values(obj, keys: list[str]) -> list:
    """(ok, value or error) of every key, in one round trip (each read as the lone call would be)."""
    if not keys:
        return []
    from .fetch import CALL, batch

    return batch([(obj, CALL, "get_extra_data", (k,)) for k in keys])
