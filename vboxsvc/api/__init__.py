"""The Main API as data: enumerations, result codes and VBoxError, event values, the interface schema.

Front-ends import enums and errors from here: `from vboxsvc.api import MachineState, VBoxError`.

The names are looked up on first use (PEP 562), so that a client importing one submodule
(the version identity, the error codes) does not build every enumeration class first.
"""


import sys as _sys

_ENUM_FUNCTIONS = ("is_online", "is_transient", "state_name")


def _sub(name: str):
    """A submodule, imported on first use (__import__ rather than importlib, which a short-lived
    client would load for this alone)."""
    full = f"{__name__}.{name}"
    __import__(full)
    return _sys.modules[full]


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name == "VBoxError":
        value = _sub("errors").VBoxError
    elif name == "Event":
        value = _sub("events").Event
    elif name[:1].isupper() or name in _ENUM_FUNCTIONS:
        try:
            value = getattr(_sub("enums"), name)
        except AttributeError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    else:  # a submodule (`from vboxsvc.api import identity`)
        try:
            return _sub(name)
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    enums = _sub("enums")
    return sorted(set(globals()) | {n for n in vars(enums) if not n.startswith("_")} | {"VBoxError", "Event"})
