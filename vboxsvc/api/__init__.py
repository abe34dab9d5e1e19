"""The Main API as data: enumerations, result codes and VBoxError, event values, the interface schema.

Front-ends import enums and errors from here: `from vboxsvc.api import MachineState, VBoxError`.

The names are looked up on first use (PEP 562), so that a client importing one submodule
(the version identity, the error codes) does not build every enumeration class first.
"""


_ENUM_FUNCTIONS = ("is_online", "is_transient", "state_name")


def __getattr__(name: str):
    import importlib

    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name == "VBoxError":
        value = importlib.import_module(f"{__name__}.errors").VBoxError
    elif name == "Event":
        value = importlib.import_module(f"{__name__}.events").Event
    elif name[:1].isupper() or name in _ENUM_FUNCTIONS:
        try:
            value = getattr(importlib.import_module(f"{__name__}.enums"), name)
        except AttributeError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    else:  # a submodule (`from vboxsvc.api import identity`)
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    import importlib

    enums = importlib.import_module(f"{__name__}.enums")
    return sorted(set(globals()) | {n for n in vars(enums) if not n.startswith("_")} | {"VBoxError", "Event"})
