"""The VM process's VRDE: the VNC server of vmm.display.rfb, configured from the machine's IVRDEServer.

VirtualBox's VM process starts its remote display server at power-up when the machine's VRDE
is enabled (ConsoleVRDPServer.cpp), on the first free port of the `TCP/Ports` property, bound
to `TCP/Address` (all interfaces when empty), with the `VNCPassword` property as the VNC
password.  IConsole.VRDEServerInfo reports it (the port, -1 while starting, 0 when no port
could be bound; the connection times and client count) for `showvminfo`.
"""

from __future__ import annotations

import logging

from vboxsvc.api import VBoxError

log = logging.getLogger("vboxpy.vrde")
VRDE_POLL_S = 2.0


def vrde_settings(machine) -> dict | None:
    """{"ports", "address", "password"} of an enabled VRDE, None when off or not configurable."""
    try:
        server = machine.vrde_server
        if server is None or not server.enabled:
            return None
        return {"ports": server.get_vrde_property("TCP/Ports") or "3389",
                "address": server.get_vrde_property("TCP/Address") or "",
                "password": server.get_vrde_property("VNCPassword") or ""}
    except (AttributeError, VBoxError):
        return None


def start_vrde(vm, cfg: dict | None, name: str):
    """Start the VNC server for `vm` with `cfg` (vrde_settings); the server, or None when VRDE is off."""
    from vmm.display.rfb import RfbServer, parse_ports

    if cfg is None:
        return None
    try:
        ports = parse_ports(cfg["ports"])
    except ValueError as e:
        log.error("VRDE: %s", e)
        return None
    server = RfbServer(vm.screen, vm.screen_version, vm.put_scancodes, address=cfg["address"] or "0.0.0.0",
                       ports=ports, password=cfg["password"], name=name)
    try:
        server.start()
    except OSError as e:
        log.error("%s", e)
    return server


class VrdeServerInfo:
    """IVRDEServerInfo: the VM process's VNC server as it is at each read (one object per console:
    pollers read it again and again, and every object handed out stays exported)."""
    __interface__ = "IVRDEServerInfo"

    def __init__(self, process):
        self._p = process

    @property
    def _s(self):
        return getattr(self._p, "vrde", None)

    @property
    def active(self) -> bool:
        return self._s is not None and self._s.active > 0

    @property
    def port(self) -> int:
        return self._s.port if self._s is not None else -1

    @property
    def number_of_clients(self) -> int:
        return self._s.connections if self._s is not None else 0

    @property
    def begin_time(self) -> int:
        t = self._s.last_connect if self._s is not None else None
        return int(t * 1000) if t else 0

    @property
    def end_time(self) -> int:
        t = self._s.last_disconnect if self._s is not None else None
        return int(t * 1000) if t else 0
