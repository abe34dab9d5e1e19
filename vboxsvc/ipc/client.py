"""The Python client library: connect to the service and use the Main API through proxies.

    from vboxsvc.ipc.client import connect
    from vboxsvc.api import LockType, VBoxEventType

    client = connect()                       # starts vboxsvc for this VBOX_USER_HOME if needed
    vbox = client.virtualbox
    print(vbox.version, [m.name for m in vbox.machines])
    m = vbox.create_machine("", "demo", os_type_id="Linux_64")
    vbox.register_machine(m)
    s = client.session()
    m.lock_machine(s, LockType.Write)
    s.machine.memory_size = 512
    s.machine.save_settings()
    s.unlock_machine()
    client.subscribe(lambda ev: print(ev), [VBoxEventType.OnMachineStateChanged])
    client.close()

A process that implements objects for others (the VM process and its IConsole) calls
`client.export(obj, "IConsole")`: a second channel then serves calls on exported objects
from a small thread pool, while the process keeps making its own calls.
"""

from __future__ import annotations

from . import autostart


def connect(autostart_service: bool = True, name: str | None = None, light: bool = False):
    """Connect to the service of the current user and VBOX_USER_HOME (starting it if needed).

    Returns a `Client` (vboxsvc.ipc.connection). A service that has to be started is spawned
    first and the bus machinery imported while it starts up. `light` suits a process that makes
    a few calls and exits: its calls travel without pyzmq (see Client).
    """
    starting = autostart.begin_service() if autostart_service else None
    try:
        from .connection import Client
    finally:
        if starting is not None:
            starting.wait()
    return Client(autostart_service=autostart_service, name=name, light=light)


def __getattr__(name: str):
    # Client and the rest live in .connection, imported on first use (not for the import system's probes)
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import connection
    try:
        return getattr(connection, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
